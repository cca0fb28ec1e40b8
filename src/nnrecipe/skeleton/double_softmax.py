"""``double-softmax``: outputs that are already probabilities fed to a loss expecting logits.

``CrossEntropyLoss`` applies log-softmax itself, ``BCEWithLogitsLoss`` applies the sigmoid
itself, ``NLLLoss`` expects log-probabilities. A model that ends in ``softmax``/``sigmoid``
still trains, slowly and badly: cross-entropy on probabilities can never go below
ln(e + C - 1) - 1 (1.46 nats for 10 classes), gradients shrink, and the loss curve looks
"plausible". The probe observes what the loss actually received inside the user's step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check
from nnrecipe.skeleton.probe import get_probe, probe_skip_reason

# Softmax rows sum to 1 up to float32 rounding (~1e-6 for hundreds of classes); logits of a
# real network never do so on every row of a batch by chance. 1e-4 leaves room for float16.
ROW_SUM_TOL = 1e-4
NEG_TOL = 1e-6


@dataclass
class SoftmaxVerdict:
    fires: bool
    what: str  # "softmax" or "sigmoid"


def loss_kind(loss_fn: object) -> str | None:
    """"logits" (CrossEntropy), "log-probs" (NLL), "binary-logits" (BCEWithLogits), or None."""
    if isinstance(loss_fn, nn.CrossEntropyLoss):
        return "logits"
    if isinstance(loss_fn, nn.NLLLoss):
        return "log-probs"
    if isinstance(loss_fn, nn.BCEWithLogitsLoss):
        return "binary-logits"
    name = getattr(loss_fn, "__name__", "") or getattr(getattr(loss_fn, "func", None), "__name__", "")
    return {"cross_entropy": "logits", "nll_loss": "log-probs",
            "binary_cross_entropy_with_logits": "binary-logits"}.get(name)


def double_softmax_verdict(kind: str, min_value: float, max_value: float, row_sum_err: float,
                           last_op: str) -> SoftmaxVerdict:
    """Pure decision from what the loss received: its range, how far its rows are from
    summing to 1 (along the class axis), and the op that produced it."""
    if kind in ("logits", "log-probs"):
        probs = min_value >= -NEG_TOL and row_sum_err <= ROW_SUM_TOL
        return SoftmaxVerdict(probs or last_op == "SoftmaxBackward0", "softmax")
    if kind == "binary-logits":
        in_unit = min_value >= 0.0 and max_value <= 1.0
        return SoftmaxVerdict(in_unit and last_op == "SigmoidBackward0", "sigmoid")
    return SoftmaxVerdict(False, "")


def _summary(out: torch.Tensor) -> tuple[float, float, float]:
    o = out.double()
    err = float((o.sum(dim=1) - 1).abs().max()) if o.ndim >= 2 and o.shape[1] > 1 else float("inf")
    return float(o.min()), float(o.max()), err


class DoubleSoftmax(Check):
    code = "double-softmax"
    stage = "skeleton"
    severity = Severity.ERROR
    title = "The loss receives logits, not probabilities"
    fix = ("Return raw logits from the model (remove the final softmax/sigmoid) and let the "
           "loss apply it: CrossEntropyLoss and BCEWithLogitsLoss do it in a numerically stable "
           "way. Apply softmax/sigmoid only when you need probabilities at inference. With "
           "NLLLoss, end the model in log_softmax, not softmax.")
    order = 14

    def applies(self, ctx: Context) -> str | None:
        if loss_kind(ctx.experiment.loss) is None:
            return (f"the loss {type(ctx.experiment.loss).__name__} does not expect logits "
                    "(only CrossEntropy, NLL and BCEWithLogits are checked)")
        return probe_skip_reason(ctx, self.name)

    def run(self, ctx: Context) -> list[Finding]:
        probe = get_probe(ctx, self.name)["a"]
        kind = loss_kind(ctx.experiment.loss) or ""
        if not probe.loss_calls:
            ctx.record("skipped", "the training step did not call the experiment's loss")
            return []
        verdicts, summaries = [], []
        for call in probe.loss_calls:
            lo, hi, err = _summary(call.output)
            last = call.ops[-1] if call.ops else ""
            summaries.append({"min": lo, "max": hi, "row_sum_max_error": err, "op": last})
            verdicts.append(double_softmax_verdict(kind, lo, hi, err, last))
        ctx.record("loss_inputs", summaries)
        if not all(v.fires for v in verdicts):
            return []
        what = verdicts[0].what
        s = summaries[0]
        loss_name = type(ctx.experiment.loss).__name__
        if kind == "log-probs":
            msg = (f"{loss_name} expects log-probabilities but received probabilities: values "
                   f"in [{s['min']:.3g}, {s['max']:.3g}] whose rows sum to 1 (max error "
                   f"{s['row_sum_max_error']:.2g}); the model ends in softmax instead of "
                   "log_softmax")
        elif what == "softmax":
            msg = (f"{loss_name} applies log-softmax itself, but the model's outputs are "
                   f"already probabilities: non-negative (min {s['min']:.3g}), rows summing to 1 "
                   f"(max error {s['row_sum_max_error']:.2g}), produced by "
                   f"{s['op'] or 'an op'}; softmax is applied twice, which squashes the loss and "
                   "its gradients")
        else:
            msg = (f"{loss_name} applies the sigmoid itself, but the outputs it receives come "
                   f"out of a sigmoid (values in [{s['min']:.3g}, {s['max']:.3g}]); the sigmoid "
                   "is applied twice and the loss can never approach zero")
        evidence = {"loss": loss_name, "received": summaries,
                    "output_shape": list(probe.loss_calls[0].output.shape),
                    "tolerance_row_sum": ROW_SUM_TOL}
        return [self.finding(msg, evidence)]
