"""Advice computed for the user's run: learning-rate scaling with batch size, whether to warm
up, and a gradient-clipping threshold. Pure functions of recorded numbers; the check that
reports them (``lr-advice``) reads what the range test stored in ``ctx.state["lr"]``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check, declare_code

# Adaptive optimizers normalise the step by a running gradient scale; for them the square-root
# rule (Krizhevsky 2014; Hoffer et al. 2017; Malladi et al. 2022 for Adam) keeps the noise of
# the update constant. Plain SGD (with or without momentum) follows the linear rule (Goyal et
# al. 2017), valid up to a few thousand samples a batch and with warmup.
ADAPTIVE = (torch.optim.Adam, torch.optim.AdamW, torch.optim.Adamax, torch.optim.NAdam,
            torch.optim.RAdam, torch.optim.RMSprop, torch.optim.Adagrad, torch.optim.Adadelta)
BATCH_FACTORS = (0.25, 0.5, 2.0, 4.0, 8.0)
# Goyal et al. needed warmup from batch 1k-8k with linearly scaled SGD, and 512 is where
# common recipes (BERT, ViT, ResNet at scale) start using it; below, warmup rarely matters.
LARGE_BATCH = 512
# "The loss spikes early": in the first steps at the suggested rate, the loss rises this much
# above where it started. Healthy runs on the bundled examples and toys rise by < 15% (batch
# noise) before falling (measured); a rise of half the initial loss is a transient
# instability that warmup removes.
EARLY_SPIKE = 0.5
EARLY_FRACTION = 0.1  # "early": the first 10% of the run (at least 10 steps)
# Clip at a high quantile of the total gradient norm seen while training at the suggested rate:
# clipping should catch the rare spikes (1 step in 20), not rescale typical steps, which
# would silently lower the learning rate.
CLIP_QUANTILE = 0.95
CLIP_SKIP = 0.05  # the first 5% of steps (large transient gradients at init) are left out


def optimizer_family(optimizer: torch.optim.Optimizer | type) -> str:
    """"adaptive" (Adam-type: square-root rule), "sgd" (linear rule) or "other"."""
    cls = optimizer if isinstance(optimizer, type) else type(optimizer)
    if issubclass(cls, ADAPTIVE):
        return "adaptive"
    if issubclass(cls, torch.optim.SGD):
        return "sgd"
    return "other"


def scaled_lr(lr: float, batch_size: int, new_batch_size: int, family: str) -> float:
    """The rate for ``new_batch_size`` given ``lr`` at ``batch_size``."""
    k = new_batch_size / batch_size
    return lr * (math.sqrt(k) if family == "adaptive" else k)


def scaling_rows(lr: float, batch_size: int, family: str,
                 factors: Sequence[float] = BATCH_FACTORS) -> list[list[float | int]]:
    rows: list[list[float | int]] = []
    for f in factors:
        b = max(1, int(round(batch_size * f)))
        if b != batch_size:
            rows.append([b, float(f"{scaled_lr(lr, batch_size, b, family):.3g}")])
    return rows


def is_transformer(model: nn.Module) -> bool:
    """Attention layers anywhere in the model (torch's, or a class named like one)."""
    for m in model.modules():
        if isinstance(m, (nn.MultiheadAttention, nn.TransformerEncoderLayer,
                          nn.TransformerDecoderLayer, nn.Transformer)):
            return True
        name = type(m).__name__.lower()
        if "attention" in name or "transformer" in name:
            return True
    return False


def early_spike(losses: Sequence[float], fraction: float = EARLY_FRACTION) -> float:
    """How far the loss (a 3-step running mean, so one hard batch is not a spike) rises above
    its first value in the early part of a run, relative to that value."""
    arr = np.asarray([v for v in losses if math.isfinite(v)], dtype=float)
    if len(arr) < 5:
        return 0.0
    smooth = np.convolve(arr, np.ones(3) / 3, mode="valid")
    start = float(smooth[0])
    n = max(10, int(len(arr) * fraction))
    if start <= 0:
        return 0.0
    return max(0.0, float(np.max(smooth[:n])) / start - 1.0)


def sweep_spike(lrs: Sequence[float], losses: Sequence[float], up_to: float) -> float:
    """The same rise, over a range-test sweep's steps at rates up to ``up_to`` (the
    suggestion): a loss that jumps while the rate is still below the suggestion."""
    kept = [v for r, v in zip(lrs, losses, strict=False) if r <= up_to]
    return early_spike(kept, fraction=1.0)


@dataclass
class WarmupVerdict:
    advised: bool
    reasons: list[str]


def warmup_verdict(batch_size: int, family: str, transformer: bool, spike: float,
                   *, large_batch: int = LARGE_BATCH, spike_limit: float = EARLY_SPIKE
                   ) -> WarmupVerdict:
    """Pure rule: is linear warmup advisable for this run, and why."""
    reasons = []
    if batch_size >= large_batch:
        reasons.append(f"the batch size {batch_size} is large (>= {large_batch}): the first "
                       "updates at the full rate overshoot before the statistics settle")
    if transformer and family == "adaptive":
        reasons.append("Adam-type optimizer on a model with attention layers: its second-moment "
                       "estimates are unreliable in the first steps (the reason transformers "
                       "are trained with warmup)")
    if spike > spike_limit:
        reasons.append(f"the loss rose {spike:.0%} above its start early on (> {spike_limit:.0%}), "
                       "at the suggested rate or while the range test's rate was still below it")
    return WarmupVerdict(bool(reasons), reasons)


@dataclass
class ClipAdvice:
    threshold: float
    clipped_fraction: float  # of the observed steps that the threshold would have clipped
    quantiles: dict[str, float]
    steps: int


def clip_advice(norms: Sequence[float], quantile: float = CLIP_QUANTILE,
                skip: float = CLIP_SKIP) -> ClipAdvice | None:
    """A clipping threshold from observed total gradient norms (None without enough data)."""
    arr = np.asarray([v for v in norms if math.isfinite(v)], dtype=float)
    arr = arr[int(len(arr) * skip):]
    if len(arr) < 10 or not np.median(arr) > 1e-6 * arr.max():
        return None  # too few steps, or a loss already at ~0 (gradients ~0): nothing to say
    q = {f"q{int(p * 100)}": float(np.quantile(arr, p)) for p in (0.5, 0.9, 0.95, 0.99)}
    q["max"] = float(arr.max())
    threshold = float(f"{np.quantile(arr, quantile):.2g}")
    return ClipAdvice(threshold, float(np.mean(arr > threshold)), q, len(arr))


# --------------------------------------------------------------------------- the check
WarmupAdvised = declare_code(
    "warmup-advised", "overfit", Severity.INFO,
    "Learning-rate warmup is advisable for this run",
    "Warm the rate up linearly over the first ~5% of steps (the train stage: "
    "options={'schedule': 'warmup'}, or make_scheduler('warmup', warmup_steps=N)).",
    declared_by="nnrecipe.overfit.advice")
GradClipThreshold = declare_code(
    "grad-clip-threshold", "overfit", Severity.INFO,
    "A gradient-clipping threshold from the gradient norms observed",
    "Clip the total gradient norm at the threshold (torch.nn.utils.clip_grad_norm_ before "
    "optimizer.step(), or fit(grad_clip=...)); revisit it if the model or rate changes.",
    declared_by="nnrecipe.overfit.advice")


class LRAdvice(Check):
    """Advice from the range test's measurements: rate vs batch size, warmup, clipping."""

    name = "lr-advice"
    code = "lr-batch-scaling"
    stage = "overfit"
    severity = Severity.INFO
    title = "Advice: learning rate vs batch size, warmup, gradient clipping"
    fix = ("When you change the batch size, change the learning rate with it (the table), "
           "then confirm with `nnrecipe lr`.")
    order = 30
    emits = ("warmup-advised", "grad-clip-threshold")

    def applies(self, ctx: Context) -> str | None:
        if not isinstance(ctx.state.get("lr"), dict):
            return "needs the learning-rate range test (lr-suggestion) to run first"
        return None

    def run(self, ctx: Context) -> list[Finding]:
        st = ctx.state["lr"]
        lr = st.get("suggested", math.nan)
        if not math.isfinite(lr):
            lr = st.get("user_lr", math.nan)
        batch = int(st.get("batch_size", ctx.experiment.batch_size))
        model = ctx.fresh_model(seed=ctx.seed)
        opt = ctx.make_optimizer(model)
        family = optimizer_family(opt)
        findings: list[Finding] = []

        rule = {"adaptive": "square-root", "sgd": "linear"}.get(family, "square-root")
        rows = scaling_rows(lr, batch, "adaptive" if rule == "square-root" else "sgd")
        table = sorted([[batch, float(f"{lr:.3g}"), "current"], *([b, v, ""] for b, v in rows)])
        ctx.add_table("Learning rate for other batch sizes", ["batch size", "learning rate", ""],
                      table,
                      caption=f"{type(opt).__name__}: {rule} rule (lr x (B'/B)"
                              f"{'^0.5' if rule == 'square-root' else ''}) from the suggested "
                              f"rate at batch {batch}.")
        ctx.record("scaling_rule", rule)
        if math.isfinite(lr):
            findings.append(self.finding(
                f"at batch size {batch} the suggested rate is {lr:.3g}; for {type(opt).__name__} "
                f"scale it by the {rule} rule when the batch size changes: "
                + ", ".join(f"batch {b} -> {v:.2g}" for b, v in rows),
                {"batch_size": batch, "lr": lr, "rule": rule, "optimizer": type(opt).__name__,
                 "table": rows}))

        spike = max(early_spike(st.get("early_losses", [])), float(st.get("sweep_spike", 0.0)))
        verdict = warmup_verdict(batch, family, is_transformer(model), spike)
        ctx.record("early_spike", spike)
        ctx.record("warmup_advised", verdict.advised)
        if verdict.advised:
            findings.append(self.finding(
                "warmup is advisable: " + "; ".join(verdict.reasons),
                {"batch_size": batch, "optimizer": type(opt).__name__, "early_spike": spike,
                 "reasons": verdict.reasons}, code="warmup-advised"))

        clip = clip_advice(st.get("grad_norms", []))
        if clip is not None:
            ctx.record("clip_threshold", clip.threshold)
            ctx.record("grad_norm_quantiles", clip.quantiles)
            ctx.add_table("Total gradient norm at the suggested rate",
                          ["median", "90%", "95%", "99%", "max", "suggested clip"],
                          [[*(float(f"{clip.quantiles[k]:.3g}") for k in
                              ("q50", "q90", "q95", "q99", "max")), clip.threshold]],
                          caption=f"{clip.steps} optimizer steps of the short runs at the "
                                  "suggested rate (first 5% left out).")
            findings.append(self.finding(
                f"clip the total gradient norm at {clip.threshold:.2g}: the "
                f"{CLIP_QUANTILE:.0%} quantile of {clip.steps} steps at lr={lr:.3g} (median "
                f"{clip.quantiles['q50']:.3g}, max {clip.quantiles['max']:.3g}); it would have "
                f"clipped {clip.clipped_fraction:.0%} of those steps",
                {"threshold": clip.threshold, "quantiles": clip.quantiles, "steps": clip.steps,
                 "clipped_fraction": clip.clipped_fraction, "lr": lr},
                code="grad-clip-threshold"))
        return findings
