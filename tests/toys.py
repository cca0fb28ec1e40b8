"""Tiny seeded experiments the tests share: healthy ones, and knobs to break them."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from nnrecipe import Experiment


def blobs(n: int = 400, d: int = 10, classes: int = 3, seed: int = 0, sep: float = 3.0
          ) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs, standardised: an easy, healthy classification problem."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, sep, size=(classes, d))
    y = np.arange(n) % classes
    rng.shuffle(y)
    X = centers[y] + rng.normal(0, 1, size=(n, d))
    X = (X - X.mean(0)) / X.std(0)
    return X.astype(np.float32), y.astype(np.int64)


def regression_data(n: int = 400, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=d)
    y = np.tanh(X @ w / np.sqrt(d)) * 2 + 0.1 * rng.normal(size=n)
    y = (y - y.mean()) / y.std()
    return X, y.astype(np.float32).reshape(-1, 1)


def mlp(d_in: int, d_out: int, hidden: int = 32, depth: int = 2) -> nn.Module:
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    layers.append(nn.Linear(d, d_out))
    return nn.Sequential(*layers)


def classification_experiment(**overrides: Any) -> Experiment:
    X, y = blobs()
    Xv, yv = blobs(n=200, seed=0)
    Xv, yv = Xv[:200], yv[:200]
    kw: dict[str, Any] = dict(
        model=lambda hidden=32: mlp(10, 3, hidden=hidden),
        train=(X[:300], y[:300]), val=(X[300:], y[300:]),
        loss=nn.CrossEntropyLoss(),
        optimizer=lambda p: torch.optim.Adam(p, lr=1e-3),
        batch_size=32, epochs=5, seed=0, name="blobs",
    )
    kw.update(overrides)
    return Experiment(**kw)


def regression_experiment(**overrides: Any) -> Experiment:
    X, y = regression_data()
    kw: dict[str, Any] = dict(
        model=lambda: mlp(8, 1), train=(X[:300], y[:300]), val=(X[300:], y[300:]),
        loss=nn.MSELoss(), optimizer=lambda p: torch.optim.Adam(p, lr=1e-3),
        batch_size=32, epochs=5, seed=0, name="regression",
    )
    kw.update(overrides)
    return Experiment(**kw)


class BiasedOutput(nn.Module):
    """Wraps a model and adds a large constant to one logit: an obviously wrong output bias."""

    def __init__(self, inner: nn.Module, bias: float = 8.0) -> None:
        super().__init__()
        self.inner = inner
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        shift = torch.zeros(out.shape[1], device=out.device)
        shift[0] = self.bias
        return out + shift


def step_without_optimizer_step(model: nn.Module, batch: Any, loss_fn: Any, optimizer: Any
                                ) -> torch.Tensor:
    """A user train_step with the classic bug: forgets optimizer.step()."""
    x, y = batch
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    return loss
