"""Loss-curve rules: diverging, learning rate too high (spikes, oscillating epochs, an early
blow-up that leaves the loss stalled high), too low, plateaus, and a schedule stepped at the
wrong granularity.

Each rule is a pure function of recorded numbers returning a small verdict; each compares a
change of the loss with the *measured noise* of the loss (:func:`~nnrecipe.train.signals.
step_noise`: batch-to-batch scatter about a running median, scaled by the batch size), never
with a fixed fraction of the initial loss alone. Thresholds say whether they come from
reasoning or measurement; the measurements are the healthy-training corpus
(``benchmarks/healthy``, run by ``benchmarks/false_alarms.py``) against the runs broken on
purpose in ``tests/train/broken.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from nnrecipe.train.signals import (
    MEDIAN_SE,
    epoch_means,
    finite,
    moving_median,
    smoothing_window,
    step_noise,
    trend_tstat,
)

# loss-diverging. Reasoning: a run that ends having lost half of the progress it made (on a
# moving median, so single spikes do not count), or ends 50% above where it started, is going
# the wrong way; healthy runs measured end within 15% of their best. The rise must also stand
# out of the noise of the moving median (~1.25 sigma / sqrt(window)) by DIVERGE_Z: the best
# point of a noisy curve is its luckiest window, 2-3 noise units below its true level.
DIVERGE_LOST_FRACTION = 0.5
DIVERGE_ABOVE_START = 1.5
DIVERGE_Z = 5.0
# lr-too-high, spikes. A spike is a step loss that is (a) SPIKE_Z noise units of its own batch
# above the running median of the steps before it, (b) at least SPIKE_RATIO x that median (an
# effect that matters), and (c) either still PERSIST_Z units above it on the next step (a step
# that is too large damages the weights, so the next batches are bad too, while an unlucky
# batch - a few hard samples, a last batch of one - is alone), or, alone, a batch whose loss
# is above the loss the run started from (a smaller batch's excess scaled down by
# sqrt(b / b_ref) first) (worse than the untrained model: no
# composition of samples does that to a trained model, an overshooting step does; Adam at
# 0.5 on separable blobs: lone batches at 7-15 after a median of 0, from 1.1). Reasoning for
# 6: residuals of batch means are heavier-tailed than normal (a converged 80/20 classifier's
# hard minority samples make single batches 2-3x the median, ~4 noise units); a spike must be
# beyond that. Three separate spikes, not one: a single bad step happens.
SPIKE_Z, SPIKE_RATIO, PERSIST_Z, MIN_SPIKES = 6.0, 2.0, 3.0, 3
# A lone spike must clear the start by LONE_Z noise units, not merely reach it. Reasoning: with
# few classes and small batches a trained model's batch *can* exceed the start by composition
# (measured, benchmarks/healthy moons-sgd-plain, two moons with noise 0.25, batch 16: batches
# with 3-4 of the ~5% overlapping samples at 3-4 nats each reached 0.59-0.90 against a start
# of 0.47, 6-7 noise units above their median, three times in 800 steps). How far a batch can
# go that way grows with the heavy tail, and so does the noise unit (more hard samples, more
# batch-to-batch scatter), so the margin is the spike line itself: those batches cleared the
# start by at most 3.9 units; an overshooting step clears it by hundreds (Adam 0.5: 7-15
# from 1.1 with a noise unit of ~0.01).
LONE_Z = SPIKE_Z
# lr-too-high, epochs. The batch-size-weighted epoch-mean training loss rises by > 10% and by
# more than RISE_Z standard errors of the two means, and the end-of-epoch training loss
# measured in eval mode on a fixed subset (when the train stage probed it) rose too; in at
# least two epochs. Reasoning: the epoch mean of a few noisy train-mode batches (dropout,
# batch statistics) can rise while the model improves; the probe says which.
RISE_REL, RISE_Z, MIN_RISES = 0.10, 3.0, 2
# lr-too-high, early blow-up (issue 13 #5): two consecutive early steps at BLOWUP_START x the
# loss the run started from (its analytic value at initialisation, ln C for C balanced
# classes, or the first step's loss), or the weights of some layer grew WEIGHT_GROWTH x while
# the loss ends at HIGH_PLATEAU of the loss of predicting the prior (no better than chance).
# Reasoning: a healthy first step moves the loss down or a little up (Adam's first steps are
# lr-sized in every coordinate); twice the untrained model's loss is damage (Adam 0.3 on a
# tagger: 13 nats from 1.6). Weights: a blow-up grows them 100x (the report); 10x leaves room
# for healthy growth (measured on the corpus, below).
BLOWUP_START, WEIGHT_GROWTH, HIGH_PLATEAU = 2.0, 10.0, 0.9
# An early peak the run recovered from is a transient, and advice (info), unless it is far
# beyond one. Recovered: after the early window no step loss clears the start by LONE_Z noise
# units of its batch (the instability did not come back), and the run ends below half its
# start, not stalled high. Reasoning: SGD with momentum overshoots while the momentum builds
# (the step grows to 1/(1 - beta) = 10x the plain one over the first ~10 steps) and a batch-
# norm network, scale-invariant, comes back; such a transient cost ~10 steps. Measured: the
# healthy corpus's digits-cnn-bn-sgd (SGD 0.05, momentum 0.9, batch 32), seed 0: a peak
# 2.27x its start at steps 4-5, below the start again at step 10, trained to 0.001 with
# validation accuracy ~99% (seeds 1-2: 1.44x, 1.12x). Beyond BLOWUP_RECOVERED x the start it
# warns even so: Adam at 0.5 on separable blobs (tests/train, seeds 0-9) recovers on 4 seeds
# with no later excursion, from peaks of 5.7-39x after a single update (the other 6 come
# back above the start later, or stall). 3.5 is the geometric middle of 2.27 and 5.73: a
# margin of 1.5x to either side.
BLOWUP_RECOVERED, RECOVERED_END = 3.5, 0.5
# lr-too-low. Reasoning: CS231n's rule of thumb puts healthy update ratios near 1e-3;
# measured healthy runs sit at 1.6e-3 (digits) to 7e-3 (blobs); SGD at 1e-3 gives 1.3e-4.
# A third of 1e-3, with a loss that has not even halved, is a learning rate that is too low.
LOW_UPDATE_RATIO = 3e-4
SLOW_PROGRESS = 0.5
# loss-plateau: "stuck" = less than 5% below the initial level and no significant downward
# trend over the second half (t > -3); interior plateau = 25% of the run (and at least three
# smoothing windows, so noise cannot make one) within 5% of the loss range, followed by a
# drop of at least 25% of the range, that no change of the learning rate explains (a
# warmup ending, a step decay: the schedule working, not a plateau). An interior plateau
# the run escaped is advice (info): the run recovered, it only lost time.
STUCK_PROGRESS, FALLING_T = 0.05, -3.0
PLATEAU_SPAN, PLATEAU_FLAT, PLATEAU_DROP = 0.25, 0.05, 0.25
LR_CHANGE = 2.0  # the rate moved by this factor around a plateau: the schedule explains it
# lr-schedule-misstepped (issue 13 #7). Reasoning: no schedule in use divides the rate by 100
# within the first tenth of training (step decay: x0.1 at a third; cosine: 0.98 at a tenth;
# one-cycle rises first); a per-epoch scheduler stepped every batch does (StepLR(30, 0.1)
# per batch: 1e-3 after 90 steps). A warmup still raising the rate by > 20% over the last
# fifth of a run that completed never ended.
SCHEDULE_FALL, SCHEDULE_HEAD, WARMUP_TAIL_RISE = 100.0, 0.1, 1.2
MIN_SCHEDULE_STEPS = 20


def _f(x: float) -> str:
    return f"{x:.3g}"


def _head(losses: Sequence[float]) -> np.ndarray:
    """The finite prefix of a loss series (the non-finite tail is loss-nonfinite's)."""
    arr = np.asarray(losses, dtype=float)
    bad = np.nonzero(~np.isfinite(arr))[0]
    return arr[: bad[0]] if len(bad) else arr


@dataclass
class CurveLevels:
    window: int
    start: float
    best: float
    end: float
    best_step: int
    smooth: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))


def curve_levels(losses: Sequence[float]) -> CurveLevels | None:
    """Start (median of the first window), best and end of the moving-median curve."""
    arr = _head(losses)
    n = len(arr)
    w = smoothing_window(n)
    if n < 3 * w:
        return None
    smooth = moving_median(arr, w)
    tail = smooth[w - 1:]
    best = int(np.argmin(tail)) + w - 1
    return CurveLevels(w, float(np.median(arr[:w])), float(smooth[best]), float(smooth[-1]),
                       best, smooth)


# ====================================================================== diverging


@dataclass
class DivergingVerdict:
    fires: bool
    start: float = math.nan
    best: float = math.nan
    end: float = math.nan
    best_step: int | None = None
    lost_fraction: float = 0.0
    z: float = math.nan  # the end's rise over the best, in noise units of the moving median


def diverging_verdict(losses: Sequence[float], batch_sizes: Sequence[float] | None = None
                      ) -> DivergingVerdict:
    """Does the (moving-median) training loss end well above its best, or its start, by more
    than the noise of the moving median?"""
    lv = curve_levels(losses)
    if lv is None:
        return DivergingVerdict(False)
    arr = _head(losses)
    noise = step_noise(arr, batch_sizes[:len(arr)] if batch_sizes is not None else None)
    sigma = float(np.median(noise.sigma)) if noise is not None else 0.0
    se = MEDIAN_SE * sigma / math.sqrt(lv.window)
    progress = lv.start - lv.best
    lost = (lv.end - lv.best) / progress if progress > 0 else 0.0
    z = (lv.end - lv.best) / se if se > 0 else math.inf
    z_start = (lv.end - lv.start) / se if se > 0 else math.inf
    fires = (lv.end > DIVERGE_ABOVE_START * lv.start and z_start >= DIVERGE_Z) or (
        progress > 0.1 * abs(lv.start) and lost >= DIVERGE_LOST_FRACTION and z >= DIVERGE_Z)
    return DivergingVerdict(bool(fires), lv.start, lv.best, lv.end, lv.best_step, float(lost),
                            float(z))


# ==================================================================== lr too high


@dataclass
class LrHighVerdict:
    fires: bool
    spikes: list[int] = field(default_factory=list)  # step indices
    spike_z: list[float] = field(default_factory=list)  # noise units above the running median
    rises: list[int] = field(default_factory=list)  # epochs (1-based) whose mean rose
    rise_z: list[float] = field(default_factory=list)  # the rises in standard errors
    kind: str = ""  # "spikes" | "epochs" | "blow-up"
    blowup: BlowupVerdict | None = None


def lr_too_high_verdict(losses: Sequence[float], epoch_train: Sequence[float] = (), *,
                        batch_sizes: Sequence[float] | None = None,
                        epoch_ends: Sequence[int] = (),
                        epoch_probe: Sequence[float] = ()) -> LrHighVerdict:
    """Spikes in the step loss, or the epoch-mean training loss going up and down, each
    judged against the loss's measured noise.

    ``batch_sizes``: per step (a partial last batch is judged with its own, larger noise; when
    unknown, the last step of each epoch is not taken for a spike). ``epoch_ends``: the
    cumulative step count at each epoch's end (from the recording); with the steps they give
    batch-size-weighted epoch means and their standard errors, otherwise ``epoch_train`` is
    used as is. ``epoch_probe``: the eval-mode training loss at each epoch's end, when probed.
    """
    arr = _head(losses)
    spikes, spike_z = _spikes(arr, batch_sizes, epoch_ends)
    rises, rise_z = _rises(arr, epoch_train, batch_sizes, epoch_ends, epoch_probe)
    kind = "spikes" if len(spikes) >= MIN_SPIKES else "epochs" if len(rises) >= MIN_RISES else ""
    return LrHighVerdict(bool(kind), spikes, spike_z, rises, rise_z, kind)


def _spikes(arr: np.ndarray, batch_sizes: Sequence[float] | None, epoch_ends: Sequence[int]
            ) -> tuple[list[int], list[float]]:
    n = len(arr)
    noise = step_noise(arr, batch_sizes[:n] if batch_sizes is not None else None)
    if noise is None:
        return [], []
    w = noise.window
    known = batch_sizes is not None and len(batch_sizes) >= n
    partial = set() if known else {int(e) - 1 for e in epoch_ends}
    trail = moving_median(arr, w)
    start = float(np.median(arr[:w]))
    spikes: list[int] = []
    zs: list[float] = []
    i = w
    while i < n:
        base = trail[i - 1]
        unit = noise.sigma[i]
        z = (arr[i] - base) / (unit / noise.weight[i])
        z_next = (arr[i + 1] - base) / (unit / noise.weight[i + 1]) if i + 1 < n else -math.inf
        # alone: above the start by LONE_Z noise units, even after scaling a small batch's
        # excess to a full one's
        lone = (arr[i] - base) * min(1.0, noise.weight[i]) >= start - base + LONE_Z * unit \
            and i not in partial
        if i not in partial and z >= SPIKE_Z and arr[i] >= SPIKE_RATIO * base \
                and (z_next >= PERSIST_Z or lone):
            spikes.append(i)
            zs.append(float(z))
            i += w  # one event, however many steps it lasts
            continue
        i += 1
    return spikes, zs


def _rises(arr: np.ndarray, epoch_train: Sequence[float], batch_sizes: Sequence[float] | None,
           epoch_ends: Sequence[int], epoch_probe: Sequence[float]
           ) -> tuple[list[int], list[float]]:
    ends = [int(e) for e in epoch_ends]
    if ends and len(arr) >= ends[-1] and len(arr) >= 3:
        means, ses = epoch_means(arr, ends, batch_sizes)
    else:
        means = np.asarray(epoch_train, dtype=float)
        ses = np.full(len(means), math.nan)
    probe = np.asarray(epoch_probe, dtype=float)
    rises: list[int] = []
    zs: list[float] = []
    if len(means) < 3 or not np.isfinite(means[0]):
        return rises, zs
    for k in range(1, len(means)):
        a, b = means[k - 1], means[k]
        if not (np.isfinite(a) and np.isfinite(b)) or b <= (1 + RISE_REL) * a:
            continue
        se = math.hypot(ses[k - 1], ses[k]) if np.isfinite(ses[k - 1]) and np.isfinite(ses[k]) \
            else math.nan
        z = (b - a) / se if se > 0 else math.inf
        if math.isfinite(se) and z < RISE_Z:
            continue  # within the noise of two epoch means
        if len(probe) > k and np.isfinite(probe[k]) and np.isfinite(probe[k - 1]) \
                and probe[k] <= probe[k - 1]:
            continue  # the eval-mode training loss fell: the model improved
        rises.append(k + 1)
        zs.append(float(z))
    return rises, zs


@dataclass
class BlowupVerdict:
    fires: bool
    early_peak: float = math.nan  # highest loss two consecutive early steps both reached
    peak_step: int | None = None
    start: float = math.nan  # the reference start: max(first step's loss, init_loss)
    end: float = math.nan  # median loss of the last steps
    init_loss: float | None = None  # analytic loss at initialisation (ln C)
    prior_loss: float | None = None  # loss of predicting the prior
    weight_growth: float = 1.0  # largest per-layer ||w|| growth over the run
    grew_layer: str | None = None
    early: bool = False  # the early peak is BLOWUP_START x the start
    stalled_high: bool = False  # the run ends no better than predicting the prior
    recovered: bool = False  # below half the start at the end, no later step above the start
    late_excursions: list[int] = field(default_factory=list)  # later steps above the start
    transient: bool = False  # early, recovered, under BLOWUP_RECOVERED x: advice (info)


def blowup_verdict(losses: Sequence[float], *, init_loss: float | None = None,
                   prior_loss: float | None = None, weight_growth: float = 1.0,
                   grew_layer: str | None = None) -> BlowupVerdict:
    """A learning rate that blows the model up in the first steps (issue 13 #5): two
    consecutive early steps (the first tenth, at least 10 steps) at BLOWUP_START x the loss
    the run starts from (its first step, or ``init_loss`` = ln C when higher: a bad init is
    the skeleton's finding, not this one); or weights that grew WEIGHT_GROWTH x while the loss
    ends no better than predicting the prior (``prior_loss``). A blow-up the run recovered
    from is a warning when its peak was BLOWUP_RECOVERED x the start or more, and otherwise a
    transient (``transient``: advice); one that leaves the loss stalled at the prior is an
    error."""
    arr = _head(losses)
    n = len(arr)
    out = BlowupVerdict(False, init_loss=init_loss, prior_loss=prior_loss,
                        weight_growth=float(weight_growth), grew_layer=grew_layer)
    if n < 4:
        return out
    start = float(arr[0])
    if init_loss is not None and math.isfinite(init_loss):
        start = max(start, init_loss)
    head = min(n - 1, max(10, n // 10))
    pairs = np.minimum(arr[:head], arr[1:head + 1])
    k = int(np.argmax(pairs))
    out.early_peak, out.peak_step, out.start = float(pairs[k]), k, start
    out.early = start > 0 and pairs[k] >= BLOWUP_START * start
    w = smoothing_window(n)
    out.end = float(np.median(arr[-w:]))
    ref = prior_loss if prior_loss is not None and math.isfinite(prior_loss) else init_loss
    out.stalled_high = bool(ref is not None and math.isfinite(ref) and ref > 0
                            and out.end >= HIGH_PLATEAU * ref)
    out.late_excursions = _above_start(arr, head, start)
    out.recovered = bool(not out.stalled_high and not out.late_excursions
                         and out.end < RECOVERED_END * start)
    out.transient = bool(out.early and out.recovered
                         and out.early_peak < BLOWUP_RECOVERED * start)
    out.fires = bool(out.early or (out.stalled_high and weight_growth >= WEIGHT_GROWTH))
    return out


def _above_start(arr: np.ndarray, head: int, start: float) -> list[int]:
    """Steps after the early window whose loss clears the start by LONE_Z noise units of
    their batch (any step above the start when the series is too short to measure noise)."""
    noise = step_noise(arr)
    late = np.arange(head + 1, len(arr))
    if noise is None:
        return [int(i) for i in late if arr[i] > start]
    unit = noise.sigma[late] / noise.weight[late]
    return [int(i) for i in late[arr[late] >= start + LONE_Z * unit]]


# ===================================================================== lr too low


@dataclass
class LrLowVerdict:
    fires: bool
    progress: float = math.nan
    update_ratio: float | None = None
    tstat: float = 0.0


def lr_too_low_verdict(losses: Sequence[float], typical_update_ratio: float | None
                       ) -> LrLowVerdict:
    """The loss has not even halved while the weights move by < 3e-4 of their size per step."""
    lv = curve_levels(losses)
    if lv is None or typical_update_ratio is None or not math.isfinite(typical_update_ratio):
        return LrLowVerdict(False, update_ratio=typical_update_ratio)
    progress = (lv.start - lv.end) / abs(lv.start) if lv.start else 0.0
    t = trend_tstat(finite(losses))
    fires = progress < SLOW_PROGRESS and 0 < typical_update_ratio < LOW_UPDATE_RATIO
    return LrLowVerdict(bool(fires), float(progress), typical_update_ratio, t)


# ========================================================================= plateau


@dataclass
class PlateauVerdict:
    fires: bool
    kind: str = ""  # "stuck" (never left its start) or "interior" (flat, then fell)
    start_step: int | None = None
    end_step: int | None = None
    level: float = math.nan
    lr_change: float = 1.0  # the rate after the plateau / during it


def plateau_verdict(losses: Sequence[float], lrs: Sequence[float] = ()) -> PlateauVerdict:
    """A loss that never leaves its initial level, or a long flat stretch before a drop that
    no change of the learning rate (``lrs``, per step) explains."""
    lv = curve_levels(losses)
    if lv is None:
        return PlateauVerdict(False)
    n = len(lv.smooth)
    progress = (lv.start - lv.best) / abs(lv.start) if lv.start else 0.0
    second_half = finite(losses)[n // 2:]
    if progress < STUCK_PROGRESS and trend_tstat(second_half) > FALLING_T:
        return PlateauVerdict(True, "stuck", 0, n - 1, lv.start)
    rng = lv.start - lv.best
    if rng <= 0:
        return PlateauVerdict(False)
    span = max(3 * lv.window, int(PLATEAU_SPAN * n))  # several windows: not noise
    s = lv.smooth
    lr = np.asarray(lrs, dtype=float)
    for i in range(lv.window - 1, n - span):
        seg = s[i:i + span]
        after = s[i + span:]
        if seg.max() - seg.min() <= PLATEAU_FLAT * rng and len(after) \
                and seg.mean() - after.min() >= PLATEAU_DROP * rng:
            j = i + span
            while j < n and abs(s[j] - seg.mean()) <= PLATEAU_FLAT * rng:
                j += 1
            change = _lr_change(lr, i, j)
            if change >= LR_CHANGE:
                return PlateauVerdict(False, "schedule", i, j - 1, float(seg.mean()), change)
            return PlateauVerdict(True, "interior", i, j - 1, float(seg.mean()), change)
    return PlateauVerdict(False)


def _lr_change(lr: np.ndarray, start: int, end: int) -> float:
    """How far the rate moved between a plateau and the steps right after it (max/min)."""
    if len(lr) <= start or not np.all(np.isfinite(lr[start:end + 1])):
        return 1.0
    seg = lr[start:min(len(lr), end + max(1, (end - start) // 4) + 1)]
    pos = seg[seg > 0]
    return float(pos.max() / pos.min()) if len(pos) else 1.0


# ===================================================================== schedule


@dataclass
class ScheduleVerdict:
    fires: bool
    kind: str = ""  # "collapse" | "endless-warmup" | "never-changes"
    fall: float = 1.0  # largest peak-to-current fall within the first tenth
    at_step: int | None = None
    start_lr: float = math.nan
    end_lr: float = math.nan
    tail_rise: float = 1.0


def schedule_verdict(lrs: Sequence[float], *, configured: str | None = None,
                     completed: bool = True) -> ScheduleVerdict:
    """Read the optimizer's learning-rate trace (one value per step): a rate that falls
    100x within the first tenth of training (a per-epoch scheduler stepped every batch), a
    warmup still rising at the end of a completed run, or a configured schedule
    (``configured``: its name, not "constant") that never changed the rate over a completed
    run (one stopped early may end before the schedule's first change)."""
    lr = np.asarray(lrs, dtype=float)
    lr = lr[np.isfinite(lr)]
    n = len(lr)
    if n < MIN_SCHEDULE_STEPS or lr.max() <= 0:
        return ScheduleVerdict(False)
    head = max(2, int(math.ceil(SCHEDULE_HEAD * n)))
    peak = np.maximum.accumulate(lr[:head])
    ratio = peak / np.maximum(lr[:head], 1e-300)
    k = int(np.argmax(ratio))
    base = ScheduleVerdict(False, "", float(ratio[k]), k, float(lr[0]), float(lr[-1]))
    if ratio[k] >= SCHEDULE_FALL:
        base.fires, base.kind = True, "collapse"
        return base
    tail = lr[int(0.8 * n):]
    rise = float(tail[-1] / tail[0]) if tail[0] > 0 else 1.0
    base.tail_rise = rise
    if completed and rise >= WARMUP_TAIL_RISE and np.all(np.diff(tail) >= 0):
        base.fires, base.kind = True, "endless-warmup"
        return base
    if completed and configured and configured != "constant" and lr.max() == lr.min():
        base.fires, base.kind = True, "never-changes"
    return base
