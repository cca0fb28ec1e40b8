"""Scoring trained models on a split and comparing two of them honestly.

A comparison of two short runs on one validation set has two sources of noise: the finite
validation set (measured exactly by the paired per-sample difference's standard error) and
the run-to-run spread of training itself (estimated from the reference trained with two
seeds). A difference counts only above :func:`noise_floor`, the larger of the two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nnrecipe.core.context import Context
from nnrecipe.core.training import (
    correct_per_sample,
    metrics_from_outputs,
    on_cpu,
    per_sample_losses,
    predict,
)

# A difference is believed when it exceeds twice the paired standard error: a difference the
# validation sample alone would produce less than ~2.5% of the time (one-sided).
SE_MULTIPLIER = 2.0


@dataclass(frozen=True)
class Metric:
    """The number a stage ranks models by: accuracy for classification, else the loss."""

    name: str
    higher_is_better: bool

    def gain(self, new: float, ref: float) -> float:
        """How much better ``new`` is than ``ref`` (positive: better)."""
        return (new - ref) if self.higher_is_better else (ref - new)

    def better(self, a: float, b: float) -> bool:
        return self.gain(a, b) > 0


def primary_metric(ctx: Context) -> Metric:
    if ctx.task_type == "classification":
        return Metric("accuracy", True)
    return Metric("loss", False)


@dataclass
class Scores:
    """A model's outputs on one split, scored as means and per sample."""

    split: str
    metrics: dict[str, float]
    losses: np.ndarray  # per-sample loss
    correct: np.ndarray | None  # per-sample accuracy (0/1, or the mean over outputs)
    outputs: torch.Tensor  # raw outputs on CPU (what ensembles average)
    targets: torch.Tensor

    def value(self, metric: Metric) -> float:
        return float(self.metrics.get(metric.name, math.nan))

    def per_sample(self, metric: Metric) -> np.ndarray | None:
        return self.correct if metric.name == "accuracy" else self.losses


def outputs_on(ctx: Context, model: nn.Module, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    loader = ctx.loader(split, shuffle=False, batch_size=max(ctx.experiment.batch_size, 256))
    return predict(model, loader, ctx.device)


def per_sample_correct(outputs: torch.Tensor, targets: torch.Tensor, loss_fn: Any = None
                       ) -> np.ndarray | None:
    """Per-sample accuracy in any output layout (``nnrecipe.core.training``), or None."""
    c = correct_per_sample(outputs, targets, loss_fn)
    return None if c is None else c.numpy().astype(float)


def score_outputs(ctx: Context, outputs: torch.Tensor, targets: torch.Tensor, split: str
                  ) -> Scores:
    loss_fn = on_cpu(ctx.experiment.loss)
    metrics = metrics_from_outputs(outputs, targets, loss_fn, ctx.task_type)
    losses = per_sample_losses(loss_fn, outputs, targets).numpy().astype(float)
    correct = per_sample_correct(outputs, targets, loss_fn) if "accuracy" in metrics else None
    return Scores(split, metrics, losses, correct, outputs, targets)


def score_model(ctx: Context, model: nn.Module, split: str) -> Scores:
    out, y = outputs_on(ctx, model, split)
    return score_outputs(ctx, out, y, split)


def paired_se(metric: Metric, a: Scores, b: Scores) -> float:
    """Standard error of the mean per-sample difference between two models on one split."""
    pa, pb = a.per_sample(metric), b.per_sample(metric)
    if pa is None or pb is None or len(pa) != len(pb) or len(pa) < 2:
        return math.inf
    d = pa - pb
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return math.inf
    return float(d.std(ddof=1) / math.sqrt(len(d)))


def noise_floor(metric: Metric, new: Scores, ref: Scores, seed_spread: float = 0.0) -> float:
    """The smallest gain worth believing: 2 paired standard errors, or the seed-to-seed
    spread of the reference, whichever is larger."""
    return max(SE_MULTIPLIER * paired_se(metric, new, ref), seed_spread)


def verdict(gain: float, floor: float) -> str:
    if not math.isfinite(gain):
        return "failed"
    if gain > floor:
        return "helped"
    if gain < -floor:
        return "hurt"
    return "within noise"
