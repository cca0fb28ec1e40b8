"""Per-layer rules: exploding and vanishing gradients, dead ReLUs, saturated tanh/sigmoid
units, update-to-weight ratios. Pure functions of the monitor's per-layer series."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from nnrecipe.core.findings import Severity
from nnrecipe.train.signals import MAD_TO_SIGMA, MEDIAN_SE, moving_median, smoothing_window

MIN_SPIKES = 3  # gradient-norm spikes: three, not one (a single bad batch happens)
# exploding-gradients: the global norm 10x its running median and 10x its early-training
# level (measured max/median on the demo: 3.8), 3+ times; or growing 100x from the last layer
# to the first; or growth over the run: the last fifth's median norm 10x the upper spread of
# the first tenth (its 90th percentile, so a noisy start is not growth), while the training
# loss over the same stretch did not fall beyond its noise (GROWTH_FALL_Z standard errors of
# the two windows' medians). Reasoning: a model that leaves a flat start (an LSTM at ln C,
# gradients ~0.1) gets larger gradients as it learns; measured on the healthy corpus,
# waves-lstm seeds 0-2: median growth 8-13x, 4.3-5.8x over the early spread, the loss falling
# from 1.1 to 0.3-0.37 (tens of standard errors). Exploding gradients hurt the loss: SGD past
# its stability limit (tests/train/broken.py) grows them > 1000x while the loss climbs.
GRAD_SPIKE, GRAD_GROWTH, DEPTH_RATIO = 10.0, 10.0, 100.0
GROWTH_FALL_Z = 3.0
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

@dataclass
class ExplodingVerdict:
    fires: bool
    spikes: list[int] = field(default_factory=list)  # indices into the grad-norm series
    growth: float = 1.0  # median of the last fifth / median of the first tenth
    depth_ratio: float = 1.0  # first layer / last layer, relative gradients
    nonfinite: bool = False
    spread_growth: float = 1.0  # median of the last fifth / 90th percentile of the first tenth
    loss_head: float = math.nan  # median training loss over the first tenth
    loss_tail: float = math.nan  # and over the last fifth
    loss_fall_z: float = math.nan  # (head - tail) in standard errors of the two medians
    growing: bool = False  # the growth rule fired (growth beyond the spread, loss not falling)



def _window_median(x: np.ndarray) -> tuple[float, float]:
    """Median of a window and its standard error (robust scatter: MAD x MAD_TO_SIGMA)."""
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan
    med = float(np.median(x))
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(x - med)))
    return med, MEDIAN_SE * sigma / math.sqrt(len(x))


def loss_fall(losses: Sequence[float]) -> tuple[float, float, float]:
    """The training loss's median over the first tenth (at least 5 steps) and over the last
    fifth, and the fall between them in standard errors of the two medians (NaN when too
    short; inf when both windows are noiseless and the loss fell)."""
    a = np.asarray(losses, dtype=float)
    n = len(a)
    if n < 10:
        return math.nan, math.nan, math.nan
    head, se_h = _window_median(a[: max(5, n // 10)])
    tail, se_t = _window_median(a[-max(1, n // 5):])
    se = math.hypot(se_h, se_t)
    if not (math.isfinite(head) and math.isfinite(tail)):
        return head, tail, math.nan
    z = (head - tail) / se if se > 0 else (math.inf if head > tail else 0.0)
    return head, tail, float(z)


def exploding_verdict(total_norms: Sequence[float], *, depth_ratio: float = 1.0,
                      nonfinite: bool = False, losses: Sequence[float] | None = None
                      ) -> ExplodingVerdict:
    """Global gradient norm spiking 10x its running median, growing 10x over the run beyond
    the early spread while the loss does not fall (``losses``: the step losses; without them
    the growth alone decides), or growing 100x from the last layer to the first; non-finite
    gradients after growth."""
    g = np.asarray(total_norms, dtype=float)
    g = g[np.isfinite(g)]
    n = len(g)
    spikes: list[int] = []
    growth = spread = 1.0
    if n >= 10:
        w = smoothing_window(n)
        med = moving_median(g, w)
        early = g[: max(5, n // 10)]
        head = np.median(early)
        # against the larger of the running median and the early-training scale: near zero
        # loss, a calm stretch of tiny gradients makes any ordinary batch look like a spike
        ref = np.maximum(med, head)
        spikes = [i for i in range(w, n) if ref[i - 1] > 0 and g[i] >= GRAD_SPIKE * ref[i - 1]]
        tail = np.median(g[-max(1, n // 5):])
        growth = float(tail / head) if head > 0 else 1.0
        upper = float(np.quantile(early, 0.9))
        spread = float(tail / upper) if upper > 0 else 1.0
    lh, lt, z = loss_fall(losses) if losses is not None else (math.nan, math.nan, math.nan)
    fell = z >= GROWTH_FALL_Z  # NaN (no losses, too short): not known to fall
    growing = spread >= GRAD_GROWTH and not fell
    fires = len(spikes) >= MIN_SPIKES or growing or depth_ratio >= DEPTH_RATIO \
        or (nonfinite and (growth >= 3 or len(spikes) > 0))
    return ExplodingVerdict(bool(fires), spikes, growth, float(depth_ratio), nonfinite, spread,
                            lh, lt, z, bool(growing))


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
