"""The loss floor of the data: what a reference model predicts on samples it did not see.

A model that "cannot overfit" a few hundred samples is underfitting only if there was
something left to learn. Noisy targets (a regression whose inputs explain half the
variance), overlapping classes or a language whose next token is uncertain leave a loss that
no model removes without memorising the noise, and 300 steps are too few to memorise it. The
floor is estimated from the data alone: a flexible reference is fitted on four fifths of the
subset and scored, with the user's own loss, on the fifth it did not see (5 folds, every
sample scored once). Its held-out loss is an *upper* bound on the floor (the reference is not
perfect), so a model whose training loss sits at or below it has learnt what the data
allows; one far above it has not learnt what even the reference learns.

References, by the shape of the data:

- per-sample targets (classes under CrossEntropy/NLL, values under MSE/L1/Huber/BCE): a
  linear model, k nearest neighbours and gradient-boosted trees on the flattened,
  standardised inputs (integer token inputs as token counts); the best of them;
- per-position token targets of the same shape as token inputs (language models): n-gram
  tables, the next token from the current one and from the last two; the better of them.

Anything else (custom losses on other shapes) has no reference: the caller says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from nnrecipe.core.training import metrics_from_outputs, on_cpu, per_sample_losses

FOLDS = 5
PCA_DIMS = 64  # wider inputs are reduced first: neighbours and trees on 512 rows need few
MAX_VOCAB = 4096  # token counts as features up to this vocabulary
NEIGHBOURS = (5, 15, 40)
# Probabilities are mixed with the uniform distribution by the amount that scores best: a
# neighbour vote of 0 of 15 (or an overconfident tree) is not a probability of 0.
MIX = (1e-3, 1e-2, 3e-2, 0.1, 0.3)
SMOOTHING = (0.1, 0.5, 1.0)  # add-alpha for the n-gram tables
# Small boosted trees: 50 rounds at rate 0.2 fit the radius task's sphere (held-out loss 0.44
# vs the linear model's 0.71) at half the time of 100 at 0.1; a 10-class problem grows ten
# trees a round, so this is the reference's main cost (seconds, only when the target is missed)
TREES: dict[str, Any] = {"max_iter": 50, "learning_rate": 0.2, "max_leaf_nodes": 15,
                         "early_stopping": False}
CLASSIFY_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss)
VALUE_LOSSES = (nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss)
PROBABILITY_LOSSES = (nn.BCEWithLogitsLoss, nn.BCELoss)


@dataclass
class Floor:
    """The best reference's held-out loss on the subset (the user's loss and reduction) and
    its per-sample losses (for the paired noise)."""

    loss: float
    per_sample: np.ndarray
    reference: str
    tried: dict[str, float] = field(default_factory=dict)


def reference_floor(loss_fn: Callable[..., Any], X: torch.Tensor, y: torch.Tensor,
                    template: torch.Tensor, task: str, seed: int = 0) -> Floor | str:
    """The floor on (X, y), the subset the model trains on; ``template`` is the model's
    output on it (the reference's outputs take its shape). A string says why there is none."""
    loss_fn = on_cpu(loss_fn)
    folds = np.random.default_rng(seed).permutation(len(X)) % FOLDS
    if len(X) < 4 * FOLDS:
        return f"{len(X)} samples are too few for {FOLDS}-fold reference models"
    candidates: dict[str, torch.Tensor] | str
    if _per_position_tokens(X, y, template):
        candidates = _ngram_outputs(X.numpy(), y.numpy(), template, folds)
    else:
        candidates = _tabular_outputs(loss_fn, X, y, template, folds, seed)
    if isinstance(candidates, str):
        return candidates
    scored = {}
    for name, out in candidates.items():
        loss = metrics_from_outputs(out, y, loss_fn, task)["loss"]
        if math.isfinite(loss):
            scored[name] = (loss, out)
    if not scored:
        return "the reference models' outputs did not score under this loss"
    best = min(scored, key=lambda k: scored[k][0])
    per_sample = per_sample_losses(loss_fn, scored[best][1], y).numpy().astype(float)
    return Floor(scored[best][0], per_sample, best, {k: v[0] for k, v in scored.items()})


# ------------------------------------------------------------------ language models


def _per_position_tokens(X: torch.Tensor, y: torch.Tensor, template: torch.Tensor) -> bool:
    return (not X.is_floating_point() and not y.is_floating_point() and X.ndim == 2
            and tuple(y.shape) == tuple(X.shape) and template.ndim == 3
            and (tuple(template.shape[:2]) == tuple(X.shape)
                 or (template.shape[0], template.shape[2]) == tuple(X.shape)))


def _ngram_outputs(X: np.ndarray, y: np.ndarray, template: torch.Tensor, folds: np.ndarray
                   ) -> dict[str, torch.Tensor] | str:
    """Out-of-fold log-probabilities of the next token from n-gram counts, shaped like
    ``template`` ((N, T, C) or (N, C, T))."""
    last = tuple(template.shape[:2]) == X.shape
    classes = int(template.shape[2] if last else template.shape[1])
    if X.min() < 0 or y.min() < 0 or y.max() >= classes:
        return "token ids outside the model's output classes"
    vocab = int(max(X.max(), y.max())) + 2  # one more id: "before the start"
    outputs = {}
    for order, name in ((1, "bigram table (next token from the current one)"),
                        (2, "trigram table (next token from the last two)")):
        context = np.zeros_like(X)
        for lag in range(order):
            shifted = np.full_like(X, vocab - 1)
            shifted[:, lag:] = X[:, :X.shape[1] - lag]
            context = context * vocab + shifted
        best: tuple[float, np.ndarray] | None = None
        for alpha in SMOOTHING:
            logp = np.zeros(X.shape + (classes,))
            for f in range(FOLDS):
                train, test = folds != f, folds == f
                keys, inverse = np.unique(context[train].ravel(), return_inverse=True)
                counts = np.zeros((len(keys), classes))
                np.add.at(counts, (inverse, y[train].ravel()), 1.0)
                pos = np.searchsorted(keys, context[test].ravel())
                pos = np.minimum(pos, len(keys) - 1)
                seen = keys[pos] == context[test].ravel()
                rows = np.where(seen[:, None], counts[pos], 0.0) + alpha
                logp[test] = np.log(rows / rows.sum(1, keepdims=True)).reshape(
                    int(test.sum()), X.shape[1], classes)
            nll = -np.take_along_axis(logp, y[..., None], 2).mean()
            if best is None or nll < best[0]:
                best = (nll, logp)
        assert best is not None
        out = torch.from_numpy(best[1]).float()
        outputs[name] = out if last else out.permute(0, 2, 1).contiguous()
    return outputs


# ---------------------------------------------------------------- per-sample targets


def _features(X: torch.Tensor) -> np.ndarray | str:
    if X.is_floating_point():
        return X.reshape(len(X), -1).double().numpy()
    if X.ndim == 2 and X.min() >= 0 and X.max() < MAX_VOCAB:  # token ids: counts
        counts = np.zeros((len(X), int(X.max()) + 1))
        np.add.at(counts, (np.repeat(np.arange(len(X)), X.shape[1]), X.reshape(-1).numpy()),
                  1.0)
        return counts
    return "integer inputs that are not token sequences (or a vocabulary over 4096)"


def _tabular_outputs(loss_fn: Any, X: torch.Tensor, y: torch.Tensor, template: torch.Tensor,
                     folds: np.ndarray, seed: int) -> dict[str, torch.Tensor] | str:
    feats = _features(X)
    if isinstance(feats, str):
        return feats
    if not np.isfinite(feats).all():
        return "inputs hold NaN/inf"
    classify = isinstance(loss_fn, CLASSIFY_LOSSES) and template.ndim == 2 and y.ndim == 1 \
        and not y.is_floating_point()
    values = isinstance(loss_fn, VALUE_LOSSES + PROBABILITY_LOSSES) and y.numel() == \
        template.numel() and y.is_floating_point()
    if classify:
        return _class_outputs(loss_fn, feats, y, template, folds, seed)
    if values:
        return _value_outputs(loss_fn, feats, y, template, folds, seed)
    return (f"no reference for {type(loss_fn).__name__} with outputs {tuple(template.shape)} "
            f"and targets {tuple(y.shape)}")


def _prepare(feats: np.ndarray, seed: int) -> Any:
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    steps: list[Any] = [StandardScaler()]
    if feats.shape[1] > PCA_DIMS:
        steps.append(PCA(n_components=PCA_DIMS, random_state=seed))
    return make_pipeline(*steps)


def _models(classify: bool, seed: int, outputs: int, rows: int) -> dict[str, Any]:
    """The references for ``rows`` samples (a neighbour count of 80% of them or more is left
    out: a fold's training part would hardly hold that many)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    if classify:
        models: dict[str, Any] = {"linear (logistic regression)": LogisticRegression(max_iter=500)}
        models.update({f"{k} nearest neighbours": KNeighborsClassifier(k) for k in NEIGHBOURS
                       if k < 0.8 * rows})
        models["gradient-boosted trees"] = HistGradientBoostingClassifier(**TREES,
                                                                          random_state=seed)
        return models
    models = {"linear (ridge)": Ridge(1.0)}
    models.update({f"{k} nearest neighbours": KNeighborsRegressor(k) for k in NEIGHBOURS
                   if k < 0.8 * rows})
    if outputs == 1:
        models["gradient-boosted trees"] = HistGradientBoostingRegressor(**TREES,
                                                                         random_state=seed)
    return models


def _class_outputs(loss_fn: Any, feats: np.ndarray, y: torch.Tensor, template: torch.Tensor,
                   folds: np.ndarray, seed: int) -> dict[str, torch.Tensor]:
    from sklearn.base import clone

    labels = y.numpy()
    classes = template.shape[1]
    prep = _prepare(feats, seed)
    outputs = {}
    for name, model in _models(True, seed, 1, len(feats)).items():
        proba = np.zeros((len(feats), classes))
        for f in range(FOLDS):
            train, test = folds != f, folds == f
            present = np.unique(labels[train])
            if len(present) < 2:
                proba[test, present] = 1.0
                continue
            pipe = clone(prep)
            Z = pipe.fit_transform(feats[train])
            m = clone(model).fit(Z, labels[train])
            proba[np.ix_(test, m.classes_.astype(int))] = m.predict_proba(pipe.transform(feats[test]))
        best = min((_mixed(proba, eps) for eps in MIX),
                   key=lambda out: float(loss_fn(out, y)))
        outputs[name] = best
    return outputs


def _mixed(proba: np.ndarray, eps: float) -> torch.Tensor:
    p = (1 - eps) * proba + eps / proba.shape[1]
    return torch.from_numpy(np.log(p)).float()


def _value_outputs(loss_fn: Any, feats: np.ndarray, y: torch.Tensor, template: torch.Tensor,
                   folds: np.ndarray, seed: int) -> dict[str, torch.Tensor]:
    from sklearn.base import clone

    target = y.reshape(len(y), -1).double().numpy()
    prep = _prepare(feats, seed)
    outputs = {}
    for name, model in _models(False, seed, target.shape[1], len(feats)).items():
        pred = np.zeros_like(target)
        for f in range(FOLDS):
            train, test = folds != f, folds == f
            pipe = clone(prep)
            Z = pipe.fit_transform(feats[train])
            m = clone(model).fit(Z, target[train].ravel() if target.shape[1] == 1
                                 else target[train])
            pred[test] = np.asarray(m.predict(pipe.transform(feats[test]))).reshape(-1, target.shape[1])
        if isinstance(loss_fn, PROBABILITY_LOSSES):
            clipped = torch.from_numpy(np.clip(pred, 1e-3, 1 - 1e-3)).float()
            out = torch.logit(clipped) if isinstance(loss_fn, nn.BCEWithLogitsLoss) else clipped
        else:
            out = torch.from_numpy(pred).float()
        outputs[name] = out.reshape(template.shape)
    return outputs
