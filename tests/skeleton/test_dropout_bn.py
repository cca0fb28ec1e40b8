"""``dropout-before-batchnorm``: severity follows the measured variance shift, not p."""

import torch
from torch import nn

from nnrecipe.skeleton.dropout_bn import (
    WARN_SHIFT,
    Layer,
    dropout_bn_verdict,
    shift_severity,
    variance_shift,
)
from tests.skeleton import zoo
from tests.toys import classification_experiment


def test_verdict_needs_a_data_path() -> None:
    order = [Layer("d", "dropout", 0.5), Layer("bn", "batchnorm")]
    assert dropout_bn_verdict(order, {("d", "bn"): True}) == [(order[0], order[1])]
    assert dropout_bn_verdict(order, {("d", "bn"): False}) == []  # a parallel branch
    assert dropout_bn_verdict(order[::-1], {("d", "bn"): True}) == []  # BN first: fine


def test_severity_follows_the_measured_shift() -> None:
    assert shift_severity(1.11).value == "info"
    assert shift_severity(WARN_SHIFT - 0.01).value == "info"
    assert shift_severity(WARN_SHIFT).value == "warning"
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 8, generator=g)
    assert abs(variance_shift(2 * x, x) - 4.0) < 1e-9  # per-channel variance ratio
    dead = torch.cat([x, torch.zeros(4096, 1)], 1)  # a channel without variance: left out
    assert abs(variance_shift(2 * dead, dead) - 4.0) < 1e-9


def test_fires_as_a_warning_when_the_shift_is_large() -> None:
    exp = zoo.cnn_experiment(model=lambda: zoo.SmallCNN(dropout_first=True))
    (f,), checks, _ = zoo.run_checks(exp, "dropout-before-batchnorm")
    assert f.severity.value == "warning"
    assert f.evidence["pairs"] == [["net.3", 0.3, "net.5"]]
    # Dropout2d(0.3) after a ReLU: 1.61-1.65 measured on seeds 0-2, above 1/(1-p) = 1.43
    assert f.evidence["worst_shift"] > WARN_SHIFT
    assert checks["dropout-before-batchnorm"].tables


def _dropout_linear_bn(p: float) -> nn.Module:
    # the case: Dropout(p=0.1) -> Linear -> BatchNorm, no ReLU in front of the dropout
    return nn.Sequential(nn.Linear(10, 64), nn.Dropout(p), nn.Linear(64, 64), nn.BatchNorm1d(64),
                         nn.ReLU(), nn.Linear(64, 3))


def test_a_small_shift_is_info_at_most() -> None:
    (f,), _, _ = zoo.run_checks(classification_experiment(model=lambda: _dropout_linear_bn(0.1)),
                                "dropout-before-batchnorm")
    assert f.severity.value == "info"
    assert 1.05 < f.evidence["worst_shift"] < 1.2  # ~1/(1-0.1) = 1.11 without a ReLU
    exp = zoo.cnn_experiment(model=lambda: zoo.SmallCNN(dropout_first=True, p=0.05))
    (f,), _, _ = zoo.run_checks(exp, "dropout-before-batchnorm")
    assert f.severity.value == "info"


def test_quiet_when_dropout_comes_after_batch_norm() -> None:
    findings, checks, _ = zoo.run_checks(zoo.cnn_experiment(), "dropout-before-batchnorm")
    assert findings == [] and checks["dropout-before-batchnorm"].status == "passed"
