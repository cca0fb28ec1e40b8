"""The two ways the range test measures: on fresh models of an experiment (the stage), or on a
user's own model and optimizer whose state is saved first and restored after (``lr_find``)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from nnrecipe.core import data as data_mod
from nnrecipe.core.context import Context
from nnrecipe.core.fit import Callback, fit
from nnrecipe.core.seeding import get_rng_state, set_rng_state
from nnrecipe.core.training import (
    default_train_step,
    infinite_batches,
    loss_value,
    metrics_from_outputs,
    move_to,
    on_cpu,
    predict,
)
from nnrecipe.overfit.lr_range import (
    GradNormRecorder,
    ShortRun,
    Sweep,
    checkpoint_steps,
    group_ratios,
    run_sweep,
    set_lr,
)

# Short validation runs: as long as the experiment's own training, capped at 100 steps to keep
# the stage at a few seconds (the demo: ~1 s a run on one thread). The benchmark scores the
# choice on ~300-step runs, so the cap is measured not to hurt there (README, Performance).
MAX_RUN_STEPS = 100
MIN_RUN_STEPS = 30
HOLDOUT_FRACTION = 0.2  # without a val split, this much of train is held out for choosing
VAL_LIMIT = 2048  # held-out samples scored per run: enough to rank rates, cheap to evaluate


def predict_indices(ctx: Context, model: nn.Module, split: str, indices: list[int] | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs of ``model`` on some samples of a split, in eval mode, with their targets."""
    loader = ctx.loader(split, shuffle=False, indices=indices,
                        batch_size=max(ctx.experiment.batch_size, 256))
    return predict(model, loader, ctx.device)


def evaluate_indices(ctx: Context, model: nn.Module, split: str, indices: list[int] | None
                     ) -> dict[str, float]:
    """Loss (and accuracy) of ``model`` on some samples of a split, in eval mode."""
    out, y = predict_indices(ctx, model, split, indices)
    return metrics_from_outputs(out, y, on_cpu(ctx.experiment.loss), ctx.task_type)


class Checkpoints(Callback):
    """Evaluates the held-out loss after the given numbers of steps (``fit`` callback)."""

    def __init__(self, at: list[int], evaluate: Callable[[nn.Module], float]) -> None:
        self.at, self.evaluate = set(at), evaluate
        self.values: list[tuple[int, float]] = []

    def on_step_end(self, step: int, loss: float, model: nn.Module,
                    optimizer: torch.optim.Optimizer) -> str | None:
        if step + 1 in self.at and math.isfinite(loss):
            v = self.evaluate(model)
            self.values.append((step + 1, v if math.isfinite(v) else math.inf))
        return None


def final_checkpoint(values: list[tuple[int, float]], losses: list[float]) -> float:
    """A run's held-out loss: at its last checkpoint (a constant-rate run is used as it ends;
    a rate that is best only for a moment and then overfits or bounces is not the best rate
    for that length); NaN when it diverged."""
    if not values or not all(math.isfinite(v) for v in losses):
        return math.nan
    last = values[-1][1]
    return last if math.isfinite(last) else math.nan


class ContextProbe:
    """Sweeps and short runs on fresh models from the experiment's factory, through the
    user's optimizer factory and ``train_step``. Seeds are offsets from ``ctx.seed``.

    ``horizon_steps`` is the length of the run the experiment plans (``epochs`` x batches
    per epoch): the horizon the suggestion is for. ``horizon=False`` leaves it unset (the
    suggestion is then for the short runs' own length)."""

    def __init__(self, ctx: Context, run_steps: int | None = None,
                 optimizer_factory: Callable | None = None, horizon: bool = True) -> None:
        self.ctx = ctx
        self.optimizer_factory = optimizer_factory
        n = len(ctx.dataset("train"))
        self.has_val = ctx.has_split("val")
        self.train_indices: list[int] | None = None
        self.holdout: list[int] | None = None
        if not self.has_val:
            perm = np.random.default_rng(ctx.seed).permutation(n)
            k = max(1, int(n * HOLDOUT_FRACTION))
            self.holdout = sorted(perm[:k].tolist())[:VAL_LIMIT]
            self.train_indices = sorted(perm[k:].tolist())
        n_fit = len(self.train_indices) if self.train_indices is not None else n
        per_epoch = max(1, math.ceil(n_fit / ctx.experiment.batch_size))
        planned = per_epoch * ctx.experiment.epochs
        self.run_steps = run_steps or max(min(planned, MAX_RUN_STEPS), min(MIN_RUN_STEPS, planned))
        self.per_epoch = per_epoch
        self.horizon_steps: int | None = planned if horizon else None

    def _model_and_optimizer(self, seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
        model = self.ctx.fresh_model(seed=self.ctx.seed + seed)
        return model, self.ctx.make_optimizer(model, self.optimizer_factory)

    def sweep(self, seed: int, start_lr: float, end_lr: float, num_steps: int) -> Sweep:
        ctx = self.ctx
        model, opt = self._model_and_optimizer(seed)
        loader = ctx.loader("train", seed=ctx.seed + seed, indices=self.train_indices)
        with ctx.task(f"learning-rate sweep {seed + 1}", num_steps) as task:
            return run_sweep(lambda b: ctx.step(model, b, opt), opt, infinite_batches(loader),
                             start_lr=start_lr, end_lr=end_lr, num_steps=num_steps, seed=seed,
                             on_step=task.advance)

    def short_run(self, lr: float, seed: int) -> ShortRun:
        ctx = self.ctx
        model, opt = self._model_and_optimizer(seed)
        set_lr(opt, lr, group_ratios(opt))
        epochs = math.ceil(self.run_steps / self.per_epoch)

        def held_out(m: nn.Module) -> float:
            if self.has_val:
                return ctx.evaluate(m, "val", limit=VAL_LIMIT)["loss"]
            return evaluate_indices(ctx, m, "train", self.holdout)["loss"]

        cps = Checkpoints(checkpoint_steps(self.run_steps), held_out)
        with GradNormRecorder(opt) as rec:
            h = fit(ctx, model, optimizer=opt, epochs=epochs, max_steps=self.run_steps,
                    train_indices=self.train_indices, val_split=None, restore_best=False,
                    callbacks=[cps], description=f"lr={lr:.2g}")
        return ShortRun(lr, final_checkpoint(cps.values, h.step_losses), list(h.step_losses),
                        list(rec.norms), seed, h.stopped_reason, cps.values)


def _as_loader(data: Any, batch_size: int, seed: int, shuffle: bool) -> Iterable[Any]:
    if isinstance(data, DataLoader) or (not hasattr(data, "__getitem__")
                                        and hasattr(data, "__iter__")):
        return data
    ds = data_mod.as_dataset(data, "data")
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle,
                      generator=torch.Generator().manual_seed(seed))


class ModelProbe:
    """Sweeps and short runs on the user's own model and optimizer, restoring their state
    (weights, buffers, optimizer state and rates, train/eval mode, RNG) before each
    measurement; :meth:`restore` puts everything back when done."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, data: Any,
                 loss: Callable[..., torch.Tensor], *, val_data: Any = None,
                 train_step: Callable | None = None, batch_size: int = 64,
                 run_steps: int = 100) -> None:
        self.model, self.optimizer, self.data, self.loss = model, optimizer, data, loss
        self.val_data = val_data
        self.train_step = train_step or default_train_step
        self.batch_size = batch_size
        self.run_steps = run_steps
        self.horizon_steps: int | None = None  # set by lr_find(epochs=...)
        self.device = next(model.parameters()).device
        self._weights = copy.deepcopy(model.state_dict())
        self._opt_state = copy.deepcopy(optimizer.state_dict())
        self._training = model.training
        self._rng = get_rng_state()

    def restore(self) -> None:
        self.model.load_state_dict(self._weights)
        self.optimizer.load_state_dict(copy.deepcopy(self._opt_state))
        self.model.train(self._training)
        set_rng_state(self._rng)

    def _step(self, batch: Any) -> float:
        return loss_value(self.train_step(self.model, move_to(batch, self.device), self.loss,
                                          self.optimizer))

    def _batches(self, seed: int) -> Iterator[Any]:
        return iter(infinite_batches(_as_loader(self.data, self.batch_size, seed, True)))

    def sweep(self, seed: int, start_lr: float, end_lr: float, num_steps: int) -> Sweep:
        self.restore()
        torch.manual_seed(seed)
        self.model.train()
        return run_sweep(self._step, self.optimizer, self._batches(seed), start_lr=start_lr,
                         end_lr=end_lr, num_steps=num_steps, seed=seed)

    def short_run(self, lr: float, seed: int) -> ShortRun:
        self.restore()
        torch.manual_seed(seed)
        self.model.train()
        set_lr(self.optimizer, lr, group_ratios(self.optimizer))
        batches = self._batches(seed)
        losses: list[float] = []
        at = set(checkpoint_steps(self.run_steps)) if self.val_data is not None else set()
        cps: list[tuple[int, float]] = []
        with GradNormRecorder(self.optimizer) as rec:
            for i in range(self.run_steps):
                losses.append(self._step(next(batches)))
                if not math.isfinite(losses[-1]):
                    break
                if i + 1 in at:
                    v = self._held_out(seed)
                    cps.append((i + 1, v if math.isfinite(v) else math.inf))
                    self.model.train()
        return ShortRun(lr, final_checkpoint(cps, losses), losses, list(rec.norms), seed,
                        checkpoints=cps)

    def _held_out(self, seed: int) -> float:
        loader = _as_loader(self.val_data, max(self.batch_size, 256), seed, False)
        out, y = predict(self.model, loader, self.device)
        task = "classification" if not y.is_floating_point() else "regression"
        return metrics_from_outputs(out, y, on_cpu(self.loss), task)["loss"]
