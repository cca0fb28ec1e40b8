"""``dropout-before-batchnorm``."""

from nnrecipe.skeleton.dropout_bn import Layer, dropout_bn_verdict
from tests.skeleton import zoo


def test_verdict_needs_a_data_path() -> None:
    order = [Layer("d", "dropout", 0.5), Layer("bn", "batchnorm")]
    assert dropout_bn_verdict(order, {("d", "bn"): True}) == [(order[0], order[1])]
    assert dropout_bn_verdict(order, {("d", "bn"): False}) == []  # a parallel branch
    assert dropout_bn_verdict(order[::-1], {("d", "bn"): True}) == []  # BN first: fine


def test_fires_when_dropout_feeds_batch_norm() -> None:
    exp = zoo.cnn_experiment(model=lambda: zoo.SmallCNN(dropout_first=True))
    (f,), checks, _ = zoo.run_checks(exp, "dropout-before-batchnorm")
    assert f.severity.value == "warning"
    assert f.evidence["pairs"] == [["net.3", 0.3, "net.5"]]
    assert checks["dropout-before-batchnorm"].tables
    exp = zoo.cnn_experiment(model=lambda: zoo.SmallCNN(dropout_first=True, p=0.05))
    (f,), _, _ = zoo.run_checks(exp, "dropout-before-batchnorm")
    assert f.severity.value == "info"


def test_quiet_when_dropout_comes_after_batch_norm() -> None:
    findings, checks, _ = zoo.run_checks(zoo.cnn_experiment(), "dropout-before-batchnorm")
    assert findings == [] and checks["dropout-before-batchnorm"].status == "passed"
