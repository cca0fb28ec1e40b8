"""Per-column statistics every data check agrees on: float64, chunked, constant-aware.

Why this exists: a column that is constant in train has a float32 standard deviation of
about 1e-7 of its value, not 0 (``np.float32`` sums n equal values inexactly; digits
standardised over the whole set and then split gives 2.2e-7 for a pixel that is blank in
every training image). Dividing by that turned the one validation image with ink there into a
point 2e8 standard deviations away, and the duplicate, outlier and scale checks then raised
false alarms on distinct, healthy data. Here a column counts as constant when its values
span nothing (min == max) or less than a float32 rounding error can explain, and every
check uses the same verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A column whose standard deviation is below this fraction of its magnitude is float
# rounding, not information. By reasoning: float32 keeps 24 bits (relative spacing 6e-8);
# a few roundings of a constant leave a spread of ~1e-7 |value|, while a real feature that
# varies by only 0.001% of its magnitude is a measurement of nothing a network can use.
# Measured: the constant digits pixel above is 2.2e-7 / 0.024 = 9e-6 of its value, float32
# means of constant columns over 1e3-1e6 rows stay below 2e-6.
CONSTANT_REL = 1e-5
CHUNK = 65536


@dataclass
class ColumnStats:
    mean: np.ndarray      # float64 (d,)
    std: np.ndarray       # float64 (d,), population std
    lo: np.ndarray        # float64 (d,) minimum
    hi: np.ndarray        # float64 (d,) maximum
    n: int

    @property
    def constant(self) -> np.ndarray:
        """bool (d,): the column carries no information in these rows."""
        return constant_mask(self.mean, self.std, self.lo, self.hi)


def constant_mask(mean: np.ndarray, std: np.ndarray, lo: np.ndarray | None = None,
                  hi: np.ndarray | None = None) -> np.ndarray:
    """Pure rule: no spread at all, or a spread within float32 rounding of the value."""
    const = ~(std > CONSTANT_REL * np.abs(mean))
    if lo is not None and hi is not None:
        const |= lo == hi
    return const


def column_stats(X: np.ndarray, rows: np.ndarray | None = None) -> ColumnStats:
    """Mean, std, min and max of each column of ``X`` (over ``rows``), in float64, reading at
    most ``CHUNK`` rows at a time (no full float64 copy of a large matrix)."""
    d = X.shape[1]
    idx = np.arange(len(X)) if rows is None else np.asarray(rows)
    n = len(idx)
    if n == 0:
        z = np.zeros(d)
        return ColumnStats(z, z.copy(), z.copy(), z.copy(), 0)
    total = np.zeros(d)
    lo = np.full(d, np.inf)
    hi = np.full(d, -np.inf)
    for start in range(0, n, CHUNK):
        block = _rows(X, idx, start)
        total += block.sum(0, dtype=np.float64)
        lo = np.minimum(lo, block.min(0))
        hi = np.maximum(hi, block.max(0))
    mean = total / n
    sq = np.zeros(d)
    for start in range(0, n, CHUNK):  # second pass: no cancellation on large offsets
        block = _rows(X, idx, start).astype(np.float64) - mean
        sq += (block * block).sum(0)
    return ColumnStats(mean, np.sqrt(sq / n), lo, hi, n)


def _rows(X: np.ndarray, idx: np.ndarray, start: int) -> np.ndarray:
    part = idx[start:start + CHUNK]
    if len(part) and np.all(np.diff(part) == 1):
        return X[int(part[0]):int(part[-1]) + 1]  # a contiguous range: a view, no copy
    return X[part]


def group_stats(st: ColumnStats, groups: int) -> ColumnStats:
    """Statistics of ``groups`` equal-sized runs of columns pooled (per image channel)."""
    d = len(st.mean)
    if groups <= 0 or d % groups:
        raise ValueError(f"{d} columns do not split into {groups} equal groups")
    m = st.mean.reshape(groups, -1)
    var = (st.std ** 2).reshape(groups, -1)
    gm = m.mean(1)
    gvar = (var + (m - gm[:, None]) ** 2).mean(1)
    return ColumnStats(gm, np.sqrt(gvar), st.lo.reshape(groups, -1).min(1),
                       st.hi.reshape(groups, -1).max(1), st.n)


def distance_scale(train: ColumnStats) -> np.ndarray:
    """The factor of each column in the distance representation, 1/std of train, and 0 for a
    column constant in train: it says nothing about how training samples differ, and no
    scale can be trusted for it. Scaling it by its spread over all splits was tried and
    rejected: a column blank in train and nearly blank elsewhere gets a tiny pooled std, and
    1% jitter on a leaked copy then put it 20 standard deviations from its original.
    ``constant-features`` reports such a column when it varies in val/test."""
    inv = np.zeros(len(train.mean))
    use = ~train.constant
    inv[use] = 1.0 / train.std[use]
    return inv


__all__ = ["ColumnStats", "column_stats", "constant_mask", "group_stats", "distance_scale",
           "CONSTANT_REL"]
