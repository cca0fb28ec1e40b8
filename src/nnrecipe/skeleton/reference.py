"""The loss an input-independent predictor that knows only the targets' distribution gets.

This is the loss a well-initialised network should start near: ln C for balanced softmax
classification, the class prior's entropy when imbalanced, the targets' variance for MSE.
Computing it with the user's own loss function (on a constant prediction) takes label
smoothing, class weights and reductions into account for free.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def class_prior(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    counts = torch.bincount(y.reshape(-1).clamp(min=0), minlength=n_classes)[:n_classes].float()
    return counts / counts.sum().clamp(min=1)


def constant_prediction(loss_fn: Callable, output: torch.Tensor, y: torch.Tensor
                        ) -> torch.Tensor | None:
    """The best input-independent output, shaped like ``output``; None for unknown losses."""
    if isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss)) and output.ndim >= 2:
        n_classes = output.shape[1]
        if y.is_floating_point():  # class probabilities as targets
            prior = y.float().transpose(0, 1).reshape(n_classes, -1).mean(dim=1)
        else:
            prior = class_prior(y, n_classes)
        logp = prior.clamp(min=1e-8).log()
        logp = logp - torch.logsumexp(logp, 0)
        shape = [1, n_classes] + [1] * (output.ndim - 2)
        return logp.reshape(shape).expand_as(output).clone()
    if isinstance(loss_fn, (nn.BCEWithLogitsLoss, nn.BCELoss)):
        freq = y.float().reshape(output.shape).mean(dim=0, keepdim=True).clamp(1e-6, 1 - 1e-6)
        value = torch.logit(freq) if isinstance(loss_fn, nn.BCEWithLogitsLoss) else freq
        return value.expand_as(output).clone()
    if isinstance(loss_fn, (nn.MSELoss, nn.SmoothL1Loss, nn.HuberLoss)):
        target = y.float().reshape(output.shape) if y.numel() == output.numel() else None
        if target is None:
            return None
        return target.mean(dim=0, keepdim=True).expand_as(output).clone()
    if isinstance(loss_fn, nn.L1Loss):
        if y.numel() != output.numel():
            return None
        target = y.float().reshape(output.shape)
        return target.median(dim=0, keepdim=True).values.expand_as(output).clone()
    return None


def zero_output_loss(loss_fn: Callable, output: torch.Tensor, y: torch.Tensor) -> float | None:
    """The loss of all-zero logits/outputs: ln C for softmax, E[y^2] for MSE."""
    if isinstance(loss_fn, nn.BCELoss):
        return float(loss_fn(torch.full_like(output, 0.5), y))
    if isinstance(loss_fn, nn.NLLLoss) and output.ndim >= 2:
        uniform = torch.full_like(output, -float(torch.log(torch.tensor(output.shape[1]))))
        return float(loss_fn(uniform, y))
    try:
        return float(loss_fn(torch.zeros_like(output), y))
    except Exception:  # noqa: BLE001 - a custom loss may not accept zeros
        return None
