"""Dumb baselines, ``baseline-not-beaten`` and ``input-independent``."""

import numpy as np
import pytest

from nnrecipe.skeleton.baselines import beaten
from nnrecipe.skeleton.input_independent import input_verdict
from tests.skeleton import zoo
from tests.toys import classification_experiment, regression_experiment

CODES = ("baseline-not-beaten", "input-independent")


def test_beaten_needs_two_standard_errors() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.5, 1.5, 200)
    assert beaten(base - 0.3, base).beaten
    assert not beaten(base + rng.normal(0, 0.1, 200) * 0, base).beaten  # a tie
    noisy = base + rng.normal(0, 0.3, 200)
    assert not beaten(noisy, base).beaten
    # better accuracy alone is enough
    correct = np.ones(200)
    assert beaten(base, base, correct, np.zeros(200)).beaten


def test_input_verdict_causes() -> None:
    rng = np.random.default_rng(0)
    zero = rng.uniform(1.0, 1.2, 100)
    falling = list(np.linspace(1.1, 0.3, 50))
    prior = list(np.linspace(1.5, 1.1, 50))
    assert not input_verdict(zero - 0.5, zero, falling, prior, 0.8).fires
    v = input_verdict(zero, zero, prior, prior, 0.8)  # bit-identical runs
    assert (v.severity, v.cause) == ("error", "ignored")
    v = input_verdict(zero, zero, prior, list(np.array(prior) + 1e-3), 0.0)  # output blind
    assert (v.severity, v.cause) == ("error", "ignored")
    v = input_verdict(zero + 0.3, zero, falling, prior, 0.8)
    assert (v.severity, v.cause) == ("warning", "no-generalisation")
    v = input_verdict(zero + 0.01, zero, prior, list(np.array(prior) + 1e-3), 0.8)
    assert (v.severity, v.cause) == ("warning", "no-signal")


def test_quiet_and_state_on_healthy_classification() -> None:
    findings, checks, ctx = zoo.run_checks(classification_experiment(), *CODES)
    assert findings == []
    state = ctx.state["baselines"]
    assert set(state) >= {"majority", "linear", "model", "split", "n", "steps"}
    assert state["model"]["accuracy"] > state["majority"]["accuracy"] + 0.3
    assert checks["baseline-not-beaten"].tables


def test_without_a_val_split_a_slice_of_train_is_held_out() -> None:
    findings, checks, ctx = zoo.run_checks(classification_experiment(val=None), *CODES)
    assert findings == []
    assert ctx.state["baselines"]["split"] == "train" and ctx.state["baselines"]["n"] == 60


def test_shuffled_targets() -> None:
    """Targets permuted against their inputs. (Not on the blobs toy: with 3 well-separated
    clusters a permutation keeps a cluster-level majority that a model does learn.)"""
    X, y = regression_experiment().train
    exp = regression_experiment(train=(X, np.random.default_rng(0).permutation(y)))
    findings, checks, _ = zoo.run_checks(exp, *CODES)
    by_code = {f.code: f for f in findings}
    # the loss of a model fed permuted targets barely moves in 100 steps, so the baseline
    # comparison alone cannot tell it from a slow start (info); the zeroed-input comparison
    # can (real inputs lower the training loss, not the validation loss): the warning
    assert by_code["baseline-not-beaten"].severity.value in ("warning", "info")
    f = by_code["input-independent"]
    assert f.severity.value == "warning" and f.evidence["cause"] == "no-generalisation"
    assert checks["input-independent"].figures and checks["baseline-not-beaten"].figures


@pytest.mark.parametrize("make, how", [
    (lambda: classification_experiment(model=zoo.IgnoresInput), "does not change"),
    (lambda: classification_experiment(train_step=zoo.step_feeds_zeros), "bit-identical"),
])
def test_inputs_that_never_reach_the_output(make, how: str) -> None:  # noqa: ANN001
    findings, _, _ = zoo.run_checks(make(), *CODES)
    by_code = {f.code: f for f in findings}
    f = by_code["input-independent"]
    assert f.severity.value == "error" and f.evidence["cause"] == "ignored"
    assert how in f.message
    assert "baseline-not-beaten" in by_code


def test_input_verdict_is_quiet_when_validation_is_too_small_to_tell() -> None:
    """Seen on a healthy BatchNorm MLP with 64 validation samples after 50 steps: validation
    gained 0.048 +- 0.038 nats, training 0.06. "Memorises without generalising" needs the
    validation gain clearly below the training gain; the same training gain with a validation
    gain near zero and a tight standard error still fires."""
    rng = np.random.default_rng(0)
    zero = rng.uniform(1.0, 1.2, 64)
    slow = list(np.linspace(1.10, 1.02, 50))
    prior = list(np.linspace(1.10, 1.09, 50))
    noisy_gain = zero - 0.048 + rng.normal(0, 0.3, 64)
    assert not input_verdict(noisy_gain, zero, slow, prior, 0.8).fires
    none = zero + rng.normal(0, 0.01, 64)
    v = input_verdict(none, zero, slow, prior, 0.8)
    assert (v.severity, v.cause) == ("warning", "no-generalisation")


def test_init_loss_batches_never_hold_one_sample() -> None:
    from nnrecipe.skeleton.init_loss import _chunks

    assert _chunks(65, 64) == [(0, 63), (63, 65)]
    assert _chunks(128, 64) == [(0, 64), (64, 128)]
    assert _chunks(1, 64) == [(0, 1)]
    assert _chunks(129, 64)[-1] == (127, 129)


def test_nan_losses_are_left_to_loss_nonfinite() -> None:
    """NaN inputs make every loss of the short run NaN: no comparison means anything, and
    the NaN has its own finding (loss-nonfinite, corrupt-samples)."""
    zero = np.random.default_rng(0).uniform(1.0, 1.2, 100)
    nan = np.full(100, np.nan)
    assert not input_verdict(nan, zero, [np.nan] * 20, list(np.linspace(1.1, 1.0, 20)),
                             0.8).fires
    assert not beaten(nan, zero).beaten  # the comparison itself stays honest


def test_flat_start_tells_a_run_that_has_not_started_learning() -> None:
    """The CIFAR-10 tutorial (SGD 1e-3, batch 4) sat at ln 10 for the whole 100-step short
    run: a baseline comparison then cannot tell a bug from a slow start (info, not warning).
    A run that learns, or one that climbs, is not flat."""
    from nnrecipe.skeleton.shortrun import flat_start

    rng = np.random.default_rng(0)
    sitting = list(2.303 + rng.normal(0, 0.02, 100))
    assert flat_start(sitting)
    assert not flat_start(list(np.linspace(2.3, 1.9, 100) + rng.normal(0, 0.02, 100)))
    assert not flat_start(list(np.linspace(2.3, 4.0, 100)))  # diverging is not "too early"
    assert not flat_start([2.3, 2.3])  # too short to say



def test_majority_settled_on_imbalanced_labels_names_class_imbalance() -> None:
    """abhuse/polyloss-pytorch#5: 86/14 binary, every prediction the majority: the cause is
    the imbalance. A model that spreads its predictions, or balanced labels, stay quiet."""
    from types import SimpleNamespace

    import torch

    from nnrecipe.skeleton.baselines import BaselineNotBeaten

    ctx = SimpleNamespace(task_type="classification", record=lambda *a: None)
    y = torch.tensor([0] * 86 + [1] * 14)
    majority = torch.tensor([[2.0, -2.0]]).repeat(100, 1)
    (f,) = BaselineNotBeaten()._imbalance(ctx, y, majority)  # type: ignore[arg-type]
    assert f.code == "class-imbalance" and f.severity.value == "warning"
    assert f.evidence["imbalance_ratio"] > 6 and f.evidence["majority_prediction_share"] == 1.0
    spread = majority.clone()
    spread[:20] = torch.tensor([-2.0, 2.0])
    assert BaselineNotBeaten()._imbalance(ctx, y, spread) == []  # type: ignore[arg-type]
    balanced = torch.tensor([0, 1] * 50)
    assert BaselineNotBeaten()._imbalance(ctx, balanced, majority) == []  # type: ignore[arg-type]
