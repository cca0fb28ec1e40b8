"""The train stage's detectors: each finding code, the pure rule that decides it, and
:func:`diagnose`, which runs every rule over a :class:`~nnrecipe.train.monitor.Recording`.

Every ``*_verdict`` function takes plain numbers (sequences, arrays) and returns a small
dataclass whose ``fires`` says whether the finding is raised; the numbers it computed are
the evidence. No training, no torch: they are unit-tested on scripted series.

Thresholds carry a comment saying whether they come from reasoning or measurement. The
measurements are the healthy runs (the digits demo: 15 epochs of Adam 1e-3; the toys in
``tests/toys.py``) against runs broken on purpose (``tests/train/broken.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Declared
from nnrecipe.train.causes import monitor_causes
from nnrecipe.train.nonfinite import LossNonfinite
from nnrecipe.train.signals import (
    finite,
    moving_median,
    quantiles,
    smoothing_window,
    trend_tstat,
    zigzag,
)

# ============================================================================ the codes


class _Train(Declared):
    stage = "train"


class LossDiverging(_Train):
    code = "loss-diverging"
    severity = Severity.ERROR
    title = "The training loss climbs instead of falling"
    fix = ("Lower the learning rate (3-10x), clip gradients, and check the loss sign and the "
           "optimizer's direction (a maximising loss or a wrong sign diverges at any LR).")


class LrTooHigh(_Train):
    code = "lr-too-high"
    severity = Severity.WARNING
    title = "The learning rate is too high: the loss spikes or oscillates"
    fix = ("Lower the learning rate 3-10x (run `nnrecipe lr` for a range test), add warmup, "
           "clip gradients, or use a larger batch.")


class LrTooLow(_Train):
    code = "lr-too-low"
    severity = Severity.WARNING
    title = "The learning rate is too low: the loss falls too slowly"
    fix = ("Raise the learning rate (run `nnrecipe lr` for a range test); Adam at 3e-4 is a "
           "safe start.")


class LossPlateau(_Train):
    code = "loss-plateau"
    severity = Severity.WARNING
    title = "The loss plateaus"
    fix = ("A loss stuck at its starting value points at the initialisation (dead or saturated "
           "units, vanishing gradients) or the learning rate; check those findings first.")


class Overfitting(_Train):
    code = "overfitting"
    severity = Severity.WARNING
    title = "The model overfits: validation loss rises while training loss falls"
    fix = ("Regularise: more data (or augmentation), weight decay, dropout, a smaller model, "
           "early stopping at the best epoch.")


class Underfitting(_Train):
    code = "underfitting"
    severity = Severity.WARNING
    title = "The model underfits: training loss stays far above what it can reach"
    fix = ("Use a bigger model, train longer, reduce regularisation, check that the inputs "
           "carry the signal.")


class ValBelowTrain(_Train):
    code = "val-below-train"
    severity = Severity.INFO
    title = "The validation loss is below the training loss"
    fix = "Compare both losses the same way (eval mode, end of epoch) before reading the gap."


class WeightsFluctuating(_Train):
    code = "weights-fluctuating"
    severity = Severity.WARNING
    title = "Weights fluctuate: validation results swing from epoch to epoch"
    fix = ("Lower the learning rate or decay it, use a larger batch, average the weights "
           "(EMA or torch.optim.swa_utils.AveragedModel), clip gradients.")


class ExplodingGradients(_Train):
    code = "exploding-gradients"
    severity = Severity.WARNING
    title = "Gradients explode"
    fix = ("Clip gradients by norm (torch.nn.utils.clip_grad_norm_), lower the learning rate, "
           "add normalisation layers, scale the targets.")


class VanishingGradients(_Train):
    code = "vanishing-gradients"
    severity = Severity.WARNING
    title = "Gradients vanish before they reach the first layers"
    fix = ("Use ReLU/GELU instead of sigmoid/tanh, He (Kaiming) initialisation, add "
           "normalisation (BatchNorm/LayerNorm) or skip connections.")


class DeadRelu(_Train):
    code = "dead-relu"
    severity = Severity.WARNING
    title = "ReLU units are dead (never active)"
    fix = ("Initialise biases at zero (or slightly positive), lower the learning rate, "
           "standardise the inputs, or use LeakyReLU/GELU.")


class SaturatedActivations(_Train):
    code = "saturated-activations"
    severity = Severity.WARNING
    title = "tanh/sigmoid units are saturated"
    fix = ("Standardise the inputs, use Xavier (Glorot) initialisation, add normalisation "
           "before the activation, or switch to ReLU/GELU.")


class UpdateRatio(_Train):
    code = "update-ratio"
    severity = Severity.WARNING
    title = "Update-to-weight ratio far from ~1e-3"
    fix = ("Scale the learning rate so that each step changes the weights by ~0.1% "
           "(||lr*update|| / ||w|| ~ 1e-3).")


TRAIN_CODES: tuple[str, ...] = (
    LossNonfinite.code, LossDiverging.code, ExplodingGradients.code,  # type: ignore[assignment]
    VanishingGradients.code, DeadRelu.code, SaturatedActivations.code, UpdateRatio.code,
    LrTooHigh.code, LrTooLow.code, LossPlateau.code, Overfitting.code, Underfitting.code,
    ValBelowTrain.code, WeightsFluctuating.code)

# ================================================================== the thresholds

# loss-diverging. Reasoning: a run that ends having lost half of the progress it made (on a
# moving median, so single spikes do not count), or ends 50% above where it started, is going
# the wrong way; healthy runs measured end within 15% of their best.
DIVERGE_LOST_FRACTION = 0.5
DIVERGE_ABOVE_START = 1.5
# lr-too-high. A spike: a step loss at least twice the running median that also takes back a
# quarter of the initial loss (measured: late digits batches reach 4x the median but only
# 0.15 nats above it, i.e. 0.07 of the initial 2.3). Three spikes, not one: a single bad batch
# happens (one in the healthy noisy-blobs run).
SPIKE_RATIO, SPIKE_OF_INITIAL, MIN_SPIKES = 2.0, 0.25, 3
# Epoch-level oscillation: the epoch-mean training loss rises by >10% and by >5% of the
# initial loss in at least two epochs.
RISE_REL, RISE_OF_INITIAL, MIN_RISES = 0.10, 0.05, 2
# lr-too-low. Reasoning: CS231n's rule of thumb puts healthy update ratios near 1e-3;
# measured healthy runs sit at 1.6e-3 (digits) to 7e-3 (blobs); SGD at 1e-3 gives 1.3e-4.
# A third of 1e-3, with a loss that has not even halved, is a learning rate that is too low.
LOW_UPDATE_RATIO = 3e-4
SLOW_PROGRESS = 0.5
# loss-plateau: "stuck" = less than 5% below the initial level and no significant downward
# trend over the second half (t > -3); interior plateau = 25% of the run (and at least three
# smoothing windows, so noise cannot make one) within 5% of the loss range, followed by a
# drop of at least 25% of the range.
STUCK_PROGRESS, FALLING_T = 0.05, -3.0
PLATEAU_SPAN, PLATEAU_FLAT, PLATEAU_DROP = 0.25, 0.05, 0.25
# overfitting: validation loss rising for at least two epochs after its best and ending 10%
# above it (measured: the demo's epoch-to-epoch wobble is 3-5%), while training loss fell.
OVERFIT_RISE, OVERFIT_EPOCHS = 0.10, 2
# underfitting: a linear model beats the network by 5% on validation, or the network keeps
# less than a quarter of the gain the linear model makes over the majority baseline.
LINEAR_MARGIN, GAIN_SHARE, NO_BASELINE_GAIN = 0.05, 0.25, 0.25
# val-below-train: 10% below (or 2 standard errors), at the last two epochs.
VAL_BELOW_MARGIN = 0.10
# weights-fluctuating: over the second half, the validation loss zig-zags (up, down, up) by
# >= 10% of its level on average (measured: 1% on the healthy demo, 13% with Adam at 2e-2 on
# the demo, 4-7% for a converged regression toy at 10-30x its learning rate; monotone curves,
# falling or overfitting, score 0), while the weights move at >= 3e-3 of their size per step
# (3x the healthy 1e-3).
JITTER, FLUCT_UPDATE, MIN_FLUCT_EPOCHS = 0.10, 3e-3, 8
# exploding-gradients: the global norm 10x its running median and 10x its early-training
# level (measured max/median on the demo: 3.8), 3+ times; or the last fifth's median 10x the
# first tenth's; or growing 100x from the last layer to the first.
GRAD_SPIKE, GRAD_GROWTH, DEPTH_RATIO = 10.0, 10.0, 100.0
# vanishing-gradients: relative gradient (||g||/||w||) of the first layer below 1/100 of the
# last layer's (measured: 0.17-0.3 on healthy runs, 1e-8 on ten sigmoid layers).
VANISH_RATIO = 1e-2
# dead-relu: half of a layer's units silent on every sample of the last measured batches
# (measured: the demo's 64-unit hidden layer settles at 36% dead); all of them is an error.
DEAD_FRACTION, DEAD_ALL = 0.5, 0.999
# saturated-activations: half the outputs where the derivative is < 2% of its maximum.
SATURATED_FRACTION = 0.5
# update-ratio: two decades either side of the 1e-3 rule of thumb.
UPDATE_LOW, UPDATE_HIGH = 1e-5, 1e-1


def _f(x: float) -> str:
    return f"{x:.3g}"


# ======================================================================== loss curves


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
    arr = np.asarray(losses, dtype=float)
    bad = np.nonzero(~np.isfinite(arr))[0]
    if len(bad):
        arr = arr[: bad[0]]
    n = len(arr)
    w = smoothing_window(n)
    if n < 3 * w:
        return None
    smooth = moving_median(arr, w)
    tail = smooth[w - 1:]
    best = int(np.argmin(tail)) + w - 1
    return CurveLevels(w, float(np.median(arr[:w])), float(smooth[best]), float(smooth[-1]),
                       best, smooth)


@dataclass
class DivergingVerdict:
    fires: bool
    start: float = math.nan
    best: float = math.nan
    end: float = math.nan
    best_step: int | None = None
    lost_fraction: float = 0.0


def diverging_verdict(losses: Sequence[float]) -> DivergingVerdict:
    """Does the (moving-median) training loss end well above its best, or its start?"""
    lv = curve_levels(losses)
    if lv is None:
        return DivergingVerdict(False)
    progress = lv.start - lv.best
    lost = (lv.end - lv.best) / progress if progress > 0 else 0.0
    fires = lv.end > DIVERGE_ABOVE_START * lv.start or (
        progress > 0.1 * abs(lv.start) and lost >= DIVERGE_LOST_FRACTION)
    return DivergingVerdict(bool(fires), lv.start, lv.best, lv.end, lv.best_step, float(lost))


@dataclass
class LrHighVerdict:
    fires: bool
    spikes: list[int] = field(default_factory=list)  # step indices
    rises: list[int] = field(default_factory=list)  # epochs (1-based) whose mean rose


def lr_too_high_verdict(losses: Sequence[float], epoch_train: Sequence[float] = ()
                        ) -> LrHighVerdict:
    """Spikes in the step loss, or the epoch-mean training loss going up and down."""
    arr = np.asarray(losses, dtype=float)
    arr = arr[: np.nonzero(~np.isfinite(arr))[0][0]] if not np.all(np.isfinite(arr)) else arr
    n = len(arr)
    w = smoothing_window(n)
    spikes: list[int] = []
    if n >= 3 * w:
        initial = float(np.median(arr[:w]))
        med = moving_median(arr, w)
        spikes = [i for i in range(w, n)
                  if arr[i] >= SPIKE_RATIO * med[i - 1]
                  and arr[i] - med[i - 1] >= SPIKE_OF_INITIAL * abs(initial)]
    ep = np.asarray(epoch_train, dtype=float)
    rises: list[int] = []
    if len(ep) >= 3 and np.isfinite(ep[0]):
        rises = [i + 1 for i in range(1, len(ep))
                 if np.isfinite(ep[i]) and ep[i] > (1 + RISE_REL) * ep[i - 1]
                 and ep[i] - ep[i - 1] > RISE_OF_INITIAL * abs(ep[0])]
    return LrHighVerdict(len(spikes) >= MIN_SPIKES or len(rises) >= MIN_RISES, spikes, rises)


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


@dataclass
class PlateauVerdict:
    fires: bool
    kind: str = ""  # "stuck" (never left its start) or "interior" (flat, then fell)
    start_step: int | None = None
    end_step: int | None = None
    level: float = math.nan


def plateau_verdict(losses: Sequence[float]) -> PlateauVerdict:
    """A loss that never leaves its initial level, or a long flat stretch before a drop."""
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
    for i in range(lv.window - 1, n - span):
        seg = s[i:i + span]
        after = s[i + span:]
        if seg.max() - seg.min() <= PLATEAU_FLAT * rng and len(after) \
                and seg.mean() - after.min() >= PLATEAU_DROP * rng:
            j = i + span
            while j < n and abs(s[j] - seg.mean()) <= PLATEAU_FLAT * rng:
                j += 1
            return PlateauVerdict(True, "interior", i, j - 1, float(seg.mean()))
    return PlateauVerdict(False)


@dataclass
class OverfitVerdict:
    fires: bool
    best_epoch: int | None = None  # 1-based
    onset_epoch: int | None = None
    best_val: float = math.nan
    final_val: float = math.nan
    rise: float = 0.0  # relative rise of val loss over its best


def overfitting_verdict(train: Sequence[float], val: Sequence[float]) -> OverfitVerdict:
    """Validation loss rising for 2+ epochs after its best, ending 10% above it, while the
    training loss kept falling. (Epochs are evaluated on the same validation samples, so the
    rise is not blurred by the sampling noise of the split; early stopping by GL may end the
    run at the first epoch over the line, which is why only the last epoch must be over it.)"""
    v = np.asarray(val, dtype=float)
    t = np.asarray(train, dtype=float)
    if len(v) < 3 or not np.any(np.isfinite(v)):
        return OverfitVerdict(False)
    b = int(np.nanargmin(v))
    after = v[b + 1:]
    if len(after) == 0 or v[b] <= 0:
        return OverfitVerdict(False, b + 1, None, float(v[b]), float(v[-1]))
    rise = float(np.nanmax(after) / v[b] - 1)
    train_fell = bool(np.isfinite(t[-1]) and t[-1] < t[b])
    fires = bool(len(after) >= OVERFIT_EPOCHS and after[-1] > (1 + OVERFIT_RISE) * v[b]
                 and after[-1] >= after[0] and train_fell)
    return OverfitVerdict(fires, b + 1, b + 2 if fires else None, float(v[b]), float(v[-1]), rise)


@dataclass
class UnderfitVerdict:
    fires: bool
    reason: str = ""
    model_loss: float = math.nan
    reference: float = math.nan


def underfitting_verdict(*, train_loss: float, val_loss: float, initial_loss: float,
                         majority_loss: float | None = None, linear_loss: float | None = None,
                         still_falling: bool = False) -> UnderfitVerdict:
    """Training has stopped improving far above what the baselines show is reachable.

    ``train_loss``/``val_loss``: the trained model (eval mode); ``initial_loss``: its loss at
    the start (stands in for the majority baseline when none is given).
    """
    if not all(math.isfinite(x) for x in (train_loss, val_loss)) or still_falling:
        return UnderfitVerdict(False)
    if val_loss > 1.25 * train_loss + 1e-12:  # a real generalisation gap: not underfitting
        return UnderfitVerdict(False)
    if linear_loss is not None and math.isfinite(linear_loss) \
            and val_loss > (1 + LINEAR_MARGIN) * linear_loss:
        return UnderfitVerdict(True, "linear", val_loss, linear_loss)
    majority = majority_loss if majority_loss is not None and math.isfinite(majority_loss) \
        else initial_loss
    if not math.isfinite(majority) or majority <= 0:
        return UnderfitVerdict(False)
    gain = (majority - val_loss) / majority
    if linear_loss is not None and math.isfinite(linear_loss):
        lin_gain = (majority - linear_loss) / majority
        if lin_gain > 0 and gain < GAIN_SHARE * lin_gain:
            return UnderfitVerdict(True, "gain", val_loss, majority)
        return UnderfitVerdict(False)
    if gain < NO_BASELINE_GAIN:
        return UnderfitVerdict(True, "majority", val_loss, majority)
    return UnderfitVerdict(False)


@dataclass
class ValBelowVerdict:
    fires: bool
    cause: str = ""  # averaging | dropout | regularisation | augmentation | easier-or-leaked | unknown
    contributions: dict[str, float] = field(default_factory=dict)
    gap: float = 0.0  # relative: 1 - val/train


def val_below_train_verdict(train_mean: Sequence[float], val: Sequence[float], *,
                            train_mode_end: float | None = None,
                            train_eval_end: float | None = None, augmented: bool = False,
                            has_dropout: bool = False, val_rel_se: float = 0.0
                            ) -> ValBelowVerdict:
    """Validation loss below the epoch-mean training loss at the last two epochs, and why.

    The gap is split, with the end-of-epoch weights, into: averaging (epoch mean minus the
    train-mode loss at the end), regularisation active only in training (train mode minus
    eval mode), and the rest (eval-mode training loss minus validation loss), which is
    augmentation when the training data is augmented and otherwise an easier or leaked
    validation set; the largest part names the cause. A gap that is mostly averaging is not
    raised (the learning curves plot the end-of-epoch training loss, which shows it). Without
    ``train_eval_end`` only averaging is split off (``train_mode_end`` may then be estimated
    from the last step losses of the epoch).
    """
    t = np.asarray(train_mean, dtype=float)
    v = np.asarray(val, dtype=float)
    n = min(len(t), len(v))
    if n == 0:
        return ValBelowVerdict(False)
    t, v = t[:n], v[:n]
    margin = max(VAL_BELOW_MARGIN, 2 * val_rel_se)
    last = [i for i in (n - 2, n - 1) if i >= 0]
    below = [bool(np.isfinite(t[i]) and np.isfinite(v[i]) and v[i] < (1 - margin) * t[i])
             for i in last]
    if not all(below):
        return ValBelowVerdict(False)
    gap = float(1 - v[-1] / t[-1])
    if train_mode_end is None:
        return ValBelowVerdict(True, "dropout" if has_dropout else "unknown", {}, gap)
    contrib = {"averaging": float(t[-1] - train_mode_end)}
    if train_eval_end is None:  # only the step losses are known (nnrecipe.watch)
        contrib["dropout" if has_dropout else "unknown"] = float(train_mode_end - v[-1])
    else:
        contrib["dropout" if has_dropout else "regularisation"] = float(train_mode_end - train_eval_end)
        contrib["augmentation" if augmented else "easier-or-leaked"] = float(train_eval_end - v[-1])
    cause = max(contrib, key=lambda k: contrib[k])
    # Mostly averaging: the learning curve's end-of-epoch training loss shows it; not raised.
    return ValBelowVerdict(cause != "averaging", cause, contrib, gap)


@dataclass
class FluctuationVerdict:
    fires: bool
    jitter: float = 0.0
    update_ratio: float | None = None


def weights_fluctuating_verdict(val: Sequence[float], typical_update_ratio: float | None
                                ) -> FluctuationVerdict:
    """Validation loss zig-zagging over the second half while the weights move a lot."""
    v = finite(val)
    if len(v) < MIN_FLUCT_EPOCHS:
        return FluctuationVerdict(False, 0.0, typical_update_ratio)
    jitter = zigzag(v[len(v) // 2 - 1:])
    moving = typical_update_ratio is None or typical_update_ratio >= FLUCT_UPDATE
    return FluctuationVerdict(bool(jitter >= JITTER and moving), jitter, typical_update_ratio)


# ========================================================================= per layer


@dataclass
class ExplodingVerdict:
    fires: bool
    spikes: list[int] = field(default_factory=list)  # indices into the grad-norm series
    growth: float = 1.0
    depth_ratio: float = 1.0  # first layer / last layer, relative gradients
    nonfinite: bool = False


def exploding_verdict(total_norms: Sequence[float], *, depth_ratio: float = 1.0,
                      nonfinite: bool = False) -> ExplodingVerdict:
    """Global gradient norm spiking 10x its running median, growing 10x over the run, or
    growing 100x from the last layer to the first; non-finite gradients after growth."""
    g = np.asarray(total_norms, dtype=float)
    g = g[np.isfinite(g)]
    n = len(g)
    spikes: list[int] = []
    growth = 1.0
    if n >= 10:
        w = smoothing_window(n)
        med = moving_median(g, w)
        head = np.median(g[: max(5, n // 10)])
        # against the larger of the running median and the early-training scale: near zero
        # loss, a calm stretch of tiny gradients makes any ordinary batch look like a spike
        ref = np.maximum(med, head)
        spikes = [i for i in range(w, n) if ref[i - 1] > 0 and g[i] >= GRAD_SPIKE * ref[i - 1]]
        tail = np.median(g[-max(1, n // 5):])
        growth = float(tail / head) if head > 0 else 1.0
    fires = len(spikes) >= MIN_SPIKES or growth >= GRAD_GROWTH or depth_ratio >= DEPTH_RATIO \
        or (nonfinite and (growth >= 3 or len(spikes) > 0))
    return ExplodingVerdict(bool(fires), spikes, growth, float(depth_ratio), nonfinite)


@dataclass
class VanishingVerdict:
    fires: bool
    ratio: float = 1.0  # relative gradient, first layer / last layer
    layers: list[str] = field(default_factory=list)  # layers below VANISH_RATIO x the last
    relative: dict[str, float] = field(default_factory=dict)


def vanishing_verdict(names: Sequence[str], relative_grads: Sequence[float]) -> VanishingVerdict:
    """``relative_grads``: median ||grad|| / ||weight|| per layer, input to output order."""
    pairs = [(n, float(r)) for n, r in zip(names, relative_grads, strict=True)
             if math.isfinite(r)]
    if len(pairs) < 2 or pairs[-1][1] <= 0:
        return VanishingVerdict(False, relative=dict(pairs))
    last = pairs[-1][1]
    ratio = pairs[0][1] / last
    low = [n for n, r in pairs[:-1] if r < VANISH_RATIO * last]
    return VanishingVerdict(bool(ratio < VANISH_RATIO), float(ratio), low, dict(pairs))


@dataclass
class LayerFractionVerdict:
    fires: bool
    fractions: dict[str, float] = field(default_factory=dict)  # latest, per layer
    layers: list[str] = field(default_factory=list)  # the ones over the threshold
    severity: Severity = Severity.WARNING


def _latest(matrix: np.ndarray, k: int = 3) -> np.ndarray:
    """Median of the last ``k`` measurements, per column (NaN-aware)."""
    if matrix.size == 0:
        return np.zeros(0)
    tail = matrix[-k:]
    out = np.full(tail.shape[1], np.nan)
    for j in range(tail.shape[1]):
        col = tail[:, j][np.isfinite(tail[:, j])]
        if len(col):
            out[j] = np.median(col)
    return out


def dead_relu_verdict(names: Sequence[str], dead: np.ndarray) -> LayerFractionVerdict:
    """``dead``: (measurements, layers) fractions of dead units (NaN for non-ReLU columns)."""
    latest = _latest(np.asarray(dead, dtype=float))
    fr = {n: float(v) for n, v in zip(names, latest, strict=False) if math.isfinite(v)}
    over = [n for n, v in fr.items() if v >= DEAD_FRACTION]
    sev = Severity.ERROR if any(fr[n] >= DEAD_ALL for n in over) else Severity.WARNING
    return LayerFractionVerdict(bool(over), fr, over, sev)


def saturation_verdict(names: Sequence[str], saturated: np.ndarray) -> LayerFractionVerdict:
    latest = _latest(np.asarray(saturated, dtype=float))
    fr = {n: float(v) for n, v in zip(names, latest, strict=False) if math.isfinite(v)}
    over = [n for n, v in fr.items() if v >= SATURATED_FRACTION]
    return LayerFractionVerdict(bool(over), fr, over)


@dataclass
class UpdateRatioVerdict:
    fires: bool
    medians: dict[str, float] = field(default_factory=dict)
    low: list[str] = field(default_factory=list)
    high: list[str] = field(default_factory=list)
    typical: float | None = None  # median over layers


def update_ratio_verdict(names: Sequence[str], ratios: np.ndarray) -> UpdateRatioVerdict:
    """``ratios``: (measurements, layers) ||Δw||/||w||. Judged on the second half of the run
    (the first steps of Adam and of a fresh init are not representative)."""
    arr = np.asarray(ratios, dtype=float)
    if arr.size == 0:
        return UpdateRatioVerdict(False)
    tail = arr[len(arr) // 2:] if len(arr) >= 4 else arr
    med = _latest(tail, k=len(tail))
    medians = {n: float(v) for n, v in zip(names, med, strict=False) if math.isfinite(v)}
    if not medians:
        return UpdateRatioVerdict(False)
    # exactly zero: the layer gets no gradient (dead units, frozen) - other findings say why
    low = [n for n, v in medians.items() if 0 < v < UPDATE_LOW]
    high = [n for n, v in medians.items() if v > UPDATE_HIGH]
    typical = float(np.median(list(medians.values())))
    return UpdateRatioVerdict(bool(low or high), medians, low, high, typical)


# ========================================================================= diagnose


@dataclass
class Extras:
    """What the caller knows beyond the recording (all optional)."""

    baselines: dict[str, Any] | None = None  # ctx.state["baselines"]
    train_mode_end: float | None = None  # last epoch's weights, train mode, no update
    train_eval_end: float | None = None  # same weights, eval mode
    augmented: bool = False
    has_dropout: bool = False
    val_rel_se: float = 0.0  # standard error of the validation loss / its value
    best_epoch_restored: int | None = None
    lr_suggested: float | None = None  # ctx.state["lr"]["suggested"]
    where: str = "training"


@dataclass
class Diagnosis:
    findings: list[Finding]
    verdicts: dict[str, Any]
    grad_quantiles: dict[str, float]


def typical_update_ratio(rec: Any) -> float | None:
    v = update_ratio_verdict(rec.layers, rec.update.array())
    return v.typical


def relative_gradients(rec: Any) -> tuple[list[str], list[float]]:
    """Median ||grad||/||w|| per weight layer (norm and embedding layers left out)."""
    g, p = rec.grad.array(), rec.param.array()
    if g.size == 0 or p.size == 0:
        return [], []
    names, rel = [], []
    for j, (name, kind) in enumerate(zip(rec.layers, rec.layer_types, strict=True)):
        if "Norm" in kind or "Embedding" in kind:
            continue
        gj = g[:, j][np.isfinite(g[:, j])]
        pj = p[:, j][np.isfinite(p[:, j])]
        if len(gj) and len(pj) and np.median(pj) > 0:
            names.append(name)
            rel.append(float(np.median(gj) / np.median(pj)))
    return names, rel


def diagnose(rec: Any, extras: Extras | None = None) -> Diagnosis:
    """Run every rule over a recording; return the findings (each code at most once), the
    verdicts (for plots) and the gradient-norm quantiles (for the clipping advice)."""
    ex = extras or Extras()
    v: dict[str, Any] = {}
    out: list[Finding] = []
    gq = _grad_quantiles(rec)
    lr = rec.lr[-1] if rec.lr else None

    nf = _nonfinite_finding(rec, ex)
    if nf:
        out.append(nf)
    v["loss-diverging"] = dv = diverging_verdict(rec.loss)
    if dv.fires:
        out.append(_diverging_finding(dv, lr, gq))
    v["lr-too-high"] = hv = lr_too_high_verdict(rec.loss, rec.epoch_series("train_loss"))
    if hv.fires:
        out.append(_lr_high_finding(hv, rec, lr, ex, gq))
    upd = update_ratio_verdict(rec.layers, rec.update.array())
    v["update-ratio"] = upd
    if upd.fires:
        out.append(_update_ratio_finding(upd, lr))
    v["lr-too-low"] = lv = lr_too_low_verdict(rec.loss, upd.typical)
    unstable = dv.fires or hv.fires or nf is not None
    if lv.fires and not unstable:
        out.append(_lr_low_finding(lv, lr, ex))

    v["exploding-gradients"] = ev = _exploding(rec)
    if ev.fires:
        out.append(_exploding_finding(ev, rec, gq))
    v["dead-relu"] = dead = dead_relu_verdict([n for n, _ in rec.activations], rec.dead.array())
    if dead.fires:
        out.append(_dead_finding(dead))
    v["saturated-activations"] = sat = saturation_verdict([n for n, _ in rec.activations],
                                                          rec.saturated.array())
    if sat.fires:
        out.append(_saturated_finding(sat, rec))
    names, rel = relative_gradients(rec)
    v["vanishing-gradients"] = van = vanishing_verdict(names, rel)
    dead_explains = dead.fires and dead.severity == Severity.ERROR
    if van.fires and not dead_explains:
        out.append(_vanishing_finding(van, rec))

    emitted = {f.code for f in out}
    causes = [c for c in ("vanishing-gradients", "dead-relu", "saturated-activations")
              if c in emitted]
    v["loss-plateau"] = pv = plateau_verdict(rec.loss)
    if pv.fires and not unstable and not lv.fires:
        out.append(_plateau_finding(pv, rec, causes))

    train_ep, val_ep = rec.epoch_series("train_loss"), rec.epoch_series("val_loss")
    v["overfitting"] = ov = overfitting_verdict(train_ep, val_ep)
    if ov.fires and not unstable:
        out.append(_overfitting_finding(ov, ex))
    v["weights-fluctuating"] = fv = weights_fluctuating_verdict(val_ep, upd.typical)
    if fv.fires:
        out.append(_fluctuating_finding(fv, rec, lr))
    v["val-below-train"] = vb = val_below_train_verdict(
        train_ep, val_ep, train_mode_end=_train_mode_end(rec, ex), train_eval_end=ex.train_eval_end,
        augmented=ex.augmented, has_dropout=ex.has_dropout, val_rel_se=ex.val_rel_se)
    if vb.fires and not unstable:
        out.append(_val_below_finding(vb, train_ep, val_ep, ex))
    v["underfitting"] = uv = _underfitting(rec, ex)
    if uv.fires and not unstable and not pv.fires and not lv.fires:
        out.append(_underfitting_finding(uv, ex))
    out = monitor_causes(rec, out, v)  # zero_grad, accumulation, fp16: causes named first
    for f in out:
        f.evidence.setdefault("where", ex.where)
    return Diagnosis(out, v, gq)


# ------------------------------------------------------------------ finding builders


def _grad_quantiles(rec: Any) -> dict[str, float]:
    return quantiles(rec.grad_total)


def _clip_advice(gq: dict[str, float]) -> str:
    if not gq:
        return "clip gradients (torch.nn.utils.clip_grad_norm_)"
    return (f"clip gradients at max_norm≈{gq['p90']:.3g} (the 90th percentile of the gradient "
            f"norms seen in this run; median {gq['p50']:.3g}, max {gq['max']:.3g})")


def _lr_text(lr: float | None, factor: float = 10.0) -> str:
    if lr is None or not math.isfinite(lr) or lr <= 0:
        return "the learning rate"
    return f"the learning rate (now {lr:.3g}; try {lr / factor:.2g}-{lr / 3:.2g})"


def _nonfinite_finding(rec: Any, ex: Extras) -> Finding | None:
    ev = rec.nonfinite
    losses = rec.loss
    if ev is None:
        bad = next((i for i, x in enumerate(losses) if not math.isfinite(x)), None)
        if bad is None:
            return None
        ev = {"step": bad, "where": "loss", "value": str(losses[bad])}
    where = ev.get("where")
    step = ev.get("step")
    origin = ev.get("forward_origin")
    parts = [f"the first non-finite value appeared in the {where} at step {step} of {ex.where}"]
    if ev.get("input_nonfinite"):
        parts.append("the input batch itself contains NaN/inf")
    elif origin:
        parts.append(f"re-running that forward pass, the first layer with a non-finite output "
                     f"is '{origin}'")
    elif where == "gradients" and ev.get("backward_origin"):
        parts.append(f"the forward pass was finite; the backward pass first produced it in "
                     f"'{ev['backward_origin']}'")
    if ev.get("nonfinite_weights"):
        parts.append(f"weights already non-finite in {', '.join(ev['nonfinite_weights'][:5])}")
    if ev.get("update_skipped"):
        parts.append("that update was dropped, so the weights kept their last finite values")
    before = [x for x in losses[max(0, (step or 0) - 5):step or 0] if math.isfinite(x)]
    if before:
        parts.append("last finite losses " + ", ".join(f"{x:.4g}" for x in before))
    return LossNonfinite.make_finding("; ".join(parts), {**ev, "last_finite": before})


def _diverging_finding(dv: DivergingVerdict, lr: float | None, gq: dict[str, float]) -> Finding:
    msg = (f"the training loss (moving median) went from {_f(dv.start)} at the start down to "
           f"{_f(dv.best)} at step {dv.best_step} and back up to {_f(dv.end)} at the end "
           f"({dv.lost_fraction:.0%} of the progress lost; threshold {DIVERGE_LOST_FRACTION:.0%})"
           if dv.start > dv.best else
           f"the training loss rose from {_f(dv.start)} to {_f(dv.end)} "
           f"(more than {DIVERGE_ABOVE_START}x its start)")
    fix = f"Lower {_lr_text(lr)}; {_clip_advice(gq)}; check the loss sign and the optimizer."
    return LossDiverging.make_finding(msg, {"start": dv.start, "best": dv.best, "end": dv.end,
                                            "best_step": dv.best_step,
                                            "lost_fraction": dv.lost_fraction}, fix=fix)


def _lr_high_finding(hv: LrHighVerdict, rec: Any, lr: float | None, ex: Extras,
                     gq: dict[str, float]) -> Finding:
    bits = []
    if hv.spikes:
        bits.append(f"{len(hv.spikes)} loss spikes (a step loss >= {SPIKE_RATIO:g}x the running "
                    f"median and >= {SPIKE_OF_INITIAL:.0%} of the initial loss above it; first at "
                    f"steps {', '.join(map(str, hv.spikes[:5]))})")
    if hv.rises:
        bits.append(f"the epoch-mean training loss went up in epochs "
                    f"{', '.join(map(str, hv.rises[:8]))}")
    fix = f"Lower {_lr_text(lr)}"
    if ex.lr_suggested:
        fix += f"; the LR range test suggested {ex.lr_suggested:.2g}"
    fix += f"; add a short warmup; {_clip_advice(gq)}."
    return LrTooHigh.make_finding("; ".join(bits), {"spikes": hv.spikes[:50], "rising_epochs": hv.rises,
                                                    "lr": lr}, fix=fix)


def _lr_low_finding(lv: LrLowVerdict, lr: float | None, ex: Extras) -> Finding:
    factor = 1e-3 / lv.update_ratio if lv.update_ratio else 10.0
    msg = (f"the training loss fell only {lv.progress:.0%} over the run while each step changed "
           f"the weights by {lv.update_ratio:.1e} of their size (healthy ~1e-3; threshold "
           f"{LOW_UPDATE_RATIO:g})")
    fix = "Raise the learning rate"
    if lr:
        fix += f" (now {lr:.3g}; ~{min(factor, 100):.0f}x would bring updates near 1e-3)"
    if ex.lr_suggested:
        fix += f"; the LR range test suggested {ex.lr_suggested:.2g}"
    fix += "; or start from Adam at 3e-4."
    return LrTooLow.make_finding(msg, {"progress": lv.progress, "update_ratio": lv.update_ratio,
                                       "trend_t": lv.tstat, "lr": lr}, fix=fix)


def _update_ratio_finding(upd: UpdateRatioVerdict, lr: float | None) -> Finding:
    parts = []
    if upd.low:
        parts.append("tiny updates in " + ", ".join(f"{n} ({upd.medians[n]:.1e})" for n in upd.low[:6]))
    if upd.high:
        parts.append("huge updates in " + ", ".join(f"{n} ({upd.medians[n]:.1e})" for n in upd.high[:6]))
    msg = ("update-to-weight ratio ||Δw||/||w|| per step, median over the second half: "
           + "; ".join(parts) + f" (healthy ~1e-3; flagged outside [{UPDATE_LOW:g}, {UPDATE_HIGH:g}])")
    worst = [upd.medians[n] for n in upd.low + upd.high]
    scale = 1e-3 / float(np.median(worst))
    fix = (f"Multiply the learning rate by ~{scale:.1g}" + (f" (now {lr:.3g})" if lr else "")
           + " so updates sit near 1e-3 of the weights" + (
               "; layers with tiny updates may also be starved by vanishing gradients or dead "
               "units (see those findings)" if upd.low else "") + ".")
    return UpdateRatio.make_finding(msg, {"medians": upd.medians, "low": upd.low, "high": upd.high},
                                    fix=fix)


def _exploding(rec: Any) -> ExplodingVerdict:
    names, rel = relative_gradients(rec)
    depth = rel[0] / rel[-1] if len(rel) >= 2 and rel[-1] > 0 else 1.0
    nonfinite = bool(rec.nonfinite and rec.nonfinite.get("where") == "gradients")
    return exploding_verdict(rec.grad_total, depth_ratio=depth, nonfinite=nonfinite)


def _exploding_finding(ev: ExplodingVerdict, rec: Any, gq: dict[str, float]) -> Finding:
    bits = []
    if ev.spikes:
        steps = [rec.grad.steps[i] for i in ev.spikes[:5] if i < len(rec.grad.steps)]
        bits.append(f"{len(ev.spikes)} gradient-norm spikes >= {GRAD_SPIKE:g}x the running median "
                    f"(steps {', '.join(map(str, steps))})")
    if ev.growth >= GRAD_GROWTH:
        bits.append(f"the gradient norm grew {ev.growth:.3g}x from the first tenth of the run to "
                    f"the last fifth (threshold {GRAD_GROWTH:g}x)")
    if ev.depth_ratio >= DEPTH_RATIO:
        bits.append(f"the first layer's relative gradient is {ev.depth_ratio:.3g}x the last "
                    f"layer's (threshold {DEPTH_RATIO:g}x)")
    if ev.nonfinite:
        bits.append("and the gradients became non-finite")
    fix = (f"{_clip_advice(gq)[0].upper()}{_clip_advice(gq)[1:]}; lower the learning rate; add "
           "normalisation layers; scale the targets (regression) to unit variance.")
    return ExplodingGradients.make_finding("; ".join(bits), {
        "spikes": ev.spikes[:50], "growth": ev.growth, "depth_ratio": ev.depth_ratio,
        "grad_norm_quantiles": gq}, fix=fix)


def _vanishing_finding(van: VanishingVerdict, rec: Any) -> Finding:
    acts = {k for _, k in rec.activations}
    first, last = next(iter(van.relative)), list(van.relative)[-1]
    msg = (f"the first layer '{first}' gets a relative gradient ||g||/||w|| {van.ratio:.2g}x that "
           f"of the last layer '{last}' (threshold {VANISH_RATIO:g}); layers below 1/100 of the "
           f"last: {', '.join(van.layers[:8])}")
    fix = ("Add skip connections or normalisation (BatchNorm/LayerNorm) between the layers, use "
           "He (Kaiming) initialisation")
    if acts & {"sigmoid", "tanh"}:
        fix = "Replace sigmoid/tanh by ReLU/GELU; " + fix[0].lower() + fix[1:]
    return VanishingGradients.make_finding(msg, {"ratio_first_last": van.ratio, "layers": van.layers,
                                                 "relative_gradients": van.relative}, fix=fix + ".")


def _dead_finding(dead: LayerFractionVerdict) -> Finding:
    listed = ", ".join(f"'{n}' {dead.fractions[n]:.0%}" for n in dead.layers[:8])
    msg = (f"ReLU units that output zero for every sample of the last measured batches: {listed} "
           f"(threshold {DEAD_FRACTION:.0%} of a layer)")
    if dead.severity == Severity.ERROR:
        msg += "; a layer with every unit dead passes no gradient at all"
    fix = ("Initialise the biases before these ReLUs at 0 (a negative bias kills units), lower "
           "the learning rate (a large step can push units into the dead zone), standardise the "
           "inputs, or use LeakyReLU/GELU.")
    return DeadRelu.make_finding(msg, {"dead_fraction": dead.fractions, "layers": dead.layers},
                                 severity=dead.severity, fix=fix)


def _saturated_finding(sat: LayerFractionVerdict, rec: Any) -> Finding:
    listed = ", ".join(f"'{n}' {sat.fractions[n]:.0%}" for n in sat.layers[:8])
    msg = (f"outputs in the flat part of tanh/sigmoid (|tanh| > 0.99, sigmoid < 0.01 or > 0.99): "
           f"{listed} (threshold {SATURATED_FRACTION:.0%}); their gradient is ~0")
    return SaturatedActivations.make_finding(msg, {"saturated_fraction": sat.fractions,
                                                   "layers": sat.layers})


def _plateau_finding(pv: PlateauVerdict, rec: Any, causes: list[str]) -> Finding:
    if pv.kind == "stuck":
        msg = (f"the training loss stayed at its initial level ({_f(pv.level)}) for the whole run "
               f"({len(rec.loss)} steps)")
    else:
        msg = (f"the training loss sat flat at {_f(pv.level)} from step {pv.start_step} to "
               f"{pv.end_step} before it fell")
    if causes:
        msg += f"; likely cause: {', '.join(causes)} (see that finding)"
    fix = ("Fix the cause found alongside (" + ", ".join(causes) + ")." if causes else
           "Check the initialisation (output-layer bias, weight scale), the learning rate (try "
           "3x higher), and that the data carry the signal; a plateau at the start is often a "
           "bad init escaping slowly.")
    return LossPlateau.make_finding(msg, {"kind": pv.kind, "start_step": pv.start_step,
                                          "end_step": pv.end_step, "level": pv.level,
                                          "likely_causes": causes}, fix=fix)


def _overfitting_finding(ov: OverfitVerdict, ex: Extras) -> Finding:
    msg = (f"validation loss reached its best {_f(ov.best_val)} at epoch {ov.best_epoch} and rose "
           f"from epoch {ov.onset_epoch} on, up to {ov.rise:.0%} above it (threshold "
           f"{OVERFIT_RISE:.0%}), while the training loss kept falling")
    fix = ("Regularise, in the recipe's order: more data (or augmentation), weight decay, "
           "dropout, a smaller model; stop at epoch "
           f"{ov.best_epoch}" + (" (the best weights were restored)" if ex.best_epoch_restored else "")
           + "; `nnrecipe run` compares these in the regularize stage.")
    return Overfitting.make_finding(msg, {"best_epoch": ov.best_epoch, "onset_epoch": ov.onset_epoch,
                                          "best_val_loss": ov.best_val, "final_val_loss": ov.final_val,
                                          "rise": ov.rise}, fix=fix)


_VBT_FIX = {
    "averaging": ("Nothing is wrong: the training loss is averaged over an epoch while it falls; "
                  "compare the end-of-epoch training loss instead."),
    "dropout": ("Expected with dropout: it is active only in training. Compare with the training "
                "loss in eval mode."),
    "regularisation": ("Layers that behave differently in training (batch norm statistics, "
                       "noise layers) or a penalty added to the training loss explain it."),
    "augmentation": ("Augmentation makes training samples harder than validation ones; compare "
                     "on un-augmented training data."),
    "easier-or-leaked": ("The validation set is easier than the training set, or shares samples "
                         "with it: run `nnrecipe inspect` (split-leakage, duplicates) and check "
                         "how the splits were drawn."),
    "unknown": ("Likely causes: dropout/regularisation active only in training, the training "
                "loss averaged over an epoch while it falls, augmentation on training only, or an "
                "easier or leaked validation set."),
}


def _val_below_finding(vb: ValBelowVerdict, train: Sequence[float], val: Sequence[float],
                       ex: Extras) -> Finding:
    msg = (f"validation loss {_f(val[-1])} is {vb.gap:.0%} below the training loss {_f(train[-1])} "
           f"(epoch mean) at the last epochs (threshold {max(VAL_BELOW_MARGIN, 2 * ex.val_rel_se):.0%})")
    if vb.contributions:
        parts = ", ".join(f"{k} {v:+.3g}" for k, v in sorted(vb.contributions.items(),
                                                             key=lambda kv: -kv[1]))
        msg += f"; the gap splits into {parts}; likely cause: {vb.cause}"
    else:
        msg += f"; likely cause: {vb.cause}"
    sev = Severity.WARNING if vb.cause == "easier-or-leaked" else Severity.INFO
    return ValBelowTrain.make_finding(msg, {"cause": vb.cause, "contributions": vb.contributions,
                                            "gap": vb.gap, "train_mode_end": ex.train_mode_end,
                                            "train_eval_end": ex.train_eval_end},
                                      severity=sev, fix=_VBT_FIX.get(vb.cause, _VBT_FIX["unknown"]))


def _fluctuating_finding(fv: FluctuationVerdict, rec: Any, lr: float | None) -> Finding:
    msg = (f"over the second half of training the validation loss zig-zags (up and down from "
           f"epoch to epoch) by {fv.jitter:.0%} of its level on average (threshold {JITTER:.0%})")
    if fv.update_ratio is not None:
        msg += f", while each step moves the weights by {fv.update_ratio:.1e} of their size"
    msg += "; the model you stop at is a matter of luck"
    fix = (f"Lower {_lr_text(lr, 10)} or decay it over the run, use a larger batch, average the "
           "weights (EMA or torch.optim.swa_utils.AveragedModel), clip gradients.")
    return WeightsFluctuating.make_finding(msg, {"val_jitter": fv.jitter,
                                                 "update_ratio": fv.update_ratio}, fix=fix)


def _train_mode_end(rec: Any, ex: Extras) -> float | None:
    """The training loss at the end of the last epoch: probed, or else the median of the last
    step losses of that epoch (a quarter of it, at most one smoothing window)."""
    if ex.train_mode_end is not None or not rec.epochs:
        return ex.train_mode_end
    end = int(rec.epochs[-1]["step"])
    start = int(rec.epochs[-2]["step"]) if len(rec.epochs) > 1 else 0
    k = max(1, min((end - start) // 4, smoothing_window(len(rec.loss))))
    tail = finite(rec.loss[max(start, end - k):end])
    return float(np.median(tail)) if len(tail) else None


def _underfitting(rec: Any, ex: Extras) -> UnderfitVerdict:
    val = rec.epoch_series("val_loss")
    if not val or not math.isfinite(val[-1]):
        return UnderfitVerdict(False)
    train = ex.train_eval_end if ex.train_eval_end is not None else rec.epoch_series("train_loss")[-1]
    b = ex.baselines or {}
    majority = (b.get("majority") or {}).get("loss")
    linear = (b.get("linear") or {}).get("loss")
    losses = finite(rec.loss)
    initial = float(np.median(losses[: smoothing_window(len(losses))])) if len(losses) else math.nan
    second = losses[len(losses) // 2:]
    still = trend_tstat(second) < FALLING_T and len(second) >= 10 and (
        second[:len(second) // 2].mean() - second[len(second) // 2:].mean()
        > 0.05 * max(abs(second.mean()), 1e-12))
    return underfitting_verdict(train_loss=float(train), val_loss=min(v for v in val if math.isfinite(v)),
                                initial_loss=initial, majority_loss=majority, linear_loss=linear,
                                still_falling=bool(still))


def _underfitting_finding(uv: UnderfitVerdict, ex: Extras) -> Finding:
    if uv.reason == "linear":
        msg = (f"a linear model reaches validation loss {_f(uv.reference)}, the network only "
               f"{_f(uv.model_loss)} (threshold: {LINEAR_MARGIN:.0%} worse)")
    elif uv.reason == "gain":
        msg = (f"the network's validation loss {_f(uv.model_loss)} keeps less than "
               f"{GAIN_SHARE:.0%} of the linear model's gain over the majority baseline "
               f"({_f(uv.reference)})")
    else:
        msg = (f"the validation loss {_f(uv.model_loss)} is less than {NO_BASELINE_GAIN:.0%} "
               f"below the loss of predicting the prior ({_f(uv.reference)}), and training has "
               "stopped improving")
    fix = ("Make the model bigger (wider/deeper), train longer, remove regularisation (weight "
           "decay, dropout) until it can overfit, and check the learning rate.")
    return Underfitting.make_finding(msg, {"reason": uv.reason, "model_val_loss": uv.model_loss,
                                           "reference_loss": uv.reference}, fix=fix)
