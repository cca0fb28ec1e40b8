"""``dropout-rate-high``: dropout rates that look like keep probabilities.

``nn.Dropout(p)`` takes the probability of *dropping* a unit; TensorFlow 1's
``tf.nn.dropout(x, keep_prob)`` and many papers quote the probability of *keeping* it. A
port that passes a keep probability of 0.8 or 0.9 as ``p`` drops 80-90% of the units: the
model trains on a fraction of its width, the training loss stays high and noisy, and the
validation loss (eval mode, nothing dropped) is far below it - which looks like "no
overfitting", not like a bug.

Rates of 0.5 do exist on purpose (the wide fully connected heads of AlexNet/VGG, 60M+
weights), so this is an info, raised when several layers of a model of ordinary size drop
half or more of their units, or one layer drops 80% or more, with the gap it measures
between the model's training-mode and eval-mode outputs on one batch. A layer with p=1 zeroes
every unit in training (a keep probability of 1 passed as p): that is an error, at any size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check
from nnrecipe.skeleton._util import DROPOUT_TYPES, fmt_names

HIGH_P = 0.5  # drops half or more: typical of a keep probability, rare as a drop rate
SEVERAL = 2  # layers at HIGH_P or above
KEEP_LIKE_P = 0.8  # one layer at 0.8/0.9: the usual keep probabilities of TF1 ports
# By reasoning: the models that use p = 0.5 on purpose have wide heads (AlexNet 61M,
# VGG-16 138M weights); below 10M weights several such layers are far more often a port.
HUGE_PARAMS = 10_000_000
# By reasoning: nn.Dropout(p=1.0) zeroes every unit in training (no rescaling can undo it), so
# what follows it sees a constant: never a meant rate, whatever the model's size (I3D ports
# pass dropout_keep_prob=1 as p). Training is broken: an error, not advice.
DROPS_ALL_P = 1.0
GAP_BATCH = 64


@dataclass
class DropoutRateVerdict:
    fires: bool
    high: list[tuple[str, float]]  # (layer, p) at HIGH_P or above
    drops_all: list[str] = field(default_factory=list)  # layers with p >= DROPS_ALL_P


def dropout_rate_verdict(rates: list[tuple[str, float]], n_params: int) -> DropoutRateVerdict:
    """Pure decision from the dropout layers' rates and the model's size."""
    high = [(n, p) for n, p in rates if p >= HIGH_P]
    drops_all = [n for n, p in rates if p >= DROPS_ALL_P]
    fires = bool(drops_all) or (n_params < HUGE_PARAMS and (
        len(high) >= SEVERAL or any(p >= KEEP_LIKE_P for _, p in high)))
    return DropoutRateVerdict(fires, high, drops_all)


class DropoutRateHigh(Check):
    code = "dropout-rate-high"
    stage = "skeleton"
    severity = Severity.INFO
    title = "Dropout rates are drop probabilities, not keep probabilities"
    fix = ("nn.Dropout(p) drops a fraction p of the units. If you ported a keep probability "
           "(TensorFlow 1's keep_prob=0.8), pass p = 1 - keep_prob (0.2). If the high rate is "
           "meant, start without dropout until the model overfits, then add it back gradually.")
    order = 26

    def applies(self, ctx: Context) -> str | None:
        model = ctx.fresh_model(seed=ctx.seed)
        if not any(isinstance(m, DROPOUT_TYPES) and m.p >= HIGH_P for m in model.modules()):
            return f"no dropout layer with p >= {HIGH_P:g}"
        return None

    def run(self, ctx: Context) -> list[Finding]:
        model = ctx.fresh_model(seed=ctx.seed)
        rates = [(n, float(m.p)) for n, m in model.named_modules()
                 if isinstance(m, DROPOUT_TYPES) and float(m.p) > 0]
        n_params = sum(p.numel() for p in model.parameters())
        v = dropout_rate_verdict(rates, n_params)
        ctx.record("dropout_rates", [[n, p] for n, p in rates])
        ctx.record("parameters", n_params)
        if not v.fires:
            return []
        gap = self._gap(ctx, model)
        ctx.record("train_eval_gap", gap)
        names = [f"{n} (p={p:g})" for n, p in v.high]
        gap_txt = (f"; on one batch the training-mode output differs from the eval-mode output "
                   f"by {gap:.2g}x the spread of the outputs between samples"
                   if math.isfinite(gap) else "")
        if v.drops_all:
            return [self.finding(
                f"dropout layer(s) {fmt_names(v.drops_all, 6)} have p=1: in training they "
                f"zero every unit, so everything after them sees a constant{gap_txt}. A keep "
                "probability of 1 passed as p? nn.Dropout's p is the probability of dropping",
                {"high": [[n, p] for n, p in v.high], "drops_all": v.drops_all,
                 "parameters": n_params, "train_eval_gap": gap}, severity=Severity.ERROR)]
        return [self.finding(
            f"{len(v.high)} dropout layer(s) drop half or more of their units: "
            f"{fmt_names(names, 6)}, in a model of {n_params:,} weights{gap_txt}. A keep "
            "probability passed as p (0.8 -> drops 80%)? The training loss then stays high and "
            "noisy while the eval-mode loss looks fine",
            {"high": [[n, p] for n, p in v.high], "parameters": n_params,
             "train_eval_gap": gap})]

    def _gap(self, ctx: Context, model: torch.nn.Module) -> float:
        """RMS difference between training-mode (dropout only; batch norm in eval) and
        eval-mode outputs on one batch, over the RMS spread of the eval outputs between
        samples; NaN when the output is not one tensor."""
        x, _ = ctx.batch("train", n=min(GAP_BATCH, len(ctx.dataset("train"))))
        model.eval()
        with torch.no_grad():
            ref = model(x)
            for m in model.modules():
                if isinstance(m, DROPOUT_TYPES):
                    m.train()
            noisy = model(x)
        if not isinstance(ref, torch.Tensor) or not isinstance(noisy, torch.Tensor) \
                or not ref.is_floating_point() or len(ref) < 2:
            return math.nan
        ref, noisy = ref.double(), noisy.double()
        spread = float((ref - ref.mean(0, keepdim=True)).pow(2).mean().sqrt())
        diff = float((noisy - ref).pow(2).mean().sqrt())
        return diff / spread if spread > 0 else math.inf
