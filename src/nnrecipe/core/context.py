"""The context a check runs in: the experiment, the device, the seed, and the helpers that
keep checks honest (fresh models, seeded loaders, the user's train step)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from nnrecipe.core import data as data_mod
from nnrecipe.core.interrupts import Interruption
from nnrecipe.core.progress import NullProgress, ProgressSink, Task
from nnrecipe.core.results import CheckResult, FigureArtifact, TableArtifact, figure_to_png
from nnrecipe.core.training import (
    Batch,
    default_train_step,
    loss_value,
    metrics_from_outputs,
    move_to,
    on_cpu,
    predict,
)
from nnrecipe.errors import ConfigurationError, ExperimentError
from nnrecipe.experiment import CLASSIFICATION_LOSSES, REGRESSION_LOSSES, Experiment


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError("--device cuda was asked for, but torch sees no CUDA device "
                                 "(torch.cuda.is_available() is False)")
    if device not in ("cpu", "cuda"):
        raise ConfigurationError(f"--device must be cpu, cuda or auto, got {device!r}")
    return torch.device(device)


class Context:
    """Shared by all checks of one run. ``state`` carries numbers between stages
    (e.g. baselines measured in the skeleton stage, the LR found in the overfit stage)."""

    def __init__(self, experiment: Experiment, *, device: str = "cpu", seed: int | None = None,
                 out_dir: Path | None = None, options: dict[str, Any] | None = None,
                 progress: ProgressSink | None = None) -> None:
        self.experiment = experiment
        self.device = resolve_device(device)
        self.seed = experiment.seed if seed is None else seed
        self.out_dir = out_dir
        self.options: dict[str, Any] = {**experiment.options, **(options or {})}
        self.progress: ProgressSink = progress or NullProgress()
        self.state: dict[str, Any] = {}
        self.current: CheckResult | None = None
        self._datasets: dict[str, Any] = {}
        self._stacked: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._task: str | None = None
        # Set by validation: a 1-sample batch cannot go through the model in training mode
        # (BatchNorm: "Expected more than 1 value per channel"), so shuffled training loaders
        # drop a last batch of one sample (see :meth:`loader`).
        self.drop_singleton_batches = False
        # Set when the run was asked to stop (Ctrl-C, SIGTERM): see nnrecipe.core.interrupts.
        self.interruption: Interruption | None = None

    # ----------------------------------------------------------------- data
    def dataset(self, split: str = "train") -> Any:
        if split not in self._datasets:
            raw = self.experiment.splits().get(split)
            if raw is None:
                raise KeyError(f"the experiment has no {split} split")
            self._datasets[split] = data_mod.as_dataset(raw, split)
        return self._datasets[split]

    def has_split(self, split: str) -> bool:
        return split in self.experiment.splits()

    def tensors(self, split: str = "train", limit: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The split (or its first ``limit`` samples) stacked as CPU tensors ``X, y``."""
        ds = self.dataset(split)
        n = data_mod.dataset_len(ds, split)
        key = f"{split}:{limit if limit is not None and limit < n else 'all'}"
        if key not in self._stacked:
            indices = None if limit is None or limit >= n else range(limit)
            self._stacked[key] = data_mod.stack_split(ds, split, indices)
        return self._stacked[key]

    def loader(self, split: str = "train", *, batch_size: int | None = None,
               shuffle: bool | None = None, indices: list[int] | None = None,
               seed: int | None = None, drop_last: bool | None = None) -> DataLoader:
        """A DataLoader whose shuffling is seeded, so the same seed gives the same batches.

        ``drop_last=None`` (the default) drops the last batch of a shuffled loader only when
        it would hold one sample and the model cannot train on one (validation found so)."""
        ds = self.dataset(split)
        if indices is not None:
            ds = Subset(ds, indices)
        shuffle = (split == "train") if shuffle is None else shuffle
        bs = batch_size or self.experiment.batch_size
        if drop_last is None:
            n = len(ds)
            drop_last = bool(shuffle and self.drop_singleton_batches and n > 1 and n % bs == 1)
        g = torch.Generator().manual_seed(self.seed if seed is None else seed)
        return DataLoader(ds, batch_size=bs, shuffle=shuffle, generator=g, drop_last=drop_last,
                          num_workers=0)

    def batch(self, split: str = "train", n: int | None = None) -> Batch:
        """The first ``n`` samples of a split as one batch on the device (no shuffling)."""
        X, y = self.tensors(split, limit=n or self.experiment.batch_size)
        return move_to((X, y), self.device)

    # ------------------------------------------------------------- the task
    @property
    def task_type(self) -> str:
        if self._task is None:
            self._task = self.experiment.task or self._infer_task()
        return self._task

    def _infer_task(self) -> str:
        loss = self.experiment.loss
        if isinstance(loss, CLASSIFICATION_LOSSES):
            return "classification"
        if isinstance(loss, REGRESSION_LOSSES):
            return "regression"
        _, y = self.tensors("train", limit=256)
        return "classification" if not y.is_floating_point() else "regression"

    # ------------------------------------------------------- model and step
    def fresh_model(self, seed: int | None = None, **kwargs: Any) -> nn.Module:
        """A new model from the user's factory, on the device, in train mode."""
        if seed is not None:
            torch.manual_seed(seed)
        try:
            model = self.experiment.model(**kwargs)
        except Exception as e:
            raise ExperimentError(f"the model factory raised {type(e).__name__}: {e}") from e
        if not isinstance(model, nn.Module):
            raise ExperimentError(f"the model factory returned {type(model).__name__}, "
                                  "not a torch.nn.Module")
        return model.to(self.device).train()

    def make_optimizer(self, model: nn.Module, factory: Callable | None = None
                       ) -> torch.optim.Optimizer:
        params = [p for p in model.parameters() if p.requires_grad]
        if factory is not None:
            return factory(params)
        return self.experiment.make_optimizer(params)

    @property
    def uses_custom_step(self) -> bool:
        return self.experiment.train_step is not None

    def step(self, model: nn.Module, batch: Batch, optimizer: torch.optim.Optimizer) -> float:
        """One training step through the user's ``train_step`` (or the built-in one)."""
        step = self.experiment.train_step or default_train_step
        return loss_value(step(model, move_to(batch, self.device), self.experiment.loss, optimizer))

    def evaluate(self, model: nn.Module, split: str = "val", *, limit: int | None = None
                 ) -> dict[str, float]:
        """Loss (and accuracy for classification) on a split, in eval mode, mode restored."""
        indices = None
        if limit is not None:
            n = data_mod.dataset_len(self.dataset(split), split)
            indices = list(range(min(limit, n)))
        loader = self.loader(split, shuffle=False, indices=indices,
                             batch_size=max(self.experiment.batch_size, 256))
        out, y = predict(model, loader, self.device)
        return metrics_from_outputs(out, y, on_cpu(self.experiment.loss), self.task_type)

    # -------------------------------------------------- recording artifacts
    def record(self, key: str, value: Any) -> None:
        """A number (or small JSON value) in the current check's metrics."""
        if self.current is not None:
            self.current.metrics[key] = value

    def add_table(self, title: str, columns: list[str], rows: list[list[Any]],
                  caption: str = "") -> None:
        if self.current is not None:
            self.current.tables.append(TableArtifact(title, list(columns), [list(r) for r in rows],
                                                     caption))

    def add_figure(self, title: str, fig: Any, caption: str = "") -> str:
        """Attach a matplotlib Figure to the current check (rendered once, then dropped)."""
        png = figure_to_png(fig)
        if self.current is not None:
            self.current.figures.append(FigureArtifact(title, png, caption))
        return title

    def task(self, description: str, total: int | None = None) -> Task:
        return Task(self.progress, description, total)

