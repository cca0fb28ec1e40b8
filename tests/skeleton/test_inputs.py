"""``inputs-not-normalized``: the batch that reaches the model."""

import numpy as np
import torch
from torch import nn

from nnrecipe.skeleton.inputs import normalization_verdict
from tests.skeleton import zoo
from tests.toys import blobs, classification_experiment, mlp

CODE = "inputs-not-normalized"


def test_verdict() -> None:
    assert normalization_verdict(np.array([0.0, 0.1]), np.array([1.0, 0.9])) == []
    assert normalization_verdict(np.array([0.45]), np.array([0.25])) == []   # pixels in [0, 1]
    assert normalization_verdict(np.array([120.0]), np.array([70.0])) == [0]  # 0-255 pixels
    assert normalization_verdict(np.array([0.0, 2000.0]), np.array([1.0, 5.0])) == [1]


def test_quiet_on_standardised_and_unit_range_inputs() -> None:
    """Standardised inputs of every family are covered by test_healthy; pixels in [0, 1]
    (ToTensor without Normalize) are not worth a warning either."""
    X, y = zoo.images(scale=0.25, offset=0.5)
    X = np.clip(X, 0, 1)
    findings, checks, _ = zoo.run_checks(
        zoo.cnn_experiment(train=(X[:240], y[:240]), val=(X[240:], y[240:])), CODE)
    assert findings == []
    assert checks[CODE].figures and checks[CODE].tables
    assert checks[CODE].metrics["maximum"] <= 1.0


def test_fires_on_raw_pixels_with_a_picture() -> None:
    X, y = zoo.images(scale=60, offset=110)
    X = np.clip(X, 0, 255).round()  # 0-255 pixel values, as floats
    exp = zoo.cnn_experiment(train=(X[:240], y[:240]), val=(X[240:], y[240:]))
    (f,), checks, _ = zoo.run_checks(exp, CODE)
    assert f.code == CODE and "0-255" in f.message
    assert f.evidence["channels_off"] == 1 and f.evidence["first_layer"][0] == "net.0"
    assert checks[CODE].figures


def test_fires_on_one_unscaled_feature_and_names_it() -> None:
    X, y = blobs()
    X = X.copy()
    X[:, 7] = X[:, 7] * 300 + 2000
    (f,), _, _ = zoo.run_checks(classification_experiment(train=(X[:300], y[:300])), CODE)
    assert list(f.evidence["worst"]) == [7] and f.evidence["features_off"] == 1


class NormalisesInside(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = mlp(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - 2000.0) / 300.0)


def test_judges_what_the_first_layer_sees() -> None:
    X, y = blobs()
    exp = classification_experiment(train=(X[:300] * 300 + 2000, y[:300]), model=NormalisesInside)
    findings, checks, _ = zoo.run_checks(exp, CODE)
    assert findings == []
    assert checks[CODE].metrics["normalised_inside_model"] is True


def test_token_ids_are_not_features() -> None:
    findings, checks, _ = zoo.run_checks(zoo.transformer_experiment(), CODE)
    assert findings == [] and checks[CODE].metrics["token_ids"] is True
