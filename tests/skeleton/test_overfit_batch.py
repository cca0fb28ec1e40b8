import math

import torch

from nnrecipe.api import run
from nnrecipe.skeleton.overfit_batch import overfit_verdict
from nnrecipe.train.nonfinite import first_nonfinite
from tests.toys import classification_experiment, regression_experiment, step_without_optimizer_step


def _run(exp):  # noqa: ANN001
    res = run(exp, ["skeleton"], only=["cannot-overfit-batch"])
    return res.findings, res.stages[0].checks[0]


def test_verdict_on_scripted_series() -> None:
    falling = [2.0 * 0.9**i for i in range(100)]
    v = overfit_verdict(falling)
    assert v.reached and v.step is not None and v.step < 60
    assert not overfit_verdict([2.0] * 100).reached
    assert not overfit_verdict([2.0, 1.0, math.nan]).reached


def test_first_nonfinite() -> None:
    assert first_nonfinite([1.0, 2.0, math.inf, math.nan]) == 2
    assert first_nonfinite([1.0, 2.0]) is None


def test_quiet_on_healthy_setups() -> None:
    for exp in (classification_experiment(), regression_experiment()):
        findings, check = _run(exp)
        assert findings == [] and check.status == "passed"
        assert check.metrics["steps_to_target"] is not None
        assert check.tables and check.figures


def test_fires_when_the_users_step_never_updates() -> None:
    findings, check = _run(classification_experiment(train_step=step_without_optimizer_step))
    (f,) = findings
    assert f.code == "cannot-overfit-batch" and f.severity.value == "error"
    assert f.evidence["custom_train_step"] is True
    assert f.evidence["best_smoothed_loss"] > 0.5 * f.evidence["initial_loss"]


def test_weak_optimizer_is_a_warning_not_an_error() -> None:
    exp = classification_experiment(optimizer=lambda p: torch.optim.SGD(p, lr=1e-5))
    (f,), _ = _run(exp)
    assert f.code == "cannot-overfit-batch" and f.severity.value == "warning"
    assert f.evidence["fallback_reached"] is True


def test_nonfinite_loss_is_reported_with_its_step() -> None:
    exp = classification_experiment(optimizer=lambda p: torch.optim.SGD(p, lr=1e6))
    findings, _ = _run(exp)
    codes = {f.code for f in findings}
    assert "loss-nonfinite" in codes
    (f,) = [f for f in findings if f.code == "loss-nonfinite"]
    assert isinstance(f.evidence["step"], int)
