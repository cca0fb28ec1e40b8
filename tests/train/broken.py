"""Tiny training runs broken on purpose (and their healthy twins), for the train stage tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from nnrecipe import Experiment
from tests.toys import blobs, classification_experiment, mlp, regression_data, regression_experiment


def deep_mlp(d_in: int, d_out: int, *, depth: int, hidden: int = 32,
             act: type[nn.Module] = nn.ReLU, weight_gain: float = 1.0, bias: float | None = None
             ) -> nn.Module:
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(depth):
        lin = nn.Linear(d, hidden)
        with torch.no_grad():
            lin.weight.mul_(weight_gain)
            if bias is not None:
                lin.bias.fill_(bias)
        layers += [lin, act()]
        d = hidden
    layers.append(nn.Linear(d, d_out))
    return nn.Sequential(*layers)


def lr_far_too_high(**kw: Any) -> Experiment:
    """Adam at 0.5: the loss spikes and climbs."""
    return classification_experiment(optimizer=lambda p: torch.optim.Adam(p, lr=0.5), **kw)


def lr_too_low(**kw: Any) -> Experiment:
    """Plain SGD at 1e-3: weights barely move, the loss creeps down."""
    return classification_experiment(optimizer=lambda p: torch.optim.SGD(p, lr=1e-3), **kw)


def deep_sigmoid(**kw: Any) -> Experiment:
    """Ten sigmoid layers with the default init: the first layers get almost no gradient."""
    return classification_experiment(model=lambda: deep_mlp(10, 3, depth=10, act=nn.Sigmoid),
                                     **kw)


def negative_bias(**kw: Any) -> Experiment:
    """Biases initialised at -3 before every ReLU: most units never fire."""
    return classification_experiment(model=lambda: deep_mlp(10, 3, depth=2, bias=-3.0), **kw)


def saturated_tanh(**kw: Any) -> Experiment:
    """Unscaled inputs (x30) into tanh layers: outputs pinned at ±1."""
    X, y = blobs()
    X = X * 30
    return classification_experiment(model=lambda: deep_mlp(10, 3, depth=2, act=nn.Tanh),
                                     train=(X[:300], y[:300]), val=(X[300:], y[300:]), **kw)


def exploding_depth(**kw: Any) -> Experiment:
    """Twelve ReLU layers initialised 2x too large: gradients grow towards the input."""
    return classification_experiment(
        model=lambda: deep_mlp(10, 3, depth=12, weight_gain=2.0),
        optimizer=lambda p: torch.optim.SGD(p, lr=1e-6), **kw)


def noisy_blobs(n: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    X, y = blobs(n=n, seed=0, sep=1.0)
    rng = np.random.default_rng(seed)
    flip = rng.random(n) < noise
    y = y.copy()
    y[flip] = rng.integers(0, 3, size=int(flip.sum()))
    return X, y


def tiny_data_big_model(**kw: Any) -> Experiment:
    """60 noisy samples, a 512-wide MLP, 40 epochs: it memorises the noise."""
    X, y = noisy_blobs(260, 0.3, seed=1)
    return classification_experiment(
        model=lambda: mlp(10, 3, hidden=512), train=(X[:60], y[:60]), val=(X[60:], y[60:]),
        batch_size=20, epochs=40, **kw)


def with_dropout(p: float = 0.7, epochs: int = 15, **kw: Any) -> Experiment:
    """Dropout 0.7 after both hidden layers: the training loss, measured with dropout on, is
    far above the validation loss measured with it off. (At 0.5 the eval-mode model is
    confident enough that its per-sample validation losses are heavy-tailed, and their noise
    margin, 19-27%, hid the 21-34% gap on 6 seeds of 10; at 0.8 and 0.9 the network
    underfits and the gap shrinks.)"""
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Dropout(p),
                                      nn.Linear(64, 64), nn.ReLU(), nn.Dropout(p))
            self.out = nn.Linear(64, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.body(x))

    X, y = noisy_blobs(800, 0.0, seed=0)
    return classification_experiment(model=Net, train=(X[:300], y[:300]),
                                     val=(X[300:], y[300:]), epochs=epochs, **kw)


def easier_validation(**kw: Any) -> Experiment:
    """Noisy training labels, clean validation labels: validation is easier than training."""
    Xn, yn = noisy_blobs(400, 0.4, seed=2)
    Xc, yc = noisy_blobs(400, 0.0, seed=2)
    return classification_experiment(train=(Xn[:300], yn[:300]), val=(Xc[300:], yc[300:]),
                                     epochs=15, **kw)


def exploding_regression(lr: float = 0.012, **kw: Any) -> Experiment:
    """Inputs 10x too large and plain SGD past its stability limit: every step multiplies
    the error, so the gradient norm grows geometrically."""
    X, y = regression_data()
    X = X * 10
    return regression_experiment(model=lambda: nn.Linear(8, 1), train=(X[:300], y[:300]),
                                 val=(X[300:], y[300:]),
                                 optimizer=lambda p: torch.optim.SGD(p, lr=lr), **kw)


def fluctuating(**kw: Any) -> Experiment:
    """Adam at a constant 0.1, batch 4, 16 epochs, on a linear problem a linear model solves
    up to a little noise (0.05): Adam's steps are ~lr whatever the gradient, so the weights
    never settle; they jitter around the solution by ~lr, and each epoch ends at a new random
    point. The validation loss is then the noise floor (0.0025) plus the excess loss of that
    point, often several times the floor, so it zig-zags from epoch to epoch on every seed.
    (SGD 0.1 with momentum on the tanh regression toy, used before, zig-zagged on 6 seeds of
    10: its excess loss is small against the misfit of the tanh target and drifts over
    several epochs; plain SGD's excess scales with the residual noise and stays under it.)"""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(400, 2)).astype(np.float32)
    y = (X @ np.array([1.0, -0.5]) + 0.05 * rng.normal(size=400)).astype(np.float32)
    return regression_experiment(model=lambda: nn.Linear(2, 1), train=(X[:300], y[:300, None]),
                                 val=(X[300:], y[300:, None]),
                                 optimizer=lambda p: torch.optim.Adam(p, lr=0.1), batch_size=4,
                                 epochs=16, options={"early_stopping": False}, **kw)


def huge_updates(**kw: Any) -> Experiment:
    """Plain SGD at 3.0 on noisy blobs (20% flipped labels keep the gradients O(1)): every step
    rewrites 10-70% of some weight matrix. (Adam at 0.05, used before, reached the 0.1 line on
    seed 0 only: its weights grow and the ratio falls to 0.03-0.08.)"""
    X, y = noisy_blobs(400, 0.2, seed=3)
    return classification_experiment(train=(X[:300], y[:300]), val=(X[300:], y[300:]),
                                     optimizer=lambda p: torch.optim.SGD(p, lr=3.0), epochs=12,
                                     **kw)


def tiny_updates(**kw: Any) -> Experiment:
    """SGD at 1e-6: weights move by ~1e-9 of their size per step."""
    return classification_experiment(optimizer=lambda p: torch.optim.SGD(p, lr=1e-6), **kw)


def bottleneck(**kw: Any) -> tuple[Experiment, dict[str, Any]]:
    """Ten classes squeezed through one linear unit: a linear model on the inputs does far
    better. Returns the experiment and the baselines the skeleton stage would hand over."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    X, y = blobs(n=600, classes=10, sep=2.0)
    lin = LogisticRegression(max_iter=300).fit(X[:400], y[:400])
    baselines = {"majority": {"loss": float(np.log(10))},
                 "linear": {"loss": float(log_loss(y[400:], lin.predict_proba(X[400:]),
                                                   labels=list(range(10))))}}
    exp = classification_experiment(
        model=lambda: nn.Sequential(nn.Linear(10, 1), nn.Linear(1, 10)),
        train=(X[:400], y[:400]), val=(X[400:], y[400:]),
        optimizer=lambda p: torch.optim.Adam(p, lr=1e-2), epochs=20, **kw)
    return exp, baselines
