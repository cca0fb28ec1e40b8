"""The ``train`` stage: one real training run with the monitor on, then the diagnosis.

:class:`TrainingRun` trains a fresh model with :func:`~nnrecipe.core.fit.fit` (the user's
``train_step`` if any), the :class:`~nnrecipe.train.monitor.Monitor`, validation every epoch,
early stopping, optional clipping (``options["grad_clip"]``) and schedule
(``options["schedule"]``), keeps the best weights (saved to ``<out>/checkpoints/train-best.pt``)
and raises the learning-curve findings. :class:`GradientHealth` and
:class:`ActivationHealth` report the per-layer findings of the same run.

Options read (``Experiment.options`` or ``nnrecipe.run(options=...)``): ``train_epochs``,
``grad_clip``, ``schedule``, ``early_stopping`` (dict of
:class:`~nnrecipe.train.stopping.StoppingConfig` fields, or False), ``monitor`` (dict of
:class:`~nnrecipe.train.monitor.MonitorConfig` fields), ``budget_s``, ``train_figures``
(default True; False skips drawing, e.g. for many runs in a row).

``ctx.state["train"]`` afterwards::

    {"history": FitHistory, "recording": Recording, "diagnosis": Diagnosis,
     "val": {"loss":.., "accuracy":..}, "test": {...} (if a test split),
     "state_dict": best weights (CPU), "best_epoch": int | None,
     "stopped_by": "patience" | "GL" | "PQ" | None, "stopped_reason": str,
     "grad_norm_quantiles": {"p10", "p50", "p90", "p99", "max"},
     "checkpoint": str | None}
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.fit import Callback, EpochRecord, FitHistory, fit
from nnrecipe.core.output import atomic_torch_save
from nnrecipe.core.registry import Check
from nnrecipe.core.training import metrics_from_outputs, on_cpu, per_sample_losses, predict
from nnrecipe.train import detectors as det
from nnrecipe.train import plots
from nnrecipe.train.modes import ModeWatch
from nnrecipe.train.monitor import Monitor, MonitorConfig, Recording
from nnrecipe.train.nonfinite import LossNonfinite
from nnrecipe.train.precision import training_autocast
from nnrecipe.train.stopping import EarlyStopping, StoppingConfig

# With a --budget, training gets this share of the time left: regularize, tune and ensemble
# (which follow) train several models each.
TRAIN_BUDGET_SHARE = 1 / 3
PROBE_SAMPLES = 1024  # training samples re-evaluated at each epoch end (eval and train mode)
# validation samples whose losses are kept per epoch: the paired noise of the overfitting rule
VAL_SAMPLES = 2048
FIXED_BATCH = 12  # samples whose predictions are followed epoch by epoch

CURVE_CODES = (LossNonfinite.code, det.LossDiverging.code, det.LrTooHigh.code, det.LrTooLow.code,
               det.LossPlateau.code, det.Overfitting.code, det.Underfitting.code,
               det.ValBelowTrain.code, det.WeightsFluctuating.code,
               det.LrScheduleMisstepped.code, det.ValMetricInconsistent.code)
GRADIENT_CODES = (det.ExplodingGradients.code, det.VanishingGradients.code, det.UpdateRatio.code)
ACTIVATION_CODES = (det.DeadRelu.code, det.SaturatedActivations.code)


class EndOfEpochProbe(Callback):
    """At each epoch end, the training loss of the current weights on a fixed subset of the
    training set, in eval mode and in train mode (no update; buffers and RNG restored).
    Stored on the monitor's epoch entry as ``train_eval_loss`` and ``train_mode_loss``. Also
    the per-sample losses of (up to ``VAL_SAMPLES``) validation samples, kept in
    ``val_losses`` (one array per epoch): the overfitting rule's paired noise."""

    def __init__(self, ctx: Context, monitor: Monitor, n: int = PROBE_SAMPLES) -> None:
        self.ctx, self.monitor, self.n = ctx, monitor, n
        self.error: str | None = None
        self.val_losses: list[np.ndarray] = []
        self.val_error: str | None = None

    def on_epoch_end(self, record: EpochRecord, history: FitHistory, model: nn.Module
                     ) -> str | None:
        if self.error or not self.monitor.recording.epochs or not math.isfinite(record.train_loss):
            return None
        entry = self.monitor.recording.epochs[-1]
        try:
            entry["train_eval_loss"] = self.ctx.evaluate(model, "train", limit=self.n)["loss"]
            entry["train_mode_loss"] = train_mode_loss(self.ctx, model, self.n)
        except Exception as e:  # noqa: BLE001 - unusual batches: train on, without the probe
            self.error = f"{type(e).__name__}: {e}"
        if self.ctx.has_split("val") and self.val_error is None:
            try:
                self.val_losses.append(val_sample_losses(self.ctx, model))
            except Exception as e:  # noqa: BLE001 - the overfitting rule falls back to 10%
                self.val_error = f"{type(e).__name__}: {e}"
        return None

    def per_sample_val(self, epochs: int) -> np.ndarray | None:
        """(epochs, samples) validation losses, when every epoch was probed."""
        if self.val_error or len(self.val_losses) != epochs or not self.val_losses:
            return None
        return np.stack(self.val_losses)


def val_sample_losses(ctx: Context, model: nn.Module, n: int = VAL_SAMPLES) -> np.ndarray:
    """The per-sample losses of the first ``n`` validation samples (eval mode)."""
    size = len(ctx.dataset("val"))
    loader = ctx.loader("val", shuffle=False, indices=list(range(min(n, size))),
                        batch_size=max(ctx.experiment.batch_size, 256))
    out, y = predict(model, loader, ctx.device)
    return per_sample_losses(on_cpu(ctx.experiment.loss), out, y).numpy().astype(float)


def train_mode_loss(ctx: Context, model: nn.Module, n: int) -> float:
    """Loss on the first ``n`` training samples with the model in train mode (dropout on,
    batch statistics), without changing anything: buffers and RNG are restored."""
    X, y = ctx.tensors("train", limit=n)
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    was = model.training
    loss_fn = on_cpu(ctx.experiment.loss)
    outs = []
    devices = [ctx.device] if ctx.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            model.train()
            bs = max(ctx.experiment.batch_size, 1)
            for i in range(0, len(X), bs):
                outs.append(model(X[i:i + bs].to(ctx.device)).float().cpu())
    finally:
        model.train(was)
        with torch.no_grad():
            for k, v in model.named_buffers():
                if k in buffers:
                    v.copy_(buffers[k])
    with torch.no_grad():
        return float(loss_fn(torch.cat(outs), y))


def has_dropout(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules())


def is_augmented(ctx: Context, k: int = 4) -> bool:
    """Does the training set return a different tensor for the same index twice?"""
    ds = ctx.dataset("train")
    try:
        for i in range(min(k, len(ds))):
            a, b = ds[i][0], ds[i][0]
            if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and not torch.equal(a, b):
                return True
    except Exception:  # noqa: BLE001 - a dataset we cannot index twice: assume not augmented
        return False
    return False


def val_loss_rel_se(ctx: Context, model: nn.Module, split: str = "val"
                    ) -> tuple[dict[str, float], float]:
    """Metrics on a split, and the robust relative standard error of its loss (of the
    10%-trimmed mean of the per-sample losses, when the loss has a ``reduction`` to switch
    off): heavy-tailed losses do not inflate it."""
    loader = ctx.loader(split, shuffle=False, batch_size=max(ctx.experiment.batch_size, 256))
    out, y = predict(model, loader, ctx.device)
    loss_fn = on_cpu(ctx.experiment.loss)
    metrics = metrics_from_outputs(out, y, loss_fn, ctx.task_type)
    rel_se = 0.0
    if hasattr(loss_fn, "reduction"):
        values = per_sample_losses(loss_fn, out, y)
        if len(values) > 1 and float(values.mean()) > 0:
            rel_se = det.trimmed_rel_se(values.numpy())
    return metrics, rel_se


def time_budget(ctx: Context) -> float | None:
    budget = ctx.options.get("budget_s")
    if not budget:
        return None
    deadline = ctx.state.setdefault("deadline", time.monotonic() + float(budget))
    return max(1.0, (deadline - time.monotonic()) * TRAIN_BUDGET_SHARE)


def scheduler_factory(ctx: Context) -> tuple[Any, str]:
    """The schedule named by ``options["schedule"]`` (a name, a dict with "name" and options,
    or a factory), through the overfit stage's ``nnrecipe.overfit.schedules``; constant
    (None) when unnamed or when that module is not available."""
    spec = ctx.options.get("schedule")
    if spec is None or spec == "constant":
        return None, "constant"
    try:
        from nnrecipe.overfit import schedules  # type: ignore[attr-defined]
    except ImportError:
        return None, f"constant ({spec!r} asked for; nnrecipe.overfit.schedules is not available)"
    if hasattr(schedules, "scheduler_from_options"):
        factory = schedules.scheduler_from_options(ctx.options)
    else:
        factory = schedules.make_scheduler(spec)
    if factory is None:
        return None, "constant"
    return factory, str(getattr(factory, "schedule_name", spec))


class TrainingRun(Check):
    name = "training"
    stage = "train"
    title = "Training run: learning curves, early stopping, best checkpoint"
    order = 10
    emits = (*CURVE_CODES, "eval-mode-training")

    def run(self, ctx: Context) -> list[Finding]:
        model = ctx.fresh_model()
        optimizer = ctx.make_optimizer(model)
        # No overhead governor here: its schedule depends on timing, and the same seed must
        # give the same findings. It is for users' own loops (watch, Lightning).
        config = MonitorConfig(**{"overhead_budget": None, **dict(ctx.options.get("monitor") or {})})
        monitor = Monitor(config,
                          fixed_batch=_fixed_batch(ctx), task=ctx.task_type)
        probe = EndOfEpochProbe(ctx, monitor)
        stopper = EarlyStopping(StoppingConfig.from_options(ctx.options.get("early_stopping")))
        modes = ModeWatch()
        scheduler, schedule_name = scheduler_factory(ctx)
        clip = ctx.options.get("grad_clip")
        monitor.recording.grad_clip = float(clip) if clip else None
        # options["precision"] = "bf16": the steps run under autocast (fp16 is refused there:
        # the stage's steps apply no GradScaler)
        with training_autocast(ctx.options.get("precision"), ctx.device):
            history = fit(ctx, model, optimizer=optimizer,
                          epochs=int(ctx.options.get("train_epochs") or ctx.experiment.epochs),
                          scheduler=scheduler, grad_clip=float(clip) if clip else None,
                          callbacks=[monitor, probe, stopper, modes],
                          time_budget_s=time_budget(ctx), restore_best=True,
                          description="training with the monitor",
                          # Ctrl-C / SIGTERM: diagnose the epochs run; the best weights so
                          # far are on disk already (written on each improvement).
                          keep_on_interrupt=True, checkpoint=checkpoint_path(ctx))
        if history.checkpoint_error:
            ctx.record("checkpoint_error", history.checkpoint_error)
        rec = monitor.recording
        last = rec.epochs[-1] if rec.epochs else {}
        metrics, rel_se = val_loss_rel_se(ctx, model) if ctx.has_split("val") else ({}, 0.0)
        if probe.error:
            ctx.record("probe_error", probe.error)
        lr_state = ctx.state.get("lr") or {}
        extras = det.Extras(
            baselines=ctx.state.get("baselines"), train_mode_end=last.get("train_mode_loss"),
            train_eval_end=last.get("train_eval_loss"), augmented=is_augmented(ctx),
            has_dropout=has_dropout(model), val_rel_se=rel_se,
            best_epoch_restored=history.best_epoch, lr_suggested=lr_state.get("suggested"),
            where="the train stage", batch_sizes=step_batch_sizes(ctx, len(rec.loss)),
            per_sample_val=probe.per_sample_val(len(rec.epochs)),
            stopped_by=stopper.stopped.criterion if stopper.stopped else None,
            lr_range=_lr_range(lr_state), schedule=schedule_name.split(" ")[0],
            completed=history.stopped_reason == "completed")
        extras.init_loss, extras.prior_loss = reference_losses(ctx, model)
        diagnosis = det.diagnose(rec, extras)
        state = self._store(ctx, model, history, rec, diagnosis, stopper, metrics)
        self._record(ctx, history, rec, stopper, state, schedule_name, extras)
        if ctx.options.get("train_figures", True):
            self._draw(ctx, rec, diagnosis, history, stopper)
        return [f for f in diagnosis.findings if f.code in CURVE_CODES] + \
            self._mode_findings(ctx, modes)

    def _mode_findings(self, ctx: Context, modes: ModeWatch) -> list[Finding]:
        v = modes.verdict()
        ctx.record("eval_mode_steps", v.eval_steps)
        if not v.fires:
            return []
        share = v.eval_steps / max(v.steps, 1)
        return [self.finding(
            f"the training step switched the model to eval mode: from step {v.first_eval_step} "
            f"on, {v.eval_steps} of {v.steps} steps ({share:.0%}) trained with "
            f"{', '.join(v.layers[:5])} in eval mode (dropout off, batch norm frozen at its "
            "running statistics) after the first steps had trained in train mode; an "
            "evaluation inside the loop that never switches back does this",
            {"first_eval_step": v.first_eval_step, "eval_steps": v.eval_steps,
             "steps": v.steps, "eval_layers": v.layers, "share": share},
            code="eval-mode-training", severity=Severity.WARNING,
            fix="Call `model.train()` after every evaluation inside the training loop (or at "
                "the start of each training step).")]

    def _store(self, ctx: Context, model: nn.Module, history: FitHistory, rec: Recording,
               diagnosis: det.Diagnosis, stopper: EarlyStopping, val: dict[str, float]
               ) -> dict[str, Any]:
        best = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        state: dict[str, Any] = {
            "history": history, "recording": rec, "diagnosis": diagnosis, "val": val,
            "test": ctx.evaluate(model, "test") if ctx.has_split("test") else {},
            "state_dict": best, "best_epoch": history.best_epoch,
            "stopped_by": stopper.stopped.criterion if stopper.stopped else None,
            "stopped_reason": history.stopped_reason,
            "grad_norm_quantiles": diagnosis.grad_quantiles, "checkpoint": None}
        path = checkpoint_path(ctx)
        if path is not None:
            atomic_torch_save({"state_dict": best, "best_epoch": history.best_epoch, "val": val,
                               "stopped_reason": history.stopped_reason, "complete": True},
                              path)
            state["checkpoint"] = str(path)
        ctx.state["train"] = state
        return state

    def _record(self, ctx: Context, history: FitHistory, rec: Recording, stopper: EarlyStopping,
                state: dict[str, Any], schedule: str, extras: det.Extras) -> None:
        ctx.record("epochs_run", len(history.epochs))
        ctx.record("steps", history.steps)
        ctx.record("seconds", round(history.seconds, 2))
        ctx.record("stopped_reason", history.stopped_reason)
        ctx.record("stopped_by", state["stopped_by"])
        ctx.record("early_stopping", stopper.config.describe())
        ctx.record("best_epoch", history.best_epoch)
        ctx.record("val", state["val"])
        if state["test"]:
            ctx.record("test", state["test"])
        ctx.record("schedule", schedule)
        ctx.record("grad_clip", rec.grad_clip)
        ctx.record("grad_norm_quantiles", state["grad_norm_quantiles"])
        ctx.record("val_loss_rel_se", extras.val_rel_se)
        ctx.record("checkpoint", state["checkpoint"])
        ctx.record("skipped_updates", rec.skipped_updates)
        vb = state["diagnosis"].verdicts.get("val-below-train")
        if vb is not None and vb.cause:
            ctx.record("val_below_train_cause", vb.cause)
        rows = [[e["epoch"], _r(e.get("train_loss")), _r(e.get("train_eval_loss")),
                 _r(e.get("val_loss")), _r(e.get("val_accuracy")), _r(e.get("lr"))]
                for e in rec.epochs]
        ctx.add_table("Learning curve", ["epoch", "train (mean)", "train (end, eval mode)",
                                         "val loss", "val accuracy", "lr"], rows,
                      caption=f"Early stopping: {stopper.config.describe()}. Stopped: "
                              f"{history.stopped_reason}. Best epoch {history.best_epoch} restored.")

    def _draw(self, ctx: Context, rec: Recording, diagnosis: det.Diagnosis, history: FitHistory,
              stopper: EarlyStopping) -> None:
        stopped = stopper.stopped.criterion if stopper.stopped else None
        ctx.add_figure("Learning curves", plots.learning_curves(
            rec, diagnosis.verdicts, best_epoch=history.best_epoch, stopped=stopped))
        if rec.predictions:
            ctx.add_figure("Prediction dynamics", plots.prediction_dynamics(rec))


def checkpoint_path(ctx: Context) -> Path | None:
    """Where the best weights go: ``<out>/checkpoints/train-best.pt`` (None without ``out``)."""
    return None if ctx.out_dir is None else Path(ctx.out_dir) / "checkpoints" / "train-best.pt"


def step_batch_sizes(ctx: Context, steps: int) -> list[int] | None:
    """The batch size of each optimizer step of the run, from the training loader fit() uses
    (same dataset length, batch size and drop_last): full batches, then the remainder."""
    try:
        loader = ctx.loader("train")
        n, bs = len(loader.dataset), int(loader.batch_size or 1)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - iterable datasets: sizes unknown
        return None
    epoch = [bs] * (n // bs) + ([n % bs] if n % bs and not loader.drop_last else [])
    if not epoch:
        return None
    return (epoch * (steps // len(epoch) + 1))[:steps]


def reference_losses(ctx: Context, model: nn.Module) -> tuple[float | None, float | None]:
    """The loss at initialisation a well-set-up classifier starts from (uniform outputs: ln C
    for cross-entropy, ln 2 for BCE) and the loss of predicting the training prior (class
    frequencies; the mean target for regression), both with the experiment's own loss on up
    to 4096 training samples. (None, None) when the outputs cannot be read that way."""
    try:
        X, y = ctx.tensors("train", limit=4096)
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model(X[:2].to(ctx.device)).float().cpu()
        finally:
            model.train(was)
        loss_fn = on_cpu(ctx.experiment.loss)
        shape = (len(y), *out.shape[1:])
        with torch.no_grad():
            if ctx.task_type == "regression":
                return None, float(loss_fn(y.float().mean(0, keepdim=True).expand(shape), y))
            bce = isinstance(loss_fn, (nn.BCEWithLogitsLoss, nn.BCELoss))
            if bce and y.is_floating_point() and y.shape == shape:  # binary / multi-label
                p = y.float().mean(0, keepdim=True).clamp(1e-6, 1 - 1e-6).expand(shape)
                if isinstance(loss_fn, nn.BCELoss):
                    return float(loss_fn(torch.full(shape, 0.5), y)), float(loss_fn(p, y))
                return float(loss_fn(torch.zeros(shape), y)), float(loss_fn(torch.logit(p), y))
            if y.is_floating_point() or tuple(y.shape) != shape[:-1]:
                return None, None
            c = shape[-1]
            freq = torch.bincount(y.reshape(-1).long().clamp(0, c - 1), minlength=c).float()
            logp = torch.log((freq / freq.sum()).clamp_min(1e-12))
            uniform = torch.full(shape, -math.log(c))
            # log-probabilities: cross-entropy reads them as logits, NLLLoss as they are
            return float(loss_fn(uniform, y)), float(loss_fn(logp.expand(shape), y))
    except Exception:  # noqa: BLE001 - unusual outputs: the blow-up rule stays off
        return None, None


def _lr_range(lr_state: dict[str, Any]) -> tuple[float, float] | None:
    low, high = lr_state.get("low"), lr_state.get("high")
    if isinstance(low, (int, float)) and isinstance(high, (int, float)) and 0 < low <= high:
        return float(low), float(high)
    return None


def _fixed_batch(ctx: Context) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A few validation samples whose predictions are followed (None if they cannot be
    stacked, e.g. dict inputs)."""
    try:
        return ctx.batch("val" if ctx.has_split("val") else "train", n=FIXED_BATCH)
    except Exception:  # noqa: BLE001 - prediction dynamics are optional
        return None


def _r(x: Any, digits: int = 4) -> Any:
    return round(float(x), digits) if isinstance(x, (int, float)) and math.isfinite(x) else None


class _FromTrainingRun(Check):
    """Reports, from the training run's diagnosis, the findings of some codes."""

    codes: tuple[str, ...] = ()

    def applies(self, ctx: Context) -> str | None:
        if "train" not in ctx.state:
            return "the training run did not complete"
        return None

    def findings_from_run(self, ctx: Context) -> list[Finding]:
        diagnosis: det.Diagnosis = ctx.state["train"]["diagnosis"]
        return [f for f in diagnosis.findings if f.code in self.codes]


class GradientHealth(_FromTrainingRun):
    name = "gradients"
    stage = "train"
    title = "Gradients and updates per layer"
    order = 20
    emits = GRADIENT_CODES
    codes = GRADIENT_CODES

    def run(self, ctx: Context) -> list[Finding]:
        rec: Recording = ctx.state["train"]["recording"]
        names, rel = det.relative_gradients(rec)
        relative = dict(zip(names, rel, strict=True))
        g, u, p = rec.grad.array(), rec.update.array(), rec.param.array()
        rows = []
        for j, (name, kind) in enumerate(zip(rec.layers, rec.layer_types, strict=True)):
            rows.append([name, kind, _r(_col_median(g, j), 6), _r(relative.get(name, math.nan), 6),
                         _r(_col_median(u[len(u) // 2:], j), 6), _r(p[-1, j] if p.size else math.nan)])
        ctx.add_table("Per layer (input to output)", ["layer", "type", "median ||grad||",
                                                      "||grad|| / ||w||", "update ratio (2nd half)",
                                                      "||w|| at the end"], rows)
        ctx.record("grad_norm_quantiles", ctx.state["train"]["grad_norm_quantiles"])
        if not ctx.options.get("train_figures", True):
            return self.findings_from_run(ctx)
        ctx.add_figure("Gradient norms per layer", plots.gradient_heatmap(rec))
        if rec.update.steps:
            ctx.add_figure("Update-to-weight ratios", plots.update_ratios(rec))
        return self.findings_from_run(ctx)


class ActivationHealth(_FromTrainingRun):
    name = "activations"
    stage = "train"
    title = "Dead ReLUs and saturated tanh/sigmoid units"
    order = 30
    emits = ACTIVATION_CODES
    codes = ACTIVATION_CODES

    def applies(self, ctx: Context) -> str | None:
        reason = super().applies(ctx)
        if reason:
            return reason
        if not ctx.state["train"]["recording"].activations:
            return "no nn.ReLU/Tanh/Sigmoid modules ran in training (functional activations are not seen)"
        return None

    def run(self, ctx: Context) -> list[Finding]:
        rec: Recording = ctx.state["train"]["recording"]
        dead, sat = rec.dead.array(), rec.saturated.array()
        rows = [[name, kind, _r(_col_last(dead, j)), _r(_col_last(sat, j))]
                for j, (name, kind) in enumerate(rec.activations)]
        ctx.add_table("Activations at the end of training", ["module", "kind", "dead fraction",
                                                             "saturated fraction"], rows)
        if ctx.options.get("train_figures", True):
            ctx.add_figure("Dead and saturated units", plots.activation_fractions(rec))
        findings = self.findings_from_run(ctx)
        for f in findings:
            if f.code == det.DeadRelu.code:
                _tailor_dead_relu(f, rec, ctx.state["train"]["state_dict"])
        return findings


def _tailor_dead_relu(f: Finding, rec: Recording, weights: dict[str, torch.Tensor]) -> None:
    """Name the bias feeding each dead layer when it is negative (the classic bad init)."""
    notes = []
    for act in f.evidence.get("layers", []):
        layer = rec.activation_inputs.get(act.split("#")[0])
        bias = weights.get(f"{layer}.bias") if layer else None
        if bias is not None and bias.numel():
            mean = float(bias.float().mean())
            f.evidence.setdefault("input_bias_mean", {})[act] = mean
            if mean < 0:
                notes.append(f"'{layer}' (feeding '{act}') has biases averaging {mean:.3g}")
    if notes:
        f.fix = (f"Negative biases push units below zero for every input: {'; '.join(notes)}. "
                 "Initialise them at 0 (or slightly positive). " + f.fix)


def _col_median(a: Any, j: int) -> float:
    import numpy as np

    if a.size == 0 or j >= a.shape[1]:
        return math.nan
    col = a[:, j][np.isfinite(a[:, j])]
    return float(np.median(col)) if len(col) else math.nan


def _col_last(a: Any, j: int) -> float:
    if a.size == 0 or j >= a.shape[1]:
        return math.nan
    return float(a[-1, j])
