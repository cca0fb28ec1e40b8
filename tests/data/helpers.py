"""Shared set-up for the data-stage tests: healthy datasets as a sensible user prepares them,
and ways to plant problems in them."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import datasets
from sklearn.model_selection import train_test_split
from torch import nn

from nnrecipe import Experiment
from nnrecipe.api import run
from nnrecipe.core.findings import Finding
from nnrecipe.core.results import RunResult

LOADERS = {"digits": datasets.load_digits, "iris": datasets.load_iris,
           "wine": datasets.load_wine, "breast_cancer": datasets.load_breast_cancer}


def split_standardised(X: np.ndarray, y: np.ndarray, seed: int = 0, test_size: float = 0.25
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A stratified split, standardised per feature with the training statistics."""
    Xtr, Xva, ytr, yva = train_test_split(X, y, test_size=test_size, stratify=y,
                                          random_state=seed)
    mean, std = Xtr.mean(0), Xtr.std(0)
    std = np.where(std > 0, std, 1.0)
    return (((Xtr - mean) / std).astype(np.float32), ((Xva - mean) / std).astype(np.float32),
            ytr.astype(np.int64), yva.astype(np.int64))


def experiment(train: Any, val: Any = None, test: Any = None, **kw: Any) -> Experiment:
    """An experiment for the data stage (the model is never built)."""
    kw.setdefault("loss", nn.CrossEntropyLoss())
    return Experiment(model=lambda: nn.Identity(), train=train, val=val, test=test, seed=0, **kw)


def healthy(name: str) -> Experiment:
    X, y = LOADERS[name](return_X_y=True)
    Xtr, Xva, ytr, yva = split_standardised(X, y)
    return experiment((Xtr, ytr), (Xva, yva), name=name)


def blobs(n: int = 1000, d: int = 8, classes: int = 3, seed: int = 0, sep: float = 4.0
          ) -> tuple[np.ndarray, np.ndarray]:
    """Clean synthetic data: standardised Gaussian blobs, balanced classes."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, sep / np.sqrt(d), size=(classes, d)) * np.sqrt(d) / 2
    y = np.arange(n) % classes
    rng.shuffle(y)
    X = centers[y] + rng.normal(size=(n, d))
    X = (X - X.mean(0)) / X.std(0)
    return X.astype(np.float32), y.astype(np.int64)


def run_data(exp: Experiment, *only: str) -> RunResult:
    return run(exp, ["data"], only=list(only) if only else None)


def found(res: RunResult, code: str) -> list[Finding]:
    return [f for f in res.findings if f.code == code]


def check(res: RunResult, name: str) -> Any:
    return next(c for s in res.stages for c in s.checks if c.name == name)


def loud(res: RunResult) -> list[str]:
    """Findings at warning or error, as readable strings (for assertion messages)."""
    return [f"{f.severity.value} {f.code}: {f.message}" for f in res.findings
            if f.severity.value in ("warning", "error")]
