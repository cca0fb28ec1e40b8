import math

import numpy as np

from nnrecipe.regularize.learning_curve import fit_power_law, more_data_verdict
from nnrecipe.regularize.outcomes import Metric, verdict


def test_power_law_is_recovered_and_extrapolated() -> None:
    ns = [250, 500, 1000]
    errs = [0.3 * (n / 1000) ** -0.5 + 0.02 for n in ns]
    law = fit_power_law(ns, errs)
    assert law is not None
    assert abs(float(law(2000)) - (0.3 * 2 ** -0.5 + 0.02)) < 0.01


def test_more_data_helps_when_the_curve_still_falls() -> None:
    ns = [250, 500, 1000]
    errs = [0.3 * (n / 1000) ** -0.5 + 0.02 for n in ns]  # 0.62, 0.44, 0.32
    v = more_data_verdict(ns, errs, noise=0.01)
    assert v.helps and v.error_2x is not None and v.error_2x < errs[-1] - 0.05
    assert "would help" in v.sentence()
    assert not more_data_verdict(ns, errs, noise=0.5).helps  # same curve, noisier measurement


def test_flat_or_rising_curve_says_no() -> None:
    for errs in ([0.1, 0.1, 0.1], [0.08, 0.09, 0.1]):
        v = more_data_verdict([250, 500, 1000], errs, noise=0.005)
        assert not v.helps and v.law is None
        assert "unlikely to help" in v.sentence()


def test_measured_digits_curve_has_flattened() -> None:
    # Measured on the bundled digits (1 - best-epoch accuracy at 25/50/100% of 1078 samples);
    # the seed-to-seed spread of the reference was 0.0084.
    v = more_data_verdict([269, 538, 1078], [0.0474, 0.0334, 0.0251], noise=0.0084)
    assert not v.helps and v.error_2x is not None and 0.012 < v.error_2x < 0.0251


def test_verdicts_and_metric_direction() -> None:
    acc, loss = Metric("accuracy", True), Metric("loss", False)
    assert acc.gain(0.9, 0.8) > 0 and loss.gain(0.1, 0.2) > 0
    assert verdict(0.02, 0.01) == "helped"
    assert verdict(-0.02, 0.01) == "hurt"
    assert verdict(0.005, 0.01) == "within noise"
    assert verdict(math.nan, 0.01) == "failed"
    assert np.isfinite(acc.gain(1.0, 0.5))


def test_two_points_assume_a_typical_exponent() -> None:
    v = more_data_verdict([40, 80], [0.26, 0.225], noise=0.01)
    assert v.law is None and v.error_2x is not None and v.helps
    assert abs(v.gain_2x - 0.035 * 2 ** -0.5) < 1e-9  # type: ignore[operator]
    assert "too few points" in v.sentence()
