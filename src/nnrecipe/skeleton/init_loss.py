"""``init-loss-mismatch``: the loss at initialisation vs the loss it should start at.

A freshly initialised network should predict the class prior (or the targets' mean), so its
first loss sits near the loss of that constant prediction: ln C for balanced softmax, the
prior's entropy when imbalanced, the targets' variance for MSE. Far above means a badly
scaled or biased output layer (the "hockey stick" first epochs); far below means the model
knows the answer before training, which is a leak or a loss bug.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check
from nnrecipe.core.training import on_cpu
from nnrecipe.report.plots import new_figure
from nnrecipe.skeleton.reference import class_prior, constant_prediction, zero_output_loss
from nnrecipe.train.nonfinite import LossNonfinite

N_SAMPLES = 512  # enough that the measured mean loss has a standard error << the tolerance

# Tolerance, by reasoning: for softmax with i.i.d. zero-mean logits of std s the expected
# excess over ln C is at most s^2/2, so 0.5 nats is logits of std ~1, three times what
# PyTorch's default init gives a final Linear layer on unit-scale features (s ~ 0.3-0.6,
# excess 0.05-0.2 nats measured on the bundled examples). The 10% relative term keeps the
# band proportionate when ln C is large. For MSE-like losses a zero-mean output of variance
# v adds v (+ the squared mean error): 50% of the targets' variance is an output std of 0.7
# standard deviations, clearly not "near the mean".
NATS_ABS_TOL, NATS_REL_TOL = 0.5, 0.10
REGRESSION_REL_TOL = 0.5


@dataclass
class InitLossVerdict:
    fires: bool
    direction: str  # "high", "low" or ""
    tolerance: float


def init_loss_verdict(measured: float, expected: float, kind: str) -> InitLossVerdict:
    """Pure decision: does ``measured`` initial loss sit too far from ``expected``?

    ``kind`` is ``"nats"`` (cross-entropy-like losses) or ``"regression"``.
    """
    if kind == "nats":
        tol = NATS_ABS_TOL + NATS_REL_TOL * abs(expected)
    else:
        tol = REGRESSION_REL_TOL * abs(expected) + 1e-12
    if measured > expected + tol:
        return InitLossVerdict(True, "high", tol)
    if measured < expected - tol:
        return InitLossVerdict(True, "low", tol)
    return InitLossVerdict(False, "", tol)


def offset_only(kind: str, measured: float, zero: float | None, output_var: float,
                tolerance: float) -> bool:
    """Pure: is a too-high initial loss explained by the targets alone (their mean, or an
    imbalanced prior) while the outputs sit near zero? Regression: the outputs' own variance
    is inside the band (what it adds to the loss); cross-entropy-like: the loss is within the
    band of what all-zero (uniform) outputs score."""
    if zero is None or not math.isfinite(zero):
        return False
    if kind == "nats":
        return measured <= zero + tolerance
    return output_var <= tolerance and measured <= zero + 2 * tolerance


def _chunks(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Batch bounds over ``n`` samples with no batch of one when ``n`` > 1 (BatchNorm cannot
    run on one sample in train mode: the last two batches share out their samples)."""
    bounds = [*range(0, n, max(1, batch_size)), n]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        bounds[-2] -= 1
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _loss_kind(loss_fn: object) -> str | None:
    if isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss, nn.BCEWithLogitsLoss, nn.BCELoss)):
        return "nats"
    if isinstance(loss_fn, (nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss)):
        return "regression"
    return None


class InitLossMismatch(Check):
    code = "init-loss-mismatch"
    stage = "skeleton"
    severity = Severity.WARNING
    title = "Loss at initialisation matches its expected value"
    fix = ("Initialise the output layer so the untrained model predicts the class prior (or the "
           "targets' mean): `nnrecipe.init_output_bias(model, train_set, loss)` after building the "
           "model, or set the last layer's bias yourself (log prior for softmax, mean for "
           "regression) and scale its weights down; for regression, standardise the targets.")
    order = 20
    emits = (LossNonfinite.code,)

    def applies(self, ctx: Context) -> str | None:
        if _loss_kind(ctx.experiment.loss) is None:
            return (f"the loss {type(ctx.experiment.loss).__name__} has no known reference value "
                    "(supported: CrossEntropy, NLL, BCE(WithLogits), MSE, L1, SmoothL1, Huber)")
        return None

    def run(self, ctx: Context) -> list[Finding]:
        loss_fn = ctx.experiment.loss
        X, y = ctx.tensors("train", limit=N_SAMPLES)
        model = ctx.fresh_model()
        outputs = []
        with torch.no_grad():  # train mode: the loss the first step sees
            for lo, hi in _chunks(len(X), ctx.experiment.batch_size):
                outputs.append(model(X[lo:hi].to(ctx.device)).float().cpu())
        out = torch.cat(outputs)
        cpu_loss = on_cpu(loss_fn)
        measured = float(cpu_loss(out, y))
        const = constant_prediction(cpu_loss, out, y)
        if const is None:
            return []
        expected = float(cpu_loss(const, y))
        zero = zero_output_loss(cpu_loss, out, y)
        if zero is not None and math.isfinite(zero) and zero < expected:
            # the prior is not the best constant under a class-weighted loss: with inverse-
            # frequency weights, uniform outputs score ln C and the prior far worse (healthy
            # corpus, 95/5 weighted: 0.698 measured vs 1.512 for the prior; it read "far below")
            expected = zero
        kind = _loss_kind(loss_fn) or "nats"
        ctx.record("measured_init_loss", measured)
        ctx.record("expected_init_loss", expected)
        ctx.record("zero_output_loss", zero)
        ctx.record("samples", len(X))
        if not math.isfinite(measured):
            return [self.finding(
                f"the loss of the untrained model is already {measured} on {len(X)} training "
                "samples", {"measured": measured, "expected": expected}, code=LossNonfinite.code,
                severity=Severity.ERROR)]
        verdict = init_loss_verdict(measured, expected, kind)
        ctx.record("tolerance", verdict.tolerance)
        ctx.add_table("Loss at initialisation", ["quantity", "loss"],
                      [["measured at init", f"{measured:.4g}"],
                       ["expected (constant prediction)", f"{expected:.4g}"],
                       *([["all-zero outputs", f"{zero:.4g}"]] if zero is not None else []),
                       ["allowed difference", f"±{verdict.tolerance:.3g}"]])
        if not verdict.fires:
            # The table says it all when the loss is where it should be; the figure (the
            # predicted vs actual class frequencies) is drawn for a finding only: it cost
            # 0.16 s of CPU of `nnrecipe check` on the demo (~40% of this check).
            return []
        self._plot(ctx, out, y, measured, expected, zero)
        evidence: dict = {"measured": measured, "expected": expected, "tolerance": verdict.tolerance,
                          "zero_output_loss": zero, "samples": len(X),
                          "output_mean": float(out.mean()), "output_std": float(out.std())}
        # What `init_output_bias` would put in the last layer's bias (up to a constant shift
        # for softmax): the constant prediction's output for one sample.
        evidence["suggested_output_bias"] = [round(float(v), 4)
                                             for v in const.reshape(len(const), -1)[0][:20]]
        if kind == "nats" and out.ndim >= 2 and not y.is_floating_point():
            evidence["class_prior"] = [round(float(p), 4) for p in class_prior(y, out.shape[1])]
        what = ("ln C for balanced classes, the prior's entropy otherwise" if kind == "nats"
                else "the loss of predicting the targets' mean (their variance for MSE)")
        if verdict.direction == "high" and offset_only(kind, measured, zero, float(out.var()),
                                                       verdict.tolerance):
            # The default init is doing its job (outputs near zero); the excess is the targets'
            # mean or the class prior, which every canonical example leaves to the first steps
            # (d2l's linear regression: 30.6 vs 14.4; Lightning's autoencoder). The recipe's
            # "init well" is advice here, not a fault: info.
            msg = (f"initial loss {measured:.4g} is above the expected {expected:.4g} ({what}): "
                   f"the untrained outputs sit near zero (mean {evidence['output_mean']:.3g}, "
                   f"std {evidence['output_std']:.3g}) while the "
                   + ("targets' mean is not" if kind != "nats" else "class prior is not uniform")
                   + f" (all-zero outputs score {zero:.4g}), so the first steps learn that "
                   "offset. Starting the output bias there saves them.")
            return [self.finding(msg, evidence, severity=Severity.INFO)]
        if verdict.direction == "high":
            msg = (f"initial loss {measured:.4g} is far above the expected {expected:.4g} "
                   f"({what}); allowed band ±{verdict.tolerance:.3g}. The output layer starts "
                   f"confidently wrong (outputs mean {evidence['output_mean']:.3g}, std "
                   f"{evidence['output_std']:.3g}), so the first epochs are spent undoing the init.")
            fix = None
            if zero is not None and zero > expected + verdict.tolerance:
                fix = (self.fix + f" Even all-zero outputs would score {zero:.4g} here: the targets "
                       "are imbalanced or uncentred, so the bias must carry the prior/mean.")
        else:
            msg = (f"initial loss {measured:.4g} is far below the expected {expected:.4g} "
                   f"({what}); an untrained model should not beat a constant prediction. "
                   "Check for targets leaking into inputs or a loss that does not compare "
                   "outputs with targets.")
            fix = ("Check that the inputs do not contain the target, that the loss is called "
                   "as loss(output, target) and reduces with 'mean'.")
        return [self.finding(msg, evidence, fix=fix)]

    def _plot(self, ctx: Context, out: torch.Tensor, y: torch.Tensor, measured: float,
              expected: float, zero: float | None) -> None:
        fig, axes = new_figure(width=8.5, height=3.0, ncols=2)
        names = ["measured at init", "expected (constant)"] + (["all-zero outputs"] if zero is not None else [])
        vals = [measured, expected] + ([zero] if zero is not None else [])
        axes[0].bar(names, vals, color=["#0969da", "#1a7f37", "#8c959f"][: len(vals)])
        axes[0].set(title="loss at initialisation", ylabel="loss")
        axes[0].tick_params(axis="x", labelsize=8)
        if ctx.task_type == "classification" and out.ndim == 2 and out.shape[1] > 1 \
                and not y.is_floating_point():
            probs = torch.softmax(out, dim=1).mean(0).numpy()
            prior = class_prior(y, out.shape[1]).numpy()
            idx = range(len(prior))
            axes[1].bar([i - 0.2 for i in idx], prior, width=0.4, label="class prior", color="#1a7f37")
            axes[1].bar([i + 0.2 for i in idx], probs, width=0.4, label="mean softmax at init",
                        color="#0969da")
            axes[1].set(title="predicted vs actual class frequencies", xlabel="class")
            axes[1].legend(fontsize=8)
        else:
            axes[1].hist(y.float().reshape(-1).numpy(), bins=30, alpha=0.6, label="targets",
                         color="#1a7f37")
            axes[1].hist(out.reshape(-1).numpy(), bins=30, alpha=0.6, label="outputs at init",
                         color="#0969da")
            axes[1].set(title="outputs at init vs targets")
            axes[1].legend(fontsize=8)
        ctx.add_figure("Loss at initialisation", fig)
