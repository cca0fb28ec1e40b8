"""Healthy look-alikes that once raised false alarms (issue 11), and the real-shaped bugs of
issue 13 next to their healthy twins, as tiny seeded experiments and hand-written loops."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_diabetes, load_digits, load_wine, make_classification
from sklearn.model_selection import train_test_split
from torch import nn

import nnrecipe
from nnrecipe import Experiment
from nnrecipe.core.findings import Finding


def _standardise(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = a.mean(0), a.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return ((a - mu) / sd).astype(np.float32), ((b - mu) / sd).astype(np.float32)


def diabetes_data(seed: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """353 training patients (a last batch of 1 at batch 32), standardised targets."""
    X, y = load_diabetes(return_X_y=True)
    Xt, Xv, yt, yv = train_test_split(X, y, test_size=0.2, random_state=seed)
    Xt, Xv = _standardise(Xt, Xv)
    mu, sd = yt.mean(), yt.std()
    return ((Xt, ((yt - mu) / sd).astype(np.float32)[:, None]),
            (Xv, ((yv - mu) / sd).astype(np.float32)[:, None]))


def mlp(d_in: int, d_out: int, hidden: int = 64, *, bn: bool = False, dropout: float = 0.0
        ) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(2):
        layers += [nn.Linear(d, hidden), *([nn.BatchNorm1d(hidden)] if bn else []), nn.ReLU(),
                   *([nn.Dropout(dropout)] if dropout else [])]
        d = hidden
    return nn.Sequential(*layers, nn.Linear(d, d_out))


def diabetes_mlp(seed: int, epochs: int = 15) -> Experiment:
    """Regression MLP, Adam 1e-3, 353 samples at batch 32."""
    train, val = diabetes_data(seed)
    return Experiment(model=lambda: mlp(10, 1), train=train, val=val, loss=nn.MSELoss(),
                      optimizer=lambda p: torch.optim.Adam(p, lr=1e-3), batch_size=32,
                      epochs=epochs, seed=seed)


def wine_bn_dropout(seed: int) -> Experiment:
    """A small BatchNorm + dropout MLP at batch 16: 9 batches per epoch, a low loss."""
    X, y = load_wine(return_X_y=True)
    Xt, Xv, yt, yv = train_test_split(X, y, test_size=0.2, random_state=seed, stratify=y)
    Xt, Xv = _standardise(Xt, Xv)
    return Experiment(model=lambda: mlp(13, 3, 32, bn=True, dropout=0.2), train=(Xt, yt),
                      val=(Xv, yv), loss=nn.CrossEntropyLoss(),
                      optimizer=lambda p: torch.optim.Adam(p, lr=1e-3), batch_size=16,
                      epochs=25, seed=seed)


def imbalanced_converged(seed: int) -> Experiment:
    """An 80/20 binary classifier with ~3% flipped labels, trained to a low loss."""
    X, y = make_classification(n_samples=2000, n_features=10, n_informative=5, n_classes=2,
                               weights=[0.8, 0.2], class_sep=2.5, flip_y=0.03,
                               random_state=seed)
    Xt, Xv, yt, yv = train_test_split(X, y, test_size=0.2, random_state=seed, stratify=y)
    Xt, Xv = _standardise(Xt, Xv)
    return Experiment(model=lambda: mlp(10, 2), train=(Xt, yt), val=(Xv, yv),
                      loss=nn.CrossEntropyLoss(), optimizer=lambda p: torch.optim.Adam(p, lr=1e-3),
                      batch_size=64, epochs=20, seed=seed)


def deep_relu(d_in: int, d_out: int, depth: int = 4, hidden: int = 32) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = d_in
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    return nn.Sequential(*layers, nn.Linear(d, d_out))


def digits_flat(seed: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    X, y = load_digits(return_X_y=True)
    Xt, Xv, yt, yv = train_test_split(X, y, test_size=0.2, random_state=seed, stratify=y)
    Xt, Xv = _standardise(Xt, Xv)
    return (Xt, yt), (Xv, yv)


def sgd_slow_start(seed: int) -> Experiment:
    """SGD 0.01 + momentum 0.9, a 4-layer ReLU MLP on digits: the loss can sit near its
    start for the first epochs (momentum building up in a flat region), then it trains to
    ~95% validation accuracy."""
    train, val = digits_flat(seed)
    return Experiment(model=lambda: deep_relu(64, 10), train=train, val=val,
                      loss=nn.CrossEntropyLoss(),
                      optimizer=lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
                      batch_size=32, epochs=15, seed=seed)


def digits_mlp(seed: int) -> Experiment:
    """A 64-64-10 MLP on digits, Adam 1e-3 (360 validation images, 10 classes)."""
    train, val = digits_flat(seed)
    return Experiment(model=lambda: mlp(64, 10), train=train, val=val,
                      loss=nn.CrossEntropyLoss(),
                      optimizer=lambda p: torch.optim.Adam(p, lr=1e-3), batch_size=64,
                      epochs=8, seed=seed)


# -------------------------------------------------------------------------- a tagger


class Tagger(nn.Module):
    """Embedding -> LSTM -> ReLU layer -> a tag per token: (N, T, tags) logits."""

    def __init__(self, vocab: int = 30, tags: int = 5) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, 32)
        self.rnn = nn.LSTM(32, 64, batch_first=True)
        self.hid = nn.Sequential(nn.Linear(64, 64), nn.ReLU())
        self.out = nn.Linear(64, tags)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.hid(self.rnn(self.emb(x))[0]))


class TokenCE(nn.Module):
    """Cross-entropy over (N, T, C) logits and (N, T) tags, flattened."""

    reduction = "mean"

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1),
                                           reduction=self.reduction)
        return loss.reshape(y.shape) if self.reduction == "none" else loss


def tagging(seed: int, n: int = 600, length: int = 12, vocab: int = 30, tags: int = 5
            ) -> tuple[np.ndarray, np.ndarray]:
    """Each token's tag comes from a lookup table (from the previous token for a third of
    the vocabulary), 5% of tags flipped."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, vocab, size=(n, length))
    table = rng.integers(0, tags, size=vocab)
    y = np.where(X % 3 == 0, table[np.roll(X, 1, axis=1)], table[X])
    flip = rng.random((n, length)) < 0.05
    y[flip] = rng.integers(0, tags, size=int(flip.sum()))
    return X.astype(np.int64), y.astype(np.int64)


def tagger(seed: int, lr: float) -> Experiment:
    """Adam at ``lr`` on the tagger (issue 13 #5: Adam 0.1+ blows it up and it stalls)."""
    X, y = tagging(seed)
    return Experiment(model=Tagger, train=(X[:480], y[:480]), val=(X[480:], y[480:]),
                      loss=TokenCE(), optimizer=lambda p: torch.optim.Adam(p, lr=lr),
                      task="classification", batch_size=32, epochs=6, seed=seed)


# ---------------------------------------------------------------- hand-written loops


def watched_loop(exp: Experiment, *, seed: int, epochs: int | None = None,
                 scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
                 step_scheduler_per_batch: bool = False, shuffled_val_labels: bool = False
                 ) -> list[Finding]:
    """Train ``exp`` in a plain loop under ``nnrecipe.watch``; return the findings at or above
    warning. The scheduler is stepped per epoch, or (the bug) per batch; validation accuracy
    is computed against the validation labels, or (the bug) against a shuffled copy of them
    (a second, shuffled loader zipped with the first)."""
    torch.manual_seed(seed)
    model = exp.model()
    opt = exp.make_optimizer(model.parameters())
    sched = scheduler(opt) if scheduler else None
    X, y = (torch.as_tensor(a) for a in exp.train)
    Xv, yv = (torch.as_tensor(a) for a in exp.val)
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y),
                                         batch_size=exp.batch_size, shuffle=True, generator=g)
    labels = yv[torch.randperm(len(yv), generator=g)] if shuffled_val_labels else yv
    with nnrecipe.watch(model, opt, on_finding=lambda f: None) as w:
        for _ in range(epochs or exp.epochs):
            model.train()
            for xb, yb in loader:
                opt.zero_grad()
                loss = exp.loss(model(xb), yb)
                loss.backward()
                opt.step()
                if sched is not None and step_scheduler_per_batch:
                    sched.step()
                w.step(loss)
            if sched is not None and not step_scheduler_per_batch:
                sched.step()
            model.eval()
            with torch.no_grad():
                out = model(Xv)
                val = {"loss": float(exp.loss(out, yv))}
                if not yv.is_floating_point():
                    val["accuracy"] = float((out.argmax(1) == labels).float().mean())
            w.epoch(val=val)
        final, _ = w.final_findings()
    return [f for f in final if f.severity.rank >= nnrecipe.Severity.WARNING.rank]
