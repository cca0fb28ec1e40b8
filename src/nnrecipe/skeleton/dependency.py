"""Charting dependencies with backprop, shared by ``batch-dependency`` and ``causal-leak``.

The recipe: "use backprop to chart dependencies". The gradient of one output with respect to
an input is exactly zero when the output does not depend on it: the backward of per-sample
operations multiplies by exact zeros, so no float tolerance is needed beyond guarding
against denormal noise. A :class:`Tracer` records the floating-point tensors that enter and
leave every module, in execution order, so that a dependency found at the input can be
located: the last traced tensor that still carries it marks where it is created.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nnrecipe.skeleton._util import batchnorm_to_eval, float_tensors

if TYPE_CHECKING:
    from nnrecipe.core.context import Context

# An output that does not depend on an input gets a gradient of exactly 0 (see above). A
# relative 1e-6 only absorbs what cannot be a real dependency: float32 round-off in the
# normalisation of a norm that is itself ~1e-7 of the largest.
DEP_TOL = 1e-6


@dataclass
class Event:
    order: int
    module: str  # qualified name ("" for the model itself)
    kind: str  # type name of the module
    where: str  # "in" or "out"
    tensor: torch.Tensor


class Tracer:
    """Forward hooks on every module recording float tensors that take part in autograd."""

    def __init__(self, model: nn.Module) -> None:
        self.events: list[Event] = []
        self.types: dict[str, nn.Module] = {}
        self._handles = []
        for name, m in model.named_modules():
            self.types[name] = m
            self._handles.append(m.register_forward_pre_hook(self._pre(name)))
            self._handles.append(m.register_forward_hook(self._post(name)))

    def _add(self, name: str, where: str, value: object) -> None:
        for t in float_tensors(value):
            if t.requires_grad and t.ndim >= 1:
                self.events.append(Event(len(self.events), name,
                                         type(self.types[name]).__name__, where, t))

    def _pre(self, name: str):  # noqa: ANN202
        def hook(module: nn.Module, args: tuple) -> None:
            self._add(name, "in", args)
        return hook

    def _post(self, name: str):  # noqa: ANN202
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            self._add(name, "out", output)
        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


@dataclass
class Traced:
    """One traced forward pass of a fresh model, as both dependency checks chart it."""

    x: torch.Tensor  # the input on the device; requires grad when it is floating point
    out: Any  # what the model returned
    events: list[Event]
    batchnorm_put_in_eval: list[str]


def traced_forward(ctx: Context, X: torch.Tensor) -> Traced:
    """A fresh model (seeded, batch norm in eval mode) run on ``X`` under a :class:`Tracer`,
    with floating-point inputs made leaves that require grad so they can be differentiated."""
    model = ctx.fresh_model(seed=ctx.seed)
    bn_names = batchnorm_to_eval(model)
    x = X.to(ctx.device)
    if x.is_floating_point():
        x = x.clone().requires_grad_(True)
    tracer = Tracer(model)
    try:
        out = model(x)
    finally:
        tracer.remove()
    return Traced(x, out, tracer.events, bn_names)


def output_weights(out: torch.Tensor, seed: int) -> torch.Tensor:
    """Seeded random weights, shaped like ``out``, that reduce an output slice to a scalar."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(out.shape, generator=gen).to(out.device, out.dtype)


def axis_of_size(t: torch.Tensor, n: int, prefer: int = 0) -> int | None:
    """The axis of ``t`` with size ``n``: ``prefer`` if it has it, else the only such axis."""
    if t.ndim > prefer and t.shape[prefer] == n:
        return prefer
    axes = [i for i, s in enumerate(t.shape) if s == n]
    return axes[0] if len(axes) == 1 else None


def norms_along(g: torch.Tensor | None, axis: int, n: int) -> torch.Tensor:
    """Euclidean norm of ``g`` for each index along ``axis`` (zeros when no gradient)."""
    if g is None:
        return torch.zeros(n, dtype=torch.float64)
    return g.detach().double().movedim(axis, 0).reshape(n, -1).norm(dim=1).cpu()


def carries(g: torch.Tensor | None, axis: int, n: int, own: int) -> bool:
    """Does gradient ``g`` reach indices other than ``own`` along ``axis``?"""
    if g is None:
        return False
    norms = norms_along(g, axis, n)
    total = float(norms.norm())
    if total == 0.0:
        return False
    others = torch.cat([norms[:own], norms[own + 1:]])
    return float(others.norm()) > DEP_TOL * total


def common_parent(a: str, b: str) -> str:
    pa, pb = a.split("."), b.split(".")
    common = []
    for x, y in zip(pa, pb, strict=False):
        if x != y:
            break
        common.append(x)
    return ".".join(common)


def describe(name: str) -> str:
    return f"`{name}`" if name else "the model"


def locate(events: list[Event], dirty: list[bool]) -> tuple[str, dict]:
    """Where the dependency is created: after the last traced tensor that still carries it.

    Returns a sentence and the evidence (module names and types).
    """
    last = max((i for i, d in enumerate(dirty) if d), default=None)
    if last is None:
        return "before the first traced module", {}
    e = events[last]
    nxt = events[last + 1] if last + 1 < len(events) else None
    if nxt is not None and e.where == "in" and nxt.module == e.module and nxt.where == "out":
        return (f"inside {describe(e.module)} ({e.kind})", {"module": e.module, "type": e.kind})
    if nxt is not None:
        parent = common_parent(e.module, nxt.module)
        return (f"in the code of {describe(parent)}.forward() between the {e.where}put of "
                f"{describe(e.module)} ({e.kind}) and the {nxt.where}put of "
                f"{describe(nxt.module)} ({nxt.kind}), an operation outside any module",
                {"after": e.module, "after_type": e.kind, "before": nxt.module,
                 "before_type": nxt.kind, "forward_of": parent})
    return (f"after {describe(e.module)} ({e.kind}), at the end of the forward",
            {"after": e.module, "after_type": e.kind})
