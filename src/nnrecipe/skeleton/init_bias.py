"""``init_output_bias``: set the last layer's bias so the model starts at the reference loss.

Karpathy's "init well": with 1:10 imbalance, initialise the logits' bias so that the network
predicts 0.1 at initialisation; for regression, initialise the bias to the targets' mean.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nnrecipe.core.data import as_dataset, stack_split
from nnrecipe.errors import ConfigurationError


def last_biased_layer(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The last Linear/Conv layer (in registration order) that has a bias."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and module.bias is not None:
            found = (name, module)
    return found


@torch.no_grad()
def init_output_bias(model: nn.Module, train: Any, loss: nn.Module | None = None,
                     task: str | None = None) -> torch.Tensor:
    """Set the output bias of ``model`` from the training targets; returns the new bias.

    Classification (softmax/CrossEntropy): ``log(prior)``; binary/multi-label with
    ``BCEWithLogitsLoss``: ``logit(frequency)``; regression: the targets' mean. The last
    weight matrix is left alone. Works in place on ``model`` (call it on your own model, after
    construction): nnrecipe's checks never call it on yours.
    """
    found = last_biased_layer(model)
    if found is None:
        raise ConfigurationError("the model has no Linear/Conv layer with a bias to initialise")
    _, layer = found
    _, y = stack_split(as_dataset(train, "train"), "train")
    bias = layer.bias
    n_out = bias.shape[0]
    if task is None:
        task = "regression" if y.is_floating_point() else "classification"
    if isinstance(loss, nn.BCEWithLogitsLoss):
        freq = y.float().reshape(len(y), -1).mean(0).clamp(1e-4, 1 - 1e-4)
        value = torch.logit(freq).expand(n_out) if freq.numel() == 1 else torch.logit(freq)
    elif task == "classification":
        counts = torch.bincount(y.reshape(-1).long(), minlength=n_out)[:n_out].float()
        prior = (counts / counts.sum()).clamp(min=1e-4)
        value = prior.log() - prior.log().mean()
    else:
        mean = y.float().reshape(len(y), -1).mean(0)
        value = mean.expand(n_out) if mean.numel() == 1 else mean
    if value.numel() != n_out:
        raise ConfigurationError(f"the last biased layer has {n_out} outputs but the targets "
                                 f"suggest {value.numel()}")
    bias.copy_(value.to(bias))
    return bias.detach().clone()
