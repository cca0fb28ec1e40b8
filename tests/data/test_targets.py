"""``unscaled-targets`` and ``padding-in-loss``: fires on the planted mistake, quiet on its
healthy look-alike (standardised targets; ignore_index set; a frequent tag that is not
padding; per-sample labels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes
from torch import nn
from torch.nn import functional as F

from nnrecipe.core.findings import Severity
from nnrecipe.data.targets import (
    PadCandidate,
    pad_candidate,
    padding_verdict,
    target_scale_verdict,
)
from tests.data.helpers import check, experiment, found, loud, run_data
from tests.toys import mlp

# ------------------------------------------------------------------ unscaled targets


def test_target_scale_verdict_on_scripted_numbers() -> None:
    assert target_scale_verdict(0.0, 1.0).severity is None
    assert target_scale_verdict(0.3, 0.8).severity is None
    assert target_scale_verdict(1.8e5, 8e4).severity == Severity.WARNING   # house prices
    assert target_scale_verdict(152.0, 77.0).severity == Severity.WARNING  # raw diabetes
    assert target_scale_verdict(5.0, 0.5).severity == Severity.WARNING     # offset ratings
    assert target_scale_verdict(0.0, 0.003).severity == Severity.INFO      # tiny
    # a model whose fresh outputs already have the target's scale does the scaling itself
    assert target_scale_verdict(152.0, 77.0, output_rms=120.0).severity is None
    assert target_scale_verdict(152.0, 77.0, output_rms=0.4).severity == Severity.WARNING


def _diabetes(standardise: bool) -> tuple[np.ndarray, ...]:
    X, y = load_diabetes(return_X_y=True)
    X = ((X - X[:330].mean(0)) / X[:330].std(0)).astype(np.float32)
    if standardise:
        y = (y - y[:330].mean()) / y[:330].std()
    y = y.astype(np.float32)[:, None]
    return X[:330], y[:330], X[330:], y[330:]


class _Destandardise(nn.Module):
    """A model that de-standardises its own output (a healthy way to train on raw targets)."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.net, self.mean, self.std = mlp(10, 1), mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.std + self.mean


def test_raw_regression_targets_fire_and_standardised_ones_are_quiet() -> None:
    Xtr, ytr, Xva, yva = _diabetes(standardise=False)
    exp = experiment((Xtr, ytr), (Xva, yva), loss=nn.MSELoss())
    exp.model = lambda: mlp(10, 1)
    (f,) = found(run_data(exp, "unscaled-targets"), "unscaled-targets")
    assert f.severity.value == "warning" and "standardise" in f.fix.lower()
    assert f.evidence["mean"] == pytest.approx(float(ytr.mean()), rel=1e-5)
    assert f.evidence["initial_output_rms"] < 5  # measured with the user's fresh model
    Xtr, ytr, Xva, yva = _diabetes(standardise=True)
    res = run_data(experiment((Xtr, ytr), (Xva, yva), loss=nn.MSELoss()))
    assert found(res, "unscaled-targets") == [] and loud(res) == []
    assert check(res, "unscaled-targets").metrics["target_std"] == pytest.approx(1.0, rel=1e-4)


def test_a_model_that_destandardises_its_output_is_quiet() -> None:
    Xtr, ytr, Xva, yva = _diabetes(standardise=False)
    exp = experiment((Xtr, ytr), (Xva, yva), loss=nn.MSELoss())
    exp.model = lambda: _Destandardise(float(ytr.mean()), float(ytr.std()))
    assert found(run_data(exp, "unscaled-targets"), "unscaled-targets") == []


def test_house_prices_fire_without_a_model() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5)).astype(np.float32)
    y = (1.8e5 + 6e4 * X[:, 0] + 1e4 * rng.normal(size=400)).astype(np.float32)
    exp = experiment((X, y), loss=nn.MSELoss())  # the model factory returns nn.Identity
    (f,) = found(run_data(exp, "unscaled-targets"), "unscaled-targets")
    assert f.severity.value == "warning" and f.evidence["mean"] > 1e5 and "rms" in f.message


def test_classification_labels_are_not_targets_to_scale() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    y = (rng.integers(0, 40, 300)).astype(np.int64)  # class ids up to 39: not a scale
    res = run_data(experiment((X, y)), "unscaled-targets")
    assert check(res, "unscaled-targets").status == "skipped"


# ------------------------------------------------------------------ padding in the loss

V, L, PAD = 50, 24, 0


class TinyLM(nn.Module):
    """Embedding -> linear head: logits (B, T, V), or (B, V, T) with ``channels_first``."""

    def __init__(self, channels_first: bool = False) -> None:
        super().__init__()
        self.emb, self.head, self.cf = nn.Embedding(V, 16), nn.Linear(16, V), channels_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.emb(x))
        return out.transpose(1, 2) if self.cf else out


def _padded_sequences(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Next-token data: random lengths 4..L, padded with PAD at the end (~half padding)."""
    rng = np.random.default_rng(seed)
    X = np.full((n, L), PAD, dtype=np.int64)
    for i, length in enumerate(rng.integers(4, L + 1, n)):
        X[i, :length] = rng.integers(1, V, length)
    Y = np.concatenate([X[:, 1:], np.full((n, 1), PAD)], axis=1)
    return X, Y


def _flat_ce(ignore: int | None) -> object:
    if ignore is None:
        return lambda out, y: F.cross_entropy(out.reshape(-1, V), y.reshape(-1))
    return lambda out, y: F.cross_entropy(out.reshape(-1, V), y.reshape(-1), ignore_index=ignore)


def _lm_experiment(loss: object, X: np.ndarray, Y: np.ndarray, channels_first: bool = False):
    exp = experiment((X, Y), loss=loss, task="classification")
    exp.model = lambda: TinyLM(channels_first)
    return exp


@pytest.mark.parametrize("channels_first", [False, True])
def test_padding_counted_by_the_loss_fires(channels_first: bool) -> None:
    X, Y = _padded_sequences()
    loss = nn.CrossEntropyLoss() if channels_first else _flat_ce(None)
    (f,) = found(run_data(_lm_experiment(loss, X, Y, channels_first), "padding-in-loss"),
                 "padding-in-loss")
    assert f.severity.value == "warning" and f.evidence["pad_id"] == PAD
    assert f.evidence["run_share"] == 1.0 and f.evidence["pad_gradient_share"] > 0.5


@pytest.mark.parametrize("channels_first", [False, True])
def test_padding_ignored_by_the_loss_is_quiet(channels_first: bool) -> None:
    X, Y = _padded_sequences()
    loss = nn.CrossEntropyLoss(ignore_index=PAD) if channels_first else _flat_ce(PAD)
    res = run_data(_lm_experiment(loss, X, Y, channels_first), "padding-in-loss")
    assert found(res, "padding-in-loss") == []
    assert check(res, "padding-in-loss").metrics["pad_gradient_share"] == 0.0
    # targets set to -100 at the padding: the default ignore_index skips them
    Y2 = np.where(Y == PAD, -100, Y)
    res = run_data(_lm_experiment(_flat_ce(None), X, Y2), "padding-in-loss")
    assert found(res, "padding-in-loss") == []


def test_a_frequent_tag_spread_through_the_sequence_is_not_padding() -> None:
    """NER-style tagging: tag 0 ("O") on ~80% of positions, everywhere in the sequence."""
    rng = np.random.default_rng(0)
    X = rng.integers(1, V, size=(300, L))
    Y = np.where(rng.random((300, L)) < 0.8, 0, rng.integers(1, 9, size=(300, L)))
    cand = pad_candidate(Y)
    assert cand is not None and cand.token == 0 and cand.share > 0.75 and cand.run_share < 0.5
    res = run_data(_lm_experiment(_flat_ce(None), X, Y), "padding-in-loss")
    assert found(res, "padding-in-loss") == []


def test_per_sample_labels_and_unpadded_text_are_not_checked_or_quiet() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    y = np.where(rng.random(300) < 0.9, 0, 1)  # 90/10 imbalance, one label per sample
    res = run_data(experiment((X, y)), "padding-in-loss")
    assert check(res, "padding-in-loss").status == "skipped"
    T = rng.integers(0, V, size=(300, L))  # fixed-length chunks of text: no dominant id
    res = run_data(_lm_experiment(_flat_ce(None), T, np.roll(T, -1, 1)), "padding-in-loss")
    assert found(res, "padding-in-loss") == []


def test_padding_verdict_on_scripted_numbers() -> None:
    pad = PadCandidate(0, share=0.45, run_share=1.0)
    assert padding_verdict(pad, 1.0).severity == Severity.WARNING
    assert padding_verdict(pad, 0.0).severity is None
    assert padding_verdict(pad, None).severity == Severity.INFO
    assert padding_verdict(pad, 1.0, custom_step=True).severity == Severity.INFO
    assert padding_verdict(PadCandidate(0, 0.1, 1.0), 1.0).severity is None   # a little
    assert padding_verdict(PadCandidate(0, 0.8, 0.3), 1.0).severity is None   # not runs
