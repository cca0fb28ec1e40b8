"""``dropout-before-batchnorm``: severity follows the measured variance shift (with its
sampling noise), not p."""

import numpy as np
import pytest
import torch
from torch import nn

from nnrecipe import Experiment
from nnrecipe.skeleton.dropout_bn import (
    WARN_SHIFT,
    Layer,
    dropout_bn_verdict,
    measure_shift,
    shift_severity,
    variance_shift,
)
from tests.seeds import TEST_SEED
from tests.skeleton import zoo
from tests.toys import classification_experiment


def test_verdict_needs_a_data_path() -> None:
    order = [Layer("d", "dropout", 0.5), Layer("bn", "batchnorm")]
    assert dropout_bn_verdict(order, {("d", "bn"): True}) == [(order[0], order[1])]
    assert dropout_bn_verdict(order, {("d", "bn"): False}) == []  # a parallel branch
    assert dropout_bn_verdict(order[::-1], {("d", "bn"): True}) == []  # BN first: fine


def test_severity_follows_the_lower_end_of_the_measured_shift() -> None:
    assert shift_severity(1.11).value == "info"
    assert shift_severity(WARN_SHIFT - 0.01).value == "info"
    assert shift_severity(WARN_SHIFT).value == "warning"
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 8, generator=g)
    assert abs(variance_shift(2 * x, x) - 4.0) < 1e-9  # per-channel variance ratio
    dead = torch.cat([x, torch.zeros(4096, 1)], 1)  # a channel without variance: left out
    assert abs(variance_shift(2 * dead, dead) - 4.0) < 1e-9


def _paired(n: int, channels: int, added: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference inputs x and training inputs x + independent noise of variance ``added``:
    a true variance shift of 1 + added, measured on n rows."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, generator=g)
    return x + added ** 0.5 * torch.randn(n, channels, generator=g), x


@pytest.mark.statistical
def test_a_true_shift_at_the_line_rarely_warns() -> None:
    """Issue 11: 1.51x against the 1.5x line on 142 samples warned. A true shift of exactly
    1.5 measured on 142 rows lands above the line about half the time (the old rule); the
    interval's lower end clears it about 1 time in 40."""
    draws = [measure_shift(*_paired(142, 32, 0.5, 100 * TEST_SEED + i), seed=i)
             for i in range(40)]
    point = np.mean([d.value >= WARN_SHIFT for d in draws])
    warned = np.mean([d.low >= WARN_SHIFT for d in draws])
    # seeds 0-9: the point estimate over the line in 47-73% of the draws, the lower end in
    # 0-5% (at most 2 of 40; the line is 5 of 40, expected ~1)
    assert point > 0.3
    assert warned <= 0.125
    assert all(d.low <= d.value <= d.high for d in draws)
    clear = [measure_shift(*_paired(142, 32, 1.0, 100 * TEST_SEED + i), seed=i)
             for i in range(10)]  # true shift 2.0
    # seeds 0-9: lower end >= 1.79 in every draw, worst margin 1.19 over the line (seed 9)
    assert all(shift_severity(d.low).value == "warning" and d.margin > 1.15 for d in clear)
    assert abs(variance_shift(*_paired(4096, 8, 1.0, TEST_SEED)) - 2.0) < 0.1


@pytest.mark.statistical
def test_fires_as_a_warning_when_the_shift_is_large() -> None:
    exp = zoo.cnn_experiment(model=lambda: zoo.SmallCNN(dropout_first=True), seed=TEST_SEED)
    (f,), checks, _ = zoo.run_checks(exp, "dropout-before-batchnorm")
    assert f.severity.value == "warning"
    assert f.evidence["pairs"] == [["net.3", 0.3, "net.5"]]
    # Dropout2d(0.3) after a ReLU: above 1/(1-p) = 1.43. Seeds 0-9: shift 1.58-1.66, the
    # interval's lower end 1.56-1.63; worst margin 1.04 over the line (seed 8)
    low, high = f.evidence["worst_shift_interval"]
    assert WARN_SHIFT <= low <= f.evidence["worst_shift"] <= high
    assert f.evidence["margin"] >= 1.0 and "interval" in f.message
    assert checks["dropout-before-batchnorm"].tables


def _wine_bn_dropout(seed: int) -> Experiment:
    """The healthy corpus's wine-bn-dropout-bs16: Linear -> BatchNorm -> ReLU -> Dropout(0.2),
    twice, on 142 standardised wine samples."""
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    idx = np.random.default_rng(seed).permutation(len(X))
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)[idx]
    y = y.astype(np.int64)[idx]

    def model() -> nn.Module:
        return nn.Sequential(nn.Linear(13, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2),
                             nn.Linear(32, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2),
                             nn.Linear(32, 3))

    return Experiment(model=model, train=(X[:142], y[:142]), val=(X[142:], y[142:]),
                      loss=nn.CrossEntropyLoss(), batch_size=16, epochs=2, seed=seed,
                      name="wine-bn-dropout")


@pytest.mark.statistical
def test_a_shift_near_the_line_is_info_on_the_healthy_wine_look_alike() -> None:
    """Issue 11: measured 1.51x on one init (line 1.5x) and warned on a healthy run."""
    (f,), _, _ = zoo.run_checks(_wine_bn_dropout(TEST_SEED), "dropout-before-batchnorm")
    assert f.severity.value == "info"
    # Seeds 0-9: shift 1.43-1.47 (single inits gave 1.40-1.53), the interval 1.38-1.50;
    # its lower end at most 0.96 of the line (seed 2)
    assert f.evidence["worst_shift_interval"][0] < WARN_SHIFT
    assert f.evidence["samples"] == 142 and "interval" in f.message


def _dropout_linear_bn(p: float) -> nn.Module:
    # the case: Dropout(p=0.1) -> Linear -> BatchNorm, no ReLU in front of the dropout
    return nn.Sequential(nn.Linear(10, 64), nn.Dropout(p), nn.Linear(64, 64), nn.BatchNorm1d(64),
                         nn.ReLU(), nn.Linear(64, 3))


@pytest.mark.statistical
def test_a_small_shift_is_info_at_most() -> None:
    exp = classification_experiment(model=lambda: _dropout_linear_bn(0.1), seed=TEST_SEED)
    (f,), _, _ = zoo.run_checks(exp, "dropout-before-batchnorm")
    assert f.severity.value == "info"
    # 1/(1-0.1) = 1.11, plus the dropped share of the first Linear's non-zero mean: 1.19-1.25
    # on single inits (seeds 0-3); as the mean of 4 inits, seeds 0-9: 1.21-1.25, the
    # interval's upper end at most 0.84 of the line (measured)
    assert 1.05 < f.evidence["worst_shift"] < 1.35
    exp = zoo.cnn_experiment(model=lambda: zoo.SmallCNN(dropout_first=True, p=0.05),
                             seed=TEST_SEED)
    (f,), _, _ = zoo.run_checks(exp, "dropout-before-batchnorm")
    assert f.severity.value == "info"


def test_quiet_when_dropout_comes_after_batch_norm() -> None:
    findings, checks, _ = zoo.run_checks(zoo.cnn_experiment(), "dropout-before-batchnorm")
    assert findings == [] and checks["dropout-before-batchnorm"].status == "passed"
