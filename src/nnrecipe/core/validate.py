"""Validate an experiment before any check runs: every way it cannot run at all becomes one
:class:`ExperimentError` naming the cause (the CLI exits 2 with it)."""

from __future__ import annotations

import torch

from nnrecipe.core import data as data_mod
from nnrecipe.core.context import Context
from nnrecipe.core.seeding import seeded
from nnrecipe.errors import DataError, ExperimentError


def validate_experiment(ctx: Context, *, need_model: bool = True) -> None:
    exp = ctx.experiment
    for split in exp.splits():
        try:
            ds = ctx.dataset(split)
            n = data_mod.dataset_len(ds, split)
            if n == 0:
                raise DataError(f"the {split} set is empty")
            data_mod.get_sample(ds, 0, split)
        except DataError as e:
            raise ExperimentError(str(e)) from e
    if not need_model:
        return
    with seeded(ctx.seed):
        try:
            X, y = ctx.tensors("train", limit=min(exp.batch_size, 8))
        except DataError as e:
            raise ExperimentError(str(e)) from e
        model = ctx.fresh_model()
        try:
            ctx.make_optimizer(model)
        except Exception as e:
            raise ExperimentError(f"the optimizer factory raised {type(e).__name__}: {e}") from e
        x, yd = X.to(ctx.device), y.to(ctx.device)
        try:
            with torch.no_grad():
                out = model(x)
        except Exception as e:
            raise ExperimentError(
                f"model(x) failed on a batch of inputs of shape {tuple(X.shape)} "
                f"(dtype {X.dtype}): {type(e).__name__}: {e}") from e
        if not isinstance(out, torch.Tensor):
            raise ExperimentError(f"model(x) returned {type(out).__name__}; nnrecipe needs a "
                                  "tensor of outputs (wrap the model to return one)")
        try:
            with torch.no_grad():
                loss = exp.loss(out, yd)
        except Exception as e:
            raise ExperimentError(
                f"the loss failed on model output of shape {tuple(out.shape)} and targets of "
                f"shape {tuple(y.shape)} (dtype {y.dtype}): {type(e).__name__}: {e}") from e
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ExperimentError(f"the loss returned {shape}, not a scalar tensor; use "
                                  "reduction='mean'")
