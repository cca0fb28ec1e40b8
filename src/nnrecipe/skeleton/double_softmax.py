"""``double-softmax``: outputs that are already probabilities fed to a loss expecting logits.

``CrossEntropyLoss`` applies log-softmax itself, ``BCEWithLogitsLoss`` applies the sigmoid
itself, ``NLLLoss`` expects log-probabilities. A model that ends in ``softmax``/``sigmoid``
still trains, slowly and badly: cross-entropy on probabilities can never go below
ln(e + C - 1) - 1 (1.46 nats for 10 classes), gradients shrink, and the loss curve looks
"plausible". The probe observes what the loss actually received inside the user's step.

Whatever the loss is - a known class, or a custom function that hides ``softmax`` and then
calls ``cross_entropy`` - the loss's own autograd graph says what it did with the model's
output: a softmax (or sigmoid) whose result feeds an op that applies it again (log-softmax,
i.e. cross-entropy; NLL; BCE-with-logits) is the bug, wherever the first squash sits.
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


# A squashing op, and the consumers that expect its input unsquashed (logits).
SQUASHED_TWICE = {
    "SoftmaxBackward0": ("LogSoftmaxBackward0", "SoftmaxBackward0", "NllLossBackward0",
                         "NllLoss2DBackward0"),
    "SigmoidBackward0": ("BinaryCrossEntropyWithLogitsBackward0",),
}


@dataclass
class SoftmaxVerdict:
    fires: bool
    what: str  # "softmax" or "sigmoid"


def squashed_twice(pairs: list[tuple[str, str, bool]]) -> tuple[str, str, bool] | None:
    """Pure decision on the loss's graph: the first (producer, consumer, inside-the-loss) pair
    where a softmax/sigmoid result is fed to an op that expects logits."""
    for producer, consumer, inside in pairs:
        if consumer in SQUASHED_TWICE.get(producer, ()):
            return producer, consumer, inside
    return None


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
        return probe_skip_reason(ctx, self.name)

    def run(self, ctx: Context) -> list[Finding]:
        probe = get_probe(ctx, self.name)["a"]
        kind = loss_kind(ctx.experiment.loss)
        if not probe.loss_calls:
            ctx.record("skipped", "the training step did not call the experiment's loss")
            return []
        hidden = [squashed_twice(c.pairs) for c in probe.loss_calls]
        ctx.record("loss_graph_pairs", [list(p) for p in probe.loss_calls[0].pairs][:20])
        if kind is None:
            return self._from_graph(ctx, hidden, probe.loss_calls[0].output.shape)
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

    def _from_graph(self, ctx: Context, hidden: list[tuple[str, str, bool] | None],
                    shape: torch.Size) -> list[Finding]:
        """A loss nnrecipe does not know by name: judged by what its graph does."""
        if not hidden or not all(hidden):
            return []
        producer, consumer, inside = hidden[0]  # type: ignore[misc]
        squash = producer.replace("Backward0", "").lower()
        again = {"LogSoftmaxBackward0": "log-softmax (cross-entropy)",
                 "SoftmaxBackward0": "softmax", "NllLossBackward0": "NLL (log-probabilities)",
                 "NllLoss2DBackward0": "NLL (log-probabilities)",
                 "BinaryCrossEntropyWithLogitsBackward0": "BCE with logits"}[consumer]
        loss_name = getattr(ctx.experiment.loss, "__name__", type(ctx.experiment.loss).__name__)
        where = (f"`{loss_name}` applies the {squash} to the model's output itself and then "
                 f"{again}, which expects unsquashed logits" if inside else
                 f"the model's output already comes out of a {squash} and `{loss_name}` "
                 f"applies {again} to it, which expects unsquashed logits")
        return [self.finding(
            f"{where}: the output is squashed twice, so the loss can never approach zero and "
            f"its gradients shrink. Read from the loss's autograd graph ({producer} -> "
            f"{consumer}) on every probed step",
            {"loss": loss_name, "producer": producer, "consumer": consumer,
             "inside_loss": inside, "output_shape": list(shape)})]
