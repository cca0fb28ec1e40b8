"""``nnrecipe.watch``: the monitor for users who keep their own training loop.

::

    import nnrecipe

    with nnrecipe.watch(model, optimizer) as w:          # hooks removed on exit
        for epoch in range(epochs):
            for x, y in loader:
                optimizer.zero_grad()
                loss = loss_fn(model(x), y)
                loss.backward()
                optimizer.step()
                w.step(loss)                              # one call per step
            w.epoch(val={"loss": val_loss, "accuracy": val_acc})   # optional
        w.report("runs/watch")                            # findings.json + report.html

Findings come out live, as :class:`TrainingWarning` warnings by default, or through
``on_finding=callable`` (each receives a :class:`~nnrecipe.Finding`); each code is emitted
once (again if its severity rises). ``w.findings`` holds them; ``w.diagnose()`` runs every
rule over the whole run; ``w.report(out_dir)`` writes the same report as ``nnrecipe train``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.results import CheckResult, FigureArtifact, RunResult, StageResult, figure_to_png
from nnrecipe.train import plots
from nnrecipe.train.detectors import Diagnosis, Extras, diagnose
from nnrecipe.train.monitor import Monitor, MonitorConfig

FindingHandler = Callable[[Finding], None]

# Rules that make sense before the run is over. The others (plateau, lr-too-low,
# underfitting) judge a whole run and are only applied by diagnose()/report().
LIVE_CODES = frozenset({
    "loss-nonfinite", "loss-diverging", "lr-too-high", "exploding-gradients",
    "vanishing-gradients", "dead-relu", "saturated-activations", "update-ratio", "overfitting",
    "val-below-train", "weights-fluctuating"})
MIN_LIVE_STEPS = 50  # layer statistics need some history before they mean anything


class TrainingWarning(UserWarning):
    """A training problem nnrecipe saw while watching a run."""


def warn_finding(finding: Finding) -> None:
    """The default handler: a :class:`TrainingWarning` for warnings and errors."""
    if finding.severity >= Severity.WARNING:
        warnings.warn(f"[nnrecipe {finding.code}] {finding.message}. Fix: {finding.fix}",
                      TrainingWarning, stacklevel=4)


class Watcher:
    """Created by :func:`watch`; see the module docstring."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                 on_finding: FindingHandler | None = None, config: MonitorConfig | None = None,
                 check_every: int = 50, fixed_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
                 task: str | None = None, name: str = "watch") -> None:
        self.monitor = Monitor(config, fixed_batch=fixed_batch, task=task).attach(model, optimizer)
        self.on_finding = on_finding or warn_finding
        self.check_every = max(1, int(check_every))
        self.name = name
        self.findings: list[Finding] = []
        self._emitted: dict[str, Severity] = {}
        self._next_check = MIN_LIVE_STEPS

    @property
    def recording(self) -> Any:
        return self.monitor.recording

    # ------------------------------------------------------------- per step
    def step(self, loss: float | torch.Tensor) -> list[Finding]:
        """Record this step's loss (call after ``optimizer.step()``); returns new findings."""
        self.monitor.record_loss(loss)
        n = len(self.recording.loss)
        urgent = self.recording.nonfinite is not None and "loss-nonfinite" not in self._emitted
        if urgent or n >= self._next_check:
            self._next_check = max(n + self.check_every, int(n * 1.1))  # O(n log n) overall
            t0 = time.perf_counter()
            found = self._check(LIVE_CODES)
            self.monitor.add_overhead(time.perf_counter() - t0)
            return found
        return []

    def epoch(self, val: Mapping[str, float] | float | None = None, *,
              train_loss: float | None = None, **metrics: float) -> list[Finding]:
        """Close an epoch with the validation metrics (a dict, or just the loss)."""
        vals = {"loss": float(val)} if isinstance(val, (int, float)) else dict(val or {})
        vals.update({k: float(v) for k, v in metrics.items()})
        self.monitor.record_epoch(train_loss=train_loss, val=vals)
        return self._check(LIVE_CODES)

    # ------------------------------------------------------------- the end
    def diagnose(self, extras: Extras | None = None) -> Diagnosis:
        """Every rule over the whole run so far."""
        if extras is None:
            model = self.monitor.model
            extras = Extras(where=self.name, has_dropout=model is not None and any(
                isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules()))
        return diagnose(self.recording, extras)

    def close(self) -> None:
        """Remove every hook from the model and optimizer (safe to call twice)."""
        self.monitor.detach()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def final_findings(self, extras: Extras | None = None) -> tuple[list[Finding], Diagnosis]:
        """The whole-run diagnosis, plus live findings whose rule no longer fires at the end."""
        diag = self.diagnose(extras)
        final = list(diag.findings)
        codes = {f.code for f in final}
        for f in self.findings:
            if f.code not in codes:
                f.evidence.setdefault("note", "seen during training; no longer true at the end")
                final.append(f)
        for f in final:
            self._emit(f)
        return final, diag

    def report(self, out_dir: str | Path, extras: Extras | None = None) -> dict[str, Path]:
        """Write ``findings.json`` and ``report.html`` (and plots) for this run."""
        from nnrecipe.report import write_outputs

        findings, diag = self.final_findings(extras)
        result = RunResult(experiment=self.name, command="watch")
        stage = StageResult("train", checks=report_checks(self.recording, diag, findings))
        stage.settle_status()
        result.stages.append(stage)
        return write_outputs(result, Path(out_dir))

    def _check(self, codes: frozenset[str]) -> list[Finding]:
        new = []
        for f in self.diagnose().findings:
            if f.code in codes and self._emit(f):
                new.append(f)
        return new

    def _emit(self, f: Finding) -> bool:
        prev = self._emitted.get(f.code)
        if prev is not None and f.severity <= prev:
            return False
        self._emitted[f.code] = f.severity
        self.findings = [g for g in self.findings if g.code != f.code] + [f]
        f.check = f.check or self.name
        self.on_finding(f)
        return True


def watch(model: nn.Module, optimizer: torch.optim.Optimizer, *,
          on_finding: FindingHandler | None = None, config: MonitorConfig | None = None,
          check_every: int = 50, fixed_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
          task: str | None = None, name: str = "watch") -> Watcher:
    """Watch a training run you drive yourself: hooks ``model`` and ``optimizer`` (removed by
    ``close()`` or leaving the ``with`` block) and returns a :class:`Watcher`; call
    ``w.step(loss)`` after each optimizer step and, optionally, ``w.epoch(val=...)``.

    ``on_finding`` receives each finding as it is seen (default: a :class:`TrainingWarning`
    for warnings and errors). ``fixed_batch=(x, y)`` (on the model's device) records the
    predictions on those samples at every ``epoch()``. A non-finite gradient is dropped before
    it reaches the weights (``MonitorConfig(guard_nonfinite=False)`` to keep it).
    """
    from nnrecipe.train.distributed import watcher_class  # DDP: one report, on rank 0

    return watcher_class()(model, optimizer, on_finding=on_finding, config=config,
                             check_every=check_every, fixed_batch=fixed_batch, task=task, name=name)


def report_checks(rec: Any, diag: Diagnosis, findings: list[Finding]) -> list[CheckResult]:
    """The train stage's report section (curves, gradients, activations) for a recording."""
    from nnrecipe.train.stage import ACTIVATION_CODES, GRADIENT_CODES

    groups = [("training", "Learning curves", [
                  ("Learning curves", plots.learning_curves(rec, diag.verdicts)),
                  *([("Prediction dynamics", plots.prediction_dynamics(rec))] if rec.predictions else [])]),
              ("gradients", "Gradients and updates per layer", [
                  ("Gradient norms per layer", plots.gradient_heatmap(rec)),
                  *([("Update-to-weight ratios", plots.update_ratios(rec))] if rec.update.steps else [])]),
              ("activations", "Dead ReLUs and saturated tanh/sigmoid units",
               [("Dead and saturated units", plots.activation_fractions(rec))] if rec.activations else [])]
    layer_codes = {"gradients": set(GRADIENT_CODES), "activations": set(ACTIVATION_CODES)}
    out = []
    for name, title, figs in groups:
        codes = layer_codes.get(name)
        mine = [f for f in findings if (f.code in codes if codes else
                                         f.code not in set(GRADIENT_CODES) | set(ACTIVATION_CODES))]
        check = CheckResult(name=name, stage="train", title=title, findings=mine,
                            figures=[FigureArtifact(t, figure_to_png(fig)) for t, fig in figs])
        if name == "training":
            check.metrics = {"steps": len(rec.loss), "epochs": len(rec.epochs),
                             "grad_norm_quantiles": diag.grad_quantiles,
                             "skipped_updates": rec.skipped_updates,
                             "final_loss": next((x for x in reversed(rec.loss) if math.isfinite(x)), None)}
        check.settle_status()
        out.append(check)
    return out
