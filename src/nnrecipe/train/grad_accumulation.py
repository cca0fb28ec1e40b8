"""Gradient hygiene in a watched loop: ``grads-not-zeroed`` and ``accumulation-discarded``.

``loss.backward()`` adds into ``.grad``. A loop that never clears it (a forgotten
``optimizer.zero_grad()``) applies at step t the sum of all t gradients so far: the gradient
norm grows roughly linearly while the loss does not improve that way, the effective learning
rate grows every step, and what the user sees is a diverging loss, exploding gradients, loss
spikes ("the learning rate is too high") and a training loss above the validation loss. Those
are symptoms; the cause is one missing line, and this module names it first and folds the
symptoms into it (:func:`attribute`).

The monitor watches one parameter's gradient (``Recording.grad_probe``): every backward pass
that reaches it is an *arrival*, and an arrival that finds ``.grad`` None or all zeros
(``zero_grad()`` with or without ``set_to_none``, ``model.zero_grad()``, ``p.grad = None``)
is *cleared*. Per optimizer step:

* no cleared arrival: the step applied earlier steps' gradients again (``grads-not-zeroed``);
* gradient accumulation on purpose (N backward passes, one optimizer step, then zero) has
  exactly one cleared arrival per step, so it is quiet without any declaration; declared
  (``watch(..., accumulate=N)``), steps with N arrivals of which more than one was cleared
  threw accumulated micro-batches away (``accumulation-discarded``: zero_grad inside the
  accumulation loop);
* stepping every micro-batch but zeroing every N (accumulation done the other way round)
  leaves N-1 of N steps uncleared: ``grads-not-zeroed``, with the accumulation advice.

The decision is exact, not statistical: cleared gradients are exactly zero or None, stale ones
are not (a whole tensor's gradient is exactly zero only if nothing reaches it, which reads as
cleared: a miss, never a false alarm).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Declared

# A loop clears its gradients by code, not by chance: a healthy loop has no stale step at all.
# Three stale steps and a tenth of the measured steps rule out a one-off (e.g. a first step
# before the user's zero_grad placement takes effect, or a manual step outside the loop).
STALE_MIN_STEPS = 3
STALE_MIN_SHARE = 0.10
# Zeroing inside the accumulation loop clears on every micro-batch, so every full step shows
# it; half of the steps with the declared number of micro-batches leaves room for the odd
# step whose count is off (a scaler-skipped step merges two groups and is not counted).
DISCARD_MIN_STEPS = 3
DISCARD_MIN_SHARE = 0.5
# The codes whose findings are consequences of summed gradients: folded into the cause.
STALE_SYMPTOMS = ("loss-diverging", "exploding-gradients", "lr-too-high", "lr-too-low",
                  "val-below-train", "update-ratio", "weights-fluctuating", "loss-plateau",
                  "underfitting", "overfitting")
# Thrown-away micro-batches make each step use one micro-batch (and, with loss/N, a gradient
# N times too small): slow, noisy progress.
DISCARD_SYMPTOMS = ("lr-too-low", "loss-plateau", "underfitting", "update-ratio")


class AccumulationDiscarded(Declared):
    code = "accumulation-discarded"
    stage = "train"
    severity = Severity.ERROR
    title = "Accumulated gradients are thrown away inside the accumulation loop"
    fix = ("Call `optimizer.zero_grad()` once per optimizer step (right after "
           "`optimizer.step()`), not inside the micro-batch loop: zeroing there throws the "
           "earlier micro-batches away, so each step uses only the last one.")


@dataclass
class StaleGradVerdict:
    fires: bool
    stale_steps: list[int] = field(default_factory=list)  # optimizer steps never cleared
    measured: int = 0  # optimizer steps with at least one backward pass seen
    share: float = 0.0
    growth: float | None = None  # gradient norm, last fifth / first tenth (evidence only)


def _growth(grad_total: Sequence[float]) -> float | None:
    g = np.asarray([x for x in grad_total if np.isfinite(x)], dtype=float)
    if len(g) < 10:
        return None
    first, last = np.median(g[: max(1, len(g) // 10)]), np.median(g[-max(1, len(g) // 5):])
    return float(last / first) if first > 0 else None


def stale_grads_verdict(arrivals: Sequence[int], cleared: Sequence[int],
                        grad_total: Sequence[float] = ()) -> StaleGradVerdict:
    """Pure decision over the per-optimizer-step arrival counts: steps whose backward passes
    all found the previous gradient still in ``.grad``."""
    measured = [i for i, a in enumerate(arrivals) if a >= 1]
    stale = [i for i in measured if cleared[i] == 0]
    share = len(stale) / len(measured) if measured else 0.0
    fires = len(stale) >= STALE_MIN_STEPS and share >= STALE_MIN_SHARE
    return StaleGradVerdict(fires, stale, len(measured), share,
                            _growth(grad_total) if fires else None)


@dataclass
class AccumulationVerdict:
    fires: bool
    declared: int = 1
    discarded_steps: list[int] = field(default_factory=list)
    full_steps: int = 0  # optimizer steps that saw exactly `declared` backward passes
    typical_arrivals: float = 0.0  # median backward passes per optimizer step


def accumulation_verdict(arrivals: Sequence[int], cleared: Sequence[int], declared: int
                         ) -> AccumulationVerdict:
    """Pure decision: with ``declared`` micro-batches per step, steps whose micro-batch
    gradients were cleared more than once (only the last ones reached the optimizer)."""
    seen = [a for a in arrivals if a >= 1]
    typical = float(np.median(seen)) if seen else 0.0
    if declared <= 1:
        return AccumulationVerdict(False, declared, typical_arrivals=typical)
    full = [i for i, a in enumerate(arrivals) if a == declared]
    discarded = [i for i in full if cleared[i] >= 2]
    fires = len(discarded) >= DISCARD_MIN_STEPS and len(discarded) >= DISCARD_MIN_SHARE * len(full)
    return AccumulationVerdict(fires, declared, discarded, len(full), typical)


# ------------------------------------------------------------------ findings


def stale_grads_finding(v: StaleGradVerdict, acc: AccumulationVerdict, rec: Any) -> Finding:
    from nnrecipe.skeleton.grads_zeroed import GradsNotZeroed  # registers the code

    steps = ", ".join(map(str, v.stale_steps[:6])) + (", ..." if len(v.stale_steps) > 6 else "")
    msg = (f"in {len(v.stale_steps)} of {v.measured} optimizer steps ({v.share:.0%}; steps "
           f"{steps}) every backward pass found the previous step's gradient still in "
           f"'{rec.grad_probe}'.grad: the gradients are never cleared, so each update applies "
           "the sum of all earlier gradients")
    if v.growth is not None:
        msg += (f"; the gradient norm grew {v.growth:.3g}x from the first tenth of the run to "
                "the last fifth, as a running sum does")
    fix = ("Call `optimizer.zero_grad()` (or `model.zero_grad()`) once per optimizer step: "
           "before `loss.backward()` or right after `optimizer.step()`.")
    if acc.declared > 1 or acc.typical_arrivals > 1:
        fix += (f" To accumulate over {max(acc.declared, 2)} micro-batches, call "
                "`optimizer.step()` and then `optimizer.zero_grad()` once every "
                f"{max(acc.declared, 2)} backward passes, not `step()` every micro-batch.")
    evidence = {"stale_steps": v.stale_steps[:50], "measured_steps": v.measured,
                "stale_share": v.share, "grad_norm_growth": v.growth, "probe": rec.grad_probe,
                "accumulate_declared": acc.declared,
                "backward_passes_per_step": acc.typical_arrivals}
    return GradsNotZeroed.make_finding(msg, evidence, fix=fix, stage="train")


def discarded_finding(acc: AccumulationVerdict, rec: Any) -> Finding:
    return AccumulationDiscarded.make_finding(
        f"accumulation over {acc.declared} micro-batches was declared, but in "
        f"{len(acc.discarded_steps)} of {acc.full_steps} optimizer steps with {acc.declared} "
        f"backward passes the gradient of '{rec.grad_probe}' was cleared before more than one "
        "of them: zero_grad runs inside the accumulation loop, so the earlier micro-batches "
        "are thrown away and each step uses only the last one",
        {"declared": acc.declared, "discarded_steps": acc.discarded_steps[:50],
         "full_steps": acc.full_steps, "probe": rec.grad_probe})


def attribute(findings: list[Finding], cause: Finding, symptoms: Sequence[str]) -> list[Finding]:
    """``cause`` first; findings whose code is a symptom of it are folded into its evidence
    and message instead of standing as separate causes; a non-finite loss keeps its own
    finding (it says where the value appeared) with the likely cause named."""
    folded = [f for f in findings if f.code in symptoms]
    rest = [f for f in findings if f.code not in symptoms and f.code != cause.code]
    if folded:
        cause.message += ("; downstream symptoms of this, not separate causes: "
                          + "; ".join(f"{f.code} ({f.message})" for f in folded))
        cause.evidence["symptoms"] = {f.code: f.message for f in folded}
        if any(f.severity > cause.severity for f in folded):
            cause.severity = Severity.ERROR
    for f in rest:
        if f.code == "loss-nonfinite":
            f.evidence["likely_cause"] = cause.code
            f.message += f"; likely cause: {cause.code} (see that finding)"
    return [cause, *rest]


def accumulation_findings(rec: Any, findings: list[Finding]) -> tuple[list[Finding], dict[str, Any]]:
    """Apply both rules to a recording and attribute their symptoms; returns the findings and
    the verdicts (``{"grads-not-zeroed": ..., "accumulation-discarded": ...}``)."""
    arrivals = list(getattr(rec, "grad_arrivals", []) or [])
    cleared = list(getattr(rec, "grad_cleared", []) or [])
    n = min(len(arrivals), len(cleared))
    stale = stale_grads_verdict(arrivals[:n], cleared[:n], rec.grad_total)
    acc = accumulation_verdict(arrivals[:n], cleared[:n], int(getattr(rec, "accumulate", 1)))
    verdicts = {"grads-not-zeroed": stale, "accumulation-discarded": acc}
    out = list(findings)
    if stale.fires:
        out = attribute(out, stale_grads_finding(stale, acc, rec), STALE_SYMPTOMS)
    elif acc.fires:
        out = attribute(out, discarded_finding(acc, rec), DISCARD_SYMPTOMS)
    return out, verdicts
