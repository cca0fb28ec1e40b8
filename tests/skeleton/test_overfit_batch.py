"""``cannot-overfit-batch``: the verdict on scripted series, and the wiring on tiny runs: quiet
on healthy setups (a slow default optimizer, label smoothing), loud on the bugs it exists for."""

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from nnrecipe.api import run
from nnrecipe.skeleton.overfit_batch import (
    MAX_STEPS,
    loss_floor,
    overfit_verdict,
    stratified_indices,
)
from nnrecipe.train.nonfinite import first_nonfinite
from tests.seeds import TEST_SEED
from tests.skeleton import zoo
from tests.toys import (
    classification_experiment,
    mlp,
    regression_experiment,
    step_without_optimizer_step,
)


def _run(exp):  # noqa: ANN001
    res = run(exp, ["skeleton"], only=["cannot-overfit-batch"])
    return res.findings, res.stages[0].checks[0]


# ------------------------------------------------------------------ the pure verdict


def test_verdict_on_scripted_series() -> None:
    falling = [2.0 * 0.9**i for i in range(100)]
    v = overfit_verdict(falling)
    assert v.reached and v.step is not None and v.step < 60
    assert overfit_verdict([2.0] * 100).status == "stalled"
    assert overfit_verdict([2.0, 1.0, math.nan]).status == "nonfinite"


def test_a_slow_steady_fall_is_not_a_failure() -> None:
    # the shape of a 64-32-10 MLP under Adam 3e-4: log-linear, 2.3 -> 0.06 in 400 steps
    slow = [2.3 * math.exp(-0.0091 * i) * (1 + 0.01 * math.sin(i)) for i in range(MAX_STEPS)]
    v = overfit_verdict(slow)
    assert v.status == "falling" and v.ok
    assert v.t < -3 and v.runs_to_target is not None and v.runs_to_target < 0.5


def test_a_fall_toward_a_floor_far_above_zero_stalls() -> None:
    # a frozen net whose output bias learns the class frequencies: 1.07 -> ~0.95 and levelling
    toward_floor = [0.95 + 0.12 * math.exp(-i / 150) for i in range(MAX_STEPS)]
    v = overfit_verdict(toward_floor)
    assert v.status == "stalled" and v.runs_to_target is not None and v.runs_to_target > 10
    rng = np.random.default_rng(0)
    noisy_plateau = list(1.0 + 0.05 * rng.normal(size=MAX_STEPS))  # labels shuffled per step
    assert overfit_verdict(noisy_plateau).status == "stalled"


def test_the_target_is_measured_from_the_losss_floor() -> None:
    # label smoothing 0.1 over 10 classes: the loss cannot go below ~0.50
    ls = [0.5 + 1.8 * 0.97**i for i in range(MAX_STEPS)]
    assert overfit_verdict(ls).status != "reached"
    assert overfit_verdict(ls, floor=0.5).reached


def test_memorised_batch_with_a_levelled_loss_passes_only_after_a_real_drop() -> None:
    levelled = [0.4 + 2.0 * 0.95**i for i in range(MAX_STEPS)]  # a penalty inside the loss
    assert overfit_verdict(levelled).status == "stalled"
    assert overfit_verdict(levelled, memorised=True).status == "memorised"
    flat = [2.0 + 0.001 * math.cos(i) for i in range(MAX_STEPS)]  # right by chance, no drop
    assert overfit_verdict(flat, memorised=True).status == "stalled"


def test_the_eval_mode_loss_counts() -> None:
    # dropout keeps the train-mode loss noisy and high; in eval mode the batch is memorised
    rng = np.random.default_rng(0)
    noisy = [2.3 * 0.9**i + 0.3 + 0.1 * rng.random() for i in range(MAX_STEPS)]
    assert not overfit_verdict(noisy).reached
    assert overfit_verdict(noisy, eval_loss=0.02).reached


def test_loss_floor_of_label_smoothing_is_the_smoothed_targets_entropy() -> None:
    y = torch.tensor([0, 3, 7, 9])
    out = torch.zeros(4, 10)
    eps = 0.1
    q = 1 - eps + eps / 10
    expected = -(q * math.log(q) + 9 * (eps / 10) * math.log(eps / 10))
    assert loss_floor(nn.CrossEntropyLoss(label_smoothing=eps), out, y) == pytest.approx(
        expected, rel=1e-4)
    assert loss_floor(nn.CrossEntropyLoss(), out, y) == 0.0
    assert loss_floor(nn.MSELoss(), out, torch.zeros(4, 10)) == 0.0


def test_the_batch_is_drawn_across_classes() -> None:
    labels = torch.tensor([0] * 95 + [1] * 5)  # 95/5: a plain draw of 8 is often all zeros
    chosen = stratified_indices(labels, list(range(100)), 8, seed=0)
    assert len(chosen) == 8 and {int(labels[i]) for i in chosen} == {0, 1}


def test_first_nonfinite() -> None:
    assert first_nonfinite([1.0, 2.0, math.inf, math.nan]) == 2
    assert first_nonfinite([1.0, 2.0]) is None


# ----------------------------------------------------------------- wiring: quiet


@pytest.mark.statistical
def test_quiet_on_healthy_setups() -> None:
    # worst of seeds 0-9: blobs reach the target at step 157, the regression at 92 (of 400)
    for exp in (classification_experiment(seed=TEST_SEED), regression_experiment(seed=TEST_SEED)):
        findings, check = _run(exp)
        assert findings == [] and check.status == "passed"
        assert check.metrics["steps_to_target"] is not None
        assert check.tables and check.figures


@pytest.mark.statistical
def test_quiet_on_a_digits_mlp_with_the_default_optimizer() -> None:
    # issue 11: it fired here (2.3 -> 0.05 in 400 steps, target 0.046) and then advised the
    # very Adam 3e-4 it was running. Worst of seeds 0-9: still falling at t = -175 (limit -3),
    # 0.19 runs from the target (limit 2 runs: a 10x margin).
    findings, check = _run(zoo.digits_mlp_experiment(seed=TEST_SEED))
    assert findings == [] and check.status == "passed"
    assert check.metrics["status"] in ("reached", "falling")
    assert check.metrics["optimizer"] == "Adam(lr=0.0003)"


@pytest.mark.statistical
def test_quiet_with_label_smoothing() -> None:
    # worst of seeds 0-9: the target (2% above the 0.50 floor) reached at step 115 of 400
    exp = zoo.digits_mlp_experiment(seed=TEST_SEED, loss=nn.CrossEntropyLoss(label_smoothing=0.1),
                                    optimizer=lambda p: torch.optim.Adam(p, lr=1e-3))
    findings, check = _run(exp)
    assert findings == [] and check.metrics["status"] == "reached"
    assert check.metrics["loss_floor"] == pytest.approx(0.50, abs=0.01)


# ------------------------------------------------------------------ wiring: fires


def _shuffles_labels(model: nn.Module, batch: Any, loss_fn: Any, optimizer: Any) -> torch.Tensor:
    x, y = batch
    optimizer.zero_grad()
    loss = loss_fn(model(x), y[torch.randperm(len(y))])
    loss.backward()
    optimizer.step()
    return loss


def _detaches_output(model: nn.Module, batch: Any, loss_fn: Any, optimizer: Any) -> torch.Tensor:
    x, y = batch
    optimizer.zero_grad()
    loss = loss_fn(model(x).detach().requires_grad_(True), y)  # the graph is cut
    loss.backward()
    optimizer.step()
    return loss


class _FrozenButBias(nn.Module):
    """Every weight frozen by mistake; only the output bias trains (class frequencies)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = mlp(10, 3)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.net[-1].bias.requires_grad_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _xor_experiment() -> Any:
    """A linear model on 8 XOR points: too small to memorise them, whatever the step."""
    rng = np.random.default_rng(TEST_SEED)
    corners = np.array([[1, 1], [-1, -1], [1, -1], [-1, 1]] * 2, dtype=np.float32)
    X = corners + 0.05 * rng.normal(size=corners.shape).astype(np.float32)
    y = np.array([0, 0, 1, 1] * 2, dtype=np.int64)
    return classification_experiment(train=(X, y), val=(X, y), model=lambda: nn.Linear(2, 2),
                                     batch_size=8, seed=TEST_SEED)


BROKEN = {
    "no optimizer.step()": lambda: classification_experiment(
        seed=TEST_SEED, train_step=step_without_optimizer_step),
    "labels shuffled every step": lambda: classification_experiment(
        seed=TEST_SEED, train_step=_shuffles_labels),
    "output detached from the graph": lambda: classification_experiment(
        seed=TEST_SEED, train_step=_detaches_output),
    "inputs replaced by zeros": lambda: classification_experiment(
        seed=TEST_SEED, train_step=zoo.step_feeds_zeros),
    "frozen network": lambda: classification_experiment(seed=TEST_SEED, model=_FrozenButBias),
    "too small (linear on XOR)": _xor_experiment,
}


@pytest.mark.statistical
@pytest.mark.parametrize("bug", list(BROKEN))
def test_fires_as_an_error_on_a_broken_step_loss_or_model(bug: str) -> None:
    # Worst of seeds 0-9 (the closest call to passing, limit 2 runs at t < -3): the linear
    # model on XOR would need 21.7 more runs (seed 5), labels shuffled per step 94, the frozen
    # net 184; the others do not fall at all (t >= -1.2 or a slope of ~1e-17).
    findings, check = _run(BROKEN[bug]())
    (f,) = findings
    assert f.code == "cannot-overfit-batch" and f.severity.value == "error", f.message
    assert check.metrics["status"] == "stalled"
    assert f.evidence["fallback_reached"] is False
    assert f.evidence["best_smoothed_loss"] > 0.3 * f.evidence["initial_loss"]


@pytest.mark.statistical
def test_weak_optimizer_is_a_warning_whose_fix_fits_the_setup() -> None:
    exp = classification_experiment(seed=TEST_SEED, optimizer=lambda p: torch.optim.SGD(p, lr=1e-5))
    (f,), _ = _run(exp)
    assert f.code == "cannot-overfit-batch" and f.severity.value == "warning"
    assert f.evidence["fallback_reached"] is True
    assert "SGD(lr=1e-05)" in f.message and "SGD(lr=1e-05)" in f.fix
    assert "3e-4" not in f.fix


def test_nonfinite_loss_is_reported_with_its_step() -> None:
    exp = classification_experiment(optimizer=lambda p: torch.optim.SGD(p, lr=1e6))
    findings, _ = _run(exp)
    codes = {f.code for f in findings}
    assert "loss-nonfinite" in codes
    (f,) = [f for f in findings if f.code == "loss-nonfinite"]
    assert isinstance(f.evidence["step"], int)
