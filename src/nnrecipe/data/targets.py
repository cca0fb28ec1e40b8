"""What the loss is asked to predict: ``unscaled-targets`` and ``padding-in-loss``.

``unscaled-targets``. A network with PyTorch's default initialisation starts with outputs of
order 0.1-1 around 0. A regression target of 1e5 (house prices) or 40 +- 12 (ages) puts the
initial MSE 1e2-1e10 above that of the standardised problem: the first gradients are as
large, SGD diverges (NaN at epoch 1) and Adam spends thousands of steps growing the output
layer's bias and weights before it learns anything. Standardising the target (and inverting
at prediction) removes the problem; judging the loss in the original units is then a matter
of multiplying by the std.

``padding-in-loss``. Sequence targets padded to a common length with a pad id, and a loss
that does not ignore that id (``CrossEntropyLoss(ignore_index=-100)`` by default): the model
is trained, and scored, on predicting padding after padding, which is trivial. The loss and
accuracy look far better than the model is, and the real tokens get a fraction of the
gradient. The check finds an id that dominates the targets *as trailing (or leading) runs*
(what padding looks like; a frequent tag such as NER's "O" is spread through the sequence),
then measures whether the loss's gradient reaches the positions holding it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.data.base import DataCheck, pct
from nnrecipe.data.stats import column_stats
from nnrecipe.data.view import DataView, SplitView, _stacked_targets

# ------------------------------------------------------------------- unscaled targets

# By reasoning, as for inputs (features.RMS_MAX): default-initialised networks output ~0.1-1,
# so a target whose root-mean-square exceeds 10 needs the last layer to grow 10-100x before the
# loss says anything about the task, and its gradients (and the MSE's curvature) are 10-100x
# (100-10,000x) those of the standardised problem. A target whose mean is > 3 of its stds (and
# > 1) is a small ripple on an offset the bias must first learn. Below an rms of 0.01 the
# initial outputs are 10-100x the target: info (Adam copes, but MSE values of 1e-5 hide
# progress and fall under loss-scale tolerances). By measurement: standardised targets of
# diabetes and synthetic sets have rms 1.0 and stay quiet; raw diabetes (152 +- 77) and house
# prices (~1e5) fire.
TARGET_RMS_MAX = 10.0
TARGET_OFFSET_RATIO, TARGET_OFFSET_MIN = 3.0, 1.0
TARGET_RMS_MIN = 0.01
# A model whose fresh outputs already have the target's scale (it ends in a layer that
# de-standardises, say) within this factor is doing the scaling itself: quiet.
OUTPUT_SCALE_MATCH = 10.0


@dataclass
class TargetScaleVerdict:
    severity: Severity | None
    reasons: list[str]


def target_scale_verdict(mean: float, std: float, output_rms: float | None = None
                         ) -> TargetScaleVerdict:
    """Pure decision on the training target's mean and std (the columns pooled, for several
    outputs) and, when known, the rms of a freshly initialised model's outputs."""
    rms = float(np.hypot(mean, std))
    reasons: list[str] = []
    sev: Severity | None = None
    if rms > TARGET_RMS_MAX:
        reasons.append(f"the target's magnitude (rms) is {rms:.3g}, > {TARGET_RMS_MAX:g}")
    if abs(mean) > TARGET_OFFSET_RATIO * std and abs(mean) > TARGET_OFFSET_MIN:
        reasons.append(f"its mean {mean:.3g} is {abs(mean) / max(std, 1e-300):.3g}x its std "
                       f"{std:.3g} (> {TARGET_OFFSET_RATIO:g}x)")
    if reasons:
        sev = Severity.WARNING
    elif 0 < rms < TARGET_RMS_MIN:
        reasons.append(f"the target's magnitude (rms) is only {rms:.2g} (< {TARGET_RMS_MIN:g}); a "
                       "fresh network's outputs are 10-100x larger")
        sev = Severity.INFO
    if sev is not None and output_rms is not None and output_rms > 0:
        ratio = max(rms / output_rms, output_rms / rms)
        if ratio <= OUTPUT_SCALE_MATCH:
            return TargetScaleVerdict(None, [f"the fresh model's outputs (rms {output_rms:.3g}) "
                                             "already have the target's scale"])
    return TargetScaleVerdict(sev, reasons)


def _initial_output_rms(ctx: Context) -> float | None:
    """rms of a freshly initialised model's outputs on up to 64 training samples, or None
    when there is no model (``inspect`` on a data file) or it cannot run on the data."""
    try:
        model = ctx.fresh_model(seed=ctx.seed)
        X, _ = ctx.batch("train", 64)
        with torch.no_grad():
            out = model.eval()(X)
    except Exception:  # noqa: BLE001 - any failure means: unknown (the skeleton reports it)
        return None
    if not isinstance(out, torch.Tensor) or not out.is_floating_point() or out.numel() == 0:
        return None
    value = float(out.detach().float().pow(2).mean().sqrt())
    return value if np.isfinite(value) else None


def _regression_targets(sv: SplitView) -> np.ndarray | None:
    """The usable rows' targets as (n, k) float64, or None."""
    if sv.target is not None:
        t = sv.target[sv.good]
        return t[np.isfinite(t)][:, None]
    Y = _stacked_targets(sv)
    if Y is None:
        return None
    Y = Y[sv.good].reshape(len(sv.good), -1)
    return Y[np.isfinite(Y).all(1)]


class UnscaledTargets(DataCheck):
    code = "unscaled-targets"
    severity = Severity.WARNING
    title = "Regression targets are centred with a unit-like scale"
    fix = ("Standardise the target with the training statistics, y' = (y - mean_train) / "
           "std_train (log-transform first if it is positive and heavy-tailed, e.g. prices), "
           "train on y', and invert at prediction: y = y' * std_train + mean_train. Report "
           "errors in the original units by multiplying by std_train.")
    order = 13

    def applies_to(self, view: DataView) -> str | None:
        if view.task != "regression":
            return "not a regression task"
        return None

    def run(self, ctx: Context) -> list[Finding]:
        view = self.view(ctx)
        Y = _regression_targets(view.train)
        if Y is None or len(Y) < 2:
            return []
        st = column_stats(Y)
        # pooled over output columns: the network's outputs share one initial scale
        mean = float(st.mean.mean()) if Y.shape[1] > 1 else float(st.mean[0])
        std = float(np.sqrt((st.std ** 2 + (st.mean - mean) ** 2).mean()))
        ctx.record("target_mean", mean)
        ctx.record("target_std", std)
        v = target_scale_verdict(mean, std)
        out_rms = None
        if v.severity is not None:
            out_rms = _initial_output_rms(ctx)
            ctx.record("initial_output_rms", out_rms)
            v = target_scale_verdict(mean, std, out_rms)
        if v.severity is None:
            return []
        what = f"{Y.shape[1]} target columns pooled" if Y.shape[1] > 1 else "the target"
        msg = (f"Regression target not standardised ({what}: mean {mean:.4g}, std {std:.4g}): "
               + "; ".join(v.reasons) + ".")
        if out_rms is not None:
            msg += (f" A freshly initialised model outputs rms {out_rms:.3g}: it has to grow "
                    f"its output {np.hypot(mean, std) / out_rms:.3g}x before it fits anything.")
        evidence = {"mean": mean, "std": std, "columns": int(Y.shape[1]),
                    "initial_output_rms": out_rms, "rms_max": TARGET_RMS_MAX}
        return [self.finding(msg, evidence, severity=v.severity)]


# ------------------------------------------------------------------- padding in the loss

# By reasoning: padding that fills a fifth of the target positions takes a fifth of the loss
# and of the accuracy, which is enough to make both misleading; the commonest real token of
# a language is 3-7% of words, a space ~17% of characters, so 20% needs padding-like help.
PAD_SHARE_MIN = 0.2
# What makes it padding: nearly all of its occurrences sit in a run at the end (or start) of
# a row. By measurement on synthetic padded batches: 1.0; NER-style tags ("O" at 80% of
# positions) and character text: 0.05-0.35.
PAD_RUN_SHARE = 0.9
# The loss's gradient at the pad positions, relative to that at the other positions: exactly
# 0 when ignored (ignore_index or a mask); a loss that counts them gives ~1.
GRAD_SHARE_MIN = 1e-3
PAD_ROWS = 64  # rows of the training targets used to measure the loss


@dataclass
class PadCandidate:
    token: int
    share: float      # of all target positions
    run_share: float  # of its occurrences, in a leading or trailing run


@dataclass
class PaddingVerdict:
    severity: Severity | None
    reason: str


def pad_candidate(T: np.ndarray) -> PadCandidate | None:
    """The most frequent id of integer targets (n, L) and how padding-like it is."""
    if T.ndim != 2 or T.shape[1] < 2 or T.size == 0:
        return None
    values, counts = np.unique(T, return_counts=True)
    tok = int(values[np.argmax(counts)])
    hit = tok == T
    total = int(hit.sum())
    # length of the run of `tok` at the end (and at the start) of each row
    trailing = np.argmin(hit[:, ::-1], axis=1)
    trailing[hit.all(1)] = T.shape[1]
    leading = np.argmin(hit, axis=1)
    leading[hit.all(1)] = T.shape[1]
    in_runs = max(int(trailing.sum()), int(leading.sum()))
    return PadCandidate(tok, total / T.size, min(1.0, in_runs / max(total, 1)))


def padding_verdict(cand: PadCandidate | None, grad_share: float | None,
                    custom_step: bool = False) -> PaddingVerdict:
    """Pure decision: a padding-like id, and whether the loss's gradient reaches it
    (``grad_share`` None: the loss could not be measured on these targets)."""
    if cand is None or cand.share < PAD_SHARE_MIN or cand.run_share < PAD_RUN_SHARE:
        return PaddingVerdict(None, "")
    if grad_share is not None and grad_share < GRAD_SHARE_MIN:
        return PaddingVerdict(None, "the loss ignores it")
    if grad_share is None:
        return PaddingVerdict(Severity.INFO, "the loss could not be evaluated on these targets "
                                             "to see whether it ignores them")
    sev = Severity.INFO if custom_step else Severity.WARNING
    why = (f"the loss's gradient reaches those positions ({grad_share:.2f}x the gradient at "
           "the other positions)")
    if custom_step:
        why += "; the experiment has its own train_step, which may mask them (if it does, ignore this)"
    return PaddingVerdict(sev, why)


def pad_gradient_share(ctx: Context, pad: int, rows: int = PAD_ROWS) -> float | None:
    """Mean |d loss / d output| at the pad positions over that at the other positions, from a
    fresh model on the first training rows, through the experiment's loss; None when the
    model or loss cannot run or the output layout does not match the targets."""
    try:
        model = ctx.fresh_model(seed=ctx.seed)
        X, y = ctx.batch("train", rows)
        out = model.eval()(X)
        if not isinstance(out, torch.Tensor) or not out.is_floating_point():
            return None
        out = out.detach().requires_grad_(True)
        loss = ctx.experiment.loss(out, y)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not torch.isfinite(loss):
            return None
        (grad,) = torch.autograd.grad(loss, out)
    except Exception:  # noqa: BLE001 - unknown: reported as undetermined
        return None
    g = grad.abs()
    if out.shape[:2] == y.shape and out.dim() == 3:      # (B, T, V)
        per_pos = g.sum(-1)
    elif out.dim() == 3 and out.shape[0] == y.shape[0] and out.shape[2] == y.shape[1]:
        per_pos = g.sum(1)                               # (B, V, T)
    else:
        return None
    is_pad = y == pad
    if not is_pad.any() or is_pad.all():
        return None
    other = float(per_pos[~is_pad].mean())
    if other <= 0:
        return None
    return float(per_pos[is_pad].mean()) / other


class PaddingInLoss(DataCheck):
    code = "padding-in-loss"
    severity = Severity.WARNING
    title = "Padding is not counted in the loss"
    fix = ("Tell the loss to skip the pad id: nn.CrossEntropyLoss(ignore_index=PAD_ID) (or "
           "set padded targets to -100, the default ignore_index), or multiply the per-token "
           "loss by a mask of real tokens and divide by the mask's sum. Compute accuracy and "
           "perplexity on real tokens only.")
    order = 14

    def applies(self, ctx: Context) -> str | None:
        reason = super().applies(ctx)
        if reason:
            return reason
        from nnrecipe.experiment import REGRESSION_LOSSES

        multi_label = (torch.nn.BCEWithLogitsLoss, torch.nn.BCELoss,
                       torch.nn.MultiLabelSoftMarginLoss)
        if isinstance(ctx.experiment.loss, multi_label + REGRESSION_LOSSES):
            return "the loss does not take class ids"
        return None

    def applies_to(self, view: DataView) -> str | None:
        if view.task != "classification":
            return "not a classification (token prediction) task"
        T = _token_targets(view.train)
        if T is None:
            return "the targets are not integer sequences (one id per position)"
        if len(np.unique(T[:1000])) < 3:
            return "binary targets per position (a pad id would be a third value)"
        return None

    def run(self, ctx: Context) -> list[Finding]:
        view = self.view(ctx)
        T = _token_targets(view.train)
        assert T is not None
        cand = pad_candidate(T)
        if cand is not None:
            ctx.record("dominant_id", cand.token)
            ctx.record("dominant_share", cand.share)
            ctx.record("dominant_run_share", cand.run_share)
        grad = None
        if cand is not None and cand.share >= PAD_SHARE_MIN and cand.run_share >= PAD_RUN_SHARE:
            grad = pad_gradient_share(ctx, cand.token)
            ctx.record("pad_gradient_share", grad)
        v = padding_verdict(cand, grad, custom_step=ctx.experiment.train_step is not None)
        if v.severity is None or cand is None:
            return []
        lengths = (cand.token != T).sum(1)  # the real tokens of each row
        msg = (f"id {cand.token} fills {pct(cand.share)} of the training target positions, "
               f"{pct(cand.run_share)} of it in runs at the ends of sequences (padding: real "
               f"lengths {int(lengths.min())}..{int(lengths.max())} of {T.shape[1]}), and "
               f"{v.reason}. The model is trained and scored on predicting padding: loss and "
               "accuracy look better than the model is.")
        evidence = {"pad_id": cand.token, "share": cand.share, "run_share": cand.run_share,
                    "pad_gradient_share": grad, "sequence_length": int(T.shape[1]),
                    "ignore_index": getattr(ctx.experiment.loss, "ignore_index", None),
                    "custom_train_step": ctx.experiment.train_step is not None}
        return [self.finding(msg, evidence, severity=v.severity)]


def _token_targets(sv: SplitView) -> np.ndarray | None:
    """Integer targets of shape (n, L) (sequence models), from the usable rows, or None."""
    Y = sv.Y if sv.Y is not None else _stacked_targets(sv)
    if Y is None or Y.ndim != 2 or Y.shape[1] < 2:
        return None
    Y = Y[sv.good]
    if Y.dtype.kind == "f":
        if not np.all(np.isfinite(Y)) or not np.all(np.round(Y) == Y):
            return None
        return Y.astype(np.int64)
    return Y.astype(np.int64) if Y.dtype.kind in "iu" else None


__all__ = ["UnscaledTargets", "PaddingInLoss", "target_scale_verdict", "padding_verdict",
           "pad_candidate", "pad_gradient_share"]
