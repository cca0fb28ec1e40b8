"""Small helpers the skeleton checks share: calling the user's step with an observed loss,
layer families, per-sample losses, and a paired significance test."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from nnrecipe.core.context import Context
from nnrecipe.core.training import Batch, default_train_step, loss_value, move_to

DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                 nn.FeatureAlphaDropout)
# Layers that carry the model's first learned transform of the input: the input that reaches
# the first of them is what "normalised inputs" is about.
WEIGHTED_TYPES = (nn.Linear, nn.Bilinear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
                  nn.ConvTranspose2d, nn.ConvTranspose3d, nn.RNNBase, nn.MultiheadAttention,
                  nn.Embedding, nn.EmbeddingBag, nn.LazyLinear)
ELEMENTWISE_LOSSES = (nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss, nn.BCELoss,
                      nn.BCEWithLogitsLoss, nn.SoftMarginLoss)


def is_batchnorm(m: nn.Module) -> bool:
    return isinstance(m, _BatchNorm)


def is_dropout(m: nn.Module) -> bool:
    return isinstance(m, DROPOUT_TYPES) and float(getattr(m, "p", 0.0)) > 0.0


def mode_dependent_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Dropout (p > 0) and batch-norm layers: the ones train/eval mode changes."""
    return [(n, m) for n, m in model.named_modules() if is_dropout(m) or is_batchnorm(m)]


def batchnorm_to_eval(model: nn.Module) -> list[str]:
    """Put only the batch-norm layers of ``model`` (a fresh copy) in eval mode: in training
    mode they mix the samples of a batch on purpose. Returns their names."""
    names = []
    for name, m in model.named_modules():
        if is_batchnorm(m):
            m.eval()
            names.append(name)
    return names


class LossRecorder:
    """The user's loss, observed: records the (output, target) of every call.

    A loss module is deep-copied and observed through a forward hook, so it is still an
    instance of its class for a ``train_step`` that inspects it; a plain function is wrapped.
    The user's own object is never touched.
    """

    def __init__(self, loss_fn: Callable[..., torch.Tensor]) -> None:
        self.calls: list[tuple[torch.Tensor, Any]] = []
        self.results: list[Any] = []  # what each recorded call returned (the loss)
        self.original = loss_fn
        if isinstance(loss_fn, nn.Module):
            self.fn: Callable[..., torch.Tensor] = copy.deepcopy(loss_fn)
            self.fn.register_forward_hook(self._module_hook,  # type: ignore[union-attr]
                                          with_kwargs=True)
        else:
            def wrapped(*args: Any, **kwargs: Any) -> torch.Tensor:
                recorded = self._record(args, kwargs)
                result = loss_fn(*args, **kwargs)
                if recorded:
                    self.results.append(result)
                return result

            self.fn = wrapped

    def _module_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        if self._record(args, kwargs):
            self.results.append(output)

    def _record(self, args: tuple, kwargs: dict) -> bool:
        named = [kwargs[k] for k in ("input", "target") if k in kwargs]
        values = list(args) + named + [v for k, v in kwargs.items() if k not in ("input", "target")]
        if len(values) >= 2 and isinstance(values[0], torch.Tensor):
            self.calls.append((values[0], values[1]))
            return True
        return False


def call_step(ctx: Context, model: nn.Module, batch: Batch, optimizer: torch.optim.Optimizer,
              loss_fn: Callable[..., torch.Tensor] | None = None) -> float:
    """One step through the user's ``train_step`` (or the built-in one), like ``ctx.step``,
    but with ``loss_fn`` (an observed copy of the user's loss) in place of the loss."""
    if loss_fn is None:
        return ctx.step(model, batch, optimizer)
    return loss_value(call_step_raw(ctx, model, batch, optimizer, loss_fn))


def call_step_raw(ctx: Context, model: nn.Module, batch: Batch,
                  optimizer: torch.optim.Optimizer, loss_fn: Callable[..., torch.Tensor]) -> Any:
    """:func:`call_step`, returning what the step returned (the loss tensor, its graph)."""
    step = ctx.experiment.train_step or default_train_step
    return step(model, move_to(batch, ctx.device), loss_fn, optimizer)


@contextmanager
def hooks(*handles: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def paired_improvement(better: np.ndarray, worse: np.ndarray) -> tuple[float, float]:
    """Mean of ``worse - better`` per sample and its standard error (paired samples)."""
    d = np.asarray(worse, dtype=float) - np.asarray(better, dtype=float)
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return (float(d.mean()) if len(d) else math.nan), math.inf
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))


def float_tensors(value: Any) -> list[torch.Tensor]:
    """The floating-point tensors in a module's input/output (tuples, lists, dicts)."""
    if isinstance(value, torch.Tensor):
        return [value] if value.is_floating_point() else []
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in float_tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in float_tensors(v)]
    return []


def fmt_names(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
