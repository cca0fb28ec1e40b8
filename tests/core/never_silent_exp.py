"""Experiments for tests/core/test_never_silent.py: each is a way a run could pass silently or
lose work (``nnrecipe CMD tests/core/never_silent_exp.py:FUNCTION``).

Environment read (set by the tests): ``NNRECIPE_TEST_MARKER`` -- a file the slow experiment
creates once its training has passed ``MARK_AT_STEP`` steps (so a test knows when to send a
signal); ``<marker>.slow`` -- while it exists, every evaluation forward sleeps, so what
follows an interrupt takes long enough to be interrupted again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nnrecipe import Experiment
from tests.toys import blobs, classification_experiment, mlp

MARK_AT_STEP = 25  # ~2.5 epochs of 300 samples at batch 32: two validated epochs, a checkpoint
STEP_SLEEP_S = 0.02  # a slow step, so that the run is still training when the signal comes
_calls = {"n": 0}


def _marker() -> Path | None:
    p = os.environ.get("NNRECIPE_TEST_MARKER")
    return Path(p) if p else None


class SlowEval(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = mlp(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        marker = _marker()
        if not self.training and marker is not None and marker.with_suffix(".slow").exists():
            time.sleep(0.5)
        return self.net(x)


def _slow_step(model: nn.Module, batch: Any, loss_fn: Any, opt: torch.optim.Optimizer
               ) -> torch.Tensor:
    _calls["n"] += 1
    marker = _marker()
    if marker is not None and _calls["n"] == MARK_AT_STEP:
        marker.write_text("training")
    time.sleep(STEP_SLEEP_S)
    x, y = batch
    opt.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    return loss


def slow() -> Experiment:
    """Healthy, but long: 300 epochs of slow steps (a signal stops it)."""
    return classification_experiment(model=SlowEval, train_step=_slow_step, epochs=300,
                                      options={"early_stopping": False}, name="slow")


def _crashing_step(model: nn.Module, batch: Any, loss_fn: Any, opt: torch.optim.Optimizer
                   ) -> torch.Tensor:
    _calls["n"] += 1
    if _calls["n"] == 5:  # validation takes one step: the training run's 4th crashes
        raise RuntimeError("the data server went away")
    x, y = batch
    opt.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    return loss


def crash_in_training() -> Experiment:
    return classification_experiment(train_step=_crashing_step, epochs=2, name="crash")


def _no_return(model: nn.Module, batch: Any, loss_fn: Any, opt: torch.optim.Optimizer) -> None:
    x, y = batch
    opt.zero_grad()
    loss_fn(model(x), y).backward()
    opt.step()


def returns_none() -> Experiment:
    return classification_experiment(train_step=_no_return, name="none")


SHARED = mlp(10, 3)


def same_model() -> Experiment:
    return classification_experiment(model=lambda: SHARED, name="same")


def shared_layer() -> Experiment:
    return classification_experiment(model=lambda: nn.Sequential(SHARED, nn.ReLU(), nn.Linear(3, 3)),
                                     name="shared")


# ---- layouts and degenerate data (run in-process through nnrecipe.run)

V, T = 8, 12


class CausalConv(nn.Module):
    """A tiny next-token model with nanoGPT's (B, T, V) logits."""

    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, d)
        self.conv = nn.Conv1d(d, d, 2)
        self.head = nn.Linear(d, V)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.emb(x).transpose(1, 2)
        h = torch.relu(self.conv(nn.functional.pad(h, (1, 0))))
        return self.head(h.transpose(1, 2))


class FlatCrossEntropy(nn.Module):
    """nanoGPT's loss: logits (B, T, V) and targets (B, T) flattened."""

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def _tokens(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, V, size=(n, T))
    y = (x + np.roll(x, 1, axis=1)) % V  # depends on the current and the previous token
    y[:, 0] = x[:, 0]
    return torch.tensor(x), torch.tensor(y)


def sequence(seed: int = 0) -> Experiment:
    return Experiment(model=CausalConv, train=_tokens(256, seed), val=_tokens(64, seed + 1),
                      loss=FlatCrossEntropy(), optimizer=lambda p: torch.optim.Adam(p, lr=1e-2),
                      batch_size=32, epochs=3, seed=seed, causal=True, name="sequence",
                      options={"short_run_steps": 30})


def _bn_net() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def batchnorm_singleton(seed: int = 0) -> Experiment:
    """65 training samples at batch 64: a last batch of one sample, and BatchNorm."""
    X, y = blobs(n=65 + 64, seed=seed)
    return Experiment(model=_bn_net, train=(X[:65], y[:65]), val=(X[65:], y[65:]),
                      loss=nn.CrossEntropyLoss(), batch_size=64, epochs=3, seed=seed,
                      name="bn-singleton")


def huge_batch() -> Experiment:
    return classification_experiment(batch_size=10**12, epochs=2, name="huge-batch")


def no_figures() -> Experiment:
    """Quick (two full-batch epochs), and no figures: only findings.json, report.html and
    the checkpoint are written."""
    return classification_experiment(batch_size=300, epochs=2, name="no-figures",
                                      options={"train_figures": False})


def one_sample() -> Experiment:
    X, y = blobs(n=10)
    return Experiment(model=lambda: mlp(10, 3), train=(X[:1], y[:1]), loss=nn.CrossEntropyLoss(),
                      epochs=2, name="one-sample")


def nan_rows() -> Experiment:
    X, y = blobs(n=400)
    X[5, 3] = np.nan
    X[17, :] = np.nan
    return classification_experiment(train=(X[:300], y[:300]), name="nan-rows")
