"""Each detector's rule on scripted series: no training needed to test a decision."""

import math

import numpy as np
import pytest

from nnrecipe.core.findings import Severity
from nnrecipe.train import detectors as d
from nnrecipe.train.signals import moving_median, trend_tstat, zigzag


def falling(n: int = 200, start: float = 2.3, end: float = 0.05, noise: float = 0.0,
            seed: int = 0) -> list[float]:
    """A healthy curve: fast drop then flattening, with multiplicative batch noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    base = end + (start - end) * np.exp(-t / (n / 6))
    return (base * np.exp(noise * rng.normal(size=n))).tolist()


def test_moving_median_matches_the_obvious_loop() -> None:
    x = np.random.default_rng(1).random(40)
    ref = [np.median(x[max(0, i - 4):i + 1]) for i in range(40)]
    assert np.allclose(moving_median(x, 5), ref)
    assert trend_tstat(list(range(10))) == math.inf
    assert trend_tstat([1.0, 1.0, 1.0, 1.0]) == 0.0
    assert zigzag([5.0, 3.0, 2.0, 1.5, 1.4]) == 0.0  # monotone, however curved
    assert zigzag([1.0, 1.2, 1.0, 1.2]) == pytest.approx(0.2 / 1.1)


@pytest.mark.parametrize("losses, fires", [
    (falling(noise=0.3), False),
    (falling()[:100] + falling()[100:0:-1], True),  # falls, then climbs back up
    ([1.0 * 1.05**i for i in range(60)], True),  # climbs from the start
    ([2.3] * 60, False),
    (falling()[:50] + [math.nan], False),  # the non-finite tail is loss-nonfinite's business
])
def test_diverging(losses: list[float], fires: bool) -> None:
    assert d.diverging_verdict(losses).fires is fires


def test_lr_too_high_counts_spikes_not_batch_noise() -> None:
    calm = falling(noise=0.4, seed=3)
    assert not d.lr_too_high_verdict(calm).fires
    spiky = list(calm)
    for i in (60, 100, 140, 180):  # a step too large: the loss jumps and recovers over steps
        spiky[i:i + 3] = [3.0, 2.0, 1.2]
    v = d.lr_too_high_verdict(spiky)
    assert v.fires and v.spikes == [60, 100, 140, 180] and min(v.spike_z) >= d.SPIKE_Z
    two = list(calm)
    two[60:63] = two[100:103] = [3.0, 2.0, 1.2]
    assert not d.lr_too_high_verdict(two).fires  # one or two bad steps happen
    lone = list(calm)
    for i in (60, 100, 140, 180):  # an unlucky batch alone: the next one is ordinary
        lone[i] = 1.5
    assert not d.lr_too_high_verdict(lone).fires
    for i in (60, 100, 140, 180):  # alone, but far above the start (1.7, clearing it by 6 noise
        lone[i] = 4.0              # units needs 3.4 at step 60, 1.9 at 180): damage
    assert d.lr_too_high_verdict(lone).spikes == [60, 100, 140, 180]
    # Late, tiny losses with big *relative* jumps are not spikes (the demo's end of training).
    late = falling(noise=0.0)[:150] + [0.05, 0.2] * 25
    assert not d.lr_too_high_verdict(late).fires


def test_lr_too_high_on_epoch_oscillation() -> None:
    assert d.lr_too_high_verdict([], [1.0, 0.6, 0.8, 0.5, 0.7]).rises == [3, 5]
    assert d.lr_too_high_verdict([], [1.0, 0.6, 0.8, 0.5, 0.7]).fires
    assert not d.lr_too_high_verdict([], [1.0, 0.6, 0.5, 0.45, 0.44]).fires
    # the eval-mode training loss probed at each epoch's end fell: the model improved
    assert not d.lr_too_high_verdict([], [1.0, 0.6, 0.8, 0.5, 0.7],
                                     epoch_probe=[0.9, 0.5, 0.4, 0.35, 0.3]).fires


def test_lr_too_low_needs_slow_curve_and_small_updates() -> None:
    slow = [1.1 - 0.001 * i for i in range(60)]
    assert d.lr_too_low_verdict(slow, 1e-4).fires
    assert not d.lr_too_low_verdict(slow, 5e-3).fires  # updates are healthy: just a short run
    assert not d.lr_too_low_verdict(falling(), 1e-4).fires  # fast progress
    assert not d.lr_too_low_verdict(slow, None).fires


def test_plateau_stuck_and_interior() -> None:
    rng = np.random.default_rng(0)
    stuck = (1.1 + 0.01 * rng.normal(size=80)).tolist()
    v = d.plateau_verdict(stuck)
    assert v.fires and v.kind == "stuck"
    interior = [2.3] * 80 + falling(120, start=2.3, end=0.1)
    v = d.plateau_verdict(interior)
    assert v.fires and v.kind == "interior" and v.start_step < 20 and v.end_step >= 75
    assert not d.plateau_verdict(falling(noise=0.3)).fires
    assert not d.plateau_verdict([1.1 - 0.004 * i for i in range(60)]).fires  # slow, not flat


@pytest.mark.parametrize("val, train, fires, onset", [
    ([1.0, 0.8, 0.7, 0.72, 0.8, 0.9], [1.0, 0.7, 0.5, 0.4, 0.3, 0.2], True, 4),
    ([1.0, 0.8, 0.7, 0.69, 0.68, 0.67], [1.0, 0.7, 0.5, 0.4, 0.3, 0.2], False, None),
    ([1.0, 0.8, 0.7, 0.73, 0.72, 0.71], [1.0, 0.7, 0.5, 0.4, 0.3, 0.2], False, None),  # wobble
    ([1.0, 0.8, 0.7, 0.9], [1.0, 0.7, 0.5, 0.4], False, None),  # one epoch is not a trend
    ([1.0, 0.8, 0.7, 0.8, 0.9], [1.0, 0.7, 0.5, 0.6, 0.8], False, None),  # train rose too
])
def test_overfitting(val: list[float], train: list[float], fires: bool, onset: int | None) -> None:
    v = d.overfitting_verdict(train, val)
    assert v.fires is fires and v.onset_epoch == onset


def test_underfitting() -> None:
    kw = dict(initial_loss=1.1, majority_loss=1.1)
    assert d.underfitting_verdict(train_loss=0.6, val_loss=0.62, linear_loss=0.1, **kw).reason == "linear"
    assert not d.underfitting_verdict(train_loss=0.05, val_loss=0.08, linear_loss=0.1, **kw).fires
    # still falling: "train longer" is not underfitting
    assert not d.underfitting_verdict(train_loss=0.6, val_loss=0.62, linear_loss=0.1,
                                      still_falling=True, **kw).fires
    # overfitting, not underfitting
    assert not d.underfitting_verdict(train_loss=0.1, val_loss=0.7, linear_loss=0.1, **kw).fires
    # no linear baseline: barely better than the prior
    assert d.underfitting_verdict(train_loss=1.0, val_loss=1.0, initial_loss=1.1).reason == "majority"
    # linear gains little too: the task is hard, the model is not the problem
    assert not d.underfitting_verdict(train_loss=1.0, val_loss=1.0, linear_loss=1.02, **kw).fires


def test_val_below_train_names_the_largest_cause() -> None:
    train, val = [1.0, 0.5, 0.4], [0.9, 0.3, 0.25]
    v = d.val_below_train_verdict(train, val, train_mode_end=0.38, train_eval_end=0.26,
                                  has_dropout=True)
    assert v.fires and v.cause == "dropout"
    v = d.val_below_train_verdict(train, val, train_mode_end=0.4, train_eval_end=0.4)
    assert v.fires and v.cause == "easier-or-leaked"
    v = d.val_below_train_verdict(train, val, train_mode_end=0.4, train_eval_end=0.4, augmented=True)
    assert v.cause == "augmentation"
    v = d.val_below_train_verdict(train, val, train_mode_end=0.27, train_eval_end=0.26)
    assert not v.fires and v.cause == "averaging"  # shown by the curves, not raised
    assert not d.val_below_train_verdict(train, [0.9, 0.45, 0.39]).fires  # within 10%
    assert not d.val_below_train_verdict(train, val, val_rel_se=0.3).fires  # noisy small split
    assert d.val_below_train_verdict(train, val).cause == "unknown"
    # only the step losses known (watch): averaging split off, the rest unnamed
    v = d.val_below_train_verdict(train, val, train_mode_end=0.27)
    assert not v.fires and v.cause == "averaging"
    v = d.val_below_train_verdict(train, val, train_mode_end=0.38, has_dropout=True)
    assert v.fires and v.cause == "dropout"


def test_weights_fluctuating() -> None:
    smooth = [1.0 / (1 + 0.3 * i) for i in range(12)]
    jumpy = [v * (1.4 if i % 2 else 0.7) if i >= 6 else v for i, v in enumerate(smooth)]
    assert d.weights_fluctuating_verdict(jumpy, 1e-2).fires
    assert not d.weights_fluctuating_verdict(jumpy, 1e-4).fires  # weights barely move
    assert not d.weights_fluctuating_verdict(smooth, 1e-2).fires
    assert not d.weights_fluctuating_verdict(jumpy[:6], 1e-2).fires  # too few epochs


def test_exploding() -> None:
    calm = np.abs(1 + 0.3 * np.random.default_rng(0).normal(size=100))
    assert not d.exploding_verdict(calm).fires
    spiky = calm.copy()
    spiky[[30, 50, 70]] = 40.0
    assert d.exploding_verdict(spiky).spikes == [30, 50, 70]
    assert d.exploding_verdict(1.2 ** np.arange(40)).growth > 10
    assert d.exploding_verdict(calm, depth_ratio=500).fires
    # near zero loss a quiet stretch of tiny gradients makes ordinary batches look huge
    late = np.concatenate([calm, 1e-3 * np.ones(50), [0.5, 1e-3, 0.6, 1e-3, 0.7]])
    assert not d.exploding_verdict(late).fires


def test_vanishing() -> None:
    v = d.vanishing_verdict(["a", "b", "c", "d"], [1e-9, 1e-6, 1e-3, 0.4])
    assert v.fires and v.layers == ["a", "b", "c"] and v.ratio < 1e-8
    assert not d.vanishing_verdict(["a", "b"], [0.05, 0.2]).fires
    assert not d.vanishing_verdict(["a"], [1e-9]).fires


def test_dead_and_saturated_fractions() -> None:
    dead = np.array([[0.0, 0.1, math.nan], [0.2, 0.6, math.nan], [0.3, 0.6, math.nan]])
    v = d.dead_relu_verdict(["r1", "r2", "t"], dead)
    assert v.fires and v.layers == ["r2"] and v.severity == Severity.WARNING
    assert d.dead_relu_verdict(["r"], np.ones((3, 1))).severity == Severity.ERROR
    assert not d.dead_relu_verdict(["r"], np.full((3, 1), 0.36)).fires  # the demo's level
    sat = np.array([[math.nan, 0.9], [math.nan, 0.8]])
    assert d.saturation_verdict(["r", "t"], sat).layers == ["t"]


def test_update_ratio() -> None:
    ratios = np.tile([1e-3, 3e-7, 0.5, 0.0], (10, 1))
    v = d.update_ratio_verdict(["ok", "low", "high", "frozen"], ratios)
    assert v.fires and v.low == ["low"] and v.high == ["high"]  # exactly 0: another finding's job
    assert not d.update_ratio_verdict(["a"], np.full((10, 1), 5e-3)).fires
