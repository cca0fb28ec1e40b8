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

import dataclasses
import datetime as dt
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
from nnrecipe.train.causes import CAUSE_CODES
from nnrecipe.train.detectors import Diagnosis, Extras, diagnose
from nnrecipe.train.grad_accumulation import STALE_MIN_STEPS
from nnrecipe.train.monitor import Monitor, MonitorConfig
from nnrecipe.train.recording import Recording

FindingHandler = Callable[[Finding], None]

# Rules that make sense before the run is over. The others (plateau, lr-too-low,
# underfitting) judge a whole run and are only applied by diagnose()/report().
LIVE_CODES = frozenset({
    "loss-nonfinite", "loss-diverging", "lr-too-high", "exploding-gradients",
    "vanishing-gradients", "dead-relu", "saturated-activations", "update-ratio", "overfitting",
    "val-below-train", "weights-fluctuating", *CAUSE_CODES})
MIN_LIVE_STEPS = 50  # layer statistics need some history before they mean anything
# Before MIN_LIVE_STEPS a live check (an urgent one, or one at an epoch's end) judges only
# what one step already proves: a non-finite value and the causes the monitor sees directly
# (gradients never cleared, accumulated gradients thrown away, float16 overflow, the loss
# scale). Rules over layer statistics judged on a few measurements were false alarms
# (update-ratio from Adam's first steps at an epoch end of 8-24 steps on healthy transformers,
# then kept in the final report).
EARLY_CODES = frozenset({"loss-nonfinite", *CAUSE_CODES})
# Live checks run every rule over the whole run so far (their cost grows with the run): the
# next one waits until the last one's time is at most this share of the training time between
# them. Reasoning: the monitor's whole budget is 2-5% of the step (issue 16); checks get a
# fifth of the tighter end. The urgent signals (non-finite values, gradients never cleared,
# float16 overflow) do not wait.
LIVE_CHECK_SHARE = 0.004


class TrainingWarning(UserWarning):
    """A training problem nnrecipe saw while watching a run."""


def warn_finding(finding: Finding) -> None:
    """The default handler: a :class:`TrainingWarning` for warnings and errors."""
    if finding.severity >= Severity.WARNING:
        warnings.warn(f"[nnrecipe {finding.code}] {finding.message}. Fix: {finding.fix}",
                      TrainingWarning, stacklevel=4)


class Watcher:
    """Created by :func:`watch`; see the module docstring.

    For code that drives a watcher from another framework (Lightning, Hugging Face, DDP):
    :meth:`step` records one step, ``recording`` gives the statistics so far (flushed to the
    host), :attr:`findings` the findings emitted so far, :meth:`diagnose` every rule now, and
    :meth:`report` the run's report."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *,
                 on_finding: FindingHandler | None = None, config: MonitorConfig | None = None,
                 check_every: int = 50, fixed_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
                 task: str | None = None, name: str = "watch", accumulate: int = 1,
                 scaler: Any = None, tensorboard: Any = None) -> None:
        self._tb = None
        if tensorboard is not None:  # signals + findings to TensorBoard (report/tensorboard.py)
            from nnrecipe.report.tensorboard import TensorBoardExport

            self._tb = TensorBoardExport(tensorboard)
        self.monitor = Monitor(config, fixed_batch=fixed_batch, task=task, accumulate=accumulate,
                               scaler=scaler).attach(model, optimizer)
        self.on_finding = on_finding or warn_finding
        self.check_every = max(1, int(check_every))
        self.name = name
        self.findings: list[Finding] = []
        self._emitted: dict[str, Severity] = {}
        self._live: dict[str, dict[str, Any]] = {}  # code -> when and what it said live
        self._next_check = MIN_LIVE_STEPS
        self._last_urgent = -(10**9)
        self.started = dt.datetime.now().isoformat(timespec="seconds")
        self._t0 = time.perf_counter()

    @property
    def recording(self) -> Recording:
        return self.monitor.recording

    # ------------------------------------------------------------- per step
    def step(self, loss: float | torch.Tensor) -> list[Finding]:
        """Record this step's loss (call after ``optimizer.step()``, and after
        ``scaler.update()`` with a GradScaler); returns new findings. With ``accumulate=N``,
        call it once per micro-batch or once per optimizer step: losses between two optimizer
        steps make one entry."""
        self.monitor.record_loss(loss)
        n = self.monitor.steps_recorded()
        if self._urgent() or n >= self._next_check:
            t0 = time.perf_counter()
            found = self._check(self._live_codes(n))
            spent = time.perf_counter() - t0
            self.monitor.add_overhead(spent)
            tau = self.monitor.step_seconds
            wait = math.ceil(spent / (LIVE_CHECK_SHARE * tau)) if tau else 0
            self._next_check = max(n + self.check_every, int(n * 1.1), n + wait)
            return found
        return []

    def _urgent(self) -> bool:
        """Something to say before the first scheduled check, read from host-side state only
        (no flush): a non-finite value, or gradients that are not being cleared."""
        alarms = self.monitor.alarms()
        if alarms.get("nonfinite") and "loss-nonfinite" not in self._emitted:
            return True
        if alarms.get("overflow") and "fp16-overflow" not in self._emitted \
                and self.monitor.steps_recorded() >= self._last_urgent + self.check_every // 5:
            return True
        return (alarms.get("stale_steps", 0) >= STALE_MIN_STEPS
                and "grads-not-zeroed" not in self._emitted
                and self.monitor.steps_recorded() >= self._last_urgent + self.check_every // 5)

    def epoch(self, val: Mapping[str, float] | float | None = None, *,
              train_loss: float | None = None, **metrics: float) -> list[Finding]:
        """Close an epoch with the validation metrics (a dict, or just the loss)."""
        vals = {"loss": float(val)} if isinstance(val, (int, float)) else dict(val or {})
        vals.update({k: float(v) for k, v in metrics.items()})
        self.monitor.record_epoch(train_loss=train_loss, val=vals)
        return self._check(self._live_codes(self.monitor.steps_recorded()))

    @staticmethod
    def _live_codes(steps: int) -> frozenset[str]:
        """The rules a live check may emit after ``steps`` recorded steps."""
        return LIVE_CODES if steps >= MIN_LIVE_STEPS else EARLY_CODES

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
        if self._tb is not None:
            self._tb.write(self.recording)
            self._tb.flush()
        self.monitor.detach()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def final_findings(self, extras: Extras | None = None) -> tuple[list[Finding], Diagnosis]:
        """The whole-run diagnosis, plus live findings whose rule no longer fires at the end.

        Numbers are those of the whole run: a finding first reported live says when, and what
        it measured then (``evidence["first_seen_live"]``); a live finding kept because its
        rule no longer fires gets the run's clipping advice, so one report gives one
        threshold."""
        diag = self.diagnose(extras)
        final = list(diag.findings)
        codes = {f.code for f in final}
        for f in final:
            live = self._live.get(f.code)
            if live is not None and live["message"] != f.message:
                f.evidence["first_seen_live"] = live
                f.message += (f" (first reported live at step {live['step']}, from the run up "
                              "to then; these numbers are the whole run's)")
        for f in self.findings:
            if f.code not in codes:
                kept = dataclasses.replace(f, evidence=dict(f.evidence))
                kept.evidence.setdefault("note", "seen during training; no longer true at the end")
                kept.fix, kept.message = (_same_clip_advice(kept.fix, self._live, f.code, diag),
                                          _same_clip_advice(kept.message, self._live, f.code, diag))
                final.append(kept)
        for f in final:
            f.check = f.check or check_for(f.code)
            self._emit(f, live=False)
        return final, diag

    def report(self, out_dir: str | Path, extras: Extras | None = None) -> dict[str, Path]:
        """Write ``findings.json`` and ``report.html`` (and plots) for this run."""
        from nnrecipe.report import write_outputs

        findings, diag = self.final_findings(extras)
        result = RunResult(experiment=self.name, command="watch", started=self.started,
                           duration_s=time.perf_counter() - self._t0,
                           device=str(self.monitor.device))
        stage = StageResult("train", checks=report_checks(self.recording, diag, findings))
        stage.settle_status()
        result.stages.append(stage)
        if self._tb is not None:
            self._tb.write(self.recording)
            self._tb.flush()
        return write_outputs(result, Path(out_dir))

    def _check(self, codes: frozenset[str]) -> list[Finding]:
        self._last_urgent = self.monitor.steps_recorded()
        diag = self.diagnose()
        new = []
        for f in diag.findings:
            if f.code in codes and self._emit(f, live=True, gq=diag.grad_quantiles):
                new.append(f)
        if self._tb is not None:
            self._tb.write(self.recording)
        return new

    def _emit(self, f: Finding, *, live: bool, gq: dict[str, float] | None = None) -> bool:
        prev = self._emitted.get(f.code)
        if prev is not None and f.severity <= prev:
            return False
        self._emitted[f.code] = f.severity
        if live:
            step = self.monitor.steps_recorded()
            f.evidence.setdefault("seen_at_step", step)
            self._live[f.code] = {"step": step, "message": f.message, "grad_norm_quantiles": gq}
        self.findings = [g for g in self.findings if g.code != f.code] + [f]
        f.check = f.check or check_for(f.code)
        if self._tb is not None:
            self._tb.finding(f, max(0, len(self.recording.loss) - 1))
        self.on_finding(f)
        return True


def _same_clip_advice(text: str, live: dict[str, dict[str, Any]], code: str, diag: Diagnosis
                      ) -> str:
    """Replace the clipping threshold a live finding quoted with the whole run's."""
    then = (live.get(code) or {}).get("grad_norm_quantiles")
    if not then or not diag.grad_quantiles:
        return text
    try:
        from nnrecipe.train.detectors import _clip_advice
    except ImportError:  # pragma: no cover - the advice moved; the text stays as it was
        return text
    return text.replace(_clip_advice(then), _clip_advice(diag.grad_quantiles))


def watch(model: nn.Module, optimizer: torch.optim.Optimizer, *,
          on_finding: FindingHandler | None = None, config: MonitorConfig | None = None,
          check_every: int = 50, fixed_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
          task: str | None = None, name: str = "watch", accumulate: int = 1,
          scaler: Any = None, tensorboard: Any = None) -> Watcher:
    """Watch a training run you drive yourself: hooks ``model`` and ``optimizer`` (removed by
    ``close()`` or leaving the ``with`` block) and returns a :class:`Watcher`; call
    ``w.step(loss)`` after each optimizer step and, optionally, ``w.epoch(val=...)``.

    ``on_finding`` receives each finding as it is seen (default: a :class:`TrainingWarning`
    for warnings and errors). ``fixed_batch=(x, y)`` (on the model's device) records the
    predictions on those samples at every ``epoch()``. A non-finite gradient is dropped before
    it reaches the weights on the CPU (``MonitorConfig(guard_nonfinite=False)`` to keep it;
    on an accelerator it is caught within ``MonitorConfig.sync_every`` steps, without a
    per-step device sync). ``accumulate=N`` declares N micro-batches per optimizer step
    (steps are counted per optimizer step and zero_grad inside the accumulation loop is
    caught). ``scaler`` is the ``torch.amp.GradScaler`` of a float16 loop: the steps it skips
    on purpose are not failures, and a collapsing scale or a float16 overflow is reported.
    ``tensorboard`` (a log folder or a ``SummaryWriter``) also writes the monitor's signals and
    the findings to TensorBoard (:mod:`nnrecipe.report.tensorboard`).
    """
    from nnrecipe.train.distributed import watcher_class  # DDP: one report, on rank 0

    return watcher_class()(model, optimizer, on_finding=on_finding, config=config,
                             check_every=check_every, fixed_batch=fixed_batch, task=task, name=name,
                             accumulate=accumulate, scaler=scaler, tensorboard=tensorboard)


# The report section (check) each train code belongs to; figures are embedded with it.
GRADIENT_SECTION = ("exploding-gradients", "vanishing-gradients", "update-ratio",
                    "grads-not-zeroed", "accumulation-discarded")
ACTIVATION_SECTION = ("dead-relu", "saturated-activations")


def check_for(code: str) -> str:
    """The name of the report check (``training``, ``gradients``, ``activations``) that
    shows the findings of ``code`` with its figures."""
    if code in GRADIENT_SECTION:
        return "gradients"
    if code in ACTIVATION_SECTION:
        return "activations"
    return "training"


def report_checks(rec: Any, diag: Diagnosis, findings: list[Finding]) -> list[CheckResult]:
    """The train stage's report section (curves, gradients, activations) for a recording.
    Each finding is filed under the check whose figures show it (``finding.check``) and lists
    those figures' titles (``finding.figures``), so the report embeds them next to it."""
    groups = [("training", "Learning curves", [
                  ("Learning curves", plots.learning_curves(rec, diag.verdicts)),
                  *([("Prediction dynamics", plots.prediction_dynamics(rec))] if rec.predictions else [])]),
              ("gradients", "Gradients and updates per layer", [
                  ("Gradient norms per layer", plots.gradient_heatmap(rec)),
                  *([("Update-to-weight ratios", plots.update_ratios(rec))] if rec.update.steps else [])]),
              ("activations", "Dead ReLUs and saturated tanh/sigmoid units",
               [("Dead and saturated units", plots.activation_fractions(rec))] if rec.activations else [])]
    out = []
    for name, title, figs in groups:
        mine = [f for f in findings if check_for(f.code) == name]
        for f in mine:
            f.check = name
            f.stage = "train"
            f.figures = [t for t, _ in figs]
        check = CheckResult(name=name, stage="train", title=title, findings=mine,
                            figures=[FigureArtifact(t, figure_to_png(fig)) for t, fig in figs])
        if name == "training":
            check.metrics = {"steps": len(rec.loss), "epochs": len(rec.epochs),
                             "optimizer_steps": rec.optimizer_steps,
                             "grad_norm_quantiles": diag.grad_quantiles,
                             "skipped_updates": rec.skipped_updates,
                             "scaler_skipped_steps": len(rec.scaler_skipped),
                             "precision": rec.precision, "accumulate": rec.accumulate,
                             "signal_coverage": dict(rec.coverage),
                             "final_loss": next((x for x in reversed(rec.loss) if math.isfinite(x)), None)}
        check.settle_status()
        out.append(check)
    return out
