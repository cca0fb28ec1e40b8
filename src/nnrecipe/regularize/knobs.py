"""The knobs the regularize and tune stages turn, and how an experiment declares them.

A setting is a :class:`Settings`: learning rate, weight decay, batch size, epochs, model
keyword arguments and an optional input transform. :func:`build` turns one into a fresh
model and optimizer *without touching the user's objects*: the model comes from the user's
factory (with the keyword arguments), the optimizer from the user's factory, and only its
param groups' ``lr`` / ``weight_decay`` are then changed.

How an experiment declares its knobs (all optional):

- **capacity**: ``Experiment(capacity_arg="width", capacity_default=16)``: a keyword argument
  of the model factory that scales the model (the regularize stage tries half of it).
- **dropout**: a model-factory keyword argument named ``dropout`` is found automatically
  (``model=lambda width=16, dropout=0.0: Net(width, dropout)``); another name is declared with
  ``options={"dropout_arg": "p_drop"}``. ``options={"dropout_arg": None}`` turns it off.
- **smaller input**: ``options={"smaller_input": fn}`` or ``{"smaller_input": {"transform":
  fn, "name": "4x4 pooled", "model_kwargs": {...}}}``. ``fn`` maps a batch of inputs (on the
  device) to smaller ones; it is applied inside the model's forward pass (so it works with the
  user's ``train_step`` and at evaluation), and ``model_kwargs`` are passed to the factory when
  the model must be built for the smaller input.
- **weight decay**: used when the optimizer has a ``weight_decay`` hyper-parameter (all of
  ``torch.optim``'s do); AdamW's is decoupled, the others' are an L2 term in the gradient.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from nnrecipe.core.context import Context

InputTransform = Callable[[torch.Tensor], torch.Tensor]
_AUTO = object()


@dataclass
class Settings:
    """One training configuration, as overrides of the experiment's own (None: unchanged)."""

    lr: float | None = None
    weight_decay: float | None = None
    batch_size: int | None = None
    epochs: int | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    input_transform: InputTransform | None = None
    input_name: str = ""  # how the transform is described in tables

    def with_(self, **changes: Any) -> Settings:
        if "model_kwargs" in changes:
            changes["model_kwargs"] = {**self.model_kwargs, **changes["model_kwargs"]}
        return replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        """JSON-friendly description (for tables, evidence and ``ctx.state``)."""
        out: dict[str, Any] = {k: v for k, v in (("lr", self.lr), ("weight_decay", self.weight_decay),
                                                 ("batch_size", self.batch_size),
                                                 ("epochs", self.epochs)) if v is not None}
        out.update(self.model_kwargs)
        if self.input_transform is not None:
            out["input"] = self.input_name or "transformed"
        return out


RESERVED = ("lr", "weight_decay", "batch_size", "epochs")


def settings_from_overrides(overrides: dict[str, Any]) -> Settings:
    """A search space's dict: ``lr``, ``weight_decay``, ``batch_size``, ``epochs``; every other
    key is a keyword argument of the model factory."""
    s = Settings(model_kwargs={k: v for k, v in overrides.items() if k not in RESERVED})
    for k in RESERVED:
        if overrides.get(k) is not None:
            value = overrides[k]
            setattr(s, k, int(value) if k in ("batch_size", "epochs") else float(value))
    return s


class WithInputTransform(nn.Module):
    """``model(transform(x))``: the smaller-input rung without touching the user's data."""

    def __init__(self, model: nn.Module, transform: InputTransform) -> None:
        super().__init__()
        self.model = model
        self.transform = transform

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return self.model(self.transform(x), *args, **kwargs)


def factory_params(ctx: Context) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(ctx.experiment.model).parameters)
    except (TypeError, ValueError):
        return {}


def dropout_arg(ctx: Context) -> str | None:
    """The model-factory keyword that sets dropout, declared or found by name."""
    declared = ctx.options.get("dropout_arg", _AUTO)
    if declared is not _AUTO:
        return declared or None
    return "dropout" if "dropout" in factory_params(ctx) else None


def dropout_default(ctx: Context) -> float:
    arg = dropout_arg(ctx)
    p = factory_params(ctx).get(arg or "")
    if p is not None and isinstance(p.default, (int, float)) and not isinstance(p.default, bool):
        return float(p.default)
    return 0.0


def capacity(ctx: Context) -> tuple[str, float | int] | None:
    """``(capacity_arg, its default)`` when declared (the default read from the factory if
    ``capacity_default`` is not given)."""
    exp = ctx.experiment
    if not exp.capacity_arg:
        return None
    default = exp.capacity_default
    if default is None:
        p = factory_params(ctx).get(exp.capacity_arg)
        default = p.default if p is not None and p.default is not inspect.Parameter.empty else None
    if not isinstance(default, (int, float)) or isinstance(default, bool):
        return None
    return exp.capacity_arg, default


def smaller(value: float | int, factor: float = 0.5) -> float | int:
    if isinstance(value, int):
        return max(1, int(round(value * factor)))
    return value * factor


def smaller_input(ctx: Context) -> Settings | None:
    """The experiment's declared smaller-input setting, or None."""
    spec = ctx.options.get("smaller_input")
    if spec is None:
        return None
    if callable(spec):
        spec = {"transform": spec}
    if not isinstance(spec, dict) or not callable(spec.get("transform")):
        return None
    return Settings(input_transform=spec["transform"],
                    input_name=str(spec.get("name") or getattr(spec["transform"], "__name__", "")),
                    model_kwargs=dict(spec.get("model_kwargs") or {}))


def base_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0].get("lr", math.nan))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the first group's rate to ``lr`` and scale the other groups by the same factor
    (keeping per-group ratios the user chose)."""
    ref = base_lr(optimizer)
    for g in optimizer.param_groups:
        g["lr"] = lr if not ref or not math.isfinite(ref) else g["lr"] * lr / ref
        if "initial_lr" in g:  # a scheduler was attached: restart it from the new rate
            g["initial_lr"] = g["lr"]


def supports_weight_decay(optimizer: torch.optim.Optimizer) -> bool:
    return "weight_decay" in optimizer.defaults


def decoupled_weight_decay(optimizer: torch.optim.Optimizer) -> bool:
    """AdamW-style decay (weights shrink by lr*wd per step) rather than an L2 gradient term."""
    return isinstance(optimizer, torch.optim.AdamW) or bool(
        optimizer.defaults.get("decoupled_weight_decay"))


def current_weight_decay(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0].get("weight_decay", 0.0) or 0.0)


def set_weight_decay(optimizer: torch.optim.Optimizer, wd: float) -> None:
    for g in optimizer.param_groups:
        g["weight_decay"] = wd


def build(ctx: Context, settings: Settings, seed: int | None = None
          ) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A fresh model and optimizer for ``settings`` (seeded with ``seed``, default the run's)."""
    model = ctx.fresh_model(seed=ctx.seed if seed is None else seed, **settings.model_kwargs)
    if settings.input_transform is not None:
        model = WithInputTransform(model, settings.input_transform).to(ctx.device)
    optimizer = ctx.make_optimizer(model)
    if settings.lr is not None:
        set_lr(optimizer, settings.lr)
    if settings.weight_decay is not None and supports_weight_decay(optimizer):
        set_weight_decay(optimizer, settings.weight_decay)
    return model, optimizer


def rebuild(ctx: Context, settings: Settings, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """A model of ``settings``' architecture with the given weights, in eval mode."""
    model, _ = build(ctx, settings)
    model.load_state_dict(state_dict)
    return model.eval()


def scheduler_factory(ctx: Context) -> Any:
    """The schedule named by ``options["schedule"]`` (constant when unnamed or unavailable),
    so the stages train the way the train stage does."""
    name = ctx.options.get("schedule")
    if not name or name == "constant":
        return None
    try:
        from nnrecipe.overfit.schedules import make_scheduler  # type: ignore[import-not-found]
    except ImportError:
        return None
    return make_scheduler(name)
