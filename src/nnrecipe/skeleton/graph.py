"""What the autograd graph actually uses, next to what the module system registers.

``graph_leaves`` walks ``grad_fn`` from a tensor back to its ``AccumulateGrad`` nodes: the
leaf tensors a backward pass would write ``.grad`` into - every parameter the computation
used, registered or not. ``attribute_paths`` finds, by walking module attributes, the
parameters and grad-requiring tensors kept where ``named_parameters()`` cannot see them
(a plain Python list, tuple or dict of layers, a tensor attribute instead of an
``nn.Parameter``), and names them by their path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

_REGISTRIES = ("_parameters", "_buffers", "_modules", "_non_persistent_buffers_set",
               "_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
               "_backward_pre_hooks", "_state_dict_hooks", "_load_state_dict_pre_hooks",
               "_state_dict_pre_hooks", "_load_state_dict_post_hooks",
               "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs",
               "_forward_hooks_always_called")
_MAX_DEPTH = 3  # nesting of lists/dicts inside a module attribute


def graph_leaves(tensors: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """The grad-requiring leaf tensors the graphs of ``tensors`` reach, each once."""
    seen: set[int] = set()
    found: dict[int, torch.Tensor] = {}
    stack: list[Any] = []
    for t in tensors:
        if not isinstance(t, torch.Tensor):
            continue
        if t.grad_fn is None:
            if t.requires_grad:
                found.setdefault(id(t), t)
            continue
        stack.append(t.grad_fn)
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        var = getattr(fn, "variable", None)  # AccumulateGrad
        if isinstance(var, torch.Tensor):
            found.setdefault(id(var), var)
            continue
        stack.extend(f for f, _ in getattr(fn, "next_functions", ()))
    return list(found.values())


def attribute_paths(model: nn.Module) -> dict[int, str]:
    """``id -> path`` of parameters and grad-requiring tensors reachable through plain
    attributes of the model's modules (lists, tuples, dicts, bare tensors) rather than
    through the module registry, e.g. ``blocks[0].weight`` for ``self.blocks = [Linear]``."""
    registered = {id(p) for p in model.parameters()}
    found: dict[int, str] = {}

    def visit(value: Any, path: str, depth: int) -> None:
        if isinstance(value, nn.Module):
            for name, p in value.named_parameters():
                if id(p) not in registered:
                    found.setdefault(id(p), f"{path}.{name}")
            return
        if isinstance(value, torch.Tensor):
            if value.requires_grad and value.grad_fn is None and id(value) not in registered:
                found.setdefault(id(value), path)
            return
        if depth >= _MAX_DEPTH:
            return
        if isinstance(value, (list, tuple)):
            for i, v in enumerate(value[:256]):
                visit(v, f"{path}[{i}]", depth + 1)
        elif isinstance(value, dict):
            for k, v in list(value.items())[:256]:
                visit(v, f"{path}[{k!r}]", depth + 1)

    for mod_name, module in model.named_modules():
        for attr, value in vars(module).items():
            if attr in _REGISTRIES or attr.startswith("__"):
                continue
            visit(value, f"{mod_name}.{attr}" if mod_name else attr, 0)
    return found


VIEW_OPS = ("View", "Reshape", "Unsqueeze", "Squeeze", "Permute", "Transpose", "Clone",
            "Contiguous", "Expand", "Select", "Slice", "Unsafe", "As", "Flatten", "Index",
            "ToCopy")
_VIEW_EXACT = ("TBackward0", "AliasBackward0", "NumpyTBackward0")
_MAX_NODES = 5000


def is_view_op(name: str) -> bool:
    return name.startswith(VIEW_OPS) or name in _VIEW_EXACT


def _skip_views(fn: Any) -> Any:
    for _ in range(16):
        if fn is None:
            return fn
        name = type(fn).__name__
        nxt = fn.next_functions[0][0] if getattr(fn, "next_functions", None) else None
        if is_view_op(name) and nxt is not None:
            fn = nxt
            continue
        return fn
    return fn


def loss_graph(loss: Any, output: Any) -> list[tuple[str, str, bool]]:
    """What the loss does with the model's output, read from the autograd graph between the
    loss value and the output: ``(producer, consumer, inside)`` op pairs, view-like ops
    skipped on both sides, ``inside`` False when the producer is the model's own last op.
    ``("SoftmaxBackward0", "LogSoftmaxBackward0", True)`` is a softmax applied inside the loss
    whose result a log-softmax (a cross-entropy) takes again."""
    if not isinstance(loss, torch.Tensor) or loss.grad_fn is None:
        return []
    stop = output.grad_fn if isinstance(output, torch.Tensor) else None
    inside: dict[int, Any] = {}
    stack = [loss.grad_fn]
    while stack and len(inside) < _MAX_NODES:
        fn = stack.pop()
        if fn is None or fn is stop or id(fn) in inside or type(fn).__name__ == "AccumulateGrad":
            continue
        inside[id(fn)] = fn
        stack.extend(child for child, _ in fn.next_functions)
    pairs = set()
    for fn in inside.values():
        name = type(fn).__name__
        if is_view_op(name):
            continue
        for child, _ in fn.next_functions:
            producer = _skip_views(child)
            if producer is None or type(producer).__name__ == "AccumulateGrad":
                continue
            pairs.add((type(producer).__name__, name, id(producer) in inside))
    return sorted(pairs)
