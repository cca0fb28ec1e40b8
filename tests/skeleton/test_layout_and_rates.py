"""``channel-order`` (NHWC images into a channels-first Conv2d) and ``dropout-rate-high``
(keep probabilities passed as drop rates): verdicts, then fires/quiet on tiny real runs."""

import numpy as np
import pytest
import torch
from torch import nn

from nnrecipe.skeleton.channel_order import channel_order_verdict
from nnrecipe.skeleton.dropout_rate import HUGE_PARAMS, dropout_rate_verdict
from tests.seeds import TEST_SEED
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


# ---------------------------------------------- channels-last images reshaped, not permuted


def test_reshaped_layout_verdict() -> None:
    from nnrecipe.skeleton.channel_order import reshaped_layout_verdict

    # lags 1..7 as measured on smooth RGB photos: reshaped (peaks at 3 and 6) vs permuted
    assert reshaped_layout_verdict([0.67, 0.62, 0.81, 0.52, 0.47, 0.62, 0.37], 3)
    assert not reshaped_layout_verdict([0.80, 0.60, 0.40, 0.21, 0.01, 0.02, 0.03], 3)
    assert not reshaped_layout_verdict([0.02, 0.01, 0.12, 0.00, 0.01, 0.1, 0.0], 3)  # weak
    assert not reshaped_layout_verdict([0.5, 0.5, 0.52, 0.5, 0.5, 0.5, 0.5], 3)  # flat
    assert not reshaped_layout_verdict([0.67, 0.62, 0.81], 3)  # too narrow to tell
    assert not reshaped_layout_verdict([0.2, 0.9, 0.1, 0.5, 0.1], 2)  # grey+alpha: not judged


def _photos(n: int, seed: int, side: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Smooth colour images, channels last (N, H, W, 3), R/G/B correlated 0.9 like photos;
    the class is which colour dominates the top half."""
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.AvgPool2d(5, stride=1)
    lum = smooth(torch.randn(n, 1, side + 4, side + 4, generator=g))
    own = smooth(torch.randn(n, 3, side + 4, side + 4, generator=g))
    y = torch.randint(0, 3, (n,), generator=g)
    img = 0.95 * lum / lum.std() + 0.3 * own / own.std()
    img[torch.arange(n), y, : side // 2] += 1.0
    return img.permute(0, 2, 3, 1).contiguous().numpy(), y.numpy()


class _PhotoNet(nn.Module):
    def __init__(self, reshape: bool) -> None:
        super().__init__()
        self.reshape = reshape
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, h, w, c = x.shape
        # the bug (PaddlePaddle/Paddle#29716) and its fix
        x = x.reshape(n, c, h, w) if self.reshape else x.permute(0, 3, 1, 2)
        return self.net(x)


def _photo_experiment(reshape: bool) -> object:
    X, y = _photos(320, TEST_SEED)
    return zoo.cnn_experiment(model=lambda: _PhotoNet(reshape), train=(X[:240], y[:240]),
                              val=(X[240:], y[240:]), seed=TEST_SEED)


@pytest.mark.statistical
def test_channel_order_fires_on_reshaped_channels_last_images() -> None:
    (f,), _, _ = zoo.run_checks(_photo_experiment(reshape=True), "channel-order")
    assert f.severity.value == "warning" and f.evidence["reshaped"] is True
    acf = f.evidence["width_autocorrelation"]
    # the peak at lag 3; seeds 0-9: 0.152-0.164 above its neighbours (worst seed 6), fires
    # from 0.05
    assert acf[2] - max(acf[1], acf[3]) >= 0.05


@pytest.mark.statistical
def test_channel_order_quiet_on_permuted_colour_images() -> None:
    findings, checks, _ = zoo.run_checks(_photo_experiment(reshape=False), "channel-order")
    assert findings == [] and checks["channel-order"].status == "passed"
    acf = checks["channel-order"].metrics["width_autocorrelation"]
    # a real image plane decays from lag 1; seeds 0-9: rho3 is 0.167-0.183 *below* rho2
    # (worst seed 2), while firing needs it 0.05 above
    assert acf[2] < acf[1]
