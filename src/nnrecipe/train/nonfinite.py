"""``loss-nonfinite``: the first NaN/inf loss, wherever a step is taken."""

from __future__ import annotations

import math
from collections.abc import Sequence

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
