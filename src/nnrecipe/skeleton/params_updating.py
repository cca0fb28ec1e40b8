"""``params-not-updating``: training steps that leave parameters where they were.

A ``train_step`` that forgets ``optimizer.step()``, an optimizer built over the wrong
parameters, a learning rate of zero, a layer whose output is ``.detach()``-ed or never used,
``requires_grad=False`` set by accident: the loss is computed, nothing learns. The probe
compares every parameter before and after a few steps through the user's step and says, for
each one that did not move, why (no optimizer step, not in the optimizer, no gradient, zero
gradient, zero learning rate).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check
from nnrecipe.report.plots import bar_plot
from nnrecipe.skeleton._util import fmt_names
from nnrecipe.skeleton.probe import ProbeRun, get_probe, probe_skip_reason


@dataclass
class UpdateVerdict:
    unchanged: list[str]  # trainable parameters that did not move
    reasons: dict[str, list[str]] = field(default_factory=dict)  # reason -> parameters
    all_stuck: bool = False
    no_optimizer_step: bool = False
    zero_lr: bool = False


def update_verdict(trainable: list[str], changed: set[str], in_optimizer: set[str],
                   grad_norms: dict[str, float], optimizer_steps: int, lrs: list[float]
                   ) -> UpdateVerdict:
    """Pure decision: which trainable parameters did not move, and the likeliest reason."""
    unchanged = [n for n in trainable if n not in changed]
    v = UpdateVerdict(unchanged, all_stuck=bool(trainable) and len(unchanged) == len(trainable),
                      no_optimizer_step=optimizer_steps == 0,
                      zero_lr=bool(lrs) and max(lrs) == 0.0)
    for n in unchanged:
        if v.no_optimizer_step:
            reason = "optimizer.step() never called"
        elif n not in in_optimizer:
            reason = "not in the optimizer"
        elif n not in grad_norms:
            reason = "no gradient (unused in the forward, or its output is detached)"
        elif grad_norms[n] == 0.0:
            reason = "gradient exactly zero"
        elif v.zero_lr:
            reason = "learning rate is 0"
        else:
            reason = "has a gradient and is in the optimizer, yet did not change"
        v.reasons.setdefault(reason, []).append(n)
    return v


def changed_params(run: ProbeRun) -> tuple[set[str], dict[str, float]]:
    changed, rel = set(), {}
    for n, before in run.init_params.items():
        after = run.final_params.get(n)
        if after is None:
            continue
        delta = float((after.double() - before.double()).norm())
        rel[n] = delta / max(float(before.double().norm()), 1e-12)
        if not torch.equal(before, after):
            changed.add(n)
    return changed, rel


class ParamsNotUpdating(Check):
    code = "params-not-updating"
    stage = "skeleton"
    severity = Severity.ERROR
    title = "Every trainable parameter moves during training steps"
    fix = ("Make the step call `optimizer.step()` after `loss.backward()`; build the optimizer "
           "from `model.parameters()` of the model being trained (after adding every layer); "
           "check the learning rate is > 0; remove `.detach()`/`torch.no_grad()` from the "
           "forward path and delete unused layers; set requires_grad only where freezing is "
           "meant.")
    order = 31

    def applies(self, ctx: Context) -> str | None:
        return probe_skip_reason(ctx, self.name)

    def run(self, ctx: Context) -> list[Finding]:
        probe = get_probe(ctx, self.name)["a"]
        changed, rel = changed_params(probe)
        steps = sum(probe.optimizer_steps)
        v = update_verdict(probe.trainable, changed, probe.in_optimizer, probe.grad_norms,
                           steps, probe.lrs)
        ctx.record("trainable", len(probe.trainable))
        ctx.record("unchanged", len(v.unchanged))
        ctx.record("frozen", len(probe.frozen))
        ctx.record("optimizer_steps", steps)
        findings = []
        if v.unchanged:
            self._plot(ctx, rel, v.unchanged)
            evidence = {"unchanged": v.unchanged[:30], "n_unchanged": len(v.unchanged),
                        "n_trainable": len(probe.trainable), "reasons": {
                            r: names[:20] for r, names in v.reasons.items()},
                        "optimizer_steps": steps, "user_steps": len(probe.optimizer_steps),
                        "learning_rates": sorted(set(probe.lrs))[:5],
                        "custom_train_step": ctx.uses_custom_step}
            why = "; ".join(f"{r}: {fmt_names(names, 4)}" for r, names in v.reasons.items())
            if v.all_stuck:
                head = (f"none of the {len(probe.trainable)} trainable parameter tensors changed "
                        f"after {len(probe.optimizer_steps)} training steps")
                if v.no_optimizer_step:
                    head += " — the training step never called optimizer.step()"
                elif v.zero_lr:
                    head += " — the learning rate is 0"
                findings.append(self.finding(f"{head} ({why})", evidence))
            else:
                findings.append(self.finding(
                    f"{len(v.unchanged)} of {len(probe.trainable)} trainable parameter tensors "
                    f"did not change after {len(probe.optimizer_steps)} training steps: {why}",
                    evidence, severity=Severity.WARNING))
        if probe.frozen:
            findings.append(self.finding(
                f"{len(probe.frozen)} parameter tensors are frozen (requires_grad=False) and "
                f"will not train: {fmt_names(probe.frozen, 6)}. Fine if intended (fine-tuning).",
                {"frozen": probe.frozen[:30], "n_frozen": len(probe.frozen)},
                severity=Severity.INFO))
        return findings

    def _plot(self, ctx: Context, rel: dict[str, float], unchanged: list[str]) -> None:
        names = list(rel)[:40]
        ctx.add_figure("Parameter change over the probe steps", bar_plot(
            {n: rel[n] for n in names}, title="relative change ||after - before|| / ||before||",
            ylabel="relative change", highlight=unchanged))
