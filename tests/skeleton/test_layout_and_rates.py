"""``channel-order`` (NHWC images into a channels-first Conv2d) and ``dropout-rate-high``
(keep probabilities passed as drop rates): verdicts, then fires/quiet on tiny real runs."""

import numpy as np
import torch
from torch import nn

from nnrecipe.skeleton.channel_order import channel_order_verdict
from nnrecipe.skeleton.dropout_rate import HUGE_PARAMS, dropout_rate_verdict
from tests.skeleton import zoo
from tests.toys import classification_experiment


def test_channel_order_verdict() -> None:
    assert channel_order_verdict((64, 32, 32, 3), "Conv2d").fires  # CIFAR-like, NHWC
    assert channel_order_verdict((64, 28, 28, 1), "Conv2d").fires  # MNIST-like, NHWC
    assert channel_order_verdict((8, 480, 640, 3), "Conv2d").fires  # a 4:3 photo
    assert not channel_order_verdict((64, 3, 32, 32), "Conv2d").fires  # NCHW
    assert not channel_order_verdict((64, 1, 8, 8), "Conv2d").fires
    assert not channel_order_verdict((16, 200, 9, 9), "Conv2d").fires  # hyperspectral patches
    assert not channel_order_verdict((16, 12, 5000, 1), "Conv2d").fires  # 12-lead ECG as (T, 1)
    assert not channel_order_verdict((64, 32, 32, 3), "Linear").fires


def test_dropout_rate_verdict() -> None:
    assert dropout_rate_verdict([("a", 0.8), ("b", 0.8)], 50_000).fires
    assert dropout_rate_verdict([("a", 0.9)], 50_000).fires  # one keep-like rate
    assert dropout_rate_verdict([("a", 0.5), ("b", 0.5)], 50_000).fires
    assert not dropout_rate_verdict([("a", 0.5)], 50_000).fires  # one 0.5 layer: common
    assert not dropout_rate_verdict([("a", 0.2), ("b", 0.3)], 50_000).fires
    assert not dropout_rate_verdict([("a", 0.5), ("b", 0.5)], HUGE_PARAMS + 1).fires  # VGG head
    # p=1 zeroes every unit: fires whatever the model's size (issue 13: I3D's keep_prob=1)
    v = dropout_rate_verdict([("head", 1.0)], HUGE_PARAMS + 1)
    assert v.fires and v.drops_all == ["head"]
    assert dropout_rate_verdict([("a", 0.9)], 50_000).drops_all == []


class NHWCConvNet(nn.Module):
    """A CNN whose first conv was 'fixed' to in_channels=8 (the image height) for NHWC data."""

    def __init__(self, channels_first: bool = False) -> None:
        super().__init__()
        self.channels_first = channels_first
        self.net = nn.Sequential(nn.Conv2d(1 if channels_first else 8, 8, 3, padding=1),
                                 nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                 nn.Linear(32, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_first:
            x = x.permute(0, 3, 1, 2)  # the right fix, inside the model
        return self.net(x)


def _nhwc_experiment(channels_first: bool = False) -> object:
    X, y = zoo.images()
    X = np.ascontiguousarray(X.transpose(0, 2, 3, 1))  # (N, 8, 8, 1): channels last
    return zoo.cnn_experiment(model=lambda: NHWCConvNet(channels_first), train=(X[:240], y[:240]),
                              val=(X[240:], y[240:]))


def test_channel_order_fires_on_nhwc_images() -> None:
    (f,), _, _ = zoo.run_checks(_nhwc_experiment(), "channel-order")
    assert f.code == "channel-order" and f.severity.value == "warning"
    assert f.evidence["shape"][1:] == [8, 8, 1]


def test_channel_order_quiet_when_permuted_or_channels_first() -> None:
    for exp in (_nhwc_experiment(channels_first=True), zoo.cnn_experiment()):
        findings, checks, _ = zoo.run_checks(exp, "channel-order")
        assert findings == [] and checks["channel-order"].status == "passed"


def _deep_dropout(p: float) -> nn.Module:
    return nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Dropout(p), nn.Linear(64, 64), nn.ReLU(),
                         nn.Dropout(p), nn.Linear(64, 3))


def test_dropout_rate_fires_on_keep_probabilities_with_the_gap() -> None:
    exp = classification_experiment(model=lambda: _deep_dropout(0.8))
    (f,), checks, _ = zoo.run_checks(exp, "dropout-rate-high")
    assert f.severity.value == "info"
    assert [p for _, p in f.evidence["high"]] == [0.8, 0.8]
    # dropping 80% twice: the training-mode output moves by more than the outputs' spread
    assert f.evidence["train_eval_gap"] > 1.0


def test_dropout_rate_is_an_error_when_a_layer_drops_every_unit() -> None:
    # I3D's head ported with nn.Dropout(dropout_keep_prob=1): the logits see zeros in training
    exp = classification_experiment(model=lambda: nn.Sequential(
        nn.Linear(10, 64), nn.ReLU(), nn.Dropout(1.0), nn.Linear(64, 3)))
    (f,), _, _ = zoo.run_checks(exp, "dropout-rate-high")
    assert f.severity.value == "error" and f.evidence["drops_all"] == ["2"]


def test_dropout_rate_quiet_on_ordinary_rates() -> None:
    for exp in (classification_experiment(model=lambda: _deep_dropout(0.2)),
                zoo.cnn_experiment()):
        findings, checks, _ = zoo.run_checks(exp, "dropout-rate-high")
        assert findings == [] and checks["dropout-rate-high"].status in ("passed", "skipped")


def test_channel_order_names_the_cause_of_a_conv_crash() -> None:
    # Validation (core/validate.py) stops such a model before the stages; a step that feeds
    # the model something else than the dataset's samples gets past it and crashes in the
    # probe. Run the stage without validation to see the check name the cause.
    from nnrecipe.core.context import Context
    from nnrecipe.core.runner import run_stages

    X, y = zoo.images()
    X = np.ascontiguousarray(X.transpose(0, 2, 3, 1))  # NHWC into the channels-first SmallCNN
    exp = zoo.cnn_experiment(train=(X[:240], y[:240]), val=(X[240:], y[240:]))
    res = run_stages(Context(exp), ["skeleton"], only=["nondeterministic", "channel-order"])
    (f,) = [f for f in res.findings if f.code == "channel-order"]
    assert f.severity.value == "error" and f.evidence["crashed"] is True
    assert f.evidence["shape"][1:] == [8, 8, 1]
