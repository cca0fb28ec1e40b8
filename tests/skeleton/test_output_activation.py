"""``output-activation`` and the graph-based half of ``double-softmax``: the verdict on scripted
statistics, then each bug on a tiny real run next to its healthy look-alikes (custom losses
that use softmax legitimately, activations whose range covers the targets)."""

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nnrecipe.skeleton.double_softmax import squashed_twice
from nnrecipe.skeleton.output_activation import OutputStats, activation_verdict
from tests.skeleton import zoo
from tests.toys import classification_experiment, mlp, regression_data, regression_experiment

CODES = ("output-activation", "double-softmax")


def _stats(last_op: str = "AddmmBackward0", lo: float = -2.0, hi: float = 2.0, zeros: float = 0.0,
           row: float = 1.0, col: float = 1.0, constant: bool = False, width: int = 3
           ) -> OutputStats:
    return OutputStats(last_op, lo, hi, zeros, row, col, constant, width)


def test_activation_verdict() -> None:
    assert activation_verdict("logits", _stats()).problem == ""
    relu = _stats("ReluBackward0", 0.0, 2.0, 0.5)
    assert activation_verdict("logits", relu).problem == "rectified-logits"
    assert activation_verdict("binary-logits", relu).problem == "rectified-logits"
    # a rectifier behind a view or dropout: nothing negative and many exact zeros
    assert activation_verdict("logits", _stats("MulBackward0", 0.0, 2.0, 0.3)).problem \
        == "rectified-logits"
    assert activation_verdict("logits", _stats("SigmoidBackward0", 0.1, 0.9)).problem \
        == "bounded-logits"
    # sigmoid into BCE-with-logits is double-softmax's "sigmoid twice", not reported here
    assert activation_verdict("binary-logits", _stats("SigmoidBackward0", 0.1, 0.9)).problem == ""
    one = _stats("SoftmaxBackward0", 1.0, 1.0, constant=True, width=1)
    assert activation_verdict("values", one).problem == "single-unit-softmax"
    batch = _stats("SoftmaxBackward0", 0.0, 0.5, row=0.7, col=1e-7)
    assert activation_verdict("", batch).problem == "softmax-over-batch"
    ok = _stats("SoftmaxBackward0", 0.0, 0.9, row=1e-7, col=3.0)
    assert activation_verdict("probabilities", ok).problem == ""
    v = activation_verdict("values", relu, unreachable=0.48)
    assert v.problem == "unreachable-targets" and v.severity.value == "error"
    assert activation_verdict("values", relu, unreachable=0.10).severity.value == "warning"
    assert activation_verdict("values", relu, unreachable=0.01).problem == ""
    assert activation_verdict("values", _stats(), unreachable=None).problem == ""


def test_squashed_twice_on_graph_pairs() -> None:
    assert squashed_twice([("SoftmaxBackward0", "LogSoftmaxBackward0", True)]) is not None
    assert squashed_twice([("SigmoidBackward0", "BinaryCrossEntropyWithLogitsBackward0",
                            False)]) is not None
    # log(softmax) is a (less stable) log-softmax; softmax into MSE is a Brier score
    assert squashed_twice([("SoftmaxBackward0", "LogBackward0", True),
                           ("SoftmaxBackward0", "MseLossBackward0", True)]) is None


# ------------------------------------------------------------------------- models


def _ends_in(act: nn.Module, d_in: int = 10, d_out: int = 3) -> Any:
    return lambda: nn.Sequential(mlp(d_in, d_out), act)


def _binary() -> tuple[np.ndarray, np.ndarray]:
    X, y = classification_experiment().train
    return X, (y == 0).astype(np.float32).reshape(-1, 1)


def hidden_softmax_ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A custom loss that 'normalises' the outputs before the cross-entropy."""
    return F.cross_entropy(F.softmax(out, dim=1), y)


def focal_loss(out: torch.Tensor, y: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    logp = F.log_softmax(out, dim=1).gather(1, y[:, None]).squeeze(1)
    p = F.softmax(out, dim=1).gather(1, y[:, None]).squeeze(1)
    return (-(1 - p) ** gamma * logp).mean()


def brier_plus_ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    onehot = F.one_hot(y, out.shape[1]).float()
    return F.cross_entropy(out, y) + F.mse_loss(F.softmax(out, dim=1), onehot)


def manual_nll(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.nll_loss(torch.log(F.softmax(out, dim=1) + 1e-9), y)


def nll_of_log(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.nll_loss(torch.log(out + 1e-9), y)


def _positive_targets() -> Any:
    X, y = regression_data()
    y = y - y.min() + 0.1  # counts-like, > 0
    return dict(train=(X[:300], y[:300]), val=(X[300:], y[300:]))


def _unit_targets() -> Any:
    X, y = regression_data()
    y = (y - y.min()) / (y.max() - y.min())  # min-max scaled to [0, 1]
    return dict(train=(X[:300], y[:300]), val=(X[300:], y[300:]))


BROKEN = {
    "ReLU on logits, CrossEntropy": (
        lambda: classification_experiment(model=_ends_in(nn.ReLU())),
        "output-activation", "rectified-logits", "error"),
    "ReLU on a binary logit, BCEWithLogits": (
        lambda: classification_experiment(model=_ends_in(nn.ReLU(), d_out=1),
                                          loss=nn.BCEWithLogitsLoss(),
                                          train=_binary(), val=_binary(), task="classification"),
        "output-activation", "rectified-logits", "error"),
    "sigmoid on logits, CrossEntropy": (
        lambda: classification_experiment(model=_ends_in(nn.Sigmoid())),
        "output-activation", "bounded-logits", "error"),
    "softmax over a single unit": (
        lambda: classification_experiment(model=_ends_in(nn.Softmax(dim=1), d_out=1),
                                          loss=nn.BCELoss(), train=_binary(), val=_binary(),
                                          task="classification"),
        "output-activation", "single-unit-softmax", "error"),
    "softmax over the batch, custom NLL of log": (
        lambda: classification_experiment(model=_ends_in(nn.Softmax(dim=0)), loss=nll_of_log),
        "output-activation", "softmax-over-batch", "error"),
    "ReLU on standardised regression targets": (
        lambda: regression_experiment(model=lambda: nn.Sequential(mlp(8, 1), nn.ReLU())),
        "output-activation", "unreachable-targets", "error"),
    "sigmoid on standardised regression targets": (
        lambda: regression_experiment(model=lambda: nn.Sequential(mlp(8, 1), nn.Sigmoid())),
        "output-activation", "unreachable-targets", "error"),
    "softmax hidden inside a custom loss": (
        lambda: classification_experiment(loss=hidden_softmax_ce),
        "double-softmax", None, "error"),
    "a softmax model into a custom cross-entropy": (
        lambda: classification_experiment(model=_ends_in(nn.Softmax(dim=1)),
                                          loss=lambda out, y: F.cross_entropy(out, y)),
        "double-softmax", None, "error"),
}


@pytest.mark.parametrize("bug", list(BROKEN))
def test_fires(bug: str) -> None:
    make, code, problem, severity = BROKEN[bug]
    findings, _, _ = zoo.run_checks(make(), *CODES)
    (f,) = [f for f in findings if f.code == code]
    assert f.severity.value == severity, f.message
    if problem:
        assert f.evidence["problem"] == problem


HEALTHY = {
    "linear logits, CrossEntropy": classification_experiment,
    "log_softmax model, NLLLoss": lambda: classification_experiment(
        model=_ends_in(nn.LogSoftmax(dim=1)), loss=nn.NLLLoss()),
    "focal loss (softmax and log_softmax of the logits)": lambda: classification_experiment(
        loss=focal_loss),
    "cross-entropy + Brier score on the softmax": lambda: classification_experiment(
        loss=brier_plus_ce),
    "log(softmax) + nll in a custom loss": lambda: classification_experiment(loss=manual_nll),
    "ReLU output, targets > 0": lambda: regression_experiment(
        model=lambda: nn.Sequential(mlp(8, 1), nn.ReLU()), **_positive_targets()),
    "softplus output, targets > 0": lambda: regression_experiment(
        model=lambda: nn.Sequential(mlp(8, 1), nn.Softplus()), **_positive_targets()),
    "sigmoid output, targets in [0, 1]": lambda: regression_experiment(
        model=lambda: nn.Sequential(mlp(8, 1), nn.Sigmoid()), **_unit_targets()),
    "linear regression output": regression_experiment,
    "sequence logits (N, C, T)": zoo.transformer_experiment,
}


@pytest.mark.parametrize("name", list(HEALTHY))
def test_quiet(name: str) -> None:
    findings, checks, _ = zoo.run_checks(HEALTHY[name](), *CODES)
    assert findings == [], [f.message for f in findings]
    assert all(checks[c].status == "passed" for c in CODES)
