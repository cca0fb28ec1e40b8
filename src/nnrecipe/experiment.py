"""The :class:`Experiment` a user hands to nnrecipe: model factory, data, loss, optimizer."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nnrecipe.errors import ExperimentError

ModelFactory = Callable[..., nn.Module]
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
TrainStep = Callable[[nn.Module, Any, Callable, torch.optim.Optimizer], Any]

CLASSIFICATION_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss, nn.BCEWithLogitsLoss, nn.BCELoss,
                         nn.MultiLabelSoftMarginLoss)
REGRESSION_LOSSES = (nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss, nn.GaussianNLLLoss)
TASKS = ("classification", "regression")


def default_optimizer(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """Adam at 3e-4: the recipe's safe default."""
    return torch.optim.Adam(params, lr=3e-4)


@dataclass
class Experiment:
    """Everything nnrecipe needs to walk the recipe on a user's setup.

    ``model`` is a *factory*: each call returns a fresh, freshly initialised model, so checks
    never touch the user's trained weights. Datasets are torch ``Dataset``s yielding
    ``(input, target)`` or ``(X, y)`` pairs of arrays/tensors. ``train_step``, when given,
    replaces the built-in step everywhere a step is taken: ``step(model, batch, loss,
    optimizer)`` must do the whole step (zero_grad, forward, backward, step) and return the
    loss.
    """

    model: ModelFactory
    train: Any
    loss: Callable[..., torch.Tensor]
    val: Any = None
    test: Any = None
    optimizer: OptimizerFactory | None = None
    task: str | None = None
    batch_size: int = 64
    epochs: int = 10
    seed: int = 0
    train_step: TrainStep | None = None
    name: str | None = None
    # Sequence models that must be autoregressive: output t may depend on inputs <= t only.
    causal: bool = False
    # Name of a keyword argument of ``model`` that scales its capacity (e.g. "width"), and its
    # default value; with it the overfit and regularize stages try smaller and larger models.
    capacity_arg: str | None = None
    capacity_default: float | int | None = None
    # Optional search space for ``nnrecipe tune``: a function of an optuna.Trial returning a
    # dict of overrides (lr, weight_decay, batch_size, model kwargs...).
    search_space: Callable[[Any], dict[str, Any]] | None = None
    # Free-form options read by individual stages (documented where they are read).
    options: dict[str, Any] = field(default_factory=dict)
    # The entity each sample belongs to (patient, user, session, document), per split:
    # {"train": array, "val": array, ...}, each aligned with its dataset. The data stage then
    # reports groups present in two splits (group-leakage).
    groups: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not callable(self.model):
            raise ExperimentError(
                "Experiment(model=...) must be a factory returning a fresh nn.Module "
                f"(e.g. `model=lambda: Net()`), got {type(self.model).__name__}")
        if isinstance(self.model, nn.Module):
            raise ExperimentError(
                "Experiment(model=...) got a model instance; pass a factory instead, "
                "e.g. `model=lambda: Net()`, so every check starts from fresh weights")
        if self.train is None:
            raise ExperimentError("Experiment(train=...) is required")
        if not callable(self.loss):
            raise ExperimentError(f"Experiment(loss=...) must be callable, got {self.loss!r}")
        if self.optimizer is not None and not callable(self.optimizer):
            raise ExperimentError(
                "Experiment(optimizer=...) must be a factory of parameters, e.g. "
                "`optimizer=lambda params: torch.optim.Adam(params, lr=3e-4)`")
        if self.task is not None and self.task not in TASKS:
            raise ExperimentError(f"Experiment(task={self.task!r}): valid tasks are {TASKS}")
        for attr in ("batch_size", "epochs"):
            value = getattr(self, attr)
            if not isinstance(value, int) or value < 1:
                raise ExperimentError(f"Experiment({attr}=...) must be a positive integer, got {value!r}")
        if self.train_step is not None and not callable(self.train_step):
            raise ExperimentError("Experiment(train_step=...) must be callable")
        if self.groups is not None:
            self.groups = _validate_groups(self.groups, self.splits())

    def make_optimizer(self, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        factory = self.optimizer or default_optimizer
        return factory(params)

    def splits(self) -> dict[str, Any]:
        """The datasets that are present, by split name, in the order train, val, test."""
        return {k: v for k, v in (("train", self.train), ("val", self.val), ("test", self.test))
                if v is not None}


def _validate_groups(groups: Any, splits: dict[str, Any]) -> dict[str, Any]:
    """``groups`` as {split: 1-D numpy array}, or one clear ExperimentError."""
    import numpy as np

    if not isinstance(groups, dict):
        raise ExperimentError("Experiment(groups=...) must be a dict of one group id per sample "
                              "for each split, e.g. groups={'train': patient_ids_train, "
                              f"'val': patient_ids_val}}; got {type(groups).__name__}")
    out: dict[str, Any] = {}
    for split, ids in groups.items():
        if split not in splits:
            raise ExperimentError(f"Experiment(groups=...) names split {split!r}, but the "
                                  f"experiment's splits are {', '.join(splits)}")
        arr = np.asarray(ids.detach().cpu() if isinstance(ids, torch.Tensor) else ids)
        if arr.ndim != 1:
            raise ExperimentError(f"Experiment(groups={{{split!r}: ...}}) must be 1-D (one group "
                                  f"id per sample), got shape {arr.shape}")
        data = splits[split]
        try:
            n = len(data[0]) if isinstance(data, (tuple, list)) else len(data)
        except TypeError:
            n = None
        if n is not None and len(arr) != n:
            raise ExperimentError(f"Experiment(groups=...): {split} has {n} samples but "
                                  f"{len(arr)} group ids")
        out[split] = arr.astype(str) if arr.dtype == object else arr
    return out
