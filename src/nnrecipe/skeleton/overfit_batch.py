"""``cannot-overfit-batch``: a handful of samples must be driven to ~zero loss.

The recipe's "overfit one batch": with only a few examples, any working model, loss and
training step memorises them. If it cannot, something between the data and the update is
broken (the step, the loss, frozen parameters, a learning rate of zero), and no amount of
real training will help. The user's own ``train_step`` is the one exercised.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from nnrecipe.core.context import Context
from nnrecipe.core.data import stack_split
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check
from nnrecipe.report.plots import line_plot
from nnrecipe.train.nonfinite import LossNonfinite, nonfinite_finding

N_SAMPLES = 8
MAX_STEPS = 400
# "~zero loss": the smoothed loss must fall to 2% of where it started. Healthy models on the
# bundled examples reach it in 60-250 steps with Adam 3e-4 (measured); a step that never
# updates stays at 100%, and a too-small learning rate stalls far above.
TARGET_FRACTION = 0.02
SMOOTH_WINDOW = 5
FALLBACK_LR = 1e-3  # Adam at this rate tells "optimizer settings" apart from "broken step"


@dataclass
class OverfitVerdict:
    reached: bool
    initial: float
    best: float
    step: int | None  # the step at which the target was reached


def overfit_verdict(losses: Sequence[float], target_fraction: float = TARGET_FRACTION,
                    window: int = SMOOTH_WINDOW) -> OverfitVerdict:
    """Pure decision: did the smoothed loss fall to ``target_fraction`` of its start?"""
    arr = np.asarray(losses, dtype=float)
    if len(arr) == 0 or not np.all(np.isfinite(arr)):
        return OverfitVerdict(False, float(arr[0]) if len(arr) else math.nan, math.nan, None)
    initial = float(np.mean(arr[: min(window, len(arr))]))
    kernel = np.ones(min(window, len(arr))) / min(window, len(arr))
    smooth = np.convolve(arr, kernel, mode="valid")
    target = target_fraction * initial
    hit = np.nonzero(smooth <= target)[0]
    step = int(hit[0]) + len(kernel) - 1 if len(hit) else None
    return OverfitVerdict(step is not None, initial, float(smooth.min()), step)


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
        n_train = len(ctx.dataset("train"))
        k = min(N_SAMPLES, n_train)
        indices = sorted(np.random.default_rng(ctx.seed).choice(n_train, size=k, replace=False).tolist())
        X, y = stack_split(ctx.dataset("train"), "train", indices)  # only these k samples
        batch = (X, y)
        steps = int(ctx.options.get("overfit_batch_steps", MAX_STEPS))

        losses, model = self._train(ctx, batch, steps, None)
        ctx.record("samples", k)
        ctx.record("indices", indices)
        bad = nonfinite_finding(losses, where="overfitting one batch", stage=self.stage)
        if bad is not None:
            bad.check = self.name
            self._plot(ctx, {"your optimizer": losses})
            return [bad]
        verdict = overfit_verdict(losses)
        ctx.record("initial_loss", verdict.initial)
        ctx.record("best_smoothed_loss", verdict.best)
        ctx.record("steps_to_target", verdict.step)
        curves = {"your optimizer": losses}
        if verdict.reached:
            self._plot(ctx, curves)
            self._predictions_table(ctx, model, batch)
            return []

        fallback, fb_model = self._train(ctx, batch, steps, FALLBACK_LR)
        fb_verdict = overfit_verdict(fallback)
        curves[f"Adam lr={FALLBACK_LR:g} (same step)"] = fallback
        self._plot(ctx, curves)
        self._predictions_table(ctx, fb_model if fb_verdict.reached else model, batch)
        evidence = {"samples": k, "indices": indices, "steps": steps,
                    "initial_loss": verdict.initial, "best_smoothed_loss": verdict.best,
                    "target_loss": TARGET_FRACTION * verdict.initial,
                    "fallback_reached": fb_verdict.reached,
                    "fallback_best_loss": fb_verdict.best, "custom_train_step": ctx.uses_custom_step}
        base = (f"after {steps} steps on the same {k} samples the loss only fell from "
                f"{verdict.initial:.4g} to {verdict.best:.4g} (target: below "
                f"{TARGET_FRACTION * verdict.initial:.3g}, {TARGET_FRACTION:.0%} of the start)")
        if fb_verdict.reached:
            return [self.finding(
                base + f"; with Adam at lr={FALLBACK_LR:g} and the same training step it reached "
                f"the target in {fb_verdict.step} steps, so the optimizer settings are too weak "
                "(learning rate too low, heavy weight decay or momentum issues)",
                evidence, severity=Severity.WARNING,
                fix="Raise the learning rate (run `nnrecipe lr`) or start from Adam at 3e-4; "
                    "remove regularisation while getting the model to overfit.")]
        return [self.finding(base + f"; Adam at lr={FALLBACK_LR:g} with the same step could not "
                             "either, so the step, loss or model is broken", evidence)]

    def _train(self, ctx: Context, batch: tuple[torch.Tensor, torch.Tensor], steps: int,
               lr: float | None) -> tuple[list[float], torch.nn.Module]:
        model = ctx.fresh_model(seed=ctx.seed)
        factory: Callable | None = None
        if lr is not None:
            factory = lambda params: torch.optim.Adam(params, lr=lr)  # noqa: E731
        optimizer = ctx.make_optimizer(model, factory)
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
                    target = TARGET_FRACTION * float(np.mean(losses[:SMOOTH_WINDOW]))
                if target is not None and np.mean(losses[-SMOOTH_WINDOW:]) <= target:
                    break
        return losses, model

    def _plot(self, ctx: Context, curves: dict[str, list[float]]) -> None:
        positive = all(v > 0 for c in curves.values() for v in c if math.isfinite(v))
        first = next(iter(curves.values()))
        hl = {"target (2% of start)": TARGET_FRACTION * float(np.mean(first[:SMOOTH_WINDOW]))} \
            if first and math.isfinite(first[0]) else None
        ctx.add_figure("Overfitting one small batch", line_plot(
            curves, title=f"training loss on the same {N_SAMPLES} samples", logy=positive,
            hlines=hl))

    def _predictions_table(self, ctx: Context, model: torch.nn.Module,
                           batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        X, y = batch
        was = model.training
        model.eval()
        with torch.no_grad():
            out = model(X.to(ctx.device)).float().cpu()
        model.train(was)
        rows = []
        if ctx.task_type == "classification" and out.ndim == 2 and out.shape[1] > 1:
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
