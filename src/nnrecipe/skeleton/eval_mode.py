"""``eval-mode-training``: dropout and batch-norm layers in eval mode during training steps.

``model.eval()`` for a validation pass, without ``model.train()`` after it, silently turns
dropout off and freezes batch-norm statistics for the rest of training. The probe records,
at every forward of every training step (with gradients enabled), the mode of the model and
of its dropout/batch-norm layers; a forward under ``torch.no_grad()`` (evaluation inside the
step) is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check
from nnrecipe.skeleton._util import fmt_names, mode_dependent_layers
from nnrecipe.skeleton.probe import get_probe, probe_skip_reason


@dataclass
class ModeVerdict:
    model_eval_steps: list[int]  # steps whose training forward ran with model.training False
    layer_eval_steps: list[int]  # steps with some dropout/batch-norm layer in eval mode
    eval_layers: list[str]


def mode_verdict(modes: list[list[dict[str, Any]]]) -> ModeVerdict:
    """Pure decision on the probe's per-step records of the training forwards' modes."""
    model_eval, layer_eval, layers = [], [], []
    for step, forwards in enumerate(modes):
        for f in forwards:
            if not f["model_training"] and step not in model_eval:
                model_eval.append(step)
            if f["eval_layers"] and step not in layer_eval:
                layer_eval.append(step)
                layers.extend(n for n in f["eval_layers"] if n not in layers)
    return ModeVerdict(model_eval, layer_eval, layers)


class EvalModeTraining(Check):
    code = "eval-mode-training"
    stage = "skeleton"
    severity = Severity.WARNING
    title = "Training steps run in training mode"
    fix = ("Call `model.train()` at the start of every training step (or after each "
           "evaluation); evaluate under `model.eval()` and `torch.no_grad()`, then switch back.")
    order = 32

    def applies(self, ctx: Context) -> str | None:
        return probe_skip_reason(ctx, self.name)

    def run(self, ctx: Context) -> list[Finding]:
        probe = get_probe(ctx, self.name)["a"]
        verdict = mode_verdict(probe.modes)
        ctx.record("steps", len(probe.modes))
        ctx.record("model_eval_steps", verdict.model_eval_steps)
        ctx.record("layer_eval_steps", verdict.layer_eval_steps)
        if not verdict.model_eval_steps and not verdict.layer_eval_steps:
            return []
        model = ctx.fresh_model(seed=ctx.seed)
        relevant = [n for n, _ in mode_dependent_layers(model)]
        evidence = {"steps": len(probe.modes), "model_eval_steps": verdict.model_eval_steps,
                    "eval_layers": verdict.eval_layers[:20],
                    "mode_dependent_layers": relevant[:20],
                    "custom_train_step": ctx.uses_custom_step}
        when = _when(verdict.model_eval_steps or verdict.layer_eval_steps)
        if verdict.model_eval_steps and relevant:
            return [self.finding(
                f"the model was in eval mode {when}, so {fmt_names(verdict.eval_layers, 5)} "
                "ran in inference mode: dropout is off and batch norm uses (and never updates) "
                "its running statistics", evidence)]
        if verdict.model_eval_steps:
            return [self.finding(
                f"the model was in eval mode {when}; it has no dropout or batch-norm layer, so "
                "nothing changes yet, but it will once one is added", evidence,
                severity=Severity.INFO)]
        return [self.finding(
            f"the model was in training mode but {fmt_names(verdict.eval_layers, 5)} were in "
            f"eval mode {when}. Frozen batch norm is sometimes intended (fine-tuning with small "
            "batches); if not, something calls .eval() on these layers", evidence,
            severity=Severity.INFO)]


def _when(steps: list[int]) -> str:
    if steps and steps[0] > 0:
        return (f"from training step {steps[0] + 1} on (the first step was in training mode: "
                "the training step leaves the model in eval mode, e.g. an evaluation without "
                "model.train() after it)")
    return "during the training steps (the training step itself switches to eval mode)"
