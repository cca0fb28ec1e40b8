"""``nnrecipe.lr_find``: the range test on your own model and optimizer, left as they were."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from nnrecipe.core import data as data_mod
from nnrecipe.core.threads import thread_policy
from nnrecipe.errors import ConfigurationError
from nnrecipe.overfit.lr_range import (
    DEFAULT_END_LR,
    DEFAULT_START_LR,
    DEFAULT_SWEEP_STEPS,
    LRSuggestion,
    find_lr,
)
from nnrecipe.overfit.probes import HOLDOUT_FRACTION, ModelProbe
from nnrecipe.overfit.schedules import canonical, schedule_name


def lr_find(model: nn.Module, optimizer: torch.optim.Optimizer, data: Any,
            loss: Callable[..., torch.Tensor], *, val_data: Any = None,
            train_step: Callable | None = None, batch_size: int = 64, repeats: int = 3,
            start_lr: float = DEFAULT_START_LR, end_lr: float = DEFAULT_END_LR,
            num_steps: int = DEFAULT_SWEEP_STEPS, run_steps: int = 100, seed: int = 0,
            threads: int | None = None, epochs: int | None = None,
            schedule: str | None = None) -> LRSuggestion:
    """Suggest a learning rate for ``model`` trained by ``optimizer`` on ``data``.

    ``data`` (and ``val_data``) is a DataLoader, a Dataset of ``(input, target)``, or an
    ``(X, y)`` pair. ``repeats`` sweeps from the model's current weights with different
    batch orders give the edge and its spread; then candidate rates are trained for
    ``run_steps`` steps each and the one with the lowest validation loss around it is
    suggested (``method="validated"``). Without ``val_data``, 20% of ``data`` is held out
    for that; when ``data`` is a DataLoader (nothing to hold out), the suggestion is a tenth
    of the median edge (``method="sweep"``, measurably worse: see the README).
    ``train_step(model, batch, loss, optimizer) -> loss`` replaces the built-in step.

    ``epochs``: how long you will train (at a constant rate). The best rate depends on it:
    it falls with the run's length, as 1/steps where the short runs already overfit, as
    1/sqrt(steps) where they were still improving; so with ``epochs`` the suggestion is
    carried from the short runs to your run's length (``res.horizon`` says how and why;
    ``res.short_rate`` is the best rate for the short runs themselves). Without it, the
    suggestion is for ``run_steps`` steps. ``schedule``: the schedule your run decays the
    rate by ("cosine", "one-cycle", "step"; see :mod:`nnrecipe.overfit.schedules`); the
    suggestion is then its peak rate. None or "constant": a constant rate.

    The model's weights and buffers, its train/eval mode, the optimizer's state and rates and
    the global RNG state are restored afterwards, whatever happens. torch's intra-op threads
    follow nnrecipe's policy during the call (``threads=``, else ``NNRECIPE_THREADS``; see
    :mod:`nnrecipe.core.threads`) and are restored after it.
    """
    if not isinstance(model, nn.Module):
        raise ConfigurationError(f"lr_find(model=...) needs an nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigurationError("lr_find(optimizer=...) needs a torch.optim.Optimizer, got "
                                 f"{type(optimizer).__name__}")
    if repeats < 1:
        raise ConfigurationError(f"lr_find(repeats=...) must be >= 1, got {repeats}")
    indexable = not isinstance(data, DataLoader) and hasattr(data, "__getitem__") \
        and hasattr(data, "__len__")
    if val_data is None and indexable:
        data, val_data = _hold_out(data, seed)
    if epochs is not None and epochs < 1:
        raise ConfigurationError(f"lr_find(epochs=...) must be >= 1, got {epochs}")
    if schedule is not None:
        canonical(schedule)  # an unknown name is an error here, not a silent constant rate
    probe = ModelProbe(model, optimizer, data, loss, val_data=val_data, train_step=train_step,
                       batch_size=batch_size, run_steps=run_steps)
    if epochs is not None:
        probe.horizon_steps = epochs * _batches_per_epoch(data, batch_size)
    probe.schedule = schedule_name({"schedule": schedule})  # type: ignore[attr-defined]
    try:
        with thread_policy(threads):
            return find_lr(probe, repeats=repeats, start_lr=start_lr, end_lr=end_lr,
                           num_steps=num_steps, validate=val_data is not None, seed=seed)
    finally:
        probe.restore()


def _batches_per_epoch(data: Any, batch_size: int) -> int:
    if isinstance(data, DataLoader):
        return max(1, len(data))
    n = data_mod.dataset_len(data_mod.as_dataset(data, "data"), "data")
    return max(1, -(-n // batch_size))


def _hold_out(data: Any, seed: int) -> tuple[Any, Any]:
    """Split HOLDOUT_FRACTION of an (X, y) pair or Dataset off as validation (seeded)."""
    ds = data_mod.as_dataset(data, "data")
    n = data_mod.dataset_len(ds, "data")
    k = int(n * HOLDOUT_FRACTION)
    if k < 1 or n - k < 1:
        return data, None
    perm = np.random.default_rng(seed).permutation(n)
    return Subset(ds, sorted(perm[k:].tolist())), Subset(ds, sorted(perm[:k].tolist()))
