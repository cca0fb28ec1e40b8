"""The training loop the later stages share: epochs over a seeded loader, the user's step,
validation each epoch, optional clipping and schedule, callbacks that may stop the run, and
the best weights kept in memory.

Gradient clipping and the monitor hook into the *optimizer* (``register_step_pre_hook``), so
they work unchanged when the user brings their own ``train_step``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnrecipe.core.context import Context
from nnrecipe.core.interrupts import Interrupted, Interruption, signum_of
from nnrecipe.core.output import atomic_torch_save

SchedulerFactory = Callable[[torch.optim.Optimizer, int], Any]  # (optimizer, total_steps)


@dataclass
class EpochRecord:
    epoch: int  # 1-based
    train_loss: float  # mean of the step losses of this epoch
    val: dict[str, float] = field(default_factory=dict)  # e.g. {"loss": .., "accuracy": ..}
    lr: float = math.nan
    steps: int = 0  # cumulative optimizer steps at the end of the epoch
    seconds: float = 0.0


@dataclass
class FitHistory:
    step_losses: list[float] = field(default_factory=list)
    step_lrs: list[float] = field(default_factory=list)
    epochs: list[EpochRecord] = field(default_factory=list)
    stopped_reason: str = "completed"
    interrupted: bool = False  # stopped by Ctrl-C / SIGTERM (keep_on_interrupt=True)
    checkpoint_error: str | None = None  # the best checkpoint could not be written
    checkpoint_seconds: float = 0.0  # time spent writing it (included in ``seconds``)
    best_epoch: int | None = None
    best_val_loss: float = math.inf
    best_state: dict[str, torch.Tensor] | None = None
    seconds: float = 0.0

    @property
    def steps(self) -> int:
        return len(self.step_losses)

    def train_losses(self) -> list[float]:
        return [e.train_loss for e in self.epochs]

    def val_losses(self) -> list[float]:
        return [e.val.get("loss", math.nan) for e in self.epochs]

    def val_metric(self, name: str) -> list[float]:
        return [e.val.get(name, math.nan) for e in self.epochs]


class Callback:
    """Hooks into :func:`fit`. A hook that returns a string stops training with that reason."""

    def on_fit_start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        pass

    def on_step_end(self, step: int, loss: float, model: nn.Module,
                    optimizer: torch.optim.Optimizer) -> str | None:
        return None

    def on_epoch_end(self, record: EpochRecord, history: FitHistory, model: nn.Module
                     ) -> str | None:
        return None

    def on_fit_end(self, history: FitHistory, model: nn.Module) -> None:
        pass


def clip_on_step(optimizer: torch.optim.Optimizer, max_norm: float) -> Any:
    """Clip gradients by global norm right before every ``optimizer.step()``; returns the
    hook handle (``.remove()`` it)."""
    def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        if params:
            torch.nn.utils.clip_grad_norm_(params, max_norm)

    return optimizer.register_step_pre_hook(hook)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


# Writing the best checkpoint (serialise, fsync, rename) may take at most this share of the
# training time so far; an improvement that would exceed it waits for the next one (or the
# end of fit, which always writes the last best). By measurement (benchmarks/core_overhead.py):
# on the demo CNN a write on every improvement took 4.6% of the run (the fsync, ~20 ms, vs
# 0.5 s epochs), on a 10M MLP 0.5%; 2% keeps tiny models' cost small and changes nothing for
# models whose epochs are long.
CHECKPOINT_SHARE = 0.02


def _save_best(history: FitHistory, path: Path, elapsed: float, *, force: bool = False
               ) -> bool:
    """The best weights so far, written whole or not at all, unless it would take more than
    ``CHECKPOINT_SHARE`` of the time (``force``: regardless). A failure is recorded, not
    raised (training goes on; the check reports it). True when written."""
    if history.best_state is None or history.best_epoch is None:
        return False
    if not force and history.checkpoint_seconds > CHECKPOINT_SHARE * elapsed:
        return False
    start = time.perf_counter()
    record = history.epochs[history.best_epoch - 1] if len(history.epochs) >= history.best_epoch \
        else None
    try:
        atomic_torch_save({"state_dict": history.best_state, "best_epoch": history.best_epoch,
                           "val": dict(record.val) if record else {}, "complete": False}, path)
        history.checkpoint_error = None
    except OSError as e:
        history.checkpoint_error = f"{type(e).__name__}: {e}"
    history.checkpoint_seconds += time.perf_counter() - start
    return history.checkpoint_error is None


def fit(ctx: Context, model: nn.Module, *, optimizer: torch.optim.Optimizer | None = None,
        epochs: int | None = None, batch_size: int | None = None,
        train_indices: Sequence[int] | None = None, scheduler: SchedulerFactory | None = None,
        grad_clip: float | None = None, callbacks: Sequence[Callback] = (),
        max_steps: int | None = None, time_budget_s: float | None = None,
        val_split: str | None = "val", val_limit: int | None = None, restore_best: bool = True,
        description: str = "training", keep_on_interrupt: bool = False,
        checkpoint: str | Path | None = None) -> FitHistory:
    """Train ``model`` (already built, e.g. by ``ctx.fresh_model()``) and return its history.

    Stops at ``epochs``, ``max_steps``, ``time_budget_s``, a non-finite loss, or when a
    callback returns a reason. With a validation split, the weights of the epoch with the
    lowest validation loss are kept and, with ``restore_best``, loaded at the end; with
    ``checkpoint``, they are also saved there (atomically) each time they improve.

    Ctrl-C / SIGTERM: recorded on ``ctx.interruption``; with ``keep_on_interrupt`` the
    partial history comes back (``interrupted``, ``stopped_reason`` "interrupted ... at epoch
    E of N"), otherwise the interrupt propagates. Once a run was interrupted, fit refuses
    to start another training (it raises at once), so a check that trains many models stops.
    """
    if ctx.interruption is not None:
        raise Interrupted(ctx.interruption.signum)
    exp = ctx.experiment
    epochs = epochs or exp.epochs
    optimizer = optimizer or ctx.make_optimizer(model)
    loader = ctx.loader("train", batch_size=batch_size,
                        indices=list(train_indices) if train_indices is not None else None)
    total_steps = epochs * max(1, len(loader))
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    sched = scheduler(optimizer, total_steps) if scheduler is not None else None
    clip_handle = clip_on_step(optimizer, grad_clip) if grad_clip else None
    has_val = val_split is not None and ctx.has_split(val_split)
    history = FitHistory()
    start = time.perf_counter()
    for cb in callbacks:
        cb.on_fit_start(model, optimizer)
    progress = {"epoch": 0}
    unsaved = False  # a best epoch not yet on disk (held back by CHECKPOINT_SHARE)
    try:
        try:
            with ctx.task(description, total_steps) as task:
                for epoch in range(1, epochs + 1):
                    progress["epoch"] = epoch
                    t_epoch = time.perf_counter()
                    epoch_losses: list[float] = []
                    for batch in loader:
                        history.step_lrs.append(current_lr(optimizer))
                        loss = ctx.step(model, batch, optimizer)
                        history.step_losses.append(loss)
                        epoch_losses.append(loss)
                        task.advance(loss=loss)
                        if sched is not None:
                            sched.step()
                        if not math.isfinite(loss):
                            history.stopped_reason = f"non-finite loss at step {history.steps - 1}"
                        for cb in callbacks:
                            reason = cb.on_step_end(history.steps - 1, loss, model, optimizer)
                            if reason and history.stopped_reason == "completed":
                                history.stopped_reason = reason
                        if history.stopped_reason != "completed":
                            break
                        if max_steps is not None and history.steps >= max_steps:
                            history.stopped_reason = f"reached max_steps={max_steps}"
                            break
                        if time_budget_s is not None and time.perf_counter() - start > time_budget_s:
                            history.stopped_reason = f"time budget of {time_budget_s:.0f}s used"
                            break
                    finite = [v for v in epoch_losses if math.isfinite(v)]
                    record = EpochRecord(
                        epoch=epoch,
                        train_loss=sum(finite) / len(finite) if finite else math.nan,
                        lr=current_lr(optimizer), steps=history.steps,
                        seconds=time.perf_counter() - t_epoch)
                    if has_val and math.isfinite(record.train_loss):
                        record.val = ctx.evaluate(model, val_split, limit=val_limit)  # type: ignore[arg-type]
                        vl = record.val.get("loss", math.inf)
                        if vl < history.best_val_loss:
                            history.best_val_loss, history.best_epoch = vl, epoch
                            history.best_state = {k: v.detach().to("cpu", copy=True)
                                                  for k, v in model.state_dict().items()}
                    history.epochs.append(record)
                    if checkpoint is not None and history.best_epoch == epoch:
                        unsaved = not _save_best(history, Path(checkpoint),
                                                 time.perf_counter() - start)
                    for cb in callbacks:
                        reason = cb.on_epoch_end(record, history, model)
                        if reason and history.stopped_reason == "completed":
                            history.stopped_reason = reason
                    if history.stopped_reason != "completed":
                        break
        except KeyboardInterrupt as e:
            where = f"at epoch {progress['epoch']} of {epochs} (step {history.steps})"
            ctx.interruption = Interruption(signum_of(e), where)
            if not keep_on_interrupt:
                raise
            history.interrupted = True
            history.stopped_reason = ctx.interruption.describe()
    finally:
        if clip_handle is not None:
            clip_handle.remove()
        if checkpoint is not None and unsaved:  # the last best, held back by the budget
            _save_best(history, Path(checkpoint), 0.0, force=True)
        history.seconds = time.perf_counter() - start
    if restore_best and history.best_state is not None:
        model.load_state_dict(history.best_state)
    for cb in callbacks:
        cb.on_fit_end(history, model)
    return history

