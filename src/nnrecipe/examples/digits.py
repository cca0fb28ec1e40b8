"""The bundled demo: scikit-learn's 8x8 handwritten digits, a small CNN, Adam.

A healthy setup: inputs standardised with the *training* statistics, a stratified split, the
default init, Adam at a constant learning rate. ``nnrecipe demo`` runs the whole recipe on it.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from nnrecipe import Experiment


class DigitsCNN(nn.Module):
    def __init__(self, width: int = 16, dropout: float = 0.0) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * 16, 64), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(64, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def digits_splits(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train/val/test (60/20/20, stratified), images (N, 1, 8, 8) standardised with the
    training set's mean and std."""
    X, y = load_digits(return_X_y=True)
    X = X.reshape(-1, 1, 8, 8).astype(np.float32)
    X_tr, X_rest, y_tr, y_rest = train_test_split(X, y, test_size=0.4, stratify=y, random_state=seed)
    X_va, X_te, y_va, y_te = train_test_split(X_rest, y_rest, test_size=0.5, stratify=y_rest,
                                              random_state=seed)
    mean, std = X_tr.mean(), X_tr.std()
    return {name: ((Xs - mean) / std, ys.astype(np.int64))
            for name, Xs, ys in (("train", X_tr, y_tr), ("val", X_va, y_va), ("test", X_te, y_te))}


def pooled_4x4(x: torch.Tensor) -> torch.Tensor:
    """The regularize stage's "smaller input": 2x2-average-pooled to 4x4, then upsampled back
    to 8x8 so the same model runs on it (a quarter of the input dimensions)."""
    return nn.functional.interpolate(nn.functional.avg_pool2d(x, 2), scale_factor=2,
                                     mode="nearest")


def experiment() -> Experiment:
    splits = digits_splits(seed=0)
    return Experiment(
        # width and dropout are knobs the regularize and tune stages turn
        model=lambda width=16, dropout=0.0: DigitsCNN(width=width, dropout=dropout),
        train=splits["train"], val=splits["val"], test=splits["test"],
        loss=nn.CrossEntropyLoss(),
        optimizer=lambda params: torch.optim.Adam(params, lr=1e-3),
        task="classification", batch_size=64, epochs=15, seed=0,
        name="digits", capacity_arg="width", capacity_default=16,
        options={"smaller_input": {"name": "4x4 (pooled)", "transform": pooled_4x4}},
    )
