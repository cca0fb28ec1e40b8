"""Small numeric helpers shared by the detectors: robust smoothing and trend tests."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def finite(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    return arr[np.isfinite(arr)]


def smoothing_window(n: int) -> int:
    """Window for step-level series: 5% of the run, between 3 and 25 steps."""
    return int(min(25, max(3, n // 20)))


def moving_median(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing median (robust to single-batch outliers); same length as ``values``."""
    arr = np.asarray(values, dtype=float)
    n = len(arr)
    out = np.empty(n)
    head = min(n, window - 1)
    for i in range(head):  # the first points: growing windows
        out[i] = np.median(arr[:i + 1])
    if n >= window:
        out[window - 1:] = np.median(np.lib.stride_tricks.sliding_window_view(arr, window), axis=1)
    return out


def trend_tstat(values: Sequence[float]) -> float:
    """t statistic of the least-squares slope of ``values`` against their index.

    Below -3: the series is still falling beyond doubt; near 0: flat.
    """
    y = np.asarray(values, dtype=float)
    n = len(y)
    if n < 4:
        return 0.0
    x = np.arange(n, dtype=float) - (n - 1) / 2
    slope = float(np.dot(x, y - y.mean()) / np.dot(x, x))
    resid = y - y.mean() - slope * x
    se = math.sqrt(float(np.dot(resid, resid)) / (n - 2) / float(np.dot(x, x)))
    if se == 0:
        return 0.0 if slope == 0 else math.copysign(math.inf, slope)
    return slope / se


def zigzag(values: Sequence[float]) -> float:
    """Mean zig-zag amplitude relative to the mean level: for each pair of consecutive moves
    in opposite directions, the smaller of the two; averaged over all pairs. A monotone
    curve (falling, or rising as in overfitting) scores 0, however curved."""
    y = np.asarray(values, dtype=float)
    if len(y) < 3 or not np.all(np.isfinite(y)) or y.mean() <= 0:
        return 0.0
    d = np.diff(y)
    flips = np.sign(d[:-1]) * np.sign(d[1:]) < 0
    amp = np.minimum(np.abs(d[:-1]), np.abs(d[1:]))
    return float(np.sum(amp[flips]) / len(amp) / y.mean())


def quantiles(values: Sequence[float], qs: Sequence[float] = (0.1, 0.5, 0.9, 0.99)
              ) -> dict[str, float]:
    arr = finite(values)
    if len(arr) == 0:
        return {}
    out = {f"p{round(q * 100):d}": float(np.quantile(arr, q)) for q in qs}
    out["max"] = float(arr.max())
    return out


# ------------------------------------------------------------------ noise of the step loss
#
# A step loss is the mean of b per-sample losses, so its batch-to-batch noise scales as
# sigma_sample / sqrt(b). The rules below compare changes of the loss with that noise,
# measured on the run itself from consecutive differences (a slow trend barely moves them,
# and a running median would pass through the points and hide the noise), each difference
# standardised by the sizes of its two batches (a last batch of 1 is sqrt(32) times noisier
# than one of 32 and is judged so), with a robust scale (median absolute value) over a
# trailing window.

MAD_TO_SIGMA = 1.4826  # sigma of a normal distribution per unit of median absolute deviation
MEDIAN_SE = 1.2533  # standard error of a median of w normal values, times sqrt(w) / sigma
# A floor under the measured noise, relative to the run's starting loss: float-precision
# blips of an exactly memorised batch (loss 0, then 1e-6) are not events. Reasoning: 1% of
# the initial loss is far below anything a learning-rate spike does (it takes back >= 25%).
NOISE_FLOOR_OF_START = 0.01


def batch_weights(n: int, batch_sizes: Sequence[float] | None) -> tuple[np.ndarray, float]:
    """``sqrt(b_i / b_ref)`` per step (the factor by which a step's noise is smaller than a
    reference batch's) and ``b_ref``, the median batch size; ones when sizes are unknown."""
    if batch_sizes is None or len(batch_sizes) < n:
        return np.ones(n), math.nan
    b = np.asarray(batch_sizes[:n], dtype=float)
    ok = np.isfinite(b) & (b > 0)
    if not ok.any():
        return np.ones(n), math.nan
    ref = float(np.median(b[ok]))
    return np.where(ok, np.sqrt(np.where(ok, b, ref) / ref), 1.0), ref


def standardised_differences(values: Sequence[float], weight: np.ndarray) -> np.ndarray:
    """``(L_i - L_{i-1}) / sqrt(1/w_i^2 + 1/w_{i-1}^2)``: consecutive differences scaled so
    that 1.4826 x their median absolute value estimates the noise of a reference-size batch's
    loss (the difference of two independent batches has the variance of both). Index 0 is
    NaN."""
    arr = np.asarray(values, dtype=float)
    out = np.full(len(arr), np.nan)
    if len(arr) > 1:
        out[1:] = np.diff(arr) / np.sqrt(1.0 / weight[1:] ** 2 + 1.0 / weight[:-1] ** 2)
    return out


def centred_median(values: Sequence[float], window: int) -> np.ndarray:
    """Running median centred on each point (shrinking windows at the ends)."""
    arr = np.asarray(values, dtype=float)
    n, h = len(arr), max(1, window // 2)
    if n == 0:
        return arr
    if n <= 2 * h + 1:
        return np.array([np.median(arr[max(0, i - h):i + h + 1]) for i in range(n)])
    out = np.empty(n)
    out[h:n - h] = np.median(np.lib.stride_tricks.sliding_window_view(arr, 2 * h + 1), axis=1)
    for i in list(range(h)) + list(range(n - h, n)):
        out[i] = np.median(arr[max(0, i - h):i + h + 1])
    return out


@dataclass
class StepNoise:
    """The step-loss series' noise.

    ``sigma``: the trailing robust noise of a reference-size batch's loss at each step
    (``sigma[i]`` uses the steps before ``i`` only); ``weight``: ``sqrt(b_i / b_ref)``;
    ``level``: centred running median.
    """

    level: np.ndarray
    sigma: np.ndarray
    weight: np.ndarray
    ref_batch: float
    window: int

    def noise_of(self, i: int) -> float:
        """Noise of step ``i``'s loss (its batch's size taken into account)."""
        return float(self.sigma[i] / self.weight[i])


def step_noise(losses: Sequence[float], batch_sizes: Sequence[float] | None = None
               ) -> StepNoise | None:
    """Noise of a step-loss series (None when it is too short to tell)."""
    arr = np.asarray(losses, dtype=float)
    n = len(arr)
    w = smoothing_window(n)
    if n < 3 * w or not np.all(np.isfinite(arr)):
        return None
    weight, ref = batch_weights(n, batch_sizes)
    r = np.abs(standardised_differences(arr, weight))
    span = max(4 * w, 20)  # trailing window for the scale: a few smoothing windows
    scale = np.empty(n)
    head = min(n, span + w)
    for i in range(head):  # the first steps: the noise of the run's start so far
        scale[i] = MAD_TO_SIGMA * float(np.median(r[1:max(i, 2 * w)]))
    if n > head:  # then the trailing ``span`` steps before each step, vectorised (a live
        # check ran this median step by step: 85% of its time at ~1800 steps)
        windows = np.lib.stride_tricks.sliding_window_view(r, span)  # windows[j] = r[j:j+span]
        for lo in range(head, n, 4096):  # bounded memory on long runs
            hi = min(n, lo + 4096)
            scale[lo:hi] = MAD_TO_SIGMA * np.median(windows[lo - span:hi - span], axis=1)
    floor = NOISE_FLOOR_OF_START * abs(float(np.median(arr[:w])))
    return StepNoise(centred_median(arr, w), np.maximum(scale, max(floor, 1e-12)), weight, ref,
                     w)


def epoch_means(losses: Sequence[float], ends: Sequence[int],
                batch_sizes: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per epoch (``ends``: the cumulative step count at each epoch's end), the mean training
    loss weighted by batch size, and its standard error: the batch noise measured on this and
    the neighbouring epochs (consecutive differences), times sqrt(b_ref / samples in the
    epoch); NaN when it cannot be measured. Without batch sizes a last step that may be a
    partial batch is left out of its epoch's mean (its weight is unknown)."""
    arr = np.asarray(losses, dtype=float)
    known = batch_sizes is not None and len(batch_sizes) >= len(arr)
    b = np.asarray(batch_sizes[:len(arr)], dtype=float) if known else np.ones(len(arr))  # type: ignore[index]
    weight, ref = batch_weights(len(arr), b)
    r = np.abs(standardised_differences(arr, weight))
    bounds = list(zip([0, *[int(e) for e in ends[:-1]]], [int(e) for e in ends], strict=True))
    means, ses = [], []
    for k, (start, end) in enumerate(bounds):
        end = min(end, len(arr))
        idx = np.arange(start, end)
        if not known and len(idx) >= 4:
            idx = idx[:-1]
        idx = idx[np.isfinite(arr[idx])] if len(idx) else idx
        if len(idx) == 0:
            means.append(math.nan)
            ses.append(math.nan)
            continue
        bw = b[idx]
        means.append(float(np.sum(bw * arr[idx]) / np.sum(bw)))
        lo, hi = bounds[max(0, k - 1)][0], min(bounds[min(len(bounds) - 1, k + 1)][1], len(arr))
        near = r[max(lo, 1):hi]
        near = near[np.isfinite(near)]
        if len(near) >= 3:
            sigma = MAD_TO_SIGMA * float(np.median(near))  # a reference batch's noise
            ses.append(sigma * math.sqrt((ref if known else 1.0) / float(np.sum(bw))))
        else:
            ses.append(math.nan)
    return np.asarray(means), np.asarray(ses)
