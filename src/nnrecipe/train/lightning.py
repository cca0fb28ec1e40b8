"""A PyTorch Lightning callback running the nnrecipe monitor (``pip install nnrecipe[lightning]``).

::

    from nnrecipe.train.lightning import NNRecipeCallback

    trainer = lightning.Trainer(callbacks=[NNRecipeCallback(out_dir="runs/lightning")])
    trainer.fit(module, train_loader, val_loader)

Each training batch's loss is read from what ``training_step`` returns; validation metrics
from ``trainer.callback_metrics`` (``val_loss`` → the validation loss, other ``val_*`` keys →
metrics). Findings come out live as :class:`~nnrecipe.train.watch.TrainingWarning` (or to
``on_finding``); at the end of ``fit`` the hooks are removed and, with ``out_dir``, the report
is written. Lightning's ``optimizer.step(closure)`` is handled: gradients are measured right
after the closure has produced them, before the update. With several optimizers, the first
(``trainer.optimizers[0]``) is watched. ``Trainer(accumulate_grad_batches=N)`` is declared to
the monitor (steps are counted per optimizer step; the micro-batch losses of a step are
averaged), and a ``"16-mixed"`` precision plugin's GradScaler is handed to it (the steps it
skips on purpose are not failures). Manual optimization (``automatic_optimization = False``)
is watched the same way, so a ``training_step`` that forgets ``opt.zero_grad()`` is
``grads-not-zeroed``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from nnrecipe.train.monitor import MonitorConfig
from nnrecipe.train.watch import FindingHandler, Watcher

try:
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - the older package name
    try:
        import pytorch_lightning as pl  # type: ignore[no-redef]
    except ImportError as e:
        raise ImportError("the Lightning callback needs Lightning: pip install 'nnrecipe[lightning]'"
                          ) from e


def _float(v: Any) -> float | None:
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            return None
        v = v.detach().float().cpu().item()
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


class NNRecipeCallback(pl.Callback):
    """Watch a Lightning run with the nnrecipe monitor; see the module docstring.

    ``val_loss_key``: the logged metric that is the validation loss; ``watcher`` (after
    ``fit`` starts) gives the findings, the recording and ``report()``.
    """

    def __init__(self, *, out_dir: str | Path | None = None,
                 on_finding: FindingHandler | None = None, config: MonitorConfig | None = None,
                 val_loss_key: str = "val_loss", check_every: int = 50) -> None:
        super().__init__()
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.on_finding = on_finding
        self.config = config
        self.val_loss_key = val_loss_key
        self.check_every = check_every
        self.watcher: Watcher | None = None
        self._accumulate = 1
        self.paths: dict[str, Path] = {}

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.optimizers:
            return
        accumulate = int(getattr(trainer, "accumulate_grad_batches", 1) or 1)
        if not getattr(pl_module, "automatic_optimization", True):
            accumulate = 1  # manual optimization: the module decides when to step
        scaler = getattr(getattr(trainer, "precision_plugin", None), "scaler", None)
        self._accumulate = accumulate
        from nnrecipe.train.distributed import watcher_factory  # DDP: rank 0 reports

        make = watcher_factory(getattr(trainer.strategy, "model", None))
        self.watcher = make(pl_module, trainer.optimizers[0], on_finding=self.on_finding,
                            config=self.config, check_every=self.check_every,
                            name=type(pl_module).__name__, accumulate=accumulate,
                            scaler=scaler)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.watcher is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        value = _float(loss) if loss is not None else None
        if value is not None:
            # with accumulate_grad_batches=N, Lightning hands back the loss divided by N (what
            # it back-propagated); the monitor records the loss itself
            self.watcher.step(value * self._accumulate)
        if getattr(self.watcher, "should_stop", False):  # decided alike on every rank
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.watcher is None:
            return
        val: dict[str, float] = {}
        for key, value in trainer.callback_metrics.items():
            v = _float(value)
            if v is None or not math.isfinite(v):
                continue
            if key == self.val_loss_key:
                val["loss"] = v
            elif key.startswith("val_") or key.startswith("val/"):
                val[key[4:]] = v
        self.watcher.epoch(val=val)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._finish()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        if self.watcher is not None:
            self.watcher.close()

    def _finish(self) -> None:
        if self.watcher is None:
            return
        self.watcher.close()
        if self.out_dir is not None:
            self.paths = self.watcher.report(self.out_dir)
        elif hasattr(self.watcher, "finish"):
            self.watcher.finish()
        else:
            self.watcher.final_findings()
