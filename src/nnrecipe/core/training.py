"""The smallest training machinery every stage shares: a step, a loop, an evaluation.

The built-in step is the textbook one. When the experiment brings its own ``train_step`` it
is called instead, everywhere, because that is where real bugs live.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nnrecipe.errors import ContractError

Batch = Any


def move_to(batch: Batch, device: torch.device | str) -> Batch:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    return batch


def default_train_step(model: nn.Module, batch: Batch, loss_fn: Callable[..., torch.Tensor],
                       optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """zero_grad, forward, loss, backward, step: the loop the recipe assumes."""
    x, y = batch[0], batch[1]
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss


def loss_value(loss: Any) -> float:
    """The float a train step returned: a scalar tensor, a number, or a dict with a
    ``"loss"`` entry. Anything else breaks the ``train_step`` contract (every check reads
    the loss from it) and raises :class:`~nnrecipe.errors.ContractError`."""
    value = loss.get("loss") if isinstance(loss, dict) else loss
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.detach().float().reshape(()).cpu())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hasattr(value, "item") and getattr(value, "size", None) == 1:  # numpy scalar
        return float(value.item())
    raise ContractError(
        f"train_step returned {_describe(loss)}; it must return the step's loss as a scalar "
        "tensor or a number (end it with `return loss`)")


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, dict):
        return f"a dict without a scalar 'loss' (keys: {sorted(map(str, value))[:5]})"
    return "None" if value is None else f"a {type(value).__name__}"


def infinite_batches(loader: Iterable[Batch]) -> Iterable[Batch]:
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the data loader yielded no batches")


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable[Batch], device: torch.device | str
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Model outputs and targets over a loader, in eval mode; the mode is restored."""
    was_training = model.training
    model.eval()
    outs, ys = [], []
    try:
        for batch in loader:
            x, y = move_to(batch[0], device), batch[1]
            outs.append(model(x).detach().float().cpu())
            ys.append(y.cpu())
    finally:
        model.train(was_training)
    return torch.cat(outs), torch.cat(ys)


# Confident logits for the layout test: a one-hot at the target along the class dimension
# the loss really uses scores a cross-entropy of ~C * e^-20, along the wrong one ~20 per position.
_ORACLE_LOGIT = 20.0


@dataclass(frozen=True)
class Hits:
    """Which predictions were right: ``correct`` and ``valid`` are bool ``(B, P)`` (``P``
    scored positions per sample: 1 for ``(B, C)`` outputs, ``T`` for ``(B, T, C)``, the
    labels of a multi-label output); ``valid`` is False where the target is ignored
    (``ignore_index``, negative padding)."""

    correct: torch.Tensor
    valid: torch.Tensor
    layout: str

    def accuracy(self) -> float:
        n = int(self.valid.sum())
        return float((self.correct & self.valid).sum()) / n if n else math.nan

    def per_sample(self) -> torch.Tensor:
        """``(B,)`` float: the fraction of each sample's scored positions that are right
        (NaN for a sample with none)."""
        n = self.valid.sum(1).float()
        hit = (self.correct & self.valid).sum(1).float()
        return torch.where(n > 0, hit / n.clamp(min=1), torch.full_like(n, math.nan))


def prediction_hits(outputs: torch.Tensor, targets: torch.Tensor,
                    loss_fn: Callable[..., torch.Tensor] | None = None) -> Hits | str:
    """Right/wrong per prediction for a classification output, whatever its layout; or the
    reason accuracy is not defined for it (a string), never an exception.

    Supported: class scores ``(B, C)`` with targets ``(B,)``; ``(B, C, d1, ...)`` with
    ``(B, d1, ...)`` (PyTorch's convention, e.g. segmentation); ``(B, d1, ..., C)`` with
    ``(B, d1, ...)`` (nanoGPT / Hugging Face logits, a loss that flattens); class
    probabilities or one-hot targets of the outputs' shape (``CrossEntropyLoss`` soft labels);
    binary ``(B,)`` / ``(B, 1)`` and multi-label ``(B, K)`` outputs with 0/1 targets (logits,
    or probabilities under ``BCELoss``). When ``(B, T, C)`` has ``T == C`` the class dimension
    is the one on which a perfect prediction gets the lower loss.
    """
    if not isinstance(outputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
        return "outputs or targets are not tensors"
    if outputs.ndim == 0 or targets.ndim == 0 or len(outputs) != len(targets):
        return (f"outputs {tuple(outputs.shape)} and targets {tuple(targets.shape)} do not have "
                "one row per sample")
    out = outputs.detach().float().cpu()
    y = targets.detach().cpu()
    if not torch.isfinite(out).all():
        out = torch.nan_to_num(out, nan=0.0)  # a NaN output is never right, never a crash
    if not (y.is_floating_point() or y.is_complex()):
        return _index_hits(out, y.long(), loss_fn)
    if y.is_complex():
        return "complex targets"
    if out.shape == y.shape or (out.ndim == y.ndim + 1 and out.shape[-1] == 1
                                and out.shape[:-1] == y.shape):
        out = out.reshape(y.shape)
        if _is(loss_fn, "CrossEntropyLoss") and out.ndim >= 2:
            valid = torch.ones(len(y), 1, dtype=torch.bool)
            hit = (out.argmax(1) == y.argmax(1)).reshape(len(y), -1)
            return Hits(hit, valid.expand_as(hit), "class probabilities (B, C)")
        if not torch.isfinite(y).all() or y.min() < 0 or y.max() > 1:
            return "float targets outside [0, 1] with outputs of the same shape (regression?)"
        return _threshold_hits(out, y > 0.5, loss_fn)
    return (f"outputs {tuple(outputs.shape)} and float targets {tuple(targets.shape)}: no "
            "supported classification layout")


def _is(loss_fn: Any, name: str) -> bool:
    return type(loss_fn).__name__ == name


def _threshold_hits(out: torch.Tensor, y: torch.Tensor, loss_fn: Any) -> Hits:
    """Binary / multi-label: outputs are logits (threshold 0) unless the loss takes
    probabilities (``BCELoss``) or, for an unknown loss, every output lies in [0, 1]."""
    probs = _is(loss_fn, "BCELoss") or (
        not _is(loss_fn, "BCEWithLogitsLoss") and not _is(loss_fn, "MultiLabelSoftMarginLoss")
        and bool(out.min() >= 0) and bool(out.max() <= 1))
    pred = out > (0.5 if probs else 0.0)
    n = len(y)
    hit = (pred == y.bool()).reshape(n, -1)
    kind = "multi-label" if hit.shape[1] > 1 else "binary"
    return Hits(hit, torch.ones_like(hit), f"{kind} ({'probabilities' if probs else 'logits'})")


def _index_hits(out: torch.Tensor, y: torch.Tensor, loss_fn: Any) -> Hits | str:
    n = len(y)
    ignore = getattr(loss_fn, "ignore_index", None)
    valid = y >= 0
    if isinstance(ignore, int):
        valid &= y != ignore
    if out.shape == y.shape or (out.ndim == y.ndim + 1 and out.shape[-1] == 1
                                and out.shape[:-1] == y.shape):
        if valid.any() and int(y[valid].max()) > 1:
            return (f"outputs {tuple(out.shape)} have one score per target but the targets hold "
                    "class indices > 1: no class dimension to take the argmax of")
        hits = _threshold_hits(out.reshape(y.shape), y > 0, loss_fn)
        return Hits(hits.correct, valid.reshape(n, -1), hits.layout)
    if out.ndim != y.ndim + 1:
        return (f"outputs {tuple(out.shape)} and class-index targets {tuple(y.shape)}: the "
                "outputs need exactly one more (class) dimension")
    first = out.shape[:1] + out.shape[2:] == y.shape
    last = out.shape[:-1] == y.shape
    if not first and not last:
        return (f"outputs {tuple(out.shape)} and targets {tuple(y.shape)}: no dimension of the "
                "outputs is the class dimension (expected (B, C, ...) or (B, ..., C))")
    if first and last and out.ndim > 2:
        dim = _class_dim_by_loss(out, y, valid, loss_fn)
        if dim is None:
            return (f"outputs {tuple(out.shape)}: dimension 1 and the last both fit the targets "
                    f"{tuple(y.shape)}, and the loss does not say which holds the classes")
    else:
        dim = 1 if first else out.ndim - 1
    pred = out.argmax(dim)
    layout = "(B, C)" if out.ndim == 2 else ("(B, C, ...)" if dim == 1 else "(B, ..., C)")
    return Hits((pred == y).reshape(n, -1), valid.reshape(n, -1), f"class scores {layout}")


def _class_dim_by_loss(out: torch.Tensor, y: torch.Tensor, valid: torch.Tensor,
                       loss_fn: Any) -> int | None:
    if loss_fn is None:
        return None
    c = out.shape[1]
    safe = torch.where(valid & (y < c), y, torch.zeros_like(y))
    losses = []
    for dim in (1, out.ndim - 1):
        oracle = torch.zeros_like(out).movedim(dim, -1)
        oracle.scatter_(-1, safe.unsqueeze(-1), _ORACLE_LOGIT)
        try:
            with torch.no_grad():
                losses.append(float(loss_fn(oracle.movedim(-1, dim), y)))
        except Exception:  # noqa: BLE001 - a loss that rejects the layout: not this one
            losses.append(math.inf)
    a, b = losses
    if min(a, b) < 0.5 * max(a, b):  # one layout is clearly the loss's
        return 1 if a < b else out.ndim - 1
    return None


def accuracy_skip_reason(outputs: torch.Tensor, targets: torch.Tensor,
                         loss_fn: Callable[..., torch.Tensor] | None = None) -> str | None:
    """Why accuracy is not computed for these outputs (None when it is)."""
    hits = prediction_hits(outputs, targets, loss_fn)
    return hits if isinstance(hits, str) else None


def correct_per_sample(outputs: torch.Tensor, targets: torch.Tensor,
                       loss_fn: Callable[..., torch.Tensor] | None = None) -> torch.Tensor | None:
    """``(B,)`` float: each sample's fraction of right predictions (1/0 for ``(B, C)``), or
    None when accuracy is not defined for the layout. A sample with no scored position (all
    padding) gets the overall accuracy, so paired comparisons stay finite."""
    hits = prediction_hits(outputs, targets, loss_fn)
    if isinstance(hits, str):
        return None
    per = hits.per_sample()
    return torch.nan_to_num(per, nan=hits.accuracy()) if torch.isnan(per).any() else per


def metrics_from_outputs(outputs: torch.Tensor, targets: torch.Tensor,
                         loss_fn: Callable[..., torch.Tensor], task: str) -> dict[str, float]:
    """Loss and, for classification, accuracy (see :func:`prediction_hits` for the layouts;
    absent when it is not defined), from stacked outputs and targets."""
    with torch.no_grad():
        result = {"loss": float(loss_fn(outputs, targets))}
    if task == "classification":
        hits = prediction_hits(outputs, targets, loss_fn)
        if isinstance(hits, Hits):
            result["accuracy"] = hits.accuracy()
    return result


def on_cpu(loss_fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """A CPU copy of a loss module (its class weights may live on the GPU); functions pass."""
    if isinstance(loss_fn, nn.Module):
        import copy

        return copy.deepcopy(loss_fn).to("cpu")
    return loss_fn


def per_sample_losses(loss_fn: Callable[..., torch.Tensor], out: torch.Tensor, y: torch.Tensor
                      ) -> torch.Tensor:
    """The user's loss for each sample (mean over any other dimension), on CPU tensors."""
    n = len(out)
    with torch.no_grad():
        if isinstance(loss_fn, nn.Module) and hasattr(loss_fn, "reduction"):
            fn = on_cpu(loss_fn)
            fn.reduction = "none"
            try:
                values = fn(out, y)
                if values.ndim >= 1 and values.shape[0] == n:
                    return values.reshape(n, -1).float().mean(1)
            except Exception:  # noqa: BLE001 - fall back to one call per sample
                pass
        return torch.stack([torch.as_tensor(loss_fn(out[i:i + 1], y[i:i + 1])).float().reshape(())
                            for i in range(n)])
