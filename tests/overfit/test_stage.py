"""The overfit stage wired to real (tiny) runs: quiet on healthy setups, fires when it should."""

import copy
import math

import numpy as np
import torch
from torch import nn

from nnrecipe.api import run
from nnrecipe.core.context import Context
from nnrecipe.core.findings import Severity
from nnrecipe.core.runner import run_check
from nnrecipe.examples import digits
from nnrecipe.overfit.advice import LRAdvice
from nnrecipe.overfit.capacity import TARGET_FRACTION, capacity_sizes, capacity_verdict
from tests.toys import classification_experiment, mlp, regression_experiment


def _loud(findings: list) -> list:
    return [f for f in findings if f.severity >= Severity.WARNING]


def test_quiet_on_the_toys_and_state_for_later_stages() -> None:
    for exp in (classification_experiment(), regression_experiment()):
        res = run(exp, ["overfit"])
        assert _loud(res.findings) == [], [f.message for f in _loud(res.findings)]
        lr_check, cap, advice = res.stages[0].checks
        assert lr_check.status == "info" and lr_check.figures and len(lr_check.tables) == 2
        m = lr_check.metrics
        assert m["low"] <= m["suggested"] <= m["high"] and m["confidence"] in ("high", "medium")
        assert 1e-4 < m["suggested"] < 1.0
        assert cap.status == "passed" and cap.metrics["reached"]
        assert advice.status == "info"
        codes = {f.code for f in res.findings}
        assert codes >= {"lr-suggestion", "lr-batch-scaling"} and "warmup-advised" not in codes


def test_quiet_on_the_demo() -> None:
    res = run(digits.experiment(), ["overfit"])
    assert _loud(res.findings) == [], [f.message for f in _loud(res.findings)]
    cap = res.stages[0].checks[1]
    assert list(cap.metrics["fractions"]) == ["4", "8", "16", "32"]  # the declared widths
    assert cap.metrics["falls_with_capacity"]
    assert "warmup-advised" not in {f.code for f in res.findings}
    (sugg,) = [f for f in res.findings if f.code == "lr-suggestion"]
    # The demo's best constant Adam rate for a few hundred steps is ~1e-2 (benchmark grid).
    assert 3e-3 < sugg.evidence["suggested"] < 3e-2


def _radius_experiment(**kw: object) -> object:
    """Label = outside a sphere: no linear model can fit it."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 10)).astype(np.float32)
    y = ((X**2).sum(1) > 9.3).astype(np.int64)
    return classification_experiment(model=lambda: nn.Linear(10, 2), train=(X[:400], y[:400]),
                                     val=(X[400:], y[400:]), name="radius", **kw)


def test_underfitting_fires_when_the_model_cannot_overfit() -> None:
    res = run(_radius_experiment(), ["overfit"], only=["capacity"])
    (f,) = res.findings
    assert f.code == "underfitting" and f.stage == "overfit"
    assert f.severity >= Severity.WARNING
    assert f.evidence["fractions"]["model"] > 3 * TARGET_FRACTION
    assert "did not overfit" in f.message  # not "can overfit ... still 34%" (issue 11)


def test_capacity_sizes_and_verdict() -> None:
    assert capacity_sizes(16) == [4, 8, 16, 32]
    assert capacity_sizes(2) == [1, 2, 4]
    assert capacity_sizes(0.5) == [0.125, 0.25, 0.5, 1.0]
    ok = capacity_verdict({4: 2.0, 32: 2.0}, {4: 0.19, 32: 0.1}, {4: None, 32: 120})
    assert ok.reached and ok.falls_with_capacity and ok.best_size == 32
    flat = capacity_verdict({4: 2.0, 32: 2.0}, {4: 1.0, 32: 1.4})
    assert not flat.reached and not flat.falls_with_capacity
    assert not capacity_verdict({None: 1.0}, {None: math.nan}).reached


def test_the_users_model_and_step_are_untouched_but_used() -> None:
    base = mlp(10, 3)
    before = copy.deepcopy(base.state_dict())
    calls = []

    def step(model, batch, loss_fn, optimizer):  # noqa: ANN001, ANN202
        calls.append(1)
        optimizer.zero_grad()
        loss = loss_fn(model(batch[0]), batch[1])
        loss.backward()
        optimizer.step()
        return loss

    # No val split: the candidates are judged on 20% of train held out.
    exp = classification_experiment(model=lambda hidden=32: copy.deepcopy(base), train_step=step,
                                    val=None)
    res = run(exp, ["overfit"], only=["lr-suggestion"])
    assert res.findings[0].code == "lr-suggestion"
    assert res.findings[0].evidence["method"] == "validated"
    assert res.stages[0].checks[0].metrics["run_steps"] == 40  # 8 batches x 5 epochs
    assert len(calls) > 100
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())


def test_advice_wiring_large_batch_transformer_and_clip() -> None:
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.TransformerEncoderLayer(10, 2, 16, batch_first=True)
            self.head = nn.Linear(10, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.attn(x[:, None, :])[:, 0])

    ctx = Context(classification_experiment(model=Tiny, batch_size=1024))
    norms = [1.0 + 0.01 * i for i in range(100)]
    ctx.state["lr"] = {"suggested": 1e-3, "batch_size": 1024, "grad_norms": norms,
                       "early_losses": [1.0, 1.0, 1.0, 2.0, 3.0, 3.0, 2.0, 1.0, 0.9, 0.8]}
    result = run_check(ctx, LRAdvice)
    by_code = {f.code: f for f in result.findings}
    assert set(by_code) == {"lr-batch-scaling", "warmup-advised", "grad-clip-threshold"}
    assert len(by_code["warmup-advised"].evidence["reasons"]) == 3  # batch, attention, spike
    assert by_code["lr-batch-scaling"].evidence["rule"] == "square-root"
    assert by_code["grad-clip-threshold"].evidence["threshold"] == 1.9

    ctx = Context(classification_experiment())
    result = run_check(ctx, LRAdvice)
    assert result.status == "skipped" and "range test" in result.reason


def test_a_far_too_small_rate_is_called_out() -> None:
    exp = classification_experiment(optimizer=lambda p: torch.optim.SGD(p, lr=1e-5))
    res = run(exp, ["overfit"], only=["lr-suggestion"])
    (f,) = res.findings
    assert f.evidence["user_lr"] == 1e-5 and f.evidence["suggested"] > 1e-3
    assert "above your optimizer's rate" in f.message
