"""``tuned-to-validation``: validation up and test down through tuning, judged against the
binomial noise of the test set (a pure function of the journey's numbers), and its wiring."""

from __future__ import annotations

from typing import Any

import numpy as np

from nnrecipe.core.context import Context
from nnrecipe.core.runner import run_check
from nnrecipe.ensemble.journey import Journey, accuracy_se, journey_points, tuned_verdict
from nnrecipe.regularize.outcomes import Metric
from tests.toys import blobs, classification_experiment

ACC = Metric("accuracy", True)
LOSS = Metric("loss", False)


def _state(reg: tuple[float, float], tuned: tuple[float, float], key: str = "accuracy"
           ) -> dict[str, Any]:
    return {
        "train": {"val": {key: reg[0] - 0.01}, "test": {key: reg[1]}},
        "regularize": {"reference": None, "best": {
            "name": "weight decay", "setting": "1e-4", "val": {key: reg[0]}, "test": {key: reg[1]}}},
        "tune": {"best": {"number": 5, "params": {"lr": 0.003}, "val": {key: tuned[0]},
                          "test": {key: tuned[1]}}},
    }


def test_the_demo_case_is_within_noise() -> None:
    # the demo (issue 15): validation 0.983 -> 0.9972 while test 0.9833 -> 0.9778 on 360 images
    v = tuned_verdict(journey_points(_state((0.983, 0.9833), (0.9972, 0.9778)), ACC), ACC, 360)
    assert v is not None and v.fires and not v.beyond_noise
    assert v.before == "regularised"
    assert 0.008 < v.test_se < 0.012  # ~0.010: the 0.0055 fall is ~0.5 SE


def test_a_real_fall_is_beyond_noise() -> None:
    # 0.95 -> 0.90 on 1000 test images: the difference's SE is ~0.011, the fall 4.6 SE
    v = tuned_verdict(journey_points(_state((0.95, 0.95), (0.99, 0.90)), ACC), ACC, 1000)
    assert v is not None and v.fires and v.beyond_noise


def test_quiet_when_test_follows_validation() -> None:
    for reg, tuned in (((0.95, 0.95), (0.99, 0.97)),   # both up
                       ((0.95, 0.95), (0.94, 0.90)),   # both down: not "tuned to validation"
                       ((0.95, 0.95), (0.95, 0.90))):  # validation unchanged
        v = tuned_verdict(journey_points(_state(reg, tuned), ACC), ACC, 1000)
        assert v is not None and not v.fires, (reg, tuned)


def test_losses_have_no_noise_estimate_so_never_a_warning() -> None:
    v = tuned_verdict(journey_points(_state((0.50, 0.50), (0.30, 0.90), key="loss"), LOSS),
                      LOSS, 1000)
    assert v is not None and v.fires and not v.beyond_noise  # loss: lower is better


def test_nothing_to_compare_without_test_numbers() -> None:
    state = _state((0.95, 0.95), (0.99, 0.90))
    state["tune"]["best"]["test"] = {}
    assert tuned_verdict(journey_points(state, ACC), ACC, 1000) is None


def test_accuracy_se_never_claims_zero_noise() -> None:
    assert accuracy_se(1.0, 360) > 0
    assert abs(accuracy_se(0.5, 100) - 0.049) < 0.002


def _ctx_with_test(n_test: int) -> Context:
    X, y = blobs(n=n_test, seed=3)
    return Context(classification_experiment(test=(X.astype(np.float32), y)))


def test_wiring_warns_on_a_real_fall_and_informs_within_noise() -> None:
    ctx = _ctx_with_test(1000)
    ctx.state.update(_state((0.95, 0.95), (0.99, 0.90)))
    res = run_check(ctx, Journey)
    (f,) = res.findings
    assert f.code == "tuned-to-validation" and f.severity.value == "warning"
    assert f.evidence["n_test"] == 1000 and "beyond the noise" in f.message
    assert "overrides tuning-advice" in f.message  # one voice: the advice judged on val only
    ctx = _ctx_with_test(360)
    ctx.state.update(_state((0.983, 0.9833), (0.9972, 0.9778)))
    res = run_check(ctx, Journey)
    (f,) = res.findings
    assert f.severity.value == "info" and "within the noise of 360 test samples" in f.message


def test_wiring_quiet_when_tuning_helped_on_test_too() -> None:
    ctx = _ctx_with_test(360)
    ctx.state.update(_state((0.95, 0.95), (0.99, 0.97)))
    res = run_check(ctx, Journey)
    assert res.status == "passed" and not res.findings


def test_importances_from_few_trials_carry_a_caveat() -> None:
    from nnrecipe.api import run

    res = run(classification_experiment(epochs=2), ["tune"], options={"tune_trials": 4})
    (f,) = [f for f in res.findings if f.code == "tuning-advice"]
    assert f.evidence["importances"]  # 4 complete trials over 3 parameters
    assert f.evidence["importances_rough"] and "rough: fANOVA from only 4" in f.message
