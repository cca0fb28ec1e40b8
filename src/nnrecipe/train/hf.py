"""A Hugging Face ``Trainer`` callback running the nnrecipe monitor (``pip install
'nnrecipe[hf]'``): the same signals, live findings and report as :func:`nnrecipe.watch`.

::

    from nnrecipe.train.hf import NNRecipeTrainerCallback

    trainer = transformers.Trainer(model=model, args=args, train_dataset=train,
                                   eval_dataset=val,
                                   callbacks=[NNRecipeTrainerCallback(out_dir="runs/hf")])
    trainer.train()          # findings come as TrainingWarning; runs/hf/report.html at the end

What is read where:

* the **loss** of each step: the ``loss`` the model returns (Hugging Face models do when the
  batch has ``labels``), caught by a forward hook on training forwards and averaged over the
  micro-batches of an optimizer step (``gradient_accumulation_steps`` is declared to the
  monitor). A ``Trainer`` whose ``compute_loss`` does not call the model for its loss falls back
  to the logged ``loss`` (one value per ``logging_steps``);
* **gradients and updates**: hooks on the torch optimizer inside accelerate's wrapper. The
  ``Trainer`` clips gradients (``max_grad_norm``, 1.0 by default) *before* ``optimizer.step()``,
  so the per-layer norms are the clipped ones; the run's clip threshold is recorded;
* **validation**: each evaluation (``eval_strategy``) is an epoch entry: ``eval_loss`` is the
  validation loss, the other ``eval_*`` metrics go with it; without evaluation, each epoch end
  closes an entry.

Under DDP (``torchrun`` with the ``Trainer``) every rank records its own signals and rank 0
reports for all (:mod:`nnrecipe.train.distributed`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from nnrecipe.train.monitor import MonitorConfig
from nnrecipe.train.watch import FindingHandler, Watcher

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("the Hugging Face callback needs transformers: "
                      "pip install 'nnrecipe[hf]'") from e

# evaluation bookkeeping that is not a metric of the model
_NOT_METRICS = ("runtime", "samples_per_second", "steps_per_second", "epoch")


def torch_optimizer(optimizer: Any) -> torch.optim.Optimizer | None:
    """The torch optimizer inside accelerate's ``AcceleratedOptimizer`` (itself an Optimizer
    subclass, but without the step hooks of one: they go on the optimizer it wraps)."""
    for _ in range(5):
        inner = getattr(optimizer, "optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer):
            break
        optimizer = inner
    return optimizer if isinstance(optimizer, torch.optim.Optimizer) else None


def eval_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``{"loss": eval_loss, "accuracy": eval_accuracy, ...}`` from the Trainer's metrics."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = key[5:] if key.startswith("eval_") else None
        if name is None or name in _NOT_METRICS:
            continue
        try:
            v = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            out[name] = v
    return out


def _distributed_kwargs(args: TrainingArguments) -> dict[str, Any]:
    """What the Trainer's DDP does, for the DistributedWatcher (it cannot see the wrapper)."""
    mode = str(getattr(args, "parallel_mode", "")).lower()
    sharded = bool(getattr(args, "fsdp", None)) or bool(getattr(args, "deepspeed", None))
    if "distributed" not in mode or sharded:
        return {"compare": not sharded}
    broadcast = getattr(args, "ddp_broadcast_buffers", None)
    return {"grads_synced": True, "broadcast_buffers": True if broadcast is None else bool(broadcast)}


class NNRecipeTrainerCallback(TrainerCallback):
    """Watch a ``transformers.Trainer`` run with the nnrecipe monitor; see the module
    docstring. ``watcher`` (once training starts) gives the findings, the recording and
    ``report()``; ``paths`` the files written at the end (with ``out_dir``)."""

    def __init__(self, *, out_dir: str | Path | None = None,
                 on_finding: FindingHandler | None = None, config: MonitorConfig | None = None,
                 check_every: int = 50, name: str | None = None) -> None:
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.on_finding = on_finding
        self.config = config
        self.check_every = check_every
        self.name = name
        self.watcher: Watcher | None = None
        self.paths: dict[str, Path] = {}
        self._micro: list[torch.Tensor] = []
        self._hook: Any = None
        self._evaluates = False
        self._from_logs = False

    # ------------------------------------------------------------- start
    def on_train_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, model: torch.nn.Module | None = None,
                       optimizer: Any = None, **kwargs: Any) -> None:
        opt = torch_optimizer(optimizer)
        if model is None or opt is None:
            return
        from nnrecipe.train.distributed import watcher_factory, world

        make = watcher_factory()
        extra: dict[str, Any] = _distributed_kwargs(args) if world()[1] > 1 else {}
        accumulate = max(1, int(getattr(args, "gradient_accumulation_steps", 1) or 1))
        try:
            self.watcher = make(model, opt, on_finding=self.on_finding, config=self.config,
                                check_every=self.check_every,
                                name=self.name or type(model).__name__, accumulate=accumulate,
                                **extra)
        except TypeError:  # a Watcher without gradient-accumulation support
            self.watcher = make(model, opt, on_finding=self.on_finding, config=self.config,
                                check_every=self.check_every,
                                name=self.name or type(model).__name__, **extra)
        clip = float(getattr(args, "max_grad_norm", 0.0) or 0.0)
        self.watcher.monitor.recording.grad_clip = clip if clip > 0 else None
        self._hook = model.register_forward_hook(self._catch_loss, with_kwargs=True)
        self._evaluates = str(getattr(args, "eval_strategy", "no")).lower() not in (
            "no", "intervalstrategy.no")

    def _catch_loss(self, module: torch.nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        if not module.training or not torch.is_grad_enabled():
            return
        loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            self._micro.append(loss.detach())

    # ------------------------------------------------------------- steps
    def on_step_end(self, args: TrainingArguments, state: TrainerState,
                    control: TrainerControl, **kwargs: Any) -> TrainerControl | None:
        w = self.watcher
        if w is None:
            return None
        if self._micro:
            w.step(torch.stack([m.float() for m in self._micro]).mean())
            self._micro = []
        else:
            self._from_logs = True  # no loss from the model: the logged one will do
        if getattr(w, "should_stop", False):  # under DDP: decided alike on every rank
            control.should_training_stop = True
            return control
        return None

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        if self.watcher is not None and self._from_logs and logs and "loss" in logs:
            self.watcher.step(float(logs["loss"]))

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    metrics: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        if self.watcher is not None and self.watcher.monitor.steps_recorded():
            self.watcher.epoch(val=eval_metrics(metrics or {}))

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState,
                     control: TrainerControl, **kwargs: Any) -> None:
        if self.watcher is not None and not self._evaluates:
            self.watcher.epoch()

    # ------------------------------------------------------------- the end
    def on_train_end(self, args: TrainingArguments, state: TrainerState,
                     control: TrainerControl, **kwargs: Any) -> None:
        w = self.watcher
        if w is None:
            return
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        w.close()
        if self.out_dir is not None:
            self.paths = w.report(self.out_dir)
        elif hasattr(w, "finish"):
            w.finish()
        else:
            w.final_findings()
