"""``loss-nonfinite``: the first NaN/inf loss, wherever a step is taken; and the re-run of a
forward pass that names the first layer whose output is non-finite."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Declared


class LossNonfinite(Declared):
    code = "loss-nonfinite"
    stage = "train"
    severity = Severity.ERROR
    title = "The loss became NaN or infinite"
    fix = ("Find the first non-finite value: lower the learning rate, clip gradients "
           "(torch.nn.utils.clip_grad_norm_), check inputs and targets for NaN/inf, and guard "
           "log/sqrt/division against zero (use log_softmax + NLLLoss or CrossEntropyLoss on "
           "logits, never log(softmax)).")


def first_nonfinite(losses: Sequence[float]) -> int | None:
    """Index of the first NaN/inf in ``losses``, or None. The decision behind the finding."""
    for i, v in enumerate(losses):
        if not math.isfinite(v):
            return i
    return None


def nonfinite_finding(losses: Sequence[float], *, where: str, stage: str) -> Finding | None:
    i = first_nonfinite(losses)
    if i is None:
        return None
    before = [float(v) for v in losses[max(0, i - 5):i]]
    return LossNonfinite.make_finding(
        f"the loss became {losses[i]} at step {i} of {where}"
        + (f" (last finite values: {', '.join(f'{v:.4g}' for v in before)})" if before else ""),
        {"step": i, "value": str(losses[i]), "last_finite": before, "where": where},
        stage=stage)


def first_nonfinite_module(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                           device_type: str = "cpu", autocast: torch.dtype | None = None
                           ) -> tuple[str | None, bool]:
    """Re-run a forward pass (no grad; RNG and buffers restored; under ``autocast`` if given)
    and return the first leaf module whose output is non-finite, and whether the pass ran."""
    order: list[str] = []
    handles = []

    def make(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.is_floating_point() \
                    and not bool(torch.isfinite(output).all()):
                order.append(name)
        return hook

    for name, module in model.named_modules():
        if name and not list(module.children()):  # leaves: the layer that did it
            handles.append(module.register_forward_hook(make(name)))
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    devices = [a.device for a in args if isinstance(a, torch.Tensor) and a.is_cuda]
    amp: Any = contextlib.nullcontext()
    if torch.amp.is_autocast_available(device_type):
        amp = (torch.autocast(device_type, dtype=autocast) if autocast is not None
               else torch.autocast(device_type, enabled=False))
    ran = True
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad(), amp:
            model(*args, **kwargs)
    except Exception:  # noqa: BLE001 - diagnosis only; the real error surfaced already
        ran = False
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for k, v in model.named_buffers():
                if k in buffers:
                    v.copy_(buffers[k])
    return (order[0] if order else None), ran
