"""``grads-not-zeroed``: gradients accumulate across training steps.

``loss.backward()`` adds into ``.grad``; without ``optimizer.zero_grad()`` (or
``model.zero_grad()``) once per step, every step applies the sum of all past gradients: the
effective learning rate grows each step and the direction lags. The probe hooks every
parameter: when the first gradient of a step arrives, ``.grad`` must be empty or zero.
Zeroing before the forward, after the step, or between forward and backward all pass.
"""

from __future__ import annotations

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check
from nnrecipe.skeleton._util import fmt_names
from nnrecipe.skeleton.probe import get_probe, probe_skip_reason

# Cleared gradients are exactly zero (None or zero_()); a stale gradient carried over is of
# the order of the new one (ratio ~1). 1e-3 separates the two with room on both sides.
STALE_TOL = 1e-3


def stale_verdict(stale: list[dict[str, tuple[float, float]]], tol: float = STALE_TOL
                  ) -> dict[str, float]:
    """Pure decision: parameters whose ``.grad`` still held a previous step's gradient
    (ratio old/new, maximum over steps 2..K) when the step's first gradient arrived."""
    found: dict[str, float] = {}
    for step in stale[1:]:
        for name, (old, new) in step.items():
            if old <= 0.0:
                continue
            ratio = old / new if new > 0 else float("inf")
            if ratio > tol:
                found[name] = max(found.get(name, 0.0), ratio)
    return found


class GradsNotZeroed(Check):
    code = "grads-not-zeroed"
    stage = "skeleton"
    severity = Severity.ERROR
    title = "Gradients are cleared between training steps"
    fix = ("Call `optimizer.zero_grad()` once per step (before `loss.backward()`, or after "
           "`optimizer.step()`). If you accumulate gradients over micro-batches on purpose, "
           "zero them after each optimizer step and make one train_step call one full step.")
    order = 30

    def applies(self, ctx: Context) -> str | None:
        return probe_skip_reason(ctx, self.name)

    def run(self, ctx: Context) -> list[Finding]:
        probe = get_probe(ctx, self.name)["a"]
        found = stale_verdict(probe.stale)
        outside = set(probe.trainable) - probe.in_optimizer
        if outside:
            # zero_grad() clears only what the optimizer holds: stale gradients on tensors it
            # does not hold are params-not-in-optimizer's finding (zjunlp/HVPNeT#5 reported the
            # same fc tensors twice, the consequence at error)
            ctx.record("stale_outside_optimizer", sorted(set(found) & outside)[:20])
            found = {n: v for n, v in found.items() if n not in outside}
        ctx.record("steps", len(probe.stale))
        ctx.record("params_with_stale_grad", len(found))
        if not found:
            return []
        names = sorted(found, key=lambda n: -found[n])
        finite = [found[n] for n in names if found[n] != float("inf")]
        evidence = {"parameters": names[:20], "n_parameters": len(names),
                    "n_trainable": len(probe.trainable),
                    "stale_to_new_ratio": {n: found[n] for n in names[:20]},
                    "custom_train_step": ctx.uses_custom_step, "tolerance": STALE_TOL}
        return [self.finding(
            f"when step 2 began its backward pass, {len(names)} of {len(probe.trainable)} "
            f"parameter tensors still held the previous step's gradient ({fmt_names(names, 5)}; "
            f"old/new gradient norm up to {max(finite, default=float('inf')):.3g}): gradients "
            "accumulate across steps, so each update is the sum of all past gradients", evidence)]

