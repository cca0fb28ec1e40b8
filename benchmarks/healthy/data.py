"""Data for the healthy-training corpus: scikit-learn's bundled sets and seeded synthetic
data, split and standardised the way a careful practitioner would (statistics from the
training split only). Nothing is downloaded.

Every function takes a ``seed`` that draws the split (and the synthetic data), so the three
seeds of the corpus are three honest repetitions, not one split with three inits.
"""

from __future__ import annotations

import numpy as np
from sklearn import datasets
from sklearn.model_selection import train_test_split

Split = tuple[np.ndarray, np.ndarray]


def _standardise(train: np.ndarray, *others: np.ndarray, axis: int | tuple[int, ...] = 0
                 ) -> list[np.ndarray]:
    mean = train.mean(axis=axis, keepdims=True)
    std = train.std(axis=axis, keepdims=True)
    std = np.where(std > 0, std, 1.0)  # a constant feature stays 0, not NaN
    return [((a - mean) / std).astype(np.float32) for a in (train, *others)]


def split3(X: np.ndarray, y: np.ndarray, seed: int, *, val: float = 0.2, test: float = 0.0,
           stratify: bool = True, standardise: bool = True) -> dict[str, Split]:
    """Train/val(/test) split, stratified for classification, inputs standardised per feature
    with the training statistics."""
    strat = y if stratify else None
    rest = val + test
    X_tr, X_r, y_tr, y_r = train_test_split(X, y, test_size=rest, random_state=seed,
                                            stratify=strat)
    parts = {"train": (X_tr, y_tr)}
    if test:
        X_va, X_te, y_va, y_te = train_test_split(
            X_r, y_r, test_size=test / rest, random_state=seed,
            stratify=y_r if stratify else None)
        parts.update(val=(X_va, y_va), test=(X_te, y_te))
    else:
        parts["val"] = (X_r, y_r)
    if standardise:
        names = list(parts)
        xs = _standardise(*(parts[n][0] for n in names))
        parts = {n: (x, parts[n][1]) for n, x in zip(names, xs, strict=True)}
    return {n: (x.astype(np.float32), y_) for n, (x, y_) in parts.items()}


def classes(splits: dict[str, Split]) -> dict[str, Split]:
    return {n: (x, y.astype(np.int64)) for n, (x, y) in splits.items()}


def regression_targets(splits: dict[str, Split]) -> dict[str, Split]:
    """Targets standardised with the training mean/std, shaped (N, 1)."""
    y_tr = splits["train"][1].astype(np.float64)
    mu, sd = y_tr.mean(), y_tr.std()
    return {n: (x, ((y.astype(np.float64) - mu) / sd).astype(np.float32).reshape(-1, 1))
            for n, (x, y) in splits.items()}


# ------------------------------------------------------------------ scikit-learn bundled


def digits_flat(seed: int, test: float = 0.0) -> dict[str, Split]:
    """1797 8x8 digits as 64 features (several pixels are constant in every image)."""
    X, y = datasets.load_digits(return_X_y=True)
    return classes(split3(X.astype(np.float32), y, seed, test=test))


def digits_images(seed: int) -> dict[str, Split]:
    """Digits as (N, 1, 8, 8) images, standardised by the training set's global mean/std."""
    X, y = datasets.load_digits(return_X_y=True)
    X = X.reshape(-1, 1, 8, 8).astype(np.float32)
    s = split3(X, y, seed, standardise=False)
    xs = _standardise(*(s[n][0] for n in s), axis=(0, 1, 2, 3))
    return classes({n: (x, s[n][1]) for n, x in zip(s, xs, strict=True)})


def iris(seed: int) -> dict[str, Split]:
    X, y = datasets.load_iris(return_X_y=True)
    return classes(split3(X, y, seed))


def wine(seed: int) -> dict[str, Split]:
    X, y = datasets.load_wine(return_X_y=True)
    return classes(split3(X, y, seed))


def breast_cancer(seed: int) -> dict[str, Split]:
    X, y = datasets.load_breast_cancer(return_X_y=True)
    return classes(split3(X, y, seed))


def diabetes(seed: int) -> dict[str, Split]:
    """442 patients, 10 features, a continuous target: 353 training samples at an 80/20
    split (a last batch of 1 at batch size 32)."""
    X, y = datasets.load_diabetes(return_X_y=True)
    return regression_targets(split3(X, y, seed, stratify=False))


# ------------------------------------------------------------------------ synthetic


def hard_classes(seed: int, n: int, *, d: int = 20, classes_: int = 4, informative: int = 8,
                 sep: float = 1.0, flip: float = 0.03, weights: list[float] | None = None,
                 val: float = 0.2) -> dict[str, Split]:
    """make_classification with overlapping clusters and flipped labels: models cannot reach
    zero loss (the Bayes error is a few percent)."""
    X, y = datasets.make_classification(
        n_samples=n, n_features=d, n_informative=informative, n_redundant=2,
        n_classes=classes_, n_clusters_per_class=2, class_sep=sep, flip_y=flip,
        weights=weights, random_state=seed)
    return classes(split3(X, y, seed, val=val))


def moons(seed: int, n: int = 1000, noise: float = 0.25) -> dict[str, Split]:
    X, y = datasets.make_moons(n_samples=n, noise=noise, random_state=seed)
    return classes(split3(X, y, seed))


def friedman(seed: int, n: int, noise: float = 1.0) -> dict[str, Split]:
    """Friedman #1: a smooth non-linear function of 5 of 10 features, plus noise."""
    X, y = datasets.make_friedman1(n_samples=n, n_features=10, noise=noise, random_state=seed)
    return regression_targets(split3(X, y, seed, stratify=False))


def multilabel(seed: int, n: int = 2000, d: int = 20, labels: int = 5) -> dict[str, Split]:
    """make_multilabel_classification: several 0/1 labels per sample (BCE-with-logits)."""
    X, Y = datasets.make_multilabel_classification(
        n_samples=n, n_features=d, n_classes=labels, n_labels=2, random_state=seed)
    X = np.log1p(X)  # word-count-like features: compress before standardising
    s = split3(X, Y, seed, stratify=False)
    return {k: (x, y.astype(np.float32)) for k, (x, y) in s.items()}


def tokens_majority(seed: int, n: int = 2000, length: int = 20, vocab: int = 12,
                    noise: float = 0.05) -> dict[str, Split]:
    """Token sequences; the label is which of tokens 1/2/3 appears most often (ties to the
    lowest), with a few labels flipped: a sequence-level task an RNN must count for."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, vocab, size=(n, length))
    counts = np.stack([np.equal(X, t).sum(1) for t in (1, 2, 3)], 1)
    y = counts.argmax(1)
    flip = rng.random(n) < noise
    y[flip] = rng.integers(0, 3, size=int(flip.sum()))
    return _split_tokens(X, y, seed)


def tokens_next(seed: int, n: int = 1500, length: int = 24, vocab: int = 10
                ) -> dict[str, Split]:
    """Next-token prediction on a noisy second-order Markov chain: the target at t is the
    input at t+1; the chain's entropy keeps the loss well above zero."""
    rng = np.random.default_rng(seed)
    table = rng.dirichlet(np.full(vocab, 0.3), size=(vocab, vocab))
    seq = np.zeros((n, length + 1), dtype=np.int64)
    seq[:, :2] = rng.integers(0, vocab, size=(n, 2))
    u = rng.random((n, length + 1))
    for t in range(2, length + 1):
        cdf = np.cumsum(table[seq[:, t - 2], seq[:, t - 1]], axis=1)
        seq[:, t] = np.minimum((u[:, t, None] > cdf).sum(1), vocab - 1)
    return _split_tokens(seq[:, :-1], seq[:, 1:], seed, stratify=False)


def _split_tokens(X: np.ndarray, y: np.ndarray, seed: int, stratify: bool = True
                  ) -> dict[str, Split]:
    X_tr, X_va, y_tr, y_va = train_test_split(X, y, test_size=0.2, random_state=seed,
                                              stratify=y if stratify else None)
    return {"train": (X_tr.astype(np.int64), y_tr.astype(np.int64)),
            "val": (X_va.astype(np.int64), y_va.astype(np.int64))}


def noisy_waves(seed: int, n: int = 1200, length: int = 30) -> dict[str, Split]:
    """Continuous sequences (N, T, 2): sine waves of three frequency bands plus noise; the
    label is the band."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    freq = (0.08 + 0.07 * y + rng.normal(0, 0.025, size=n))[:, None]
    t = np.arange(length)[None, :]
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    a = np.sin(2 * np.pi * freq * t + phase) + rng.normal(0, 0.6, size=(n, length))
    b = np.cos(2 * np.pi * freq * t + phase) + rng.normal(0, 0.6, size=(n, length))
    X = np.stack([a, b], axis=2).astype(np.float32)
    X_tr, X_va, y_tr, y_va = train_test_split(X, y, test_size=0.2, random_state=seed, stratify=y)
    mu, sd = X_tr.mean(), X_tr.std()
    return {"train": ((X_tr - mu) / sd, y_tr.astype(np.int64)),
            "val": ((X_va - mu) / sd, y_va.astype(np.int64))}
