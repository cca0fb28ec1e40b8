"""The smallest training machinery every stage shares: a step, a loop, an evaluation.

The built-in step is the textbook one. When the experiment brings its own ``train_step`` it
is called instead, everywhere, because that is where real bugs live.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

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
    """The float a train step returned (a tensor, a number, or a dict with 'loss')."""
    if isinstance(loss, dict):
        loss = loss.get("loss")
    if isinstance(loss, torch.Tensor):
        return float(loss.detach().float().mean().cpu())
    if loss is None:
        return math.nan
    return float(loss)


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


def metrics_from_outputs(outputs: torch.Tensor, targets: torch.Tensor,
                         loss_fn: Callable[..., torch.Tensor], task: str) -> dict[str, float]:
    """Loss and, for classification, accuracy, from stacked outputs and targets."""
    with torch.no_grad():
        result = {"loss": float(loss_fn(outputs, targets))}
        if task == "classification":
            if outputs.ndim >= 2 and outputs.shape[1] > 1 and targets.dtype == torch.long:
                pred = outputs.argmax(dim=1)
                result["accuracy"] = float((pred == targets).float().mean())
            elif outputs.shape == targets.shape or outputs.squeeze(-1).shape == targets.shape:
                pred = (outputs.reshape(targets.shape) > 0).to(targets.dtype)
                result["accuracy"] = float((pred == targets).float().mean())
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
