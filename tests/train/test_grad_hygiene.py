"""``grads-not-zeroed`` and ``accumulation-discarded`` in a watched loop: the pure verdicts on
scripted arrival counts, and the wiring on real hand-written loops (fires on the broken ones,
quiet on every healthy way of clearing gradients)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import nnrecipe
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.train.grad_accumulation import (
    STALE_SYMPTOMS,
    accumulation_verdict,
    attribute,
    stale_grads_verdict,
)
from tests.seeds import TEST_SEED
from tests.toys import blobs
from tests.train.broken import deep_mlp

HYGIENE = {"grads-not-zeroed", "accumulation-discarded"}


# ------------------------------------------------------------------ pure verdicts


def test_stale_verdict_on_scripted_counts() -> None:
    # a forgotten zero_grad: only the very first step finds .grad empty
    v = stale_grads_verdict([1] * 20, [1] + [0] * 19)
    assert v.fires and v.stale_steps == list(range(1, 20)) and v.measured == 20
    # every step cleared once (zero_grad each step, or N micro-batches then zero): quiet
    assert not stale_grads_verdict([1] * 20, [1] * 20).fires
    assert not stale_grads_verdict([4] * 20, [1] * 20).fires
    # two stale steps (e.g. a manual first step) are not a pattern
    assert not stale_grads_verdict([1] * 20, [1, 0, 0] + [1] * 17).fires
    # stepping every micro-batch, zeroing every 4th: 3 of 4 steps stale
    v = stale_grads_verdict([1] * 20, [1, 0, 0, 0] * 5)
    assert v.fires and v.share == pytest.approx(0.75)
    # steps no backward reached (arrivals 0) are not counted either way
    assert not stale_grads_verdict([0] * 20, [0] * 20).fires


def test_accumulation_verdict_on_scripted_counts() -> None:
    assert not accumulation_verdict([4] * 10, [1] * 10, declared=4).fires  # healthy
    v = accumulation_verdict([4] * 10, [4] * 10, declared=4)  # zero_grad per micro-batch
    assert v.fires and v.full_steps == 10 and len(v.discarded_steps) == 10
    # undeclared: nothing to check against
    assert not accumulation_verdict([4] * 10, [4] * 10, declared=1).fires
    # a scaler-skipped step merges two groups (8 arrivals, 2 cleared): not counted
    assert not accumulation_verdict([4, 8, 4, 4], [1, 2, 1, 1], declared=4).fires


def test_attribution_names_the_cause_first_and_folds_its_symptoms() -> None:
    def f(code: str, sev: Severity = Severity.WARNING) -> Finding:
        return Finding(code, sev, "train", f"{code} message")

    cause = Finding("grads-not-zeroed", Severity.ERROR, "train", "stale")
    out = attribute([f("loss-diverging", Severity.ERROR), f("exploding-gradients"),
                     f("lr-too-high"), f("val-below-train"), f("dead-relu"),
                     f("loss-nonfinite", Severity.ERROR)], cause, STALE_SYMPTOMS)
    assert [g.code for g in out] == ["grads-not-zeroed", "dead-relu", "loss-nonfinite"]
    assert set(out[0].evidence["symptoms"]) == {"loss-diverging", "exploding-gradients",
                                                "lr-too-high", "val-below-train"}
    assert "downstream symptoms" in out[0].message and "loss-diverging" in out[0].message
    assert out[2].evidence["likely_cause"] == "grads-not-zeroed"


# --------------------------------------------------------------- real loops

Clear = Callable[[nn.Module, torch.optim.Optimizer], None]


def data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    X, y = blobs(n=256, seed=seed)
    return torch.from_numpy(X), torch.from_numpy(y)


def loop(clear: Clear | None, *, seed: int = TEST_SEED, epochs: int = 4,
         optimizer: str = "sgd", accumulate: int = 1, declare: int = 1,
         clear_every_micro_batch: bool = False, step_every_micro_batch: bool = False,
         ) -> tuple[list[Finding], list[Finding], nnrecipe.train.Watcher]:
    """A hand-written loop over 6 batches of 32 per epoch (each split into ``accumulate``
    micro-batches); returns the live findings, the whole-run findings and the watcher."""
    torch.manual_seed(seed)
    X, y = data(seed)
    model = deep_mlp(10, 3, depth=2)
    opt = (torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=3e-3))
    live: list[Finding] = []
    micro = 32 // accumulate
    with nnrecipe.watch(model, opt, on_finding=live.append, accumulate=declare) as w:
        for _ in range(epochs):
            for i in range(0, 192, 32):
                for k in range(accumulate):
                    if clear is not None and (k == 0 or clear_every_micro_batch):
                        clear(model, opt)
                    j = i + k * micro
                    loss = nn.functional.cross_entropy(model(X[j:j + micro]), y[j:j + micro])
                    (loss / accumulate).backward()
                    if step_every_micro_batch:
                        opt.step()
                    w.step(loss)
                if not step_every_micro_batch:
                    opt.step()
            with torch.no_grad():
                w.epoch(val=float(nn.functional.cross_entropy(model(X[192:]), y[192:])))
    final, _ = w.final_findings()
    return live, final, w


def optimizer_zero_grad(model: nn.Module, opt: torch.optim.Optimizer) -> None:
    opt.zero_grad()


def keep_tensors(model: nn.Module, opt: torch.optim.Optimizer) -> None:
    opt.zero_grad(set_to_none=False)


def model_zero_grad(model: nn.Module, opt: torch.optim.Optimizer) -> None:
    model.zero_grad()


def by_hand(model: nn.Module, opt: torch.optim.Optimizer) -> None:
    for p in model.parameters():
        p.grad = None


@pytest.mark.statistical
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_forgotten_zero_grad_is_named_first_with_its_symptoms(optimizer: str) -> None:
    live, final, w = loop(None, optimizer=optimizer)
    assert final[0].code == "grads-not-zeroed" and final[0].severity == Severity.ERROR
    assert final[0].stage == "train" and final[0].check == "gradients"
    # the symptoms are folded in, not listed as separate causes
    assert not {f.code for f in final} & set(STALE_SYMPTOMS)
    # live, the cause came before any symptom could be reported (within sync_every steps)
    assert live[0].code == "grads-not-zeroed"
    assert live[0].evidence["seen_at_step"] <= 32
    # exact, not statistical: every step after the first kept the previous gradient
    assert final[0].evidence["stale_steps"][:3] == [1, 2, 3]
    assert final[0].evidence["stale_share"] > 0.95  # worst seed 0-9: 0.958 (23 of 24)


@pytest.mark.statistical
@pytest.mark.parametrize("clear", [optimizer_zero_grad, keep_tensors, model_zero_grad, by_hand])
def test_every_healthy_way_of_clearing_is_quiet(clear: Clear) -> None:
    live, final, w = loop(clear)
    assert not {f.code for f in live + final} & HYGIENE
    rec = w.recording
    assert rec.grad_arrivals == [1] * 24 and min(rec.grad_cleared) == 1  # margin: exact


@pytest.mark.statistical
def test_declared_accumulation_is_quiet_and_counted_per_optimizer_step() -> None:
    live, final, w = loop(optimizer_zero_grad, accumulate=4, declare=4)
    assert not {f.code for f in live + final} & HYGIENE
    rec = w.recording
    assert rec.optimizer_steps == 24 and len(rec.loss) == 24  # not 96 micro-batch entries
    assert rec.grad_arrivals == [4] * 24 and rec.grad_cleared == [1] * 24
    # undeclared accumulation done right is quiet too (one cleared arrival per step)
    _, final, _ = loop(optimizer_zero_grad, accumulate=4, declare=1)
    assert not {f.code for f in final} & HYGIENE


@pytest.mark.statistical
def test_zero_grad_inside_the_accumulation_loop_is_caught() -> None:
    live, final, w = loop(optimizer_zero_grad, accumulate=4, declare=4,
                          clear_every_micro_batch=True)
    codes = [f.code for f in final]
    assert codes[0] == "accumulation-discarded" and "grads-not-zeroed" not in codes
    assert final[0].evidence["full_steps"] == 24 and len(final[0].evidence["discarded_steps"]) == 24


@pytest.mark.statistical
def test_stepping_every_micro_batch_but_zeroing_every_n_is_grads_not_zeroed() -> None:
    _, final, _ = loop(optimizer_zero_grad, accumulate=4, declare=4, step_every_micro_batch=True)
    f = final[0]
    assert f.code == "grads-not-zeroed" and f.evidence["stale_share"] == pytest.approx(0.75)
    assert "once every 4 backward passes" in f.fix
