"""The decisions, as pure functions of recorded numbers."""

import numpy as np
import pytest

from nnrecipe.core.findings import Severity
from nnrecipe.data.corrupt import corrupt_verdict
from nnrecipe.data.duplicates import duplicates_verdict, leakage_verdict
from nnrecipe.data.features import constant_verdict, scale_verdict, shortcut_verdict
from nnrecipe.data.label_errors import label_errors_verdict
from nnrecipe.data.labels import conflicts_verdict, imbalance_verdict
from nnrecipe.data.neighbors import near_threshold_factor
from nnrecipe.data.outliers import ISOLATION_FLOOR, isolation_threshold, outliers_verdict
from nnrecipe.data.shift import ShiftStats, shift_verdict

W, N, E = Severity.WARNING, Severity.INFO, Severity.ERROR


@pytest.mark.parametrize("n, redundant, expected", [
    (1000, 0, None), (150, 1, N), (1000, 9, N), (1000, 10, W), (1000, 200, W)])
def test_duplicates(n: int, redundant: int, expected: Severity | None) -> None:
    assert duplicates_verdict(n, redundant) == expected


@pytest.mark.parametrize("n, leaked, expected", [
    (1000, 0, None), (30, 1, N), (1000, 4, N), (1000, 5, W), (200, 2, W), (100, 20, E)])
def test_leakage(n: int, leaked: int, expected: Severity | None) -> None:
    assert leakage_verdict(n, leaked) == expected


def test_corrupt_is_an_error_from_one_sample() -> None:
    assert corrupt_verdict(0) is None
    assert corrupt_verdict(1) == E


def test_imbalance() -> None:
    assert imbalance_verdict({"a": 50, "b": 48}, []).severity is None
    assert imbalance_verdict({"a": 50, "b": 10}, []).severity == N
    assert imbalance_verdict({"a": 500, "b": 20}, []).severity == W
    assert imbalance_verdict({"a": 500, "b": 0}, []).severity == E  # one class present
    assert imbalance_verdict({"a": 50, "b": 50, "c": 3}, []).severity == W  # too few of c
    v = imbalance_verdict({"a": 50, "b": 50, "c": 0}, ["c"])
    assert v.severity == W and "never in train" in v.reasons[0]


def test_conflicts() -> None:
    assert conflicts_verdict(1000, 0) is None
    assert conflicts_verdict(1000, 2) == N
    assert conflicts_verdict(1000, 10) == W


# (flagged, estimated noise, share of rows contradicted with p >= 0.8): numbers measured by
# benchmarks/label_errors_margin.py
@pytest.mark.parametrize("flagged, noise, confident, expected", [
    (0, 0.0, 0.0, None),
    (5, 0.003, 0.003, N),     # digits-like: a handful
    (200, 0.10, 0.074, W),    # 10% flipped digits labels (6.1-7.4% confident)
    (200, 0.10, 0.0, N),      # overlapping classes (class_sep 0.5): the baseline is unsure
    (60, 0.031, 0.028, N),    # noisy moons: below the noise threshold
    # the healthy corpus's overlapping make_classification (class_sep 1.0, 3 classes) with no
    # label flipped: 10% estimated noise, mean suggestion confidence 0.61 (the old rule's
    # line was 0.6: it warned) but only 0.5% of rows contradicted confidently
    (102, 0.1008, 0.005, N),
    (100, 0.055, 0.0406, W),  # 5% flipped digits, seed 0: warns (as before)
])
def test_label_errors(flagged: int, noise: float, confident: float,
                      expected: Severity | None) -> None:
    assert label_errors_verdict(flagged, noise, confident).severity == expected


def test_label_errors_need_a_baseline_that_learnt_something() -> None:
    assert label_errors_verdict(95, 0.67, 0.7, kappa=0.02).severity == N  # random labels
    assert label_errors_verdict(95, 0.10, 0.85, kappa=0.8).severity == W


def test_outliers() -> None:
    assert outliers_verdict(25.5, 0) is None  # breast cancer: heavy tails, nothing isolated
    assert outliers_verdict(4.5, 3) == N      # an isolated set
    assert outliers_verdict(950.0, 0) == W    # a sentinel


def test_isolation_threshold_follows_the_spread_of_healthy_scores() -> None:
    rng = np.random.default_rng(0)
    tight = np.exp(rng.normal(0, 0.06, 5000))     # 64-dim Gaussians: IQR of logs ~0.08
    wide = np.exp(rng.normal(0, 0.35, 5000))      # breast-cancer-like spread
    assert isolation_threshold(tight) == ISOLATION_FLOOR  # the floor, not 1.6
    assert isolation_threshold(wide) > 10
    assert np.isinf(isolation_threshold(tight[:10]))      # too few to say what is typical


def test_constant() -> None:
    assert constant_verdict(0, 10) is None
    assert constant_verdict(1, 10) == N
    assert constant_verdict(6, 10) == W
    assert constant_verdict(10, 10) == E


def test_scale() -> None:
    ones = np.ones(4)
    assert not scale_verdict(np.zeros(4), ones, np.zeros(4, bool)).fires
    v = scale_verdict(np.array([0.0, 650.0, 0.0, 0.0]), np.array([1, 350, 1, 1.0]),
                      np.zeros(4, bool))
    assert v.fires and v.large == [1] and v.spread == 350
    v = scale_verdict(np.array([5.8, 0, 0, 0]), np.array([0.8, 1, 1, 1.0]), np.zeros(4, bool))
    assert v.uncentred == [0] and not v.large
    # a 0/1 column that is mostly 1 is fine, and binary columns are exempt anyway
    assert not scale_verdict(np.array([0.95, 0]), np.array([0.22, 1.0]),
                             np.array([True, False])).fires
    assert scale_verdict(np.zeros(1), np.ones(1), np.zeros(1, bool), raw_pixels=True).fires


def test_shortcut() -> None:
    assert shortcut_verdict(0.953) is None  # iris' petal width
    assert shortcut_verdict(0.995) == W


def test_shift() -> None:
    names = ["a", "b"]
    quiet = ShiftStats("val", np.array([0.08, 0.2]), np.array([0.3, 0.02]), 0.52, 0.5, 0.05, 0.4)
    assert shift_verdict(quiet, names) == []
    moved = ShiftStats("val", np.array([0.4, 0.05]), np.array([1e-12, 0.5]), 0.75, 9.0, 0.0, 1.0)
    reasons = shift_verdict(moved, names)
    assert len(reasons) == 2 and "a D=0.40" in reasons[0]
    labels = ShiftStats("val", np.zeros(2), np.ones(2), 0.5, 0.0, 0.3, 1e-9)
    assert "total variation 0.30" in shift_verdict(labels, names)[0]


def test_near_threshold_adapts_to_dimension() -> None:
    assert near_threshold_factor(64) == 0.1
    assert near_threshold_factor(4) == pytest.approx(0.1, abs=0.01)
    assert near_threshold_factor(2) < 0.02  # dense 2-D data has close pairs by chance
