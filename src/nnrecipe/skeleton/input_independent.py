"""``input-independent``: does the model extract anything from its inputs?

The recipe: "train an input-independent baseline (e.g. set all your inputs to zero). This
should perform worse than when you actually plug in your data without zeroing it out. Does
it? i.e. does your model learn to extract any information out of the input at all?"

Two short runs from the same seed (:mod:`nnrecipe.skeleton.shortrun`; the real one is
shared with ``baseline-not-beaten``): the real inputs, and every input zeroed at the model's
entry. On the evaluation split the real run must do significantly better. When it does not,
the cause is told apart by two exact tests and one comparison: if the two runs are
bit-identical (the step never feeds the inputs) or zeroing the input leaves the trained
model's outputs unchanged (the forward ignores, detaches into a constant, or overwrites its
input), the inputs do not reach the output: an error. If they reach it and lower the
*training* loss but not the validation loss, the model memorises inputs that do not predict
the labels (shuffled or misaligned); otherwise there is no signal the model found in a short
run. Those two are warnings: a short run cannot tell a bug from a hard problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check
from nnrecipe.report.plots import line_plot
from nnrecipe.skeleton._util import paired_improvement
from nnrecipe.skeleton.shortrun import (
    evaluation_split,
    flat_start,
    short_run,
    train_loss_tail,
)

# Significance as for the baselines: better by two standard errors of the paired difference.
Z = 2.0
# Training-loss comparisons on the mean of the last 20% of step losses. Runs that ignore the
# inputs are bit-identical (difference exactly 0); 2% is well above the step-to-step noise of
# a 20-step mean, and well below the gap real inputs open on any learnable task.
TRAIN_MARGIN = 0.02
# Zeroing the input of a model that uses it changes its outputs by O(1) of their size; a
# model that never sees it changes them by exactly 0. 1e-6 is float32 round-off.
SENSITIVITY_TOL = 1e-6


@dataclass
class InputVerdict:
    fires: bool
    severity: str  # "error" or "warning"; "" when quiet
    cause: str  # "ignored", "no-generalisation", "no-signal"
    val_gain: float
    val_se: float


def input_verdict(real_val: np.ndarray, zero_val: np.ndarray, real_train: list[float],
                  zero_train: list[float], sensitivity: float, z: float = Z) -> InputVerdict:
    """Pure decision on per-sample validation losses, the step losses of both runs and the
    trained model's sensitivity to zeroing its input (0: the input never reaches the output).
    """
    gain, se = paired_improvement(real_val, zero_val)
    if not math.isfinite(gain):  # no finite pair of losses (NaN inputs, a diverged run): the
        return InputVerdict(False, "", "", gain, se)  # loss-nonfinite finding owns that case
    if gain > 0 and gain > z * se:
        return InputVerdict(False, "", "", gain, se)
    identical = len(real_train) > 0 and list(real_train) == list(zero_train)
    if identical or sensitivity <= SENSITIVITY_TOL:
        return InputVerdict(True, "error", "ignored", gain, se)
    r_tail, z_tail = train_loss_tail(real_train), train_loss_tail(zero_train)
    if math.isfinite(r_tail) and math.isfinite(z_tail) and r_tail < z_tail * (1 - TRAIN_MARGIN):
        # "Memorises without generalising" claims that validation gains clearly less than
        # training does. A small validation split cannot say so: when the validation gain's
        # upper bound (gain + z se) reaches the training gain, the short run is merely
        # underpowered (seen: 64 validation samples, a healthy BatchNorm MLP 50 steps in,
        # gain 0.048 +- 0.038 nats against a training gain of 0.06): quiet.
        if gain + z * se >= z_tail - r_tail:
            return InputVerdict(False, "", "", gain, se)
        return InputVerdict(True, "warning", "no-generalisation", gain, se)
    return InputVerdict(True, "warning", "no-signal", gain, se)


class InputIndependent(Check):
    code = "input-independent"
    stage = "skeleton"
    severity = Severity.ERROR
    title = "The model does better with its inputs than with zeroed inputs"
    fix = ("Make sure the inputs reach the output: the forward uses its argument (not a "
           "buffer or a constant), nothing detaches or overwrites it, the training step passes "
           "the batch's inputs to the model, and the labels belong to those inputs (shuffle "
           "inputs and labels together).")
    order = 55
    min_train_samples = 2  # one to train on, one held out when there is no val split

    def run(self, ctx: Context) -> list[Finding]:
        split = evaluation_split(ctx)
        real, zero = short_run(ctx), short_run(ctx, zero_inputs=True)
        sensitivity = real.extra.get("input_sensitivity", math.inf)
        v = input_verdict(real.per_sample, zero.per_sample, real.step_losses, zero.step_losses,
                          sensitivity)
        ctx.record("input_sensitivity", sensitivity)
        ctx.record("val_loss_real", real.metrics.get("loss"))
        ctx.record("val_loss_zeroed", zero.metrics.get("loss"))
        ctx.record("val_gain", v.val_gain)
        ctx.record("val_gain_se", v.val_se)
        ctx.record("train_loss_real", train_loss_tail(real.step_losses))
        ctx.record("train_loss_zeroed", train_loss_tail(zero.step_losses))
        ctx.record("evaluated_on", split.label)
        if not v.fires:
            return []
        self._plot(ctx, real.step_losses, zero.step_losses, real.steps, split.label,
                   real.metrics.get("loss", math.nan), zero.metrics.get("loss", math.nan))
        evidence = {"steps": real.steps, "evaluated_on": split.label,
                    "val_loss_real": real.metrics.get("loss"),
                    "val_loss_zeroed": zero.metrics.get("loss"),
                    "val_gain": v.val_gain, "val_gain_se": v.val_se, "z": Z,
                    "train_loss_real": train_loss_tail(real.step_losses),
                    "train_loss_zeroed": train_loss_tail(zero.step_losses), "cause": v.cause,
                    "input_sensitivity": sensitivity,
                    "custom_train_step": ctx.uses_custom_step}
        head = (f"after {real.steps} steps the model scores {real.metrics.get('loss', math.nan):.4g} "
                f"on {split.label} with its real inputs and "
                f"{zero.metrics.get('loss', math.nan):.4g} with all inputs zeroed (gain "
                f"{v.val_gain:.3g} ± {v.val_se:.2g}; required: > {Z:g} standard errors)")
        if v.cause == "ignored":
            how = ("the two runs are bit-identical: the training step never feeds the inputs "
                   "to the model" if sensitivity > SENSITIVITY_TOL else
                   "zeroing the input does not change the trained model's outputs at all")
            return [self.finding(head + f"; {how}: the inputs do not reach the output",
                                 evidence)]
        if v.cause == "no-generalisation":
            return [self.finding(
                head + "; the real inputs lower the training loss "
                f"({evidence['train_loss_real']:.4g} vs {evidence['train_loss_zeroed']:.4g}) but "
                "not the validation loss: the model memorises inputs that do not predict the "
                "labels (labels shuffled or misaligned with their inputs?)", evidence,
                severity=Severity.WARNING)]
        if flat_start(real.step_losses):
            evidence["flat_start"] = True
            return [self.finding(
                head + "; the training loss has not moved in these steps: too early to tell "
                "whether the inputs help", evidence, severity=Severity.INFO,
                fix="Give the short run more steps (options={'short_run_steps': N}) or check "
                "the rate with `nnrecipe lr`.")]
        return [self.finding(
            head + "; the inputs do reach the output, yet they help neither on training nor "
            "on validation data: the labels carry no signal the model can find (shuffled or "
            "misaligned with their inputs?), or the model learns nothing in this many steps "
            "(see cannot-overfit-batch, `nnrecipe lr`)", evidence, severity=Severity.WARNING,
            fix="Check that each label belongs to its input; get the model to learn (learning "
                "rate, training step); a slow starter may need more steps: "
                "options={'short_run_steps': N}.")]

    def _plot(self, ctx: Context, real: list[float], zero: list[float], steps: int, label: str,
              val_real: float, val_zero: float) -> None:
        where = label.split(" (")[0]
        ctx.add_figure("Real vs zeroed inputs", line_plot(
            {"real inputs (train)": _smooth(real), "zeroed inputs (train)": _smooth(zero)},
            title=f"short runs of {steps} steps (training loss, smoothed)",
            hlines={f"{where} loss, real": val_real, f"{where} loss, zeroed": val_zero}))


def _smooth(values: list[float], window: int = 5) -> list[float]:
    arr = np.asarray(values, dtype=float)
    if len(arr) < window:
        return arr.tolist()
    return np.convolve(arr, np.ones(window) / window, mode="valid").tolist()
