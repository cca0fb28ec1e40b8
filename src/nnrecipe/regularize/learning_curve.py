"""Would more data help? A learning curve over data fractions, extrapolated by a power law.

Validation error against training-set size follows ``err(n) = a * n^-b + c`` over a wide
range (Hestness et al. 2017, "Deep learning scaling is predictable, empirically"): ``c`` is
the error more data cannot remove, ``b`` how fast the rest falls. With three points (25, 50,
100% of the data) the three parameters are pinned down, so the extrapolation is rough; it
is reported as "roughly", next to the gain the last doubling actually gave, and judged
against the measurement noise.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# The exponent is bounded: b > 2 would mean error falling faster than 1/n^2, which no
# learning curve in the scaling literature shows (b is typically 0.07-0.5); b < 0.01 is flat.
B_BOUNDS = (0.01, 2.0)
# With only two points (one fraction) nothing can be fitted: the next doubling is assumed to
# give 2^-0.5 of the last one's gain, the exponent b = 0.5 of a typical learning curve.
NEXT_DOUBLING = 2 ** -0.5


@dataclass(frozen=True)
class PowerLaw:
    a: float
    b: float
    c: float
    n_ref: float  # n is measured in units of n_ref for conditioning

    def __call__(self, n: float | np.ndarray) -> float | np.ndarray:
        return self.a * (np.asarray(n, dtype=float) / self.n_ref) ** (-self.b) + self.c


def fit_power_law(ns: Sequence[float], errs: Sequence[float]) -> PowerLaw | None:
    """Least-squares fit of ``a n^-b + c`` (a >= 0, 0 <= c <= min err); None when the points
    are too few, non-finite, or do not fall with n."""
    n = np.asarray(ns, dtype=float)
    e = np.asarray(errs, dtype=float)
    if len(n) < 3 or not (np.all(np.isfinite(n)) and np.all(np.isfinite(e))) or np.any(n <= 0):
        return None
    order = np.argsort(n)
    n, e = n[order], e[order]
    if e[0] <= e[-1]:  # no fall from the smallest to the largest set: nothing to extrapolate
        return None
    from scipy.optimize import curve_fit

    n_ref = float(n[-1])

    def f(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
        return a * x ** (-b) + c

    lo_c, hi_c = 0.0, max(float(e.min()), 1e-12)
    p0 = (max(e[0] - e[-1], 1e-6), 0.5, 0.5 * hi_c)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (a, b, c), _ = curve_fit(f, n / n_ref, e, p0=p0, maxfev=20000,
                                     bounds=([0.0, B_BOUNDS[0], lo_c],
                                             [np.inf, B_BOUNDS[1], hi_c]))
    except (RuntimeError, ValueError):
        return None
    return PowerLaw(float(a), float(b), float(c), n_ref)


@dataclass
class DataVerdict:
    helps: bool
    n: int  # the full training-set size
    error_now: float
    error_2x: float | None  # predicted at twice the data
    last_doubling_gain: float  # measured: err(n/2) - err(n)
    floor: float | None  # c, the error more data would not remove
    noise: float
    law: PowerLaw | None

    @property
    def gain_2x(self) -> float | None:
        return None if self.error_2x is None else self.error_now - self.error_2x

    def sentence(self, what: str = "validation error") -> str:
        if self.law is None and self.error_2x is not None:
            return (f"more data: the last doubling of the data lowered the {what} by "
                    f"{self.last_doubling_gain:.3g}; assuming the next gives ~{NEXT_DOUBLING:.0%}"
                    f" of that ({self.gain_2x:.3g}, too few points to fit a curve), more data "
                    + ("would help" if self.helps else f"is within the noise ({self.noise:.2g})"))
        if self.law is None:
            return (f"more data: the {what} did not fall with more training data "
                    f"({self.last_doubling_gain:+.3g} over the last doubling), so more of the "
                    "same data is unlikely to help much")
        base = (f"more data: the learning curve predicts {what} {self.error_now:.3g} -> "
                f"~{self.error_2x:.3g} with twice the training data ({2 * self.n} samples; the "
                f"last doubling gave {self.last_doubling_gain:.3g}; fitted floor {self.floor:.3g})")
        if self.helps:
            return base + ", a gain above the noise: more data would help"
        return base + f", within the noise ({self.noise:.2g}): the curve has flattened"


def more_data_verdict(ns: Sequence[float], errs: Sequence[float], noise: float) -> DataVerdict:
    """Pure decision from the learning-curve points: does doubling the data beat ``noise``?"""
    order = np.argsort(np.asarray(ns, dtype=float))
    n = np.asarray(ns, dtype=float)[order]
    e = np.asarray(errs, dtype=float)[order]
    law = fit_power_law(n, e)
    last = float(e[-2] - e[-1]) if len(e) >= 2 else math.nan
    if law is None and len(e) == 2 and last > 0:
        gain = NEXT_DOUBLING * last
        return DataVerdict(gain > noise, int(n[-1]), float(e[-1]), float(e[-1]) - gain, last,
                           None, noise, None)
    if law is None:
        return DataVerdict(False, int(n[-1]), float(e[-1]), None, last, None, noise, None)
    # The prediction is anchored at the measured error (the fit passes near it anyway).
    drop = float(law(n[-1]) - law(2 * n[-1]))
    e2 = float(e[-1]) - drop
    return DataVerdict(drop > noise, int(n[-1]), float(e[-1]), e2, last, law.c, noise, law)
