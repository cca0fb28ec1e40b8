"""Offline data and small helpers shared by the real-world cases.

Everything is scikit-learn's bundled data or seeded synthetic data shaped like the original
(nothing is downloaded); every function takes the case's ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from healthy import data as hdata
from sklearn import datasets
from sklearn.model_selection import train_test_split
from torch import nn

Split = tuple[np.ndarray, np.ndarray]


def digits_images(seed: int) -> dict[str, Split]:
    """The 8x8 digits as (N, 1, 8, 8) images, normalised like MNIST in the examples
    (one global mean/std from the training split): the stand-in for MNIST."""
    return hdata.digits_images(seed)


def digits_flat(seed: int) -> dict[str, Split]:
    """The digits as 64 features in [0, 1] (pixel / 16), the way ToTensor() scales MNIST."""
    X, y = datasets.load_digits(return_X_y=True)
    X_tr, X_va, y_tr, y_va = train_test_split(X / 16.0, y, test_size=0.2, random_state=seed,
                                              stratify=y)
    return {"train": (X_tr.astype(np.float32), y_tr.astype(np.int64)),
            "val": (X_va.astype(np.float32), y_va.astype(np.int64))}


def gratings(seed: int, n: int = 1200, size: int = 16, classes: int = 4,
             noise: float = 0.6) -> dict[str, Split]:
    """CIFAR-shaped synthetic colour images (N, 3, size, size): each class is a grating of
    its own orientation and a colour tint, under pixel noise and a random phase; normalised
    per channel with the training statistics (the tutorials' Normalize)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = np.pi * y / classes + rng.normal(0, 0.15, size=n)
    freq = 2.5 + rng.uniform(-0.5, 0.5, size=n)
    phase = rng.uniform(0, 2 * np.pi, size=n)
    wave = np.sin(2 * np.pi * freq[:, None, None]
                  * (np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy)
                  + phase[:, None, None])
    tint = np.eye(3)[y % 3] * 0.5 + 0.5
    X = wave[:, None] * tint[:, :, None, None] + rng.normal(0, noise, size=(n, 3, size, size))
    X_tr, X_va, y_tr, y_va = train_test_split(X, y, test_size=0.2, random_state=seed, stratify=y)
    mu = X_tr.mean(axis=(0, 2, 3), keepdims=True)
    sd = X_tr.std(axis=(0, 2, 3), keepdims=True)
    return {"train": ((X_tr - mu) / sd).astype(np.float32), "val": ((X_va - mu) / sd).astype(
        np.float32), "y_train": y_tr.astype(np.int64), "y_val": y_va.astype(np.int64)}


def as_splits(d: dict[str, np.ndarray]) -> dict[str, Split]:
    return {"train": (d["train"], d["y_train"]), "val": (d["val"], d["y_val"])}


def markov_tokens(seed: int, n: int, vocab: int = 24, concentration: float = 0.1
                  ) -> np.ndarray:
    """A token stream from a sparse first-order Markov chain: a text-like corpus with
    structure a language model learns within a few hundred steps (vocabulary 24,
    concentration 0.1: next-token entropy ~1.5 nats against ~3.1 for the unigram)."""
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(rng.dirichlet(np.full(vocab, concentration), size=vocab), axis=1)
    out = np.zeros(n, dtype=np.int64)
    out[0] = rng.integers(0, vocab)
    u = rng.random(n)
    for t in range(1, n):
        out[t] = min(int(np.searchsorted(cdf[out[t - 1]], u[t])), vocab - 1)
    return out


def batchify(data: np.ndarray, bsz: int) -> torch.Tensor:
    """word_language_model's batchify: the stream cut into ``bsz`` columns (T, bsz)."""
    nbatch = len(data) // bsz
    return torch.as_tensor(data[:nbatch * bsz]).view(bsz, -1).t().contiguous()


def get_batch(source: torch.Tensor, i: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    seq_len = min(bptt, len(source) - 1 - i)
    return source[i:i + seq_len], source[i + 1:i + 1 + seq_len].reshape(-1)


def lm_sequences(seed: int, n: int = 1200, length: int = 20, vocab: int = 24
                 ) -> dict[str, Split]:
    """Next-token windows (N, T) -> (N, T) cut from one Markov stream, split 80/20."""
    stream = markov_tokens(seed, n * (length + 1) + 2, vocab)
    seq = stream[: n * (length + 1)].reshape(n, length + 1)
    X_tr, X_va, y_tr, y_va = train_test_split(seq[:, :-1], seq[:, 1:], test_size=0.2,
                                              random_state=seed)
    return {"train": (X_tr, y_tr), "val": (X_va, y_va)}


def loaders(splits: dict[str, Split], batch_size: int, seed: int, shuffle: bool = True
            ) -> tuple[Any, tuple[torch.Tensor, torch.Tensor]]:
    """A shuffled training DataLoader and the validation tensors."""
    from torch.utils.data import DataLoader, TensorDataset

    X, y = (torch.as_tensor(a) for a in splits["train"])
    Xv, yv = (torch.as_tensor(a) for a in splits["val"])
    loader = DataLoader(TensorDataset(X, y), batch_size=batch_size, shuffle=shuffle,
                        generator=torch.Generator().manual_seed(seed))
    return loader, (Xv, yv)


def evaluate(model: nn.Module, Xv: torch.Tensor, yv: torch.Tensor,
             loss_fn: Callable[..., torch.Tensor], classify: bool = True) -> dict[str, float]:
    """The examples' test(): eval mode, no_grad, mean loss and accuracy (then back to
    train mode is the caller's job, as in the originals)."""
    model.eval()
    with torch.no_grad():
        out = model(Xv)
        val = {"loss": float(loss_fn(out, yv))}
        if classify:
            val["accuracy"] = float((out.argmax(-1) == yv).float().mean())
    return val
