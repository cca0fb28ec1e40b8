"""``regularization-advice``: the recipe's regularisation ladder, run as experiments.

Each rung is one short run (:func:`~nnrecipe.core.fit.fit`, the experiment's epochs or
``options["regularize_epochs"]``) that changes one thing against the unregularised
reference, and is compared with it on validation (final weights against final weights, so
each rung's effect is isolated; early stopping is the reference's own best epoch):

- more data, in reverse: the same number of steps on 25% and 50% of the training set; the
  learning curve is extrapolated to twice the data (:mod:`.learning_curve`);
- weight decay (two strengths), dropout (where the model factory takes it), a smaller model
  (``capacity_arg``), a smaller input (``options["smaller_input"]``), a smaller batch, early
  stopping; then the rungs that helped, combined.

A rung "helped" only if it beats the reference by more than the noise floor
(:func:`~nnrecipe.regularize.outcomes.noise_floor`: twice the paired standard error on the
validation set, or the spread between two seeds of the reference). The ranking, with its
numbers, is the ``regularization-advice`` finding (info). ``dropout-with-batchnorm`` (warning)
fires when the dropout knob puts active dropout in front of batch normalisation.

Options: ``regularize_epochs``, ``regularize_fractions`` (default (0.25, 0.5)),
``regularize_weight_decays``, ``regularize_dropouts``, ``regularize_batch_divisor`` (4),
``regularize_seeds`` (2: reference seeds for the noise floor), ``budget_s``.

``ctx.state["regularize"]`` afterwards::

    {"metric": "accuracy" | "loss", "epochs": int,
     "reference": Candidate-dict (settings, val, test, train_loss, state_dict),  # final weights
     "best": Candidate-dict of the regularised model (the reference when nothing helped),
     "helped": [rung names], "rungs": [row dicts], "learning_curve": {...} | None}

where a Candidate-dict is ``{"name", "settings": Settings, "describe": {...}, "val": {...},
"test": {...}, "train_loss": float, "state_dict": {...}}`` (CPU tensors).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from matplotlib.ticker import NullFormatter
from torch import nn

from nnrecipe.core import budget
from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.fit import FitHistory, fit
from nnrecipe.core.registry import Check, Declared
from nnrecipe.regularize import knobs
from nnrecipe.regularize.knobs import Settings
from nnrecipe.regularize.learning_curve import DataVerdict, more_data_verdict
from nnrecipe.regularize.outcomes import (
    Metric,
    Scores,
    noise_floor,
    primary_metric,
    score_model,
    verdict,
)
from nnrecipe.report.plots import COLORS, new_figure

# With a --budget the ladder gets this share of the time left when it starts; tune (which
# trains ~8 models) and the ensemble follow it.
BUDGET_SHARE = 0.4
DATA_FRACTIONS = (0.25, 0.5)
# L2-in-the-gradient decay (SGD, Adam) at 1e-4 is the common default and 1e-3 a strong one;
# decoupled decay (AdamW) is multiplied by the learning rate, so its scale is ~100x larger.
COUPLED_DECAYS = (1e-4, 1e-3)
DECOUPLED_DECAYS = (1e-2, 1e-1)
DROPOUTS = (0.25, 0.5)
BATCH_DIVISOR = 4  # "decrease the batch size": a quarter of it (4x the steps per epoch)
MAX_EPOCH_MULTIPLIER = 8  # data fractions train for equal steps, at most 8x the epochs
LOSS = Metric("loss", False)
# A rung whose final training loss is below 80% of the reference's fits the training set
# better (e.g. a smaller batch takes more steps): its gain is not all regularisation.
FITS_BETTER = 0.8
HELPED_LOSS = "helped (val loss)"  # the metric moved within noise, the loss beyond it


class DropoutWithBatchNorm(Declared):
    code = "dropout-with-batchnorm"
    stage = "regularize"
    severity = Severity.WARNING
    title = "The model's dropout knob puts dropout in front of batch normalisation"
    fix = ("Dropout shifts the variance batch norm sees between training and evaluation "
           "(Li et al. 2019, 'Understanding the disharmony between dropout and batch "
           "normalization'): regularise with weight decay or data instead, or apply dropout "
           "only after the last batch-norm layer.")


@dataclass
class Run:
    """One short training run of the ladder."""

    name: str
    setting: str
    settings: Settings
    history: FitHistory
    val: Scores  # final weights
    train_loss: float
    state_dict: dict[str, torch.Tensor]
    seconds: float

    @property
    def cut_short(self) -> bool:
        return "budget" in self.history.stopped_reason

    def best_epoch_val(self) -> dict[str, float]:
        h = self.history
        return h.epochs[h.best_epoch - 1].val if h.best_epoch else {}


@dataclass
class Row:
    rung: str
    setting: str
    run: Run | None
    gain: float = math.nan
    floor: float = math.nan
    verdict: str = "not run"
    loss_gain: float = math.nan
    loss_floor: float = math.nan
    note: str = ""
    val: dict[str, float] = field(default_factory=dict)


def stratified_subset(y: torch.Tensor, fraction: float, seed: int, classification: bool
                      ) -> list[int]:
    """``fraction`` of the indices, per class for classification (so no class goes missing)."""
    rng = np.random.default_rng(seed)
    n = len(y)
    if classification and y.ndim == 1 and not y.is_floating_point():
        labels = y.numpy()
        picked: list[int] = []
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)
            k = max(1, int(round(len(idx) * fraction)))
            picked.extend(rng.choice(idx, size=k, replace=False).tolist())
        return sorted(picked)
    k = max(1, int(round(n * fraction)))
    return sorted(rng.permutation(n)[:k].tolist())


def first_values_first(rungs: list[Any]) -> list[Any]:
    """Every knob's first value before any knob's second, so a tight budget still tries each
    kind of regularisation once."""
    seen: dict[str, int] = {}
    keyed = []
    for i, r in enumerate(rungs):
        keyed.append((seen.get(r[0], 0), i, r))
        seen[r[0]] = seen.get(r[0], 0) + 1
    return [r for *_, r in sorted(keyed, key=lambda t: (t[0], t[1]))]


def dropout_before_batchnorm(model: nn.Module, x: torch.Tensor) -> list[tuple[str, str]]:
    """(dropout, batch-norm) name pairs where active dropout runs before a batch-norm layer."""
    from nnrecipe.skeleton._util import is_batchnorm, is_dropout

    names = {m: n for n, m in model.named_modules()}
    order: list[nn.Module] = []
    handles = [m.register_forward_hook(lambda mod, i, o: order.append(mod))
               for m in model.modules() if is_dropout(m) or is_batchnorm(m)]
    try:
        was = model.training
        model.train()
        with torch.no_grad():
            model(x)
        model.train(was)
    finally:
        for h in handles:
            h.remove()
    pairs = []
    seen_dropout: list[nn.Module] = []
    for m in order:
        if is_dropout(m):
            seen_dropout.append(m)
        elif is_batchnorm(m) and seen_dropout:
            pairs.append((names[seen_dropout[-1]], names[m]))
    return pairs


class RegularizationLadder(Check):
    code = "regularization-advice"
    stage = "regularize"
    severity = Severity.INFO
    title = "The regularisation ladder, run as experiments and ranked against the reference"
    fix = ("Adopt what helped beyond the noise (first more data if the learning curve says so, "
           "then the cheapest rung that helped); regularise only a model that overfits.")
    order = 10
    emits = (DropoutWithBatchNorm.code,)

    def applies(self, ctx: Context) -> str | None:
        if not ctx.has_split("val"):
            return "no validation split: the ladder compares settings on validation data"
        return budget.skip_reason(ctx)

    # ------------------------------------------------------------------ run
    def run(self, ctx: Context) -> list[Finding]:
        self.ctx = ctx
        self.metric = primary_metric(ctx)
        allowance = budget.allowance(ctx, BUDGET_SHARE)
        self.deadline = None if allowance is None else time.monotonic() + allowance
        epochs = int(ctx.options.get("regularize_epochs") or ctx.experiment.epochs)
        self.base = Settings(epochs=epochs)
        findings: list[Finding] = []

        ref = self._train("reference", "unregularised", self.base)
        self.ref = ref
        spread = self._seed_spread(ref)
        self.spread = spread
        rows = [Row("reference", f"{epochs} epochs, final weights", ref, 0.0, spread,
                    "reference", val=dict(ref.val.metrics))]
        rows.append(self._early_stopping_row(ref))
        curve: DataVerdict | None = None
        interrupted = False
        try:  # Ctrl-C: report the rungs that finished, then stop
            curve, data_rows = self._learning_curve(ref)
            rows.extend(data_rows)
            for name, setting, settings, cost in first_values_first(self._knob_rungs()):
                rows.append(self._rung(name, setting, settings, cost))
            findings.extend(self._dropout_bn(rows))
            helped = [r for r in rows if _helped(r) and r.rung not in ("early stopping",
                                                                          "more data")]
            if len(helped) >= 2:
                rows.append(self._combined(helped))
        except KeyboardInterrupt:
            interrupted = True
        best = self._choose(rows)
        self._store(rows, best, curve)
        self._report(rows, curve)
        findings.append(self._advice(rows, best, curve))
        if interrupted:
            ctx.record("interrupted", "Ctrl-C: the rungs that finished are shown")
            raise KeyboardInterrupt
        return findings

    # -------------------------------------------------------------- runs
    def _time_left(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def _affordable(self, cost: float) -> bool:
        left = self._time_left()
        return left is None or left >= cost * self.ref.seconds

    def _train(self, name: str, setting: str, settings: Settings, *, seed: int | None = None,
               indices: list[int] | None = None, max_steps: int | None = None,
               epochs: int | None = None) -> Run:
        ctx = self.ctx
        model, optimizer = knobs.build(ctx, settings, seed=seed)
        left = self._time_left()
        history = fit(ctx, model, optimizer=optimizer, epochs=epochs or settings.epochs,
                      batch_size=settings.batch_size, train_indices=indices,
                      scheduler=knobs.scheduler_factory(ctx), max_steps=max_steps,
                      time_budget_s=None if left is None else max(left, budget.MIN_USEFUL_S),
                      restore_best=False, description=f"regularize: {name} ({setting})")
        train_losses = [v for v in history.train_losses() if math.isfinite(v)]
        state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        return Run(name, setting, settings, history, score_model(ctx, model, "val"),
                   train_losses[-1] if train_losses else math.nan, state, history.seconds)

    def _seed_spread(self, ref: Run) -> float:
        """|reference(seed) - reference(seed+1)| on the metric: training's own noise."""
        seeds = int(self.ctx.options.get("regularize_seeds", 2))
        self.loss_spread = 0.0
        if seeds < 2 or not self._affordable(1.0):
            return 0.0
        other = self._train("reference", "second seed", self.base, seed=self.ctx.seed + 1)
        self.loss_spread = abs(ref.val.value(LOSS) - other.val.value(LOSS))
        return abs(ref.val.value(self.metric) - other.val.value(self.metric))

    def _compare(self, row: Row) -> Row:
        assert row.run is not None
        new, ref = row.run.val, self.ref.val
        row.val = dict(new.metrics)
        row.gain = self.metric.gain(new.value(self.metric), ref.value(self.metric))
        row.floor = noise_floor(self.metric, new, ref, self.spread)
        row.verdict = verdict(row.gain, row.floor)
        if self.metric.name != "loss":
            # Accuracy moves in steps of 1/n_val; the loss sees smaller, real improvements.
            row.loss_gain = LOSS.gain(new.metrics["loss"], ref.metrics["loss"])
            row.loss_floor = noise_floor(LOSS, new, ref, self.loss_spread)
            if row.verdict == "within noise" and row.loss_gain > row.loss_floor:
                row.verdict = HELPED_LOSS
        if row.run.cut_short:
            row.note = "cut short by the budget"
        elif (_helped(row) and row.rung != "early stopping"
              and row.run.train_loss < FITS_BETTER * self.ref.train_loss):
            row.note = ("training loss fell too: part of the gain is better fitting, "
                        "not regularisation")
        return row

    def _rung(self, name: str, setting: str, settings: Settings | str, cost: float) -> Row:
        if isinstance(settings, str):
            return Row(name, setting, None, verdict="not applicable", note=settings)
        if not self._affordable(cost):
            return Row(name, setting, None, note="skipped: budget")
        return self._compare(Row(name, setting, self._train(name, setting, settings)))

    def _early_stopping_row(self, ref: Run) -> Row:
        h = ref.history
        if h.best_state is None or h.best_epoch is None:
            return Row("early stopping", "", None, verdict="not applicable",
                       note="no validation loss recorded")
        setting = f"best epoch {h.best_epoch} of {len(h.epochs)}"
        if h.best_epoch == len(h.epochs):
            return Row("early stopping", setting, ref, 0.0, 0.0, "within noise",
                       note="validation loss still falling at the last epoch: nothing to stop",
                       val=dict(ref.val.metrics))
        model = knobs.rebuild(self.ctx, self.base, h.best_state)
        run = Run("early stopping", setting, self.base, h, score_model(self.ctx, model, "val"),
                  h.epochs[h.best_epoch - 1].train_loss, dict(h.best_state), h.seconds)
        return self._compare(Row("early stopping", setting, run))

    def _learning_curve(self, ref: Run) -> tuple[DataVerdict | None, list[Row]]:
        ctx = self.ctx
        fractions = sorted(float(f) for f in ctx.options.get("regularize_fractions", DATA_FRACTIONS)
                           if 0 < float(f) < 1)
        _, y = ctx.tensors("train")
        n = len(y)
        steps = ref.history.steps
        points: list[tuple[float, float]] = []
        rows = []
        for f in fractions:
            idx = stratified_subset(y, f, ctx.seed, ctx.task_type == "classification")
            setting = f"{f:.0%} of the training set ({len(idx)} samples), same steps"
            if not self._affordable(1.0):
                rows.append(Row("more data", setting, None, note="skipped: budget"))
                continue
            epochs = min(MAX_EPOCH_MULTIPLIER * self.base.epochs,  # type: ignore[operator]
                         math.ceil(self.base.epochs / f))  # type: ignore[operator]
            run = self._train("more data", setting, self.base, indices=idx, max_steps=steps,
                              epochs=epochs)
            best = run.best_epoch_val()
            rows.append(Row("more data", setting, run, verdict="see learning curve",
                            val=dict(best), note="best epoch"))
            points.append((len(idx), self._error(best)))
        if not points:
            return None, rows
        points.append((n, self._error(ref.best_epoch_val())))
        self.curve_points = points
        ns, errs = zip(*points, strict=True)
        noise = max(self.spread, 1.0 / len(ref.val.targets))
        return more_data_verdict(ns, errs, noise), rows

    def _error(self, val: dict[str, float]) -> float:
        if self.metric.name == "accuracy":
            return 1.0 - val.get("accuracy", math.nan)
        return val.get("loss", math.nan)

    def _knob_rungs(self) -> list[tuple[str, str, Settings | str, float]]:
        ctx, base = self.ctx, self.base
        rungs: list[tuple[str, str, Settings | str, float]] = []
        probe = ctx.make_optimizer(ctx.fresh_model())
        if knobs.supports_weight_decay(probe):
            current = knobs.current_weight_decay(probe)
            defaults = DECOUPLED_DECAYS if knobs.decoupled_weight_decay(probe) else COUPLED_DECAYS
            values = [float(v) for v in ctx.options.get("regularize_weight_decays", defaults)
                      if float(v) > current] or [10 * current]
            kind = "decoupled" if knobs.decoupled_weight_decay(probe) else "L2"
            rungs += [("weight decay", f"{v:g} ({kind})", base.with_(weight_decay=v), 1.0)
                      for v in values]
        else:
            rungs.append(("weight decay", "", f"{type(probe).__name__} has no weight_decay", 0))
        arg = knobs.dropout_arg(ctx)
        if arg:
            p0 = knobs.dropout_default(ctx)
            values = [float(p) for p in ctx.options.get("regularize_dropouts", DROPOUTS)
                      if float(p) > p0]
            rungs += [("dropout", f"{arg}={p:g}", base.with_(model_kwargs={arg: p}), 1.0)
                      for p in values]
        else:
            rungs.append(("dropout", "", "the model factory takes no dropout argument "
                          "(add one, or declare options['dropout_arg'])", 0))
        cap = knobs.capacity(ctx)
        if cap:
            name, default = cap
            value = knobs.smaller(default)
            rungs.append(("smaller model", f"{name}={value} (from {default})",
                          base.with_(model_kwargs={name: value}), 1.0))
        else:
            rungs.append(("smaller model", "", "no capacity_arg declared on the Experiment", 0))
        small = knobs.smaller_input(ctx)
        if small is not None:
            rungs.append(("smaller input", small.input_name or "declared transform",
                          base.with_(input_transform=small.input_transform,
                                     input_name=small.input_name,
                                     model_kwargs=small.model_kwargs), 1.0))
        else:
            rungs.append(("smaller input", "", "no options['smaller_input'] declared", 0))
        bs = ctx.experiment.batch_size
        div = int(ctx.options.get("regularize_batch_divisor", BATCH_DIVISOR))
        if bs // div >= 1 and div > 1:
            rungs.append(("smaller batch", f"batch_size={bs // div} (from {bs})",
                          base.with_(batch_size=bs // div), float(div)))
        else:
            rungs.append(("smaller batch", "", f"batch size {bs} is already minimal", 0))
        return rungs

    def _combined(self, helped: list[Row]) -> Row:
        settings = self.base
        parts = []
        for r in helped:
            assert r.run is not None
            s = r.run.settings
            settings = settings.with_(
                model_kwargs=s.model_kwargs,
                weight_decay=s.weight_decay if s.weight_decay is not None else settings.weight_decay,
                batch_size=s.batch_size or settings.batch_size,
                input_transform=s.input_transform or settings.input_transform,
                input_name=s.input_name or settings.input_name)
            parts.append(f"{r.rung} {r.setting}")
        cost = self.ctx.experiment.batch_size / (settings.batch_size or self.ctx.experiment.batch_size)
        return self._rung("combined", " + ".join(parts), settings, cost)

    def _dropout_bn(self, rows: list[Row]) -> list[Finding]:
        dropout_rows = [r for r in rows if r.rung == "dropout" and r.run is not None]
        if not dropout_rows:
            return []
        r = dropout_rows[-1]
        assert r.run is not None
        model, _ = knobs.build(self.ctx, r.run.settings)
        X, _ = self.ctx.tensors("train", limit=min(8, self.ctx.experiment.batch_size))
        try:
            pairs = dropout_before_batchnorm(model, X.to(self.ctx.device))
        except Exception:  # noqa: BLE001 - a model that cannot run 8 samples is seen elsewhere
            return []
        if not pairs:
            return []
        for row in dropout_rows:
            row.note = "dropout runs before batch norm"
        shown = ", ".join(f"`{d}` before `{b}`" for d, b in pairs[:4])
        return [self.finding(
            f"with {r.setting}, active dropout runs before batch normalisation ({shown}); "
            f"the rung's validation {self.metric.name} changed by {r.gain:+.3g} "
            f"(noise floor {r.floor:.2g})",
            {"pairs": pairs, "setting": r.setting, "gain": r.gain},
            code=DropoutWithBatchNorm.code, severity=Severity.WARNING)]

    # ---------------------------------------------------------- deciding
    def _choose(self, rows: list[Row]) -> Row:
        """The regularised model: the best rung that helped (or the combination), else the
        reference itself."""
        helped = [r for r in rows if _helped(r) and r.run is not None and r.rung != "more data"]
        if not helped:
            return rows[0]
        return max(helped, key=lambda r: (r.verdict == "helped", r.gain, _finite(r.loss_gain)))

    def _candidate(self, row: Row) -> dict[str, Any]:
        assert row.run is not None
        run = row.run
        model = knobs.rebuild(self.ctx, run.settings, run.state_dict)
        test = score_model(self.ctx, model, "test").metrics if self.ctx.has_split("test") else {}
        return {"name": row.rung if row.rung != "reference" else "unregularised reference",
                "setting": row.setting, "settings": run.settings,
                "describe": run.settings.describe(), "val": dict(run.val.metrics), "test": test,
                "train_loss": run.train_loss, "state_dict": run.state_dict}

    def _store(self, rows: list[Row], best: Row, curve: DataVerdict | None) -> None:
        ctx = self.ctx
        reference = self._candidate(rows[0])
        chosen = reference if best is rows[0] else self._candidate(best)
        ctx.state["regularize"] = {
            "metric": self.metric.name, "epochs": self.base.epochs,
            "reference": reference, "best": chosen,
            "helped": [r.rung for r in rows if _helped(r)],
            "rungs": [self._row_dict(r) for r in rows],
            "learning_curve": None if curve is None else {
                "n": curve.n, "error_now": curve.error_now, "error_2x": curve.error_2x,
                "floor": curve.floor, "helps": curve.helps,
                "points": [[int(a), float(b)] for a, b in self.curve_points]},
        }
        ctx.record("metric", self.metric.name)
        ctx.record("epochs", self.base.epochs)
        ctx.record("noise_seed_spread", self.spread)
        ctx.record("reference_val", reference["val"])
        ctx.record("reference_test", reference["test"])
        ctx.record("reference_train_loss", reference["train_loss"])
        ctx.record("regularised", {"rung": best.rung, "setting": best.setting,
                                   "val": chosen["val"], "test": chosen["test"]})
        if curve is not None:
            ctx.record("learning_curve", ctx.state["regularize"]["learning_curve"])

    def _row_dict(self, r: Row) -> dict[str, Any]:
        return {"rung": r.rung, "setting": r.setting, "verdict": r.verdict, "gain": r.gain,
                "noise_floor": r.floor, "loss_gain": r.loss_gain, "loss_noise_floor": r.loss_floor,
                "val": r.val, "note": r.note,
                "train_loss": r.run.train_loss if r.run else None,
                "seconds": round(r.run.seconds, 2) if r.run else None}

    # ---------------------------------------------------------- reporting
    def _report(self, rows: list[Row], curve: DataVerdict | None) -> None:
        m = self.metric.name
        ranked = [rows[0]] + sorted(
            (r for r in rows[1:] if r.run is not None and r.rung != "more data"),
            key=lambda r: (-r.gain, -_finite(r.loss_gain))) + [
                r for r in rows[1:] if r.run is None or r.rung == "more data"]
        table = []
        for r in ranked:
            table.append([r.rung, r.setting, _num(r.val.get(m)), _pm(r.gain, r.floor),
                          _num(r.val.get("loss")), _pm(r.loss_gain, r.loss_floor),
                          _num(r.run.train_loss if r.run else None), r.verdict, r.note])
        ctx = self.ctx
        cols = ["rung", "setting", f"val {m}", "gain (± noise floor)", "val loss",
                "loss gain (± floor)", "train loss", "verdict", "note"]
        if m == "loss":
            cols[5] = "—"
        ctx.add_table("The regularisation ladder, ranked", cols, table,
                      caption="each rung is one short run changing one thing; gain against the "
                              "reference (final weights); 'helped' means above the noise floor "
                              "(2 paired SE on validation, or the spread between two seeds)")
        self._plot_gains(ranked)
        if curve is not None:
            self._plot_curve(rows, curve)

    def _plot_gains(self, rows: list[Row]) -> None:
        shown = [r for r in rows[1:] if r.run is not None and r.rung != "more data"
                 and math.isfinite(r.gain)]
        if not shown:
            return
        fig, (ax,) = new_figure(width=6.5, height=0.45 * len(shown) + 1.2)
        labels = [f"{r.rung} {r.setting}"[:48] for r in shown]
        colors = [COLORS[2] if _helped(r) else COLORS[1] if r.verdict == "hurt"
                  else COLORS[5] for r in shown]
        ypos = np.arange(len(shown))[::-1]
        ax.barh(ypos, [r.gain for r in shown], color=colors,
                xerr=[r.floor if math.isfinite(r.floor) else 0 for r in shown],
                error_kw={"lw": 1, "capsize": 3})
        ax.set_yticks(ypos, labels, fontsize=8)
        ax.axvline(0, color="black", lw=0.8)
        ax.set(xlabel=f"gain in validation {self.metric.name} over the reference "
                      "(bars: noise floor)", title="What regularisation did")
        ax.grid(alpha=0.3, axis="x")
        self.ctx.add_figure("Regularisation ladder: gain per rung", fig)

    def _plot_curve(self, rows: list[Row], curve: DataVerdict) -> None:
        ns, errs = zip(*self.curve_points, strict=True)
        fig, (ax,) = new_figure()
        ax.plot(ns, errs, "o", color=COLORS[0], label="measured (best epoch)")
        if curve.law is not None:
            xs = np.geomspace(min(ns), 4 * curve.n, 60)
            ax.plot(xs, curve.law(xs) - curve.law(curve.n) + curve.error_now, "--",
                    color=COLORS[1], label=f"power law, b={curve.law.b:.2f}")
            ax.axvline(curve.n, color=COLORS[5], lw=0.8, ls=":")
            if curve.error_2x is not None:
                ax.plot([2 * curve.n], [curve.error_2x], "s", color=COLORS[1],
                        label="predicted at 2x data")
        ax.set_xscale("log")
        ticks = sorted({*(int(n) for n in ns), 2 * curve.n})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        what = "error (1 - accuracy)" if self.metric.name == "accuracy" else "loss"
        ax.set(xlabel="training samples", ylabel=f"validation {what}",
               title="Learning curve: would more data help?")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        self.ctx.add_figure("Learning curve over data fractions", fig)

    def _advice(self, rows: list[Row], best: Row, curve: DataVerdict | None) -> Finding:
        m = self.metric.name
        ref = self.ref
        ran = [r for r in rows[1:] if r.run is not None and r.rung != "more data"]
        helped = sorted((r for r in ran if _helped(r)), key=lambda r: (-r.gain, -r.loss_gain))
        hurt = [r for r in ran if r.verdict == "hurt"]
        gap = ref.val.metrics.get("loss", math.nan) - ref.train_loss
        val_loss = ("" if m == "loss"
                    else f", val loss {ref.val.metrics.get('loss', math.nan):.3g}")
        parts = [f"against the unregularised reference (validation {m} "
                 f"{ref.val.value(self.metric):.4g}, train loss {ref.train_loss:.3g}{val_loss}; "
                 f"seed-to-seed spread {self.spread:.2g})"]
        if helped:
            parts.append("helped: " + "; ".join(
                f"{r.rung} {r.setting} ({m} {r.gain:+.3g}"
                + (f", val loss {-r.loss_gain:+.3g}" if math.isfinite(r.loss_gain) else "") + ")"
                for r in helped))
        else:
            parts.append("no rung helped beyond the noise"
                         + (" (the model does not overfit much: the train/val loss gap is "
                            f"{gap:.3g})" if math.isfinite(gap) else ""))
        h = ref.history
        if h.best_epoch is not None and h.best_epoch == len(h.epochs):
            parts.insert(1, "the reference's validation loss was still falling at its last "
                            "epoch, so it underfits rather than overfits: train longer (or a "
                            "bigger model) before regularising")
        neutral = [r for r in ran if r.verdict == "within noise"]
        if neutral:
            parts.append("within noise: " + ", ".join(f"{r.rung} {r.setting} ({r.gain:+.2g})"
                                                      for r in neutral))
        if hurt:
            parts.append("hurt: " + ", ".join(f"{r.rung} {r.setting} ({r.gain:+.3g})" for r in hurt))
        if curve is not None:
            parts.append(curve.sentence("validation error" if m == "accuracy" else "validation loss"))
        message = "; ".join(parts)
        evidence = {"metric": m, "reference": ref.val.metrics, "seed_spread": self.spread,
                    "ranking": [{"rung": r.rung, "setting": r.setting, "gain": r.gain,
                                 "noise_floor": r.floor, "verdict": r.verdict} for r in ran],
                    "regularised": {"rung": best.rung, "setting": best.setting}}
        if curve is not None:
            evidence["more_data"] = {"helps": curve.helps, "error_now": curve.error_now,
                                     "error_2x": curve.error_2x, "floor": curve.floor}
        return self.finding(message, evidence)


def _num(value: Any, signed: bool = False) -> Any:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    v = float(value)
    return f"{v:+.4f}" if signed else round(v, 4)



def _pm(gain: float, floor: float) -> str:
    if not math.isfinite(gain):
        return "—"
    return f"{gain:+.4f} (±{floor:.4f})" if math.isfinite(floor) else f"{gain:+.4f}"


def _finite(x: float) -> float:
    return x if math.isfinite(x) else -math.inf


def _helped(row: Row) -> bool:
    return row.verdict.startswith("helped")
