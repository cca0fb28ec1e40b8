"""``target-shape-mismatch``: an element-wise loss that silently broadcasts.

``MSELoss()(output, target)`` with outputs of shape (N, 1) and targets of shape (N,)
broadcasts both to (N, N) and compares every output with every target: the loss is finite,
decreases a little, and the model learns to predict the mean. PyTorch only warns. The probe
observes the shapes the loss actually received inside the user's step.
"""

from __future__ import annotations

import torch
from torch import nn

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check
from nnrecipe.skeleton._util import ELEMENTWISE_LOSSES
from nnrecipe.skeleton.probe import get_probe, probe_skip_reason

_ELEMENTWISE_FUNCTIONS = ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
                          "binary_cross_entropy", "binary_cross_entropy_with_logits")


def is_elementwise(loss_fn: object) -> bool:
    if isinstance(loss_fn, ELEMENTWISE_LOSSES):
        return True
    name = getattr(loss_fn, "__name__", "") or getattr(getattr(loss_fn, "func", None), "__name__", "")
    return name in _ELEMENTWISE_FUNCTIONS


def broadcast_verdict(output_shape: tuple[int, ...], target_shape: tuple[int, ...]
                      ) -> tuple[int, ...] | None:
    """Pure decision: the shape the loss silently broadcast to, or None when shapes match
    (or cannot broadcast at all, which PyTorch reports itself)."""
    if tuple(output_shape) == tuple(target_shape):
        return None
    try:
        return tuple(torch.broadcast_shapes(tuple(output_shape), tuple(target_shape)))
    except RuntimeError:
        return None


class TargetShapeMismatch(Check):
    code = "target-shape-mismatch"
    stage = "skeleton"
    severity = Severity.ERROR
    title = "Outputs and targets have the same shape in the loss"
    fix = ("Make outputs and targets the same shape before the loss: `output.squeeze(-1)` for "
           "(N, 1) outputs and (N,) targets, or `target.unsqueeze(-1)` / `target.view_as(output)`.")
    order = 12

    def applies(self, ctx: Context) -> str | None:
        if not is_elementwise(ctx.experiment.loss):
            return (f"{type(ctx.experiment.loss).__name__} is not an element-wise loss that "
                    "broadcasts (checked: MSE, L1, SmoothL1, Huber, BCE, BCEWithLogits)")
        return probe_skip_reason(ctx, self.name)

    def run(self, ctx: Context) -> list[Finding]:
        probe = get_probe(ctx, self.name)["a"]
        calls = [c for c in probe.loss_calls if isinstance(c.target, torch.Tensor)]
        if not calls:
            ctx.record("skipped", "the training step did not call the loss with tensors")
            return []
        call = calls[0]
        out_shape, tgt_shape = tuple(call.output.shape), tuple(call.target.shape)
        ctx.record("output_shape", list(out_shape))
        ctx.record("target_shape", list(tgt_shape))
        broadcast = broadcast_verdict(out_shape, tgt_shape)
        if broadcast is None:
            return []
        n_out, n_tgt = call.output.numel(), call.target.numel()
        factor = max(1, int(torch.tensor(broadcast).prod()) // max(n_out, n_tgt))
        warned = [w for w in probe.warnings if "size" in w or "broadcast" in w]
        loss_name = type(ctx.experiment.loss).__name__
        if not isinstance(ctx.experiment.loss, nn.Module):
            loss_name = getattr(ctx.experiment.loss, "__name__", loss_name)
        evidence = {"loss": loss_name, "output_shape": list(out_shape),
                    "target_shape": list(tgt_shape), "broadcast_shape": list(broadcast),
                    "pytorch_warnings": warned, "custom_train_step": ctx.uses_custom_step}
        return [self.finding(
            f"{loss_name} received outputs of shape {out_shape} and targets of shape "
            f"{tgt_shape} and broadcast them to {broadcast}: each output is compared with "
            f"{factor}x more targets than it should be, so the model is pushed towards the "
            "targets' mean instead of each sample's target", evidence)]
