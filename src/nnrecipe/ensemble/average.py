"""Averaging the predictions of several models, in the space where averaging makes sense.

Logits are not averaged: probabilities are (for softmax and sigmoid outputs), and the result is
turned back into what the user's loss expects, so the ensemble is scored with the same loss
and accuracy as its members.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

EPS = 1e-7


def average_outputs(loss_fn: Callable[..., torch.Tensor], outputs: Sequence[torch.Tensor]
                    ) -> torch.Tensor:
    """The ensemble's output, in the form ``loss_fn`` takes (CPU tensors of one shape)."""
    if not outputs:
        raise ValueError("average_outputs needs at least one model's outputs")
    stacked = torch.stack([o.float() for o in outputs])
    if isinstance(loss_fn, nn.CrossEntropyLoss) and stacked.ndim >= 3:
        # mean of the softmax probabilities, returned as log-probabilities (valid logits)
        return torch.logsumexp(torch.log_softmax(stacked, dim=2), dim=0) - torch.log(
            torch.tensor(float(len(outputs))))
    if isinstance(loss_fn, nn.NLLLoss):  # outputs are log-probabilities already
        return torch.logsumexp(stacked, dim=0) - torch.log(torch.tensor(float(len(outputs))))
    if isinstance(loss_fn, nn.BCEWithLogitsLoss):
        p = torch.sigmoid(stacked).mean(0).clamp(EPS, 1 - EPS)
        return torch.logit(p)
    return stacked.mean(0)  # probabilities (BCELoss) and regression outputs
