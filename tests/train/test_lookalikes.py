"""Issue 11's healthy look-alikes stay quiet, and issue 13's train-side bugs are caught, on
tiny real runs (the stage and a hand-written loop under ``watch``).

Statistical: they train, so each takes its seed from TEST_SEED and must hold on seeds 0-9
(``make test-seeds``). Worst-seed margins are noted at each assertion.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from nnrecipe.core.context import Context
from nnrecipe.core.runner import run_stages
from tests.seeds import TEST_SEED
from tests.train import broken, lookalikes

pytestmark = pytest.mark.statistical


def train_stage(exp: Any, **state: Any) -> dict[str, Any]:
    ctx = Context(exp, options={"train_figures": False})
    ctx.state.update(state)
    result = run_stages(ctx, ["train"])
    return {f.code: f for f in result.findings}


def loud(findings: dict[str, Any]) -> set[str]:
    return {c for c, f in findings.items() if f.severity.rank >= 2}


# ----------------------------------------------------------------- quiet (issue 11)


@pytest.mark.parametrize("make", [lookalikes.diabetes_mlp, lookalikes.wine_bn_dropout,
                                  lookalikes.imbalanced_converged, lookalikes.sgd_slow_start],
                         ids=["diabetes-last-batch-of-1", "bn-dropout-bs16", "converged-80-20",
                              "sgd-slow-start"])
def test_healthy_lookalikes_are_quiet_in_the_train_stage(make: Any) -> None:
    assert loud(train_stage(make(TEST_SEED))) == set()


def test_diabetes_under_watch_is_quiet() -> None:
    # the watch() look-alike: Adam 1e-3, 353 samples at batch 32, a plain loop
    found = lookalikes.watched_loop(lookalikes.diabetes_mlp(TEST_SEED), seed=TEST_SEED, epochs=8)
    assert {f.code for f in found} == set()


# ------------------------------------------------------------- blow-up (issue 13 #5)


def test_adam_far_too_high_blows_the_tagger_up_and_it_stalls() -> None:
    f = train_stage(lookalikes.tagger(TEST_SEED, lr=1.0))["lr-too-high"]
    assert f.evidence["kind"] == "blow-up" and f.severity.value == "error"
    assert f.evidence["early_peak"] > 4 * 1.61  # ln 5 = 1.61; threshold 2x


def test_the_tagger_at_a_sane_rate_is_quiet() -> None:
    assert loud(train_stage(lookalikes.tagger(TEST_SEED, lr=1e-2))) == set()


# --------------------------------------------------- schedule stepped per batch (13 #7)


def step_lr(opt: torch.optim.Optimizer) -> Any:
    return torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)  # meant per epoch


def test_a_per_epoch_scheduler_stepped_every_batch_is_caught() -> None:
    exp = lookalikes.diabetes_mlp(TEST_SEED)
    found = lookalikes.watched_loop(exp, seed=TEST_SEED, epochs=6, scheduler=step_lr,
                                    step_scheduler_per_batch=True)
    assert "lr-schedule-misstepped" in {f.code for f in found}


def test_the_same_scheduler_stepped_per_epoch_is_quiet() -> None:
    exp = lookalikes.diabetes_mlp(TEST_SEED)
    found = lookalikes.watched_loop(exp, seed=TEST_SEED, epochs=6, scheduler=step_lr)
    assert "lr-schedule-misstepped" not in {f.code for f in found}


# -------------------------------------------------- evaluation bugs in watch (13 #11)


def test_accuracy_against_shuffled_labels_is_caught_and_the_right_one_is_not() -> None:
    exp = lookalikes.digits_mlp(TEST_SEED)
    bad = lookalikes.watched_loop(exp, seed=TEST_SEED, shuffled_val_labels=True)
    assert "val-metric-inconsistent" in {f.code for f in bad}
    good = lookalikes.watched_loop(exp, seed=TEST_SEED)
    assert "val-metric-inconsistent" not in {f.code for f in good}


# ------------------------------------------------------------ one voice (issue 11)


def test_lr_too_high_says_why_it_disagrees_with_the_range_test() -> None:
    # the range test called the rate plausible: the finding must say why it disagrees
    lr_state = {"suggested": 0.3, "low": 0.05, "high": 1.0, "confidence": "medium"}
    f = train_stage(broken.lr_far_too_high(seed=TEST_SEED), lr=lr_state)["lr-too-high"]
    assert "range test" in f.message and "[0.05, 1]" in f.message
    assert f.evidence["lr_range_test"] == (0.05, 1.0)
    # outside its range, the two agree and say so
    lr_state = {"suggested": 0.01, "low": 1e-3, "high": 0.05}
    f = train_stage(broken.lr_far_too_high(seed=TEST_SEED), lr=lr_state)["lr-too-high"]
    assert "agrees" in f.message
