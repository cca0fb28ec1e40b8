"""The train stage's diagnosis: :func:`diagnose` runs every rule over a
:class:`~nnrecipe.train.monitor.Recording` and turns the verdicts into findings.

The rules live by family, each a pure ``*_verdict`` function of plain numbers returning a
small dataclass whose ``fires`` says whether the finding is raised (unit-tested on scripted
series): loss curves in :mod:`nnrecipe.train.curves`, generalisation in
:mod:`nnrecipe.train.generalisation`, per-layer statistics in :mod:`nnrecipe.train.layers`;
the codes in :mod:`nnrecipe.train.codes`. This module re-exports them all.

Rules that compare numbers over time compare against the measured noise of those numbers
(batch-to-batch scatter scaled by batch size, standard errors of epoch means, paired
standard errors of the validation loss), and each finding states its margin in its message.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnrecipe.core.findings import Finding, Severity
from nnrecipe.train.causes import monitor_causes
from nnrecipe.train.codes import (  # noqa: F401  (re-exported)
    TRAIN_CODES,
    DeadRelu,
    ExplodingGradients,
    LossDiverging,
    LossPlateau,
    LrScheduleMisstepped,
    LrTooHigh,
    LrTooLow,
    Overfitting,
    SaturatedActivations,
    Underfitting,
    UpdateRatio,
    ValBelowTrain,
    ValMetricInconsistent,
    VanishingGradients,
    WeightsFluctuating,
)
from nnrecipe.train.curves import (  # noqa: F401  (re-exported)
    BLOWUP_RECOVERED,
    BLOWUP_START,
    DIVERGE_ABOVE_START,
    DIVERGE_LOST_FRACTION,
    DIVERGE_Z,
    HIGH_PLATEAU,
    LONE_Z,
    LOW_UPDATE_RATIO,
    MIN_RISES,
    MIN_SPIKES,
    PERSIST_Z,
    RISE_REL,
    RISE_Z,
    SCHEDULE_FALL,
    SPIKE_RATIO,
    SPIKE_Z,
    WEIGHT_GROWTH,
    BlowupVerdict,
    CurveLevels,
    DivergingVerdict,
    LrHighVerdict,
    LrLowVerdict,
    PlateauVerdict,
    ScheduleVerdict,
    blowup_verdict,
    curve_levels,
    diverging_verdict,
    lr_too_high_verdict,
    lr_too_low_verdict,
    plateau_verdict,
    schedule_verdict,
)
from nnrecipe.train.generalisation import (  # noqa: F401  (re-exported)
    FALLING_T,
    GAIN_SHARE,
    JITTER,
    LINEAR_MARGIN,
    METRIC_SLACK,
    NO_BASELINE_GAIN,
    OVERFIT_RISE,
    OVERFIT_Z,
    VAL_BELOW_MARGIN,
    FluctuationVerdict,
    MetricVerdict,
    OverfitVerdict,
    UnderfitVerdict,
    ValBelowVerdict,
    overfitting_verdict,
    trimmed_rel_se,
    underfitting_verdict,
    val_below_train_verdict,
    val_metric_verdict,
    weights_fluctuating_verdict,
)
from nnrecipe.train.layers import (  # noqa: F401  (re-exported)
    DEAD_FRACTION,
    DEPTH_RATIO,
    GRAD_GROWTH,
    GRAD_SPIKE,
    GROWTH_FALL_Z,
    SATURATED_FRACTION,
    UPDATE_HIGH,
    UPDATE_LOW,
    VANISH_RATIO,
    ExplodingVerdict,
    LayerFractionVerdict,
    UpdateRatioVerdict,
    VanishingVerdict,
    dead_relu_verdict,
    exploding_verdict,
    saturation_verdict,
    update_ratio_verdict,
    vanishing_verdict,
)
from nnrecipe.train.nonfinite import LossNonfinite
from nnrecipe.train.signals import finite, quantiles, smoothing_window, trend_tstat


def _f(x: float) -> str:
    return f"{x:.3g}"


# ========================================================================= diagnose


@dataclass
class Extras:
    """What the caller knows beyond the recording (all optional)."""

    baselines: dict[str, Any] | None = None  # ctx.state["baselines"]
    train_mode_end: float | None = None  # last epoch's weights, train mode, no update
    train_eval_end: float | None = None  # same weights, eval mode
    augmented: bool = False
    has_dropout: bool = False
    val_rel_se: float = 0.0  # robust (trimmed-mean) standard error of the val loss / its value
    best_epoch_restored: int | None = None
    lr_suggested: float | None = None  # ctx.state["lr"]["suggested"]
    where: str = "training"
    # the optimizer-step batch sizes (None: the recording's ``batch_sizes``, if any)
    batch_sizes: Sequence[float] | None = None
    per_sample_val: np.ndarray | None = None  # (epochs, samples) validation losses
    stopped_by: str | None = None  # "patience" | "GL" | "PQ" (early stopping)
    init_loss: float | None = None  # analytic loss at initialisation (ln C)
    prior_loss: float | None = None  # loss of predicting the training prior
    lr_range: tuple[float, float] | None = None  # ctx.state["lr"]: (low, high)
    schedule: str | None = None  # the configured schedule's name
    completed: bool = True  # the run took all its planned steps


@dataclass
class Diagnosis:
    findings: list[Finding]
    verdicts: dict[str, Any]
    grad_quantiles: dict[str, float]


def typical_update_ratio(rec: Any) -> float | None:
    v = update_ratio_verdict(rec.layers, rec.update.array())
    return v.typical


def relative_gradients(rec: Any) -> tuple[list[str], list[float]]:
    """Median ||grad||/||w|| per weight layer (norm and embedding layers left out)."""
    g, p = rec.grad.array(), rec.param.array()
    if g.size == 0 or p.size == 0:
        return [], []
    names, rel = [], []
    for j, (name, kind) in enumerate(zip(rec.layers, rec.layer_types, strict=True)):
        if "Norm" in kind or "Embedding" in kind:
            continue
        gj = g[:, j][np.isfinite(g[:, j])]
        pj = p[:, j][np.isfinite(p[:, j])]
        if len(gj) and len(pj) and np.median(pj) > 0:
            names.append(name)
            rel.append(float(np.median(gj) / np.median(pj)))
    return names, rel


def weight_growth(rec: Any) -> tuple[float, str | None]:
    """The largest growth of a layer's weight norm from its first measurement to its last."""
    p = rec.param.array()
    if p.ndim != 2 or len(p) < 2:
        return 1.0, None
    best, name = 1.0, None
    for j, layer in enumerate(rec.layers[:p.shape[1]]):
        col = p[:, j][np.isfinite(p[:, j])]
        if len(col) >= 2 and col[0] > 0 and col[-1] / col[0] > best:
            best, name = float(col[-1] / col[0]), layer
    return best, name


def _batch_sizes(rec: Any, ex: Extras) -> Sequence[float] | None:
    sizes = ex.batch_sizes if ex.batch_sizes is not None else getattr(rec, "batch_sizes", None)
    return sizes if sizes is not None and len(sizes) >= len(rec.loss) else None


def _epoch_ends(rec: Any) -> list[int]:
    return [int(e["step"]) for e in rec.epochs if "step" in e]


def diagnose(rec: Any, extras: Extras | None = None) -> Diagnosis:
    """Run every rule over a recording; return the findings (each code at most once), the
    verdicts (for plots) and the gradient-norm quantiles (for the clipping advice)."""
    ex = extras or Extras()
    v: dict[str, Any] = {}
    out: list[Finding] = []
    gq = _grad_quantiles(rec)
    lr = rec.lr[-1] if rec.lr else None
    sizes = _batch_sizes(rec, ex)
    ends = _epoch_ends(rec)

    nf = _nonfinite_finding(rec, ex)
    if nf:
        out.append(nf)
    v["loss-diverging"] = dv = diverging_verdict(rec.loss, sizes)
    if dv.fires:
        out.append(_diverging_finding(dv, lr, gq))
    hv = lr_too_high_verdict(rec.loss, rec.epoch_series("train_loss"), batch_sizes=sizes,
                             epoch_ends=ends, epoch_probe=rec.epoch_series("train_eval_loss"))
    growth, grew = weight_growth(rec)
    hv.blowup = bv = blowup_verdict(rec.loss, init_loss=ex.init_loss, prior_loss=ex.prior_loss,
                                    weight_growth=growth, grew_layer=grew)
    if bv.fires and not dv.fires:
        hv.fires, hv.kind = True, "blow-up"
    v["lr-too-high"] = hv
    if hv.fires:
        out.append(_lr_high_finding(hv, rec, lr, ex, gq))
    upd = update_ratio_verdict(rec.layers, rec.update.array())
    v["update-ratio"] = upd
    if upd.fires:
        out.append(_update_ratio_finding(upd, lr))
    v["lr-too-low"] = lv = lr_too_low_verdict(rec.loss, upd.typical)
    # an early transient the run recovered from (info) says nothing about the rest of it
    unstable = dv.fires or (hv.fires and not _transient(hv)) or nf is not None
    if lv.fires and not unstable:
        out.append(_lr_low_finding(lv, lr, ex))
    v["lr-schedule-misstepped"] = sv = schedule_verdict(rec.lr, configured=ex.schedule,
                                                        completed=ex.completed)
    if sv.fires:
        out.append(_schedule_finding(sv, rec))

    v["exploding-gradients"] = ev = _exploding(rec)
    if ev.fires:
        out.append(_exploding_finding(ev, rec, gq))
    v["dead-relu"] = dead = dead_relu_verdict([n for n, _ in rec.activations], rec.dead.array())
    if dead.fires:
        out.append(_dead_finding(dead))
    v["saturated-activations"] = sat = saturation_verdict([n for n, _ in rec.activations],
                                                          rec.saturated.array())
    if sat.fires:
        out.append(_saturated_finding(sat, rec))
    names, rel = relative_gradients(rec)
    v["vanishing-gradients"] = van = vanishing_verdict(names, rel)
    dead_explains = dead.fires and dead.severity == Severity.ERROR
    if van.fires and not dead_explains:
        out.append(_vanishing_finding(van, rec))

    emitted = {f.code for f in out}
    causes = [c for c in ("vanishing-gradients", "dead-relu", "saturated-activations")
              if c in emitted]
    v["loss-plateau"] = pv = plateau_verdict(rec.loss, rec.lr)
    if pv.fires and not unstable and not lv.fires:
        out.append(_plateau_finding(pv, rec, causes))

    train_ep, val_ep = _epoch_train(rec, sizes, ends), rec.epoch_series("val_loss")
    v["overfitting"] = ov = overfitting_verdict(train_ep, val_ep, per_sample_val=ex.per_sample_val,
                                                stopped_by=ex.stopped_by)
    if ov.fires and not unstable:
        out.append(_overfitting_finding(ov, ex))
    v["weights-fluctuating"] = fv = weights_fluctuating_verdict(val_ep, upd.typical)
    if fv.fires:
        out.append(_fluctuating_finding(fv, rec, lr))
    v["val-below-train"] = vb = val_below_train_verdict(
        train_ep, val_ep, train_mode_end=_train_mode_end(rec, ex), train_eval_end=ex.train_eval_end,
        augmented=ex.augmented, has_dropout=ex.has_dropout, val_rel_se=ex.val_rel_se)
    if vb.fires and not unstable:
        out.append(_val_below_finding(vb, train_ep, val_ep, ex))
    v["underfitting"] = uv = _underfitting(rec, ex)
    if uv.fires and not unstable and not (pv.fires and pv.kind == "stuck") and not lv.fires:
        out.append(_underfitting_finding(uv, ex))
    v["val-metric-inconsistent"] = mv = val_metric_verdict(val_ep,
                                                           rec.epoch_series("val_accuracy"))
    if mv.fires:
        out.append(_metric_finding(mv))
    out = monitor_causes(rec, out, v)  # zero_grad, accumulation, fp16: causes named first
    for f in out:
        f.evidence.setdefault("where", ex.where)
    return Diagnosis(out, v, gq)


def _transient(hv: LrHighVerdict) -> bool:
    """The only sign of a too-high rate is an early blow-up the run recovered from (advice)."""
    return bool(hv.kind == "blow-up" and hv.blowup is not None and hv.blowup.transient
                and len(hv.spikes) < MIN_SPIKES and len(hv.rises) < MIN_RISES)


def _epoch_train(rec: Any, sizes: Sequence[float] | None, ends: list[int]) -> list[float]:
    """Epoch-mean training losses, weighted by batch size when the sizes are known."""
    recorded = rec.epoch_series("train_loss")
    if sizes is None or not ends or len(ends) != len(recorded) or ends[-1] > len(rec.loss):
        return recorded
    from nnrecipe.train.signals import epoch_means

    means, _ = epoch_means(rec.loss, ends, sizes)
    return [float(m) if math.isfinite(m) else r for m, r in zip(means, recorded, strict=True)]


# ------------------------------------------------------------------ finding builders

def _grad_quantiles(rec: Any) -> dict[str, float]:
    return quantiles(rec.grad_total)


def _clip_advice(gq: dict[str, float]) -> str:
    if not gq:
        return "clip gradients (torch.nn.utils.clip_grad_norm_)"
    return (f"clip gradients at max_norm≈{gq['p90']:.3g} (the 90th percentile of the gradient "
            f"norms seen in this run; median {gq['p50']:.3g}, max {gq['max']:.3g})")


def _lr_text(lr: float | None, factor: float = 10.0) -> str:
    if lr is None or not math.isfinite(lr) or lr <= 0:
        return "the learning rate"
    return f"the learning rate (now {lr:.3g}; try {lr / factor:.2g}-{lr / 3:.2g})"


def _nonfinite_finding(rec: Any, ex: Extras) -> Finding | None:
    ev = rec.nonfinite
    losses = rec.loss
    if ev is None:
        bad = next((i for i, x in enumerate(losses) if not math.isfinite(x)), None)
        if bad is None:
            return None
        ev = {"step": bad, "where": "loss", "value": str(losses[bad])}
    where = ev.get("where")
    step = ev.get("step")
    origin = ev.get("forward_origin")
    parts = [f"the first non-finite value appeared in the {where} at step {step} of {ex.where}"]
    if ev.get("input_nonfinite"):
        parts.append("the input batch itself contains NaN/inf")
    elif origin:
        parts.append(f"re-running that forward pass, the first layer with a non-finite output "
                     f"is '{origin}'")
    elif where == "gradients" and ev.get("backward_origin"):
        parts.append(f"the forward pass was finite; the backward pass first produced it in "
                     f"'{ev['backward_origin']}'")
    if ev.get("nonfinite_weights"):
        parts.append(f"weights already non-finite in {', '.join(ev['nonfinite_weights'][:5])}")
    if ev.get("update_skipped"):
        parts.append("that update was dropped, so the weights kept their last finite values")
    before = [x for x in losses[max(0, (step or 0) - 5):step or 0] if math.isfinite(x)]
    if before:
        parts.append("last finite losses " + ", ".join(f"{x:.4g}" for x in before))
    return LossNonfinite.make_finding("; ".join(parts), {**ev, "last_finite": before})


def _diverging_finding(dv: DivergingVerdict, lr: float | None, gq: dict[str, float]) -> Finding:
    msg = (f"the training loss (moving median) went from {_f(dv.start)} at the start down to "
           f"{_f(dv.best)} at step {dv.best_step} and back up to {_f(dv.end)} at the end "
           f"({dv.lost_fraction:.0%} of the progress lost, {dv.z:.1f} noise units above its "
           f"best; thresholds {DIVERGE_LOST_FRACTION:.0%} and {DIVERGE_Z:g})"
           if dv.start > dv.best else
           f"the training loss rose from {_f(dv.start)} to {_f(dv.end)} "
           f"(more than {DIVERGE_ABOVE_START}x its start)")
    fix = f"Lower {_lr_text(lr)}; {_clip_advice(gq)}; check the loss sign and the optimizer."
    return LossDiverging.make_finding(msg, {"start": dv.start, "best": dv.best, "end": dv.end,
                                            "best_step": dv.best_step,
                                            "lost_fraction": dv.lost_fraction,
                                            "noise_units": dv.z}, fix=fix)


def _lr_high_finding(hv: LrHighVerdict, rec: Any, lr: float | None, ex: Extras,
                     gq: dict[str, float]) -> Finding:
    bits = []
    severity = None
    bv = hv.blowup
    if hv.kind == "blow-up" and bv is not None:
        ref = bv.prior_loss if bv.prior_loss is not None else bv.init_loss
        if bv.early:
            what = ("its value at initialisation (ln C)" if bv.init_loss is not None
                    and bv.start == bv.init_loss else "the loss of the first step")
            bits.append(f"the loss jumped to {_f(bv.early_peak)} at steps {bv.peak_step}-"
                        f"{bv.peak_step + 1}, {bv.early_peak / bv.start:.1f}x {what} "
                        f"({_f(bv.start)}; threshold {BLOWUP_START:g}x): the first updates "
                        "blew the model up")
        if bv.weight_growth >= WEIGHT_GROWTH:
            bits.append(f"the weights of '{bv.grew_layer}' grew {bv.weight_growth:.3g}x over "
                        f"the run (threshold {WEIGHT_GROWTH:g}x)")
        if bv.stalled_high and ref:
            bits.append(f"the loss then stalled at {_f(bv.end)}, {bv.end / ref:.0%} of the loss "
                        f"of predicting the prior ({_f(ref)}): training is no better than chance")
            severity = Severity.ERROR
        elif _transient(hv):
            bits.append(f"the run recovered: below half its start at the end ({_f(bv.end)}) and "
                        "no later step back above the start; a transient under "
                        f"{BLOWUP_RECOVERED:g}x the start is an overshoot while momentum builds "
                        "up or the first steps settle, and it cost only those steps")
            severity = Severity.INFO
        elif bv.recovered and not bv.transient:
            bits.append(f"it recovered to {_f(bv.end)}, but a peak over {BLOWUP_RECOVERED:g}x "
                        "the start is far beyond an overshooting first few steps")
        elif bv.late_excursions and not bv.stalled_high:
            steps = ", ".join(map(str, bv.late_excursions[:5]))
            bits.append(f"it came down to {_f(bv.end)} but the loss went back above its start "
                        f"later (steps {steps}, each {LONE_Z:g}+ noise units of its batch over "
                        "it): the rate stayed too high")
        elif ref:
            bits.append(f"it ended at {_f(bv.end)} (the prior's loss is {_f(ref)}), above half "
                        "the loss it started from")
    if len(hv.spikes) >= MIN_SPIKES:
        zs = ", ".join(f"{z:.1f}" for z in hv.spike_z[:5])
        bits.append(f"{len(hv.spikes)} loss spikes at steps {', '.join(map(str, hv.spikes[:5]))}"
                    f" ({zs} sigma above the batch-to-batch noise of the running median, "
                    f"threshold {SPIKE_Z:g}; each >= {SPIKE_RATIO:g}x the median and either "
                    "still raised on the next step or above the loss the run started from: "
                    "damaged weights, not an unlucky batch)")
    if len(hv.rises) >= MIN_RISES:
        zs = ", ".join(f"{z:.1f}" if math.isfinite(z) else "?" for z in hv.rise_z[:8])
        bits.append(f"the epoch-mean training loss (weighted by batch size) went up by more than "
                    f"{RISE_REL:.0%} in epochs {', '.join(map(str, hv.rises[:8]))} ({zs} standard "
                    f"errors of the epoch means; threshold {RISE_Z:g}), and the eval-mode training "
                    "loss did not fall there")
    fix = f"Lower {_lr_text(lr)}"
    if ex.lr_suggested:
        fix += f"; the LR range test suggested {ex.lr_suggested:.2g}"
    fix += f"; add a short warmup; {_clip_advice(gq)}."
    if _transient(hv):
        fix = ("Nothing needs fixing: the run recovered. A short warmup (or momentum that "
               "starts lower) avoids the transient if the first steps matter.")
    msg = "; ".join(bits)
    agree = _one_voice(hv, lr, ex, rec)
    if agree and _transient(hv):  # advice only: the range test's view, not a new remedy
        if agree.startswith("The LR range test agrees"):
            msg += f". {agree}"
    elif agree:
        msg += f". {agree}"
        fix = ("Decay the learning rate over the run (cosine or step schedule) rather than "
               "lowering it from the start, or clip gradients; " + fix[0].lower() + fix[1:])
    return LrTooHigh.make_finding(msg, {"kind": hv.kind, "spikes": hv.spikes[:50],
                                        "spike_sigma": hv.spike_z[:50],
                                        "rising_epochs": hv.rises, "rise_sigma": hv.rise_z,
                                        "lr": lr, "lr_range_test": ex.lr_range,
                                        "weight_growth": bv.weight_growth if bv else None,
                                        "early_peak": bv.early_peak if bv else None,
                                        "early_peak_ratio": (bv.early_peak / bv.start if bv and
                                                             bv.early and bv.start > 0 else None),
                                        "recovered": bv.recovered if bv else None,
                                        "late_excursions": bv.late_excursions[:20] if bv else []},
                                  severity=severity, fix=fix)


def _one_voice(hv: LrHighVerdict, lr: float | None, ex: Extras, rec: Any) -> str:
    """When the overfit stage's range test called this rate plausible, say why this finding
    disagrees (issue 11: two parts of the tool must agree or explain the difference)."""
    if not ex.lr_range or lr is None or not math.isfinite(lr):
        return ""
    low, high = ex.lr_range
    if not low <= lr <= high:
        return (f"The LR range test agrees: {lr:.3g} is above its plausible range "
                f"[{low:.2g}, {high:.2g}]" if lr > high else "")
    first = hv.spikes[0] if hv.spikes else None
    when = (f"from step {first} of {len(rec.loss)}" if first is not None else
            f"from epoch {hv.rises[0]}" if hv.rises else "here")
    return (f"The LR range test (`nnrecipe lr`) found {lr:.3g} inside its plausible range "
            f"[{low:.2g}, {high:.2g}]: it judges the first ~100 steps, while the instability "
            f"here shows {when}, later in training, where the same rate became too large")


def _schedule_finding(sv: ScheduleVerdict, rec: Any) -> Finding:
    if sv.kind == "collapse":
        msg = (f"the learning rate fell {sv.fall:.3g}x within the first {sv.at_step + 1} steps "
               f"(the first tenth of training has {max(2, math.ceil(0.1 * len(rec.lr)))}; "
               f"threshold {SCHEDULE_FALL:g}x): a per-epoch scheduler stepped every batch "
               f"collapses the rate to ~0 (now {sv.end_lr:.3g})")
    elif sv.kind == "endless-warmup":
        msg = (f"the learning rate was still rising at the end of training ({sv.tail_rise:.2f}x "
               f"over the last fifth, from {sv.start_lr:.3g} to {sv.end_lr:.3g}): the warmup "
               "never ended, so the run never trained at its intended rate")
    else:
        msg = (f"a schedule is configured but the learning rate never changed ({sv.end_lr:.3g} "
               f"for all {len(rec.lr)} steps): the scheduler is never stepped")
    return LrScheduleMisstepped.make_finding(msg, {"kind": sv.kind, "fall": sv.fall,
                                                   "at_step": sv.at_step, "start_lr": sv.start_lr,
                                                   "end_lr": sv.end_lr,
                                                   "tail_rise": sv.tail_rise})


def _metric_finding(mv: MetricVerdict) -> Finding:
    msg = (f"validation accuracy {mv.accuracy:.3f} is impossible with a validation loss of "
           f"{_f(mv.loss_last)}: a likelihood loss that low means at least {mv.bound:.3f} of the "
           f"same samples are right (2 exp(-loss) - 1; slack {METRIC_SLACK:g}); the loss fell from "
           f"{_f(mv.loss_first)} while the accuracy barely moved ({mv.accuracy_gain:+.3f}): the "
           "accuracy is computed against labels that do not belong to the predictions")
    return ValMetricInconsistent.make_finding(msg, {"accuracy": mv.accuracy, "floor": mv.bound,
                                                    "loss_first": mv.loss_first,
                                                    "loss_last": mv.loss_last,
                                                    "accuracy_gain": mv.accuracy_gain})


def _lr_low_finding(lv: LrLowVerdict, lr: float | None, ex: Extras) -> Finding:
    factor = 1e-3 / lv.update_ratio if lv.update_ratio else 10.0
    msg = (f"the training loss fell only {lv.progress:.0%} over the run while each step changed "
           f"the weights by {lv.update_ratio:.1e} of their size (healthy ~1e-3; threshold "
           f"{LOW_UPDATE_RATIO:g})")
    fix = "Raise the learning rate"
    if lr:
        fix += f" (now {lr:.3g}; ~{min(factor, 100):.0f}x would bring updates near 1e-3)"
    if ex.lr_suggested:
        fix += f"; the LR range test suggested {ex.lr_suggested:.2g}"
    fix += "; or start from Adam at 3e-4."
    return LrTooLow.make_finding(msg, {"progress": lv.progress, "update_ratio": lv.update_ratio,
                                       "trend_t": lv.tstat, "lr": lr}, fix=fix)


def _update_ratio_finding(upd: UpdateRatioVerdict, lr: float | None) -> Finding:
    parts = []
    if upd.low:
        parts.append("tiny updates in " + ", ".join(f"{n} ({upd.medians[n]:.1e})" for n in upd.low[:6]))
    if upd.high:
        parts.append("huge updates in " + ", ".join(f"{n} ({upd.medians[n]:.1e})" for n in upd.high[:6]))
    msg = ("update-to-weight ratio ||Δw||/||w|| per step, median over the second half: "
           + "; ".join(parts) + f" (healthy ~1e-3; flagged outside [{UPDATE_LOW:g}, {UPDATE_HIGH:g}])")
    worst = [upd.medians[n] for n in upd.low + upd.high]
    scale = 1e-3 / float(np.median(worst))
    fix = (f"Multiply the learning rate by ~{scale:.1g}" + (f" (now {lr:.3g})" if lr else "")
           + " so updates sit near 1e-3 of the weights" + (
               "; layers with tiny updates may also be starved by vanishing gradients or dead "
               "units (see those findings)" if upd.low else "") + ".")
    return UpdateRatio.make_finding(msg, {"medians": upd.medians, "low": upd.low, "high": upd.high},
                                    fix=fix)


def _exploding(rec: Any) -> ExplodingVerdict:
    names, rel = relative_gradients(rec)
    depth = rel[0] / rel[-1] if len(rel) >= 2 and rel[-1] > 0 else 1.0
    nonfinite = bool(rec.nonfinite and rec.nonfinite.get("where") == "gradients")
    return exploding_verdict(rec.grad_total, depth_ratio=depth, nonfinite=nonfinite,
                             losses=rec.loss)


def _exploding_finding(ev: ExplodingVerdict, rec: Any, gq: dict[str, float]) -> Finding:
    bits = []
    if ev.spikes:
        steps = [rec.grad.steps[i] for i in ev.spikes[:5] if i < len(rec.grad.steps)]
        bits.append(f"{len(ev.spikes)} gradient-norm spikes >= {GRAD_SPIKE:g}x the running median "
                    f"(steps {', '.join(map(str, steps))})")
    if ev.growing:
        fell = (f"the training loss went from {_f(ev.loss_head)} to {_f(ev.loss_tail)} over the "
                f"same stretch ({ev.loss_fall_z:.1f} standard errors of fall; a growth that "
                f"comes with a fall of {GROWTH_FALL_Z:g} or more is a model leaving its flat "
                "start, not this)" if math.isfinite(ev.loss_fall_z) else
                "the training loss over the same stretch is unknown")
        bits.append(f"the gradient norm grew {ev.growth:.3g}x from the first tenth of the run to "
                    f"the last fifth, {ev.spread_growth:.3g}x the upper spread of the first "
                    f"tenth (its 90th percentile; threshold {GRAD_GROWTH:g}x), while {fell}")
    if ev.depth_ratio >= DEPTH_RATIO:
        bits.append(f"the first layer's relative gradient is {ev.depth_ratio:.3g}x the last "
                    f"layer's (threshold {DEPTH_RATIO:g}x)")
    if ev.nonfinite:
        bits.append("and the gradients became non-finite")
    fix = (f"{_clip_advice(gq)[0].upper()}{_clip_advice(gq)[1:]}; lower the learning rate; add "
           "normalisation layers; scale the targets (regression) to unit variance.")
    return ExplodingGradients.make_finding("; ".join(bits), {
        "spikes": ev.spikes[:50], "growth": ev.growth, "spread_growth": ev.spread_growth,
        "loss_fall_sigma": ev.loss_fall_z, "depth_ratio": ev.depth_ratio,
        "grad_norm_quantiles": gq}, fix=fix)


def _vanishing_finding(van: VanishingVerdict, rec: Any) -> Finding:
    acts = {k for _, k in rec.activations}
    first, last = next(iter(van.relative)), list(van.relative)[-1]
    msg = (f"the first layer '{first}' gets a relative gradient ||g||/||w|| {van.ratio:.2g}x that "
           f"of the last layer '{last}' (threshold {VANISH_RATIO:g}); layers below 1/100 of the "
           f"last: {', '.join(van.layers[:8])}")
    fix = ("Add skip connections or normalisation (BatchNorm/LayerNorm) between the layers, use "
           "He (Kaiming) initialisation")
    if acts & {"sigmoid", "tanh"}:
        fix = "Replace sigmoid/tanh by ReLU/GELU; " + fix[0].lower() + fix[1:]
    return VanishingGradients.make_finding(msg, {"ratio_first_last": van.ratio, "layers": van.layers,
                                                 "relative_gradients": van.relative}, fix=fix + ".")


def _dead_finding(dead: LayerFractionVerdict) -> Finding:
    listed = ", ".join(f"'{n}' {dead.fractions[n]:.0%}" for n in dead.layers[:8])
    msg = (f"ReLU units that output zero for every sample of the last measured batches: {listed} "
           f"(threshold {DEAD_FRACTION:.0%} of a layer)")
    if dead.severity == Severity.ERROR:
        msg += "; a layer with every unit dead passes no gradient at all"
    fix = ("Initialise the biases before these ReLUs at 0 (a negative bias kills units), lower "
           "the learning rate (a large step can push units into the dead zone), standardise the "
           "inputs, or use LeakyReLU/GELU.")
    return DeadRelu.make_finding(msg, {"dead_fraction": dead.fractions, "layers": dead.layers},
                                 severity=dead.severity, fix=fix)


def _saturated_finding(sat: LayerFractionVerdict, rec: Any) -> Finding:
    listed = ", ".join(f"'{n}' {sat.fractions[n]:.0%}" for n in sat.layers[:8])
    msg = (f"outputs in the flat part of tanh/sigmoid (|tanh| > 0.99, sigmoid < 0.01 or > 0.99): "
           f"{listed} (threshold {SATURATED_FRACTION:.0%}); their gradient is ~0")
    return SaturatedActivations.make_finding(msg, {"saturated_fraction": sat.fractions,
                                                   "layers": sat.layers})


def _plateau_finding(pv: PlateauVerdict, rec: Any, causes: list[str]) -> Finding:
    severity = None
    if pv.kind == "stuck":
        msg = (f"the training loss stayed at its initial level ({_f(pv.level)}) for the whole run "
               f"({len(rec.loss)} steps)")
    else:
        msg = (f"the training loss sat flat at {_f(pv.level)} from step {pv.start_step} to "
               f"{pv.end_step} before it fell, with no change of the learning rate to explain "
               "it; the run escaped it, so this only cost time")
        severity = Severity.INFO if not causes else None
    if causes:
        msg += f"; likely cause: {', '.join(causes)} (see that finding)"
    fix = ("Fix the cause found alongside (" + ", ".join(causes) + ")." if causes else
           "Check the initialisation (output-layer bias, weight scale), the learning rate (try "
           "3x higher), and that the data carry the signal; a plateau at the start is often a "
           "bad init escaping slowly, or SGD with momentum building up speed (a short warmup "
           "or Adam starts faster).")
    return LossPlateau.make_finding(msg, {"kind": pv.kind, "start_step": pv.start_step,
                                          "end_step": pv.end_step, "level": pv.level,
                                          "likely_causes": causes}, severity=severity, fix=fix)


def _overfitting_finding(ov: OverfitVerdict, ex: Extras) -> Finding:
    if math.isfinite(ov.z):
        noise = (f", {ov.z:.1f} standard errors of the paired per-sample difference (threshold "
                 f"{OVERFIT_Z:g})")
    elif math.isfinite(ov.curve_z):
        noise = (f"; no per-sample validation losses, so the margin is the curve's own "
                 f"epoch-to-epoch scatter, {ov.curve_noise:.1%}: the rise is "
                 f"{ov.curve_z:.1f} units of it above the best plus one scatter (threshold "
                 f"{OVERFIT_Z:g})")
    else:
        noise = ("; no per-sample validation losses and too few epochs to measure the "
                 "curve's scatter: the 10% line alone decides")
    stopped = (f"; early stopping ({ov.stopped_by}) ended the run there"
               if ov.stopped_by in ("GL", "PQ") else "")
    msg = (f"validation loss reached its best {_f(ov.best_val)} at epoch {ov.best_epoch} and rose "
           f"from epoch {ov.onset_epoch} on, to {ov.rise:.0%} above it at the end (threshold "
           f"{OVERFIT_RISE:.0%}{noise}), while the training loss kept falling{stopped}")
    fix = ("Regularise, in the recipe's order: more data (or augmentation), weight decay, "
           "dropout, a smaller model; stop at epoch "
           f"{ov.best_epoch}" + (" (the best weights were restored)" if ex.best_epoch_restored else "")
           + "; `nnrecipe run` compares these in the regularize stage.")
    # The train stage restores the best epoch's weights: the overfit epochs cost nothing
    # but time, and regularising is advice. A loop that keeps its last weights (watch,
    # Lightning) ends with the overfit model: a warning.
    severity = Severity.INFO if ex.best_epoch_restored else None
    if severity is not None:
        msg += f"; the best epoch's weights ({ov.best_epoch}) were restored"
    return Overfitting.make_finding(msg, {"best_epoch": ov.best_epoch, "onset_epoch": ov.onset_epoch,
                                          "best_val_loss": ov.best_val, "final_val_loss": ov.final_val,
                                          "rise": ov.rise, "paired_sigma": ov.z,
                                          "curve_scatter": ov.curve_noise,
                                          "curve_sigma": ov.curve_z,
                                          "stopped_by": ov.stopped_by}, severity=severity, fix=fix)


_VBT_FIX = {
    "averaging": ("Nothing is wrong: the training loss is averaged over an epoch while it falls; "
                  "compare the end-of-epoch training loss instead."),
    "dropout": ("Expected with dropout: it is active only in training. Compare with the training "
                "loss in eval mode."),
    "regularisation": ("Layers that behave differently in training (batch norm statistics, "
                       "noise layers) or a penalty added to the training loss explain it."),
    "augmentation": ("Augmentation makes training samples harder than validation ones; compare "
                     "on un-augmented training data."),
    "easier-or-leaked": ("The validation set is easier than the training set, or shares samples "
                         "with it: run `nnrecipe inspect` (split-leakage, duplicates) and check "
                         "how the splits were drawn."),
    "unknown": ("Likely causes: dropout/regularisation active only in training, the training "
                "loss averaged over an epoch while it falls, augmentation on training only, or an "
                "easier or leaked validation set."),
}


def _val_below_finding(vb: ValBelowVerdict, train: Sequence[float], val: Sequence[float],
                       ex: Extras) -> Finding:
    msg = (f"validation loss {_f(val[-1])} is {vb.gap:.0%} below the training loss {_f(train[-1])} "
           f"(epoch mean) at the last epochs (threshold {vb.margin:.0%}: 10% or 2 robust standard errors of the validation loss)")
    if vb.contributions:
        parts = ", ".join(f"{k} {v:+.3g}" for k, v in sorted(vb.contributions.items(),
                                                             key=lambda kv: -kv[1]))
        msg += f"; the gap splits into {parts}; likely cause: {vb.cause}"
    else:
        msg += f"; likely cause: {vb.cause}"
    sev = Severity.WARNING if vb.cause == "easier-or-leaked" else Severity.INFO
    return ValBelowTrain.make_finding(msg, {"cause": vb.cause, "contributions": vb.contributions,
                                            "gap": vb.gap, "margin": vb.margin,
                                            "train_mode_end": ex.train_mode_end,
                                            "train_eval_end": ex.train_eval_end},
                                      severity=sev, fix=_VBT_FIX.get(vb.cause, _VBT_FIX["unknown"]))


def _fluctuating_finding(fv: FluctuationVerdict, rec: Any, lr: float | None) -> Finding:
    msg = (f"over the second half of training the validation loss zig-zags (up and down from "
           f"epoch to epoch) by {fv.jitter:.0%} of its level on average (threshold {JITTER:.0%})")
    if fv.update_ratio is not None:
        msg += f", while each step moves the weights by {fv.update_ratio:.1e} of their size"
    msg += "; the model you stop at is a matter of luck"
    fix = (f"Lower {_lr_text(lr, 10)} or decay it over the run, use a larger batch, average the "
           "weights (EMA or torch.optim.swa_utils.AveragedModel), clip gradients.")
    return WeightsFluctuating.make_finding(msg, {"val_jitter": fv.jitter,
                                                 "update_ratio": fv.update_ratio}, fix=fix)


def _train_mode_end(rec: Any, ex: Extras) -> float | None:
    """The training loss at the end of the last epoch: probed, or else the median of the last
    step losses of that epoch (a quarter of it, at most one smoothing window)."""
    if ex.train_mode_end is not None or not rec.epochs:
        return ex.train_mode_end
    end = int(rec.epochs[-1]["step"])
    start = int(rec.epochs[-2]["step"]) if len(rec.epochs) > 1 else 0
    k = max(1, min((end - start) // 4, smoothing_window(len(rec.loss))))
    tail = finite(rec.loss[max(start, end - k):end])
    return float(np.median(tail)) if len(tail) else None


def _underfitting(rec: Any, ex: Extras) -> UnderfitVerdict:
    val = rec.epoch_series("val_loss")
    if not val or not math.isfinite(val[-1]):
        return UnderfitVerdict(False)
    train = ex.train_eval_end if ex.train_eval_end is not None else rec.epoch_series("train_loss")[-1]
    b = ex.baselines or {}
    majority = (b.get("majority") or {}).get("loss")
    linear = (b.get("linear") or {}).get("loss")
    losses = finite(rec.loss)
    initial = ex.prior_loss if ex.prior_loss is not None and math.isfinite(ex.prior_loss) else (
        float(np.median(losses[: smoothing_window(len(losses))])) if len(losses) else math.nan)
    return underfitting_verdict(train_loss=float(train), val_loss=min(v for v in val if math.isfinite(v)),
                                initial_loss=initial, majority_loss=majority, linear_loss=linear,
                                still_falling=still_improving(losses, val))


def still_improving(losses: Sequence[float], val: Sequence[float]) -> bool:
    """Is training still getting better at the end? The last third of the step losses falls
    beyond doubt (t < -3 and by more than 5% of its level), or the last validation loss is the
    best and more than 2% below the best before it (epoch-to-epoch wobble is 1-5%)."""
    arr = finite(losses)
    tail = arr[-max(len(arr) // 3, 1):]
    falling = len(tail) >= 10 and trend_tstat(tail) < FALLING_T and (
        tail[:len(tail) // 2].mean() - tail[len(tail) // 2:].mean()
        > 0.05 * max(abs(tail.mean()), 1e-12))
    v = finite(val)
    val_best_last = len(v) >= 2 and v[-1] < 0.98 * v[:-1].min()
    return bool(falling or val_best_last)


def _underfitting_finding(uv: UnderfitVerdict, ex: Extras) -> Finding:
    if uv.reason == "linear":
        msg = (f"a linear model reaches validation loss {_f(uv.reference)}, the network only "
               f"{_f(uv.model_loss)} (threshold: {LINEAR_MARGIN:.0%} worse)")
    elif uv.reason == "gain":
        msg = (f"the network's validation loss {_f(uv.model_loss)} keeps less than "
               f"{GAIN_SHARE:.0%} of the linear model's gain over the majority baseline "
               f"({_f(uv.reference)})")
    else:
        msg = (f"the validation loss {_f(uv.model_loss)} is less than {NO_BASELINE_GAIN:.0%} "
               f"below the loss of predicting the prior ({_f(uv.reference)}), and training has "
               "stopped improving")
    fix = ("Make the model bigger (wider/deeper), train longer, remove regularisation (weight "
           "decay, dropout) until it can overfit, and check the learning rate.")
    return Underfitting.make_finding(msg, {"reason": uv.reason, "model_val_loss": uv.model_loss,
                                           "reference_loss": uv.reference}, fix=fix)
