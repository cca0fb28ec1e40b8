"""``output-activation``: the model's last activation does not fit what the loss does with it.

Beyond softmax into cross-entropy (``double-softmax``), the same family of bugs:

- a ReLU (any rectifier) on the logits of a cross-entropy / BCE-with-logits / NLL loss:
  a class whose logit is clamped at 0 gets no gradient and cannot come back, a binary logit
  >= 0 means p >= 0.5 for every sample, and NLL on values >= 0 has no lower bound;
- a sigmoid or tanh on logits: cross-entropy over logits in (0, 1) or (-1, 1) can never be
  confident (for 10 classes the loss cannot go below 1.46 or 0.8 nats);
- a softmax over a single unit (every output is exactly 1: nothing to learn) or over the
  batch dimension (each column sums to 1: samples compete with each other);
- a ReLU, sigmoid, tanh, softplus or exp on a regression output whose targets fall outside
  its range (standardised targets are half negative: a ReLU can never predict them).

The model's output is judged itself, whatever the loss object is: its last op (its
``grad_fn`` through view-like ops), its range, its share of exact zeros, its sums along the
class and batch dimensions; and what the loss does with it is read from the loss's own
autograd graph (the op that consumes the output: log-softmax for a cross-entropy, a
squared difference for MSE), so a custom loss function is judged like a known one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check
from nnrecipe.skeleton.double_softmax import ROW_SUM_TOL, loss_kind
from nnrecipe.skeleton.probe import LossCall, get_probe, probe_skip_reason

# By reasoning: a linear layer's float output is exactly 0 with probability ~0, a rectifier at
# init zeroes about half of its outputs; 5% exact zeros with nothing negative is a rectifier.
ZERO_SHARE = 0.05
# Regression targets the output's range cannot reach. By reasoning: below 5% (a few noisy
# readings of a quantity that is >= 0 by nature) the activation costs little; from 25% on,
# a quarter of the data cannot be fitted at all (standardised targets: ~50% negative).
UNREACHABLE_WARN = 0.05
UNREACHABLE_ERROR = 0.25

RECTIFIERS = ("ReluBackward0", "Relu6Backward0", "ThresholdBackward0", "ClampMinBackward0",
              "ClampMinBackward1")
BOUNDED = {"SigmoidBackward0": (0.0, 1.0), "TanhBackward0": (-1.0, 1.0),
           "HardsigmoidBackward0": (0.0, 1.0), "HardtanhBackward0": (-1.0, 1.0)}
POSITIVE = ("SoftplusBackward0", "ExpBackward0")
SQUASHES = ("SoftmaxBackward0", "LogSoftmaxBackward0")
# What the op that consumes the model's output says about how the loss treats it.
CONSUMER_TREATMENT = {
    "LogSoftmaxBackward0": "logits", "SoftmaxBackward0": "logits",
    "NllLossBackward0": "log-probs", "NllLoss2DBackward0": "log-probs",
    "BinaryCrossEntropyWithLogitsBackward0": "binary-logits",
    "MseLossBackward0": "values", "L1LossBackward0": "values", "HuberLossBackward0": "values",
    "SmoothL1LossBackward0": "values", "BinaryCrossEntropyBackward0": "probabilities",
}
LOSS_TREATMENT = {"logits": "logits", "log-probs": "log-probs", "binary-logits": "binary-logits"}
REGRESSION_LOSSES = ("MSELoss", "L1Loss", "HuberLoss", "SmoothL1Loss", "mse_loss", "l1_loss",
                     "huber_loss", "smooth_l1_loss")


@dataclass
class OutputStats:
    last_op: str
    minimum: float
    maximum: float
    zero_share: float  # share of exactly-zero outputs
    row_sum_err: float  # max |sum over dim 1 - 1| (inf when there is no dim 1 > 1)
    col_sum_err: float  # max |sum over dim 0 - 1| (inf for a batch of one)
    constant: bool  # every output value identical
    width: int  # size of dim 1 (1 for a 1-d output)


@dataclass
class ActivationVerdict:
    problem: str  # "" (fine), "rectified-logits", "bounded-logits", "single-unit-softmax",
    # "softmax-over-batch", "unreachable-targets"
    severity: Severity | None = None
    bounds: tuple[float, float] | None = None
    unreachable: float = 0.0


def output_stats(out: torch.Tensor, ops: list[str]) -> OutputStats:
    o = out.detach().double()
    n = o.numel()
    row = col = math.inf
    if o.ndim >= 2 and o.shape[1] > 1:
        row = float((o.sum(dim=1) - 1).abs().max())
    if o.ndim >= 1 and o.shape[0] > 1:
        col = float((o.sum(dim=0) - 1).abs().max())
    return OutputStats(ops[-1] if ops else "", float(o.min()) if n else 0.0,
                       float(o.max()) if n else 0.0,
                       float((o == 0).sum()) / n if n else 0.0, row, col,
                       bool(n) and bool((o == o.reshape(-1)[0]).all()),
                       int(o.shape[1]) if o.ndim >= 2 else 1)


def treatment(loss_fn: object, pairs: list[tuple[str, str, bool]], task: str,
              same_size: bool) -> str:
    """How the loss treats the model's output: from the loss's class when nnrecipe knows it,
    else from the op of the loss's graph that consumes the output, else from the task."""
    known = loss_kind(loss_fn)
    if known:
        return LOSS_TREATMENT[known]
    name = type(loss_fn).__name__ if not hasattr(loss_fn, "__name__") else loss_fn.__name__
    if name in REGRESSION_LOSSES or type(loss_fn).__name__ in REGRESSION_LOSSES:
        return "values"
    for _, consumer, inside in pairs:
        if not inside and consumer in CONSUMER_TREATMENT:
            return CONSUMER_TREATMENT[consumer]
    return "values" if task == "regression" and same_size else ""


def rectified(s: OutputStats) -> bool:
    return s.last_op in RECTIFIERS or (s.minimum >= 0.0 and s.zero_share >= ZERO_SHARE)


def output_range(s: OutputStats) -> tuple[float, float] | None:
    """The range the output's last op allows, None when unbounded."""
    if s.last_op in BOUNDED:
        return BOUNDED[s.last_op]
    if s.last_op in POSITIVE or rectified(s):
        return (0.0, math.inf)
    return None


def activation_verdict(how: str, s: OutputStats, unreachable: float | None = None
                       ) -> ActivationVerdict:
    """Pure decision from how the loss treats the output, the output's statistics and, for
    regression, the share of targets outside the output's range."""
    if s.last_op in SQUASHES:
        if s.constant and s.width == 1:
            return ActivationVerdict("single-unit-softmax", Severity.ERROR)
        if s.last_op == "SoftmaxBackward0" and s.col_sum_err <= ROW_SUM_TOL \
                and s.row_sum_err > ROW_SUM_TOL:
            return ActivationVerdict("softmax-over-batch", Severity.ERROR)
        return ActivationVerdict("")  # a softmax into a logits loss: double-softmax's case
    if how in ("logits", "binary-logits", "log-probs"):
        if rectified(s):
            return ActivationVerdict("rectified-logits", Severity.ERROR)
        if s.last_op in BOUNDED and not (how == "binary-logits"
                                         and s.last_op == "SigmoidBackward0"):
            return ActivationVerdict("bounded-logits", Severity.ERROR, BOUNDED[s.last_op])
        return ActivationVerdict("")
    if how == "values" and unreachable is not None:
        bounds = output_range(s)
        if bounds is not None and unreachable >= UNREACHABLE_WARN:
            sev = Severity.ERROR if unreachable >= UNREACHABLE_ERROR else Severity.WARNING
            return ActivationVerdict("unreachable-targets", sev, bounds, unreachable)
    return ActivationVerdict("")


def unreachable_share(targets: list[torch.Tensor], bounds: tuple[float, float]) -> float | None:
    ys = [t.double().reshape(-1) for t in targets if isinstance(t, torch.Tensor)
          and t.is_floating_point() and t.numel()]
    if not ys:
        return None
    y = torch.cat(ys)
    lo, hi = bounds
    tol = 1e-6 * max(1.0, float(y.abs().max()))
    return float(((y < lo - tol) | (y > hi + tol)).double().mean())


class OutputActivation(Check):
    code = "output-activation"
    stage = "skeleton"
    severity = Severity.ERROR
    title = "The model's last activation fits what the loss does with its output"
    fix = ("End a classifier in a plain linear layer (raw logits) for CrossEntropyLoss / "
           "BCEWithLogitsLoss, or in log_softmax for NLLLoss; no ReLU, sigmoid or tanh on "
           "logits. Apply softmax over the class dimension (dim=1 or -1), never over one unit "
           "or the batch. For regression end in a linear layer, or pick an activation whose "
           "range covers the targets (and standardise the targets).")
    order = 15

    def applies(self, ctx: Context) -> str | None:
        return probe_skip_reason(ctx, self.name)

    def run(self, ctx: Context) -> list[Finding]:
        probe = get_probe(ctx, self.name)["a"]
        calls: list[LossCall] = [c for c in probe.loss_calls if c.output is not None]
        if not calls:
            ctx.record("skipped", "the training step did not call the experiment's loss")
            return []
        first = calls[0]
        target = first.target if isinstance(first.target, torch.Tensor) else None
        same = target is not None and target.numel() == first.output.numel()
        how = treatment(ctx.experiment.loss, first.pairs, ctx.task_type, same)
        stats = [output_stats(c.output, c.ops) for c in calls]
        s = stats[0]
        unreachable = None
        bounds = output_range(s)
        if how == "values" and bounds is not None:
            unreachable = unreachable_share([c.target for c in calls], bounds)
        verdicts = [activation_verdict(how, st, unreachable) for st in stats]
        for key, value in (("treatment", how), ("last_op", s.last_op), ("min", s.minimum),
                           ("max", s.maximum), ("zero_share", s.zero_share),
                           ("unreachable_targets", unreachable)):
            ctx.record(key, value)
        v = verdicts[0]
        if not v.problem or any(w.problem != v.problem for w in verdicts):
            return []
        return [self.finding(self._message(ctx, v, s, how),
                             {"problem": v.problem, "loss_treats_output_as": how,
                              "last_op": s.last_op, "min": s.minimum, "max": s.maximum,
                              "zero_share": s.zero_share, "output_shape": list(first.output.shape),
                              "bounds": list(v.bounds) if v.bounds else None,
                              "unreachable_targets": v.unreachable},
                             severity=v.severity)]

    def _message(self, ctx: Context, v: ActivationVerdict, s: OutputStats, how: str) -> str:
        op = s.last_op.replace("Backward0", "").replace("Backward1", "") or "its last op"
        loss = getattr(ctx.experiment.loss, "__name__", type(ctx.experiment.loss).__name__)
        if v.problem == "rectified-logits":
            return (f"the model's output goes through a rectifier ({op}: min {s.minimum:.3g}, "
                    f"{s.zero_share:.0%} exact zeros) and {loss} treats it as {how}: a clamped "
                    "logit gets no gradient and cannot recover"
                    + (", and a binary logit >= 0 predicts p >= 0.5 for every sample"
                       if how == "binary-logits" else "")
                    + (", and NLL on values >= 0 has no lower bound" if how == "log-probs"
                       else ""))
        if v.problem == "bounded-logits":
            lo, hi = v.bounds or (0.0, 1.0)
            return (f"the model's output goes through {op} (range [{lo:g}, {hi:g}]) and {loss} "
                    f"treats it as {how}: logits squeezed into that range can never make a "
                    "confident prediction, so the loss cannot approach zero")
        if v.problem == "single-unit-softmax":
            return (f"the model ends in {op} over a dimension of size 1: every output is "
                    f"exactly {s.maximum:g} for every sample, whatever the input, so nothing "
                    "can be learned (for one binary output use a logit with BCEWithLogitsLoss)")
        if v.problem == "softmax-over-batch":
            return ("the model's softmax runs over the batch dimension: each output column "
                    f"sums to 1 over the batch (max error {s.col_sum_err:.2g}) while rows do "
                    "not, so samples compete with each other and predictions depend on the "
                    "batch; use dim=1 (or -1)")
        lo, hi = v.bounds or (0.0, math.inf)
        return (f"the regression output goes through {op}, which only reaches [{lo:g}, {hi:g}], "
                f"but {v.unreachable:.0%} of the targets seen in the probed steps lie outside "
                "it: those can never be fitted")
