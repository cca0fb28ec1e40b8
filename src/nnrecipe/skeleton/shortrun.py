"""Short training runs shared by ``baseline-not-beaten`` and ``input-independent``.

One run of ``short_run_steps`` (default 100) steps on the real inputs, and, when asked, the
same run with every input zeroed at the model's entry (a forward pre-hook, so the user's own
``train_step`` runs unchanged). Both train with :func:`nnrecipe.core.fit.fit` from the run's
seed and are then evaluated sample by sample on the evaluation split: validation when there
is one, otherwise a seeded 20% of the training set held out of the run.

``ctx.state["skeleton_short_runs"]`` maps ``"real"``/``"zero"`` to :class:`ShortRun`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from nnrecipe.core import data as data_mod
from nnrecipe.core.context import Context
from nnrecipe.core.fit import fit
from nnrecipe.core.seeding import seed_everything
from nnrecipe.core.training import correct_per_sample as shared_correct_per_sample
from nnrecipe.core.training import metrics_from_outputs, on_cpu, per_sample_losses, predict

# By measurement: the healthy examples (blobs, regression, digits CNN, LSTM, causal
# transformer) are far past their dumb baselines within 100 Adam steps, while 100 steps stay
# a small share of the stage's budget ("a few hundred steps"). Users with slow-starting
# models can raise it: options={"short_run_steps": N}.
SHORT_RUN_STEPS = 100
EVAL_LIMIT = 2000  # samples evaluated: a standard error of ~1% on an accuracy
HOLDOUT_FRACTION = 0.2
STATE_KEY = "skeleton_short_runs"


@dataclass
class EvalSplit:
    split: str
    indices: list[int] | None  # evaluated samples of ``split`` (None: all)
    train_indices: list[int] | None  # samples the short runs train on (None: all)
    label: str


@dataclass
class ShortRun:
    steps: int
    step_losses: list[float]
    outputs: torch.Tensor
    targets: torch.Tensor
    per_sample: np.ndarray
    metrics: dict[str, float]
    correct: np.ndarray | None = None  # classification: per-sample 0/1
    extra: dict[str, Any] = field(default_factory=dict)


def evaluation_split(ctx: Context) -> EvalSplit:
    cached = ctx.state.get(STATE_KEY, {}).get("split")
    if cached is not None:
        return cached
    rng = np.random.default_rng(ctx.seed)
    if ctx.has_split("val"):
        n = data_mod.dataset_len(ctx.dataset("val"), "val")
        idx = None if n <= EVAL_LIMIT else sorted(rng.choice(n, EVAL_LIMIT, replace=False).tolist())
        split = EvalSplit("val", idx, None, "validation")
    else:
        n = data_mod.dataset_len(ctx.dataset("train"), "train")
        perm = rng.permutation(n)
        k = min(EVAL_LIMIT, max(1, int(round(HOLDOUT_FRACTION * n))))
        split = EvalSplit("train", sorted(perm[:k].tolist()), sorted(perm[k:].tolist()),
                          f"{k} training samples held out of the short runs (no val split)")
    ctx.state.setdefault(STATE_KEY, {})["split"] = split
    return split


def short_run_steps(ctx: Context) -> int:
    return int(ctx.options.get("short_run_steps", SHORT_RUN_STEPS))


def _zero_inputs(module: nn.Module, args: tuple) -> tuple:
    if args and isinstance(args[0], torch.Tensor):
        return (torch.zeros_like(args[0]),) + tuple(args[1:])
    return args


def regression_mse(out: torch.Tensor, y: torch.Tensor) -> float | None:
    if out.numel() != y.numel():
        return None
    return float(((out.float().reshape(y.shape) - y.float()) ** 2).mean())


def correct_per_sample(out: torch.Tensor, y: torch.Tensor, loss_fn: Any = None
                       ) -> np.ndarray | None:
    """Per-sample accuracy in any output layout (``nnrecipe.core.training``), or None."""
    c = shared_correct_per_sample(out, y, loss_fn)
    return None if c is None else c.numpy().astype(float)


def score(ctx: Context, out: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, float],
                                                                     np.ndarray,
                                                                     np.ndarray | None]:
    """Metrics, per-sample losses and per-sample correctness of outputs ``out``."""
    loss_fn = on_cpu(ctx.experiment.loss)
    metrics = metrics_from_outputs(out, y, loss_fn, ctx.task_type)
    if ctx.task_type == "regression":
        mse = regression_mse(out, y)
        if mse is not None:
            metrics["mse"] = mse
    per_sample = per_sample_losses(loss_fn, out, y).numpy().astype(float)
    correct = correct_per_sample(out, y, loss_fn) if ctx.task_type == "classification" else None
    return metrics, per_sample, correct


def short_run(ctx: Context, zero_inputs: bool = False) -> ShortRun:
    """The shared short run (trained once per nnrecipe run, then reused)."""
    key = "zero" if zero_inputs else "real"
    cache = ctx.state.setdefault(STATE_KEY, {})
    if key in cache:
        return cache[key]
    split = evaluation_split(ctx)
    steps = short_run_steps(ctx)
    seed_everything(ctx.seed)
    model = ctx.fresh_model(seed=ctx.seed)
    handle = model.register_forward_pre_hook(_zero_inputs) if zero_inputs else None
    try:
        n_train = len(split.train_indices) if split.train_indices is not None else \
            data_mod.dataset_len(ctx.dataset("train"), "train")
        per_epoch = max(1, math.ceil(n_train / ctx.experiment.batch_size))
        history = fit(ctx, model, epochs=math.ceil(steps / per_epoch), max_steps=steps,
                      train_indices=split.train_indices, val_split=None, restore_best=False,
                      description=f"short run ({'zeroed' if zero_inputs else 'real'} inputs)")
        loader = ctx.loader(split.split, shuffle=False, indices=split.indices,
                            batch_size=max(ctx.experiment.batch_size, 256))
        out, y = predict(model, loader, ctx.device)
    finally:
        if handle is not None:
            handle.remove()
    metrics, per_sample, correct = score(ctx, out, y)
    run = ShortRun(history.steps, list(history.step_losses), out, y, per_sample, metrics, correct)
    if not zero_inputs:
        run.extra["input_sensitivity"] = input_sensitivity(ctx, model, split)
    cache[key] = run
    return run


@torch.no_grad()
def input_sensitivity(ctx: Context, model: nn.Module, split: EvalSplit) -> float:
    """How much the trained model's outputs change when its inputs are zeroed, relative to
    their size, on one evaluation batch (eval mode): exactly 0 when the input never reaches
    the output."""
    loader = ctx.loader(split.split, shuffle=False, indices=split.indices,
                        batch_size=ctx.experiment.batch_size)
    x = next(iter(loader))[0].to(ctx.device)
    was = model.training
    model.eval()
    try:
        real, zero = model(x).double(), model(torch.zeros_like(x)).double()
    finally:
        model.train(was)
    return float((real - zero).abs().max() / real.abs().max().clamp(min=1e-12))


# A short run whose training loss moved by less than this share of its start (and by less
# than 2 standard errors of the two windows' means) has not started learning: a comparison
# with a baseline cannot tell a bug from a slow start (by reasoning: a learnable task at a
# workable rate moves the loss by several percent in 100 steps; the CIFAR-10 tutorial at SGD
# 1e-3, batch 4, sat at ln 10 = 2.303 after 100 steps and trains fine over 12,500).
FLAT_FRACTION = 0.01


def flat_start(losses: list[float], fraction: float = 0.2, z: float = 2.0) -> bool:
    """Pure: did the step losses stay flat (neither fall nor rise beyond noise) over the run?
    Head and tail are the means of the first and last ``fraction`` of the finite losses."""
    finite = [v for v in losses if math.isfinite(v)]
    k = max(2, int(len(finite) * fraction))
    if len(finite) < 2 * k:
        return False
    head, tail = np.asarray(finite[:k]), np.asarray(finite[-k:])
    se = math.sqrt(head.var(ddof=1) / k + tail.var(ddof=1) / k)
    return abs(head.mean() - tail.mean()) <= max(z * se, FLAT_FRACTION * abs(head.mean()))


def train_loss_tail(losses: list[float], fraction: float = 0.2) -> float:
    """Mean of the last ``fraction`` of the step losses (a smoothed final training loss)."""
    k = max(1, int(len(losses) * fraction))
    tail = [v for v in losses[-k:] if math.isfinite(v)]
    return float(np.mean(tail)) if tail else math.nan
