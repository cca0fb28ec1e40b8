"""The noise-aware rules of issue 11 and the train-side detectors of issue 13 on scripted
series: each fires on the broken pattern and stays quiet on its healthy look-alike."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnrecipe.overfit.schedules import schedule_factor
from nnrecipe.train import detectors as d
from nnrecipe.train.curves import LR_CHANGE
from nnrecipe.train.generalisation import accuracy_floor, paired_rel_se
from nnrecipe.train.signals import epoch_means, step_noise


def noisy_epochs(epochs: int, per_epoch: int, *, level: float = 0.5, sigma: float = 0.1,
                 last_batch: int | None = None, batch: int = 32, seed: int = 0
                 ) -> tuple[list[float], list[int], list[int]]:
    """Step losses of a converged run: a flat level plus batch noise sigma / sqrt(b / batch);
    with ``last_batch`` each epoch ends on a smaller batch (noisier, and here also biased
    upwards: one hard sample is a third of a batch of 3)."""
    rng = np.random.default_rng(seed)
    losses, sizes, ends = [], [], []
    for _ in range(epochs):
        for k in range(per_epoch):
            b = last_batch if last_batch and k == per_epoch - 1 else batch
            noise = sigma * math.sqrt(batch / b) * abs(rng.normal()) if b < batch else \
                sigma * rng.normal()
            losses.append(level + noise + (2.5 * level if b < batch else 0.0))
            sizes.append(b)
        ends.append(len(losses))
    return losses, sizes, ends


# ------------------------------------------------------------------ lr-too-high


def test_a_last_batch_of_one_is_not_a_spike_and_barely_moves_the_epoch_mean() -> None:
    losses, sizes, ends = noisy_epochs(12, 12, last_batch=1)
    v = d.lr_too_high_verdict(losses, batch_sizes=sizes, epoch_ends=ends)
    assert not v.fires and v.spikes == []
    # without the sizes, the last step of each epoch is not taken for a spike either
    assert not d.lr_too_high_verdict(losses, epoch_ends=ends).fires
    means, ses = epoch_means(losses, ends, sizes)
    plain = [float(np.mean(losses[a:b])) for a, b in zip([0, *ends[:-1]], ends, strict=True)]
    # weighted by size the singleton counts 1/353 of the epoch, not 1/12
    assert np.all(means < np.asarray(plain)) and np.all(np.abs(means - 0.5) < 0.1)
    assert np.all(np.isfinite(ses)) and np.all(ses > 0)


def test_lone_batches_a_little_above_the_start_are_composition_not_damage() -> None:
    # the two-moons look-alike (benchmarks/healthy moons-sgd-plain, batch 16): a start of 0.52,
    # a trained level of 0.15 with batch noise 0.07, and three lone batches holding a few of
    # the overlapping samples at 0.9, 0.74 and 0.62 (6-10 noise units over the median, above
    # the start, the next batch ordinary) -- each of these fired the old "above the start" rule
    rng = np.random.default_rng(0)
    losses = np.r_[np.linspace(0.69, 0.15, 40), 0.15 + 0.07 * rng.normal(size=760)].clip(0.01)
    for i, v in ((325, 0.9), (741, 0.74), (783, 0.62)):
        losses[i] = v
    assert d.lr_too_high_verdict(losses).spikes == []
    # the same lone batches at 5x the start: no composition of samples reaches that
    for i in (325, 741, 783):
        losses[i] = 2.6
    v = d.lr_too_high_verdict(losses)
    assert v.fires and v.spikes == [325, 741, 783]


def test_epoch_means_within_their_noise_are_not_rises() -> None:
    # 9 noisy train-mode batches per epoch at a low loss: the epoch mean wobbles by > 10%
    losses, sizes, ends = noisy_epochs(10, 9, level=0.1, sigma=0.05, batch=16, seed=4)
    means, ses = epoch_means(losses, ends, sizes)
    rel = np.diff(means) / means[:-1]
    assert (rel > d.RISE_REL).sum() >= 2  # the old fixed-ratio rule would have fired
    assert not d.lr_too_high_verdict(losses, batch_sizes=sizes, epoch_ends=ends).fires
    # a real oscillation: whole epochs jump by many standard errors
    jumpy = list(losses)
    for e in (3, 6, 8):
        for i in range(ends[e - 1], ends[e]):
            jumpy[i] += 0.3
    v = d.lr_too_high_verdict(jumpy, batch_sizes=sizes, epoch_ends=ends)
    assert v.fires and v.rises == [4, 7, 9] and min(v.rise_z) >= d.RISE_Z


def test_the_noise_scales_with_the_batch() -> None:
    losses, sizes, _ = noisy_epochs(6, 12, last_batch=2)
    noise = step_noise(losses, sizes)
    assert noise is not None and noise.ref_batch == 32
    assert noise.noise_of(11) == pytest.approx(noise.sigma[11] * 4.0)  # sqrt(32 / 2)


def test_early_blow_up_then_stall_and_its_healthy_twin() -> None:
    healthy = [1.6 * math.exp(-i / 40) + 0.2 for i in range(200)]
    assert not d.blowup_verdict(healthy, init_loss=1.61, prior_loss=1.5).fires
    blown = [1.61, 11.5, 13.4, 4.2] + [1.55] * 196  # Adam at 1.0 on a tagger
    v = d.blowup_verdict(blown, init_loss=1.61, prior_loss=1.5)
    assert v.fires and v.early and v.stalled_high and v.peak_step == 1
    recovered = [1.61, 11.5, 13.4, 4.2] + [0.6] * 196
    v = d.blowup_verdict(recovered, init_loss=1.61, prior_loss=1.5)
    assert v.fires and not v.stalled_high
    # a model that starts high (a bad init) is the skeleton's finding, not a blow-up
    assert not d.blowup_verdict([4.0, 5.0, 5.5] + healthy[3:], init_loss=1.61).fires
    # weights grown 100x and the loss back at the prior, with no early peak seen
    assert d.blowup_verdict([1.5] * 200, init_loss=1.61, prior_loss=1.5, weight_growth=100).fires
    assert not d.blowup_verdict(healthy, init_loss=1.61, prior_loss=1.5, weight_growth=100).fires


# --------------------------------------------------------------------- plateau


def test_a_plateau_the_schedule_explains_is_not_one() -> None:
    flat_then_fall = [2.3] * 80 + [2.3 * math.exp(-i / 20) + 0.1 for i in range(120)]
    assert d.plateau_verdict(flat_then_fall).kind == "interior"
    warmup = [1e-4 * min(1.0, (i + 1) / 90) for i in range(200)]  # the rate ramps up 90x
    v = d.plateau_verdict(flat_then_fall, warmup)
    assert not v.fires and v.kind == "schedule" and v.lr_change >= LR_CHANGE
    assert d.plateau_verdict(flat_then_fall, [1e-3] * 200).fires  # constant rate: a plateau


# -------------------------------------------------------------------- diverging


def test_noisy_small_batches_do_not_diverge_but_a_climb_does() -> None:
    rng = np.random.default_rng(2)
    t = np.arange(90)
    noisy = (0.4 + 0.7 * np.exp(-t / 10)) * np.exp(0.6 * rng.normal(size=90))  # batch 8
    assert not d.diverging_verdict(noisy.tolist()).fires
    climb = np.concatenate([noisy[:45], noisy[45:] * np.linspace(1, 6, 45)])
    v = d.diverging_verdict(climb.tolist())
    assert v.fires and v.z >= d.DIVERGE_Z


# ------------------------------------------------------------------ schedules


def trace(name: str, total: int, **kw: float) -> list[float]:
    return [1e-3 * schedule_factor(name, t, total, **kw) for t in range(total)]


@pytest.mark.parametrize("name", ["constant", "warmup", "cosine", "step", "one-cycle"])
def test_healthy_schedules_are_quiet(name: str) -> None:
    assert not d.schedule_verdict(trace(name, 600), configured=name).fires


def test_a_per_epoch_schedule_stepped_every_batch_collapses() -> None:
    # StepLR(step_size=30, gamma=0.1) meant for epochs, stepped after each of 1000 batches
    lrs = [1e-3 * 0.1 ** (t // 30) for t in range(1000)]
    v = d.schedule_verdict(lrs, configured="step")
    assert v.fires and v.kind == "collapse" and v.fall >= d.SCHEDULE_FALL
    # the same decay stepped once per epoch of 20 batches: 10x at step 600, 100x never
    per_epoch = [1e-3 * 0.1 ** ((t // 20) // 30) for t in range(1000)]
    assert not d.schedule_verdict(per_epoch, configured="step").fires


def test_a_warmup_that_never_ends_and_a_schedule_never_stepped() -> None:
    endless = [1e-3 * (t + 1) / 5000 for t in range(600)]  # warmup sized for 5000 steps
    v = d.schedule_verdict(endless)
    assert v.fires and v.kind == "endless-warmup"
    assert not d.schedule_verdict(endless, completed=False).fires  # stopped early: unknown
    flat = [1e-3] * 600
    assert d.schedule_verdict(flat, configured="cosine").kind == "never-changes"
    assert not d.schedule_verdict(flat, configured="cosine", completed=False).fires
    assert not d.schedule_verdict(flat).fires


# ------------------------------------------------------------------ overfitting


def test_overfitting_after_a_gl_stop_needs_one_epoch() -> None:
    train, val = [1.0, 0.7, 0.5, 0.4], [1.0, 0.8, 0.7, 0.8]
    assert not d.overfitting_verdict(train, val).fires  # one epoch after the best: a wobble?
    v = d.overfitting_verdict(train, val, stopped_by="GL")
    assert v.fires and v.best_epoch == 3 and v.stopped_by == "GL"
    assert not d.overfitting_verdict(train, val, stopped_by="patience").fires


def test_overfitting_against_the_paired_noise() -> None:
    rng = np.random.default_rng(0)
    base = rng.exponential(0.7, size=400)
    train, val = [1.0, 0.7, 0.5, 0.4, 0.3], [1.0, 0.8, 0.7, 0.78, 0.81]
    # every validation sample got ~16% worse: far beyond the paired noise
    shift = np.stack([base * f for f in (1.43, 1.14, 1.0, 1.11, 1.16)])
    v = d.overfitting_verdict(train, val, per_sample_val=shift)
    assert v.fires and v.z > d.OVERFIT_Z
    # the mean rose as much, but from three samples' swings: within the paired noise
    swing = np.stack([base] * 5)
    swing[3, :3] += 40
    swing[4, :3] += 43
    v = d.overfitting_verdict(train, val, per_sample_val=swing)
    assert not v.fires and v.z < d.OVERFIT_Z
    assert math.isnan(paired_rel_se(None, 0, 1))


# ------------------------------------------------------- val-below-train margin


def test_a_heavy_tailed_loss_gets_a_robust_margin() -> None:
    rng = np.random.default_rng(1)
    # 96% accuracy: most losses ~0.05, 4% confidently wrong at ~5 nats
    losses = np.where(rng.random(100) < 0.04, rng.uniform(3, 7, 100), rng.exponential(0.05, 100))
    plain = float(losses.std() / losses.mean() / math.sqrt(len(losses)))
    robust = d.trimmed_rel_se(losses)
    assert 2 * plain > 0.3 and 2 * robust < 0.25  # the plain margin hid a 27-35% gap
    train, val = [0.5, 0.4, 0.38], [0.4, 0.27, 0.26]  # 30% below at the last two epochs
    assert not d.val_below_train_verdict(train, val, val_rel_se=plain).fires
    assert d.val_below_train_verdict(train, val, val_rel_se=robust).fires


# ---------------------------------------------------------------- underfitting


def test_underfitting_needs_a_stalled_model_near_the_prior() -> None:
    # a language model 15% below the prior with no baseline: noisy targets, not underfitting
    assert not d.underfitting_verdict(train_loss=1.95, val_loss=2.0, initial_loss=2.35).fires
    # still falling, and accelerating at the end: train longer is not underfitting
    accelerating = [2.3 - 0.0002 * i ** 1.6 for i in range(300)]
    assert d.still_improving(accelerating, [2.2, 2.1, 1.9])


# ------------------------------------------------------ val-metric-inconsistent


def test_accuracy_that_its_loss_makes_impossible() -> None:
    loss = [1.2, 0.6, 0.3, 0.2, 0.15]
    shuffled = [0.11, 0.09, 0.10, 0.12, 0.10]  # labels from another shuffle: chance (10 classes)
    v = d.val_metric_verdict(loss, shuffled)
    assert v.fires and v.bound > 0.7 and v.accuracy == 0.10
    right = [0.6, 0.8, 0.9, 0.93, 0.95]
    assert not d.val_metric_verdict(loss, right).fires
    exact_match = [0.1, 0.25, 0.4, 0.5, 0.55]  # multi-label exact match: low but rising
    assert not d.val_metric_verdict(loss, exact_match).fires
    assert accuracy_floor(0.2) == pytest.approx(2 * math.exp(-0.2) - 1)
    assert accuracy_floor(2.0) == 0.0
