"""``cannot-overfit-batch``: a handful of samples must be driven to ~zero loss.

The recipe's "overfit one batch": with only a few examples, any working model, loss and
training step memorises them. If it cannot, something between the data and the update is
broken (the step, the loss, frozen parameters, a learning rate of zero), and no amount of
real training will help. The user's own ``train_step`` and optimizer are the ones exercised.

The verdict follows what the model does, not a fixed step budget. A run passes when the
loss reaches 2% of the way from its start to the loss's own floor (zero, or what label
smoothing / soft targets leave), when it is still falling so steadily that it would get
there within a few more budgets, or when the model, in eval mode, already gets every sample
of the batch right. Only a loss that has stopped falling far above its floor fails; then
Adam at a rate chosen for the purpose, with the same step, tells weak optimizer settings
(a warning) apart from a broken step, loss or model (an error).

The batch is drawn across classes (for class-index targets), so a model that can only
learn the class frequencies - a frozen network, an ignored input - cannot pass by predicting
the one class of a lopsided batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nnrecipe.core.context import Context
from nnrecipe.core.data import dataset_len, stack_split
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check
from nnrecipe.core.training import correct_per_sample, on_cpu
from nnrecipe.report.plots import line_plot
from nnrecipe.train.nonfinite import LossNonfinite, nonfinite_finding

N_SAMPLES = 8
MAX_STEPS = 400
# "~zero loss": the smoothed loss must get 98% of the way from its start to the loss's floor.
# Healthy models on the bundled examples get there in 27-330 steps (measured: demo CNN 37,
# LSTM 27-44, causal transformer 39-41, CNN+BN 111-130, blobs MLP 116-141, label-smoothed
# digits MLP 294-328 against its floor); a step that never updates stays at 100%.
TARGET_FRACTION = 0.02
SMOOTH_WINDOW = 5
# "Still falling": over the last third of the run, log(loss - floor) falls along a line
# whose slope is more than TREND_T standard errors (of its residuals) below zero, and that
# line reaches the target within EXTRAPOLATE_MAX more runs of the same length. Measured at
# 400 steps: healthy slow runs (digits MLP with Adam 3e-4, AdamW 3e-4 + wd 0.1, plain SGD
# 0.01) have t = -145..-166 and would reach the target 0.01-0.14 runs later; the broken ones
# either do not fall (t > -2: labels shuffled every step, no optimizer.step, inputs zeroed)
# or fall toward a floor far above zero (a frozen net with a trainable output bias: 50 to
# 125,000 runs; a linear model on random labels: 8.4 runs; SGD at 1e-5: 1,700+ runs).
TREND_T = 3.0
EXTRAPOLATE_MAX = 2.0
# "Memorised": in eval mode every sample of the batch is right (classification) or the
# residual variance is within the same 2% of the targets' variance (regression), and the
# loss has fallen at least half way to its floor - a loss with a floor of its own (a penalty
# term inside the loss) can level off above the target without anything being broken.
MEMORISED_R2 = 1.0 - TARGET_FRACTION
MEMORISED_MIN_DROP = 0.5
FALLBACK_LR = 1e-3  # Adam at this rate tells "optimizer settings" apart from "broken step"
CANDIDATE_POOL = 16  # x N_SAMPLES: samples whose labels are read to draw the batch across classes

PASSING = ("reached", "falling", "memorised")


@dataclass
class OverfitVerdict:
    status: str  # "reached", "falling", "memorised", "stalled" or "nonfinite"
    initial: float  # mean of the first SMOOTH_WINDOW losses
    best: float  # lowest smoothed loss
    target: float
    floor: float
    step: int | None  # the step at which the target was reached
    slope: float = math.nan  # per step, of log(loss - floor) over the last third
    t: float = math.nan  # slope / its standard error
    runs_to_target: float | None = None  # further runs of this length at that slope

    @property
    def ok(self) -> bool:
        return self.status in PASSING

    @property
    def reached(self) -> bool:
        return self.status == "reached"


def log_trend(losses: np.ndarray, floor: float) -> tuple[float, float, float]:
    """(slope per step, t statistic, fitted value at the last step) of ``log(loss - floor)``
    over the last third of ``losses`` (at least 20 steps); NaNs when too short."""
    w = max(20, len(losses) // 3)
    if len(losses) < w:
        return math.nan, math.nan, math.nan
    y = np.log(np.maximum(losses[-w:] - floor, 1e-30))
    t = np.arange(w, dtype=float)
    slope, intercept = np.polyfit(t, y, 1)
    resid = y - (intercept + slope * t)
    se = float(resid.std(ddof=2)) / math.sqrt(float(((t - t.mean()) ** 2).sum()))
    tstat = slope / se if se > 0 else (0.0 if slope == 0 else math.copysign(math.inf, slope))
    return float(slope), float(tstat), float(intercept + slope * (w - 1))


def overfit_verdict(losses: Sequence[float], floor: float = 0.0, memorised: bool | None = None,
                    eval_loss: float | None = None, target_fraction: float = TARGET_FRACTION,
                    window: int = SMOOTH_WINDOW) -> OverfitVerdict:
    """Pure decision from the step losses on the batch, the loss's floor, whether the model
    gets every sample right in eval mode, and its eval-mode loss on the batch at the end."""
    arr = np.asarray(losses, dtype=float)
    if len(arr) == 0 or not np.all(np.isfinite(arr)):
        first = float(arr[0]) if len(arr) else math.nan
        return OverfitVerdict("nonfinite", first, math.nan, math.nan, floor, None)
    k = min(window, len(arr))
    initial = float(np.mean(arr[:k]))
    smooth = np.convolve(arr, np.ones(k) / k, mode="valid")
    target = floor + target_fraction * (initial - floor)
    best = float(smooth.min())
    hit = np.nonzero(smooth <= target)[0]
    if len(hit):
        return OverfitVerdict("reached", initial, best, target, floor, int(hit[0]) + k - 1)
    if eval_loss is not None and math.isfinite(eval_loss) and eval_loss <= target:
        return OverfitVerdict("reached", initial, best, target, floor, len(arr) - 1)
    slope, tstat, end = log_trend(arr, floor)
    runs = None
    if math.isfinite(slope) and slope < 0:
        runs = (math.log(max(target - floor, 1e-30)) - end) / slope / len(arr)
    v = OverfitVerdict("stalled", initial, best, target, floor, None, slope, tstat, runs)
    if runs is not None and tstat < -TREND_T and runs <= EXTRAPOLATE_MAX:
        v.status = "falling"
    elif memorised and best - floor <= MEMORISED_MIN_DROP * (initial - floor):
        v.status = "memorised"
    return v


def loss_floor(loss_fn: Callable[..., torch.Tensor], out: torch.Tensor, y: torch.Tensor) -> float:
    """The lowest value ``loss_fn`` can take on targets ``y``: 0, except for cross-entropy with
    label smoothing or soft targets and for BCE with soft targets, where it is the loss at the
    target distribution itself (each sample's term is minimised there, whatever the class
    weights). Any doubt: 0."""
    try:
        with torch.no_grad():
            if isinstance(loss_fn, nn.CrossEntropyLoss) and out.ndim >= 2:
                eps = float(loss_fn.label_smoothing)
                if y.is_floating_point() and y.shape == out.shape:
                    q = y.float()
                elif not y.is_floating_point() and eps > 0:
                    c = out.shape[1]
                    q = nn.functional.one_hot(y.long().clamp(0, c - 1), c).movedim(-1, 1).float()
                else:
                    return 0.0
                q = (1 - eps) * q + eps / out.shape[1]
                return max(0.0, float(loss_fn(q.clamp_min(1e-12).log(), y)))
            if isinstance(loss_fn, nn.BCEWithLogitsLoss) and y.is_floating_point():
                soft = (y > 0) & (y < 1)
                if bool(soft.any()):
                    p = y.float().clamp(1e-6, 1 - 1e-6)
                    return max(0.0, float(loss_fn(torch.log(p / (1 - p)).reshape(out.shape),
                                                  y)))
    except Exception:  # noqa: BLE001 - an unusual layout: fall back to the usual floor
        return 0.0
    return 0.0


def memorised(out: torch.Tensor, y: torch.Tensor, loss_fn: Callable[..., torch.Tensor],
              task: str) -> bool | None:
    """Does the model (its eval-mode outputs ``out``) get every sample of the batch right?
    None when this cannot be judged: one distinct target (a constant would do), a layout
    accuracy is not defined for."""
    if y.numel() == 0 or torch.unique(y).numel() < 2:
        return None
    if task == "classification":
        per = correct_per_sample(out, y, loss_fn)
        return None if per is None else bool((per >= 1.0).all())
    if out.numel() != y.numel():
        return None
    yf, of = y.double().reshape(-1), out.double().reshape(-1)
    var = float(((yf - yf.mean()) ** 2).mean())
    return var > 0 and 1.0 - float(((of - yf) ** 2).mean()) / var >= MEMORISED_R2


def stratified_indices(labels: torch.Tensor, candidates: list[int], k: int, seed: int
                       ) -> list[int]:
    """``k`` of ``candidates`` (in random order, labels alongside) drawn round-robin over the
    class labels, so the batch holds as many classes as it can."""
    by_class: dict[int, list[int]] = {}
    for i, label in zip(candidates, labels.tolist(), strict=True):
        by_class.setdefault(int(label), []).append(i)
    queues = [by_class[c] for c in np.random.default_rng(seed).permutation(sorted(by_class))]
    chosen: list[int] = []
    while len(chosen) < k and any(queues):
        for q in queues:
            if q and len(chosen) < k:
                chosen.append(q.pop(0))
    return sorted(chosen)


def describe_optimizer(opt: torch.optim.Optimizer) -> str:
    g = opt.param_groups[0] if opt.param_groups else {}
    parts = [f"lr={g['lr']:g}"] if isinstance(g.get("lr"), (int, float)) else []
    if g.get("momentum"):
        parts.append(f"momentum={g['momentum']:g}")
    if g.get("weight_decay"):
        parts.append(f"weight_decay={g['weight_decay']:g}")
    return f"{type(opt).__name__}({', '.join(parts)})"


def is_fallback(opt: torch.optim.Optimizer) -> bool:
    """The user's optimizer already is plain Adam at the fallback rate: no need to re-run."""
    return type(opt) is torch.optim.Adam and all(
        g.get("lr") == FALLBACK_LR and not g.get("weight_decay") for g in opt.param_groups)


class CannotOverfitBatch(Check):
    code = "cannot-overfit-batch"
    stage = "skeleton"
    severity = Severity.ERROR
    title = f"A batch of {N_SAMPLES} samples can be overfit to ~zero loss"
    fix = ("Something between the data and the update is broken. Check that the training step "
           "calls zero_grad, backward and optimizer.step, that the loss compares outputs with "
           "the right targets, that parameters require grad and reach the optimizer, and that "
           "the learning rate is not zero. Increase capacity only after those are ruled out.")
    order = 60
    emits = (LossNonfinite.code,)

    def run(self, ctx: Context) -> list[Finding]:
        batch, indices = self._batch(ctx)
        k = len(indices)
        steps = int(ctx.options.get("overfit_batch_steps", MAX_STEPS))
        ctx.record("samples", k)
        ctx.record("indices", indices)
        losses, model, opt_desc, fallback_needed, floor = self._train(ctx, batch, steps, None)
        ctx.record("loss_floor", floor)
        curves = {f"your optimizer, {opt_desc}": losses}
        bad = nonfinite_finding(losses, where="overfitting one batch", stage=self.stage)
        if bad is not None:
            bad.check = self.name
            self._plot(ctx, curves, None)
            return [bad]
        verdict = self._verdict(ctx, model, batch, losses, floor)
        for key, value in (("status", verdict.status), ("initial_loss", verdict.initial),
                           ("best_smoothed_loss", verdict.best), ("target_loss", verdict.target),
                           ("steps_to_target", verdict.step), ("trend_slope", verdict.slope),
                           ("trend_t", verdict.t), ("runs_to_target", verdict.runs_to_target),
                           ("optimizer", opt_desc)):
            ctx.record(key, value)
        if verdict.ok:
            self._plot(ctx, curves, verdict)
            self._predictions_table(ctx, model, batch)
            return self._memorised_note(verdict, k, steps)

        fb_verdict, fb_model = verdict, model
        if fallback_needed:
            fallback, fb_model, _, _, _ = self._train(ctx, batch, steps, FALLBACK_LR, floor)
            fb_verdict = self._verdict(ctx, fb_model, batch, fallback, floor)
            curves[f"Adam lr={FALLBACK_LR:g} (same step)"] = fallback
        self._plot(ctx, curves, verdict)
        self._predictions_table(ctx, fb_model if fb_verdict.ok else model, batch)
        evidence = {"samples": k, "indices": indices, "steps": steps, "optimizer": opt_desc,
                    "initial_loss": verdict.initial, "best_smoothed_loss": verdict.best,
                    "loss_floor": floor, "target_loss": verdict.target,
                    "trend_slope_per_step": verdict.slope, "trend_t": verdict.t,
                    "fallback_run": fallback_needed, "fallback_reached": fb_verdict.ok,
                    "fallback_status": fb_verdict.status, "fallback_best_loss": fb_verdict.best,
                    "custom_train_step": ctx.uses_custom_step}
        base = (f"after {len(losses)} steps on the same {k} samples with {opt_desc} the loss "
                f"only fell from {verdict.initial:.4g} to {verdict.best:.4g} and has stopped "
                f"falling (target: below {verdict.target:.3g}, {1 - TARGET_FRACTION:.0%} of the "
                f"way to the loss's floor {floor:.3g})")
        if fallback_needed and fb_verdict.ok:
            how = (f"reached the target in {fb_verdict.step} steps" if fb_verdict.reached
                   else "kept falling toward it" if fb_verdict.status == "falling"
                   else "memorised the batch")
            return [self.finding(
                base + f"; Adam at lr={FALLBACK_LR:g} with the same training step {how}, so "
                f"the settings of {opt_desc} are what stall it (learning rate too low, heavy "
                "weight decay, momentum)",
                evidence, severity=Severity.WARNING,
                fix=f"Raise the learning rate of {opt_desc} (run `nnrecipe lr`) or switch to "
                    f"Adam at {FALLBACK_LR:g}, which overfit this batch; remove weight decay and "
                    "other regularisation while getting the model to overfit.")]
        tried = (f"; Adam at lr={FALLBACK_LR:g} with the same step could not either"
                 if fallback_needed else "")
        return [self.finding(base + tried + ", so the step, loss or model is broken", evidence)]

    def _batch(self, ctx: Context) -> tuple[tuple[torch.Tensor, torch.Tensor], list[int]]:
        """``N_SAMPLES`` training samples drawn across classes (class-index targets)."""
        ds = ctx.dataset("train")
        n = dataset_len(ds, "train")
        k = min(N_SAMPLES, n)
        rng = np.random.default_rng(ctx.seed)
        pool = rng.choice(n, size=min(n, CANDIDATE_POOL * k), replace=False).tolist()
        X, y = stack_split(ds, "train", pool)
        if ctx.task_type == "classification" and y.ndim == 1 and not y.is_floating_point():
            indices = stratified_indices(y, pool, k, ctx.seed)
        else:
            indices = sorted(pool[:k])
        pos = {i: j for j, i in enumerate(pool)}
        sel = torch.as_tensor([pos[i] for i in indices], dtype=torch.long)
        return (X[sel], y[sel]), indices

    def _verdict(self, ctx: Context, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor],
                 losses: list[float], floor: float) -> OverfitVerdict:
        out = _eval_outputs(ctx, model, batch[0])
        if out is None:
            return overfit_verdict(losses, floor)
        loss_fn = on_cpu(ctx.experiment.loss)
        try:
            with torch.no_grad():
                eval_loss: float | None = float(loss_fn(out, batch[1]))
        except Exception:  # noqa: BLE001 - a loss that only runs inside the user's step
            eval_loss = None
        mem = memorised(out, batch[1], loss_fn, ctx.task_type)
        return overfit_verdict(losses, floor, mem, eval_loss)

    def _memorised_note(self, v: OverfitVerdict, k: int, steps: int) -> list[Finding]:
        if v.status != "memorised":
            return []
        return [self.finding(
            f"in eval mode the model gets all {k} samples right, but after {steps} steps the "
            f"training loss levels off at {v.best:.4g} (start {v.initial:.4g}, target "
            f"{v.target:.3g}): the loss has a floor above {v.floor:.3g}. Expected with a penalty "
            "term inside the loss or soft targets; otherwise look at what the loss computes",
            {"best_smoothed_loss": v.best, "initial_loss": v.initial, "target_loss": v.target,
             "trend_slope_per_step": v.slope}, severity=Severity.INFO,
            fix="Nothing to do if the loss carries a penalty or soft targets on purpose.")]

    def _train(self, ctx: Context, batch: tuple[torch.Tensor, torch.Tensor], steps: int,
               lr: float | None, floor: float | None = None
               ) -> tuple[list[float], nn.Module, str, bool, float]:
        """Train a fresh model on ``batch``; returns the losses, the model, the optimizer's
        description, whether a fallback run could tell anything new, and the loss's floor
        (measured on the fresh model's outputs when not given)."""
        model = ctx.fresh_model(seed=ctx.seed)
        if floor is None:
            out = _eval_outputs(ctx, model, batch[0])
            floor = 0.0 if out is None else loss_floor(on_cpu(ctx.experiment.loss), out, batch[1])
        factory: Callable | None = None
        if lr is not None:
            factory = lambda params: torch.optim.Adam(params, lr=lr)  # noqa: E731
        optimizer = ctx.make_optimizer(model, factory)
        desc, needed = describe_optimizer(optimizer), not is_fallback(optimizer)
        losses: list[float] = []
        target = None
        with ctx.task(f"overfitting {len(batch[0])} samples", steps) as task:
            for _ in range(steps):
                value = ctx.step(model, batch, optimizer)
                losses.append(value)
                task.advance()
                if not math.isfinite(value):
                    break
                if target is None and len(losses) >= SMOOTH_WINDOW:
                    start = float(np.mean(losses[:SMOOTH_WINDOW]))
                    target = floor + TARGET_FRACTION * (start - floor)
                if target is not None and np.mean(losses[-SMOOTH_WINDOW:]) <= target:
                    break
        return losses, model, desc, needed, floor

    def _plot(self, ctx: Context, curves: dict[str, list[float]],
              verdict: OverfitVerdict | None) -> None:
        positive = all(v > 0 for c in curves.values() for v in c if math.isfinite(v))
        hl = None
        if verdict is not None and math.isfinite(verdict.target):
            hl = {f"target ({TARGET_FRACTION:.0%} of the way to the floor)": verdict.target}
            if verdict.floor > 0:
                hl["the loss's floor"] = verdict.floor
        ctx.add_figure("Overfitting one small batch", line_plot(
            curves, title=f"training loss on the same {N_SAMPLES} samples", logy=positive,
            hlines=hl))

    def _predictions_table(self, ctx: Context, model: nn.Module,
                           batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        X, y = batch
        out = _eval_outputs(ctx, model, X)
        if out is None:
            return
        rows = []
        if ctx.task_type == "classification" and out.ndim == 2 and out.shape[1] > 1 \
                and y.ndim == 1 and not y.is_floating_point():  # class ids (not multi-hot)
            probs = torch.softmax(out, 1)
            for i in range(len(y)):
                label = int(y[i])
                rows.append([i, label, int(probs[i].argmax()), round(float(probs[i, label]), 4)])
            ctx.add_table("Predictions on the overfit batch (eval mode)",
                          ["sample", "label", "predicted", "p(label)"], rows)
        else:
            flat_out, flat_y = out.reshape(len(y), -1), y.float().reshape(len(y), -1)
            for i in range(len(y)):
                rows.append([i, round(float(flat_y[i, 0]), 4), round(float(flat_out[i, 0]), 4)])
            ctx.add_table("Predictions on the overfit batch (eval mode, first output)",
                          ["sample", "target", "prediction"], rows)


def _eval_outputs(ctx: Context, model: nn.Module, X: torch.Tensor) -> torch.Tensor | None:
    """The model's eval-mode outputs on ``X`` (CPU, float), None when not one tensor; the
    mode is restored."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(X.to(ctx.device))
    finally:
        model.train(was)
    return out.float().cpu() if isinstance(out, torch.Tensor) else None
