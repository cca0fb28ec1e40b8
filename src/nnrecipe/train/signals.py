"""Small numeric helpers shared by the detectors: robust smoothing and trend tests."""

from __future__ import annotations

import math
from collections.abc import Sequence

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
