"""``tuning-advice``: hyper-parameter search with Optuna, hopeless trials pruned.

Each trial trains a fresh model (seeded by the trial number) for ``tune_epochs`` (default:
the experiment's epochs) with the trial's settings (:mod:`.space`), reports the validation
objective after every epoch, and is stopped when the pruner (Optuna's ``PercentilePruner``:
in the worst quarter of the complete trials at the same epoch, after a third of the epochs
and 3 complete trials) calls it hopeless. The objective is the validation loss of the best epoch
(``options["tune_metric"] = "accuracy"`` maximises accuracy instead); the best epoch's weights
are the trial's model.

The study lives in a storage that resumes and can be shared (:mod:`.storage`); ``tune_trials``
is the study's total (complete + pruned + failed), so a rerun after an interruption only runs
what is missing, and N workers on one study stop together at the total (one may finish a
trial already under way; two workers starting a fresh study at the same moment may both
enqueue the experiment's own settings, one wasted trial).

Options: ``tune_trials`` (default 8; ``nnrecipe tune --trials``), ``tune_sampler`` ("tpe" |
"random"), ``tune_storage``, ``tune_study_name``, ``tune_epochs``, ``tune_metric``,
``budget_s`` (the search gets 80% of the time left when it starts).

``ctx.state["tune"]`` afterwards::

    {"study_name", "storage", "sampler", "metric", "direction",
     "best": {"number", "value", "params", "val": {...}, "test": {...} (if its model is here)},
     "top": [{"number", "value", "params", "settings": Settings, "val": {...},
              "state_dict": {...}}, ...]   # this process's best trials, best first, <= 5
     "counts": {"complete", "pruned", "failed", "running"}}
"""

from __future__ import annotations

import heapq
import math
import os
import socket
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import TrialState

from nnrecipe.core import budget
from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.fit import Callback, EpochRecord, FitHistory, fit
from nnrecipe.core.registry import Check
from nnrecipe.regularize import knobs
from nnrecipe.regularize.knobs import Settings, settings_from_overrides
from nnrecipe.report.plots import COLORS, bar_plot, line_plot, new_figure
from nnrecipe.tune.samplers import WHY, make_sampler
from nnrecipe.tune.space import SearchSpace, search_space
from nnrecipe.tune.storage import open_storage, study_name

DEFAULT_TRIALS = 8  # small: `nnrecipe run`/the demo must finish in minutes; --trials for more
BUDGET_SHARE = 0.8  # of the time left when the search starts; the ensemble follows
TOP_K = 5  # models kept for the ensemble: the recipe's limit
PRUNER_STARTUP = 3  # complete trials before anything is pruned
# Prune only the hopeless: a trial whose best validation value so far is worse than the 75th
# percentile of the others' at the same epoch (the worst quarter). The median pruner stops
# half of all trials; with the few trials a small budget allows, the median of 3-5 curves is
# a noisy bar, and on the demo it stopped 5 of 8 trials including ones at 0.06 val loss
# where the user's own settings finish at 0.073.
PRUNE_PERCENTILE = 75.0
EDGE = 0.05  # a best value within 5% (in log space) of a range's end is "at the edge"
# fANOVA fits a random forest from the parameters to the objective; below ~10 complete trials
# per searched parameter (the usual rule of thumb for a regression's observations per
# predictor: reasoning) its ranking rests on a handful of points and more trials may reorder
# it, so the advice says so.
IMPORTANCE_TRIALS_PER_PARAM = 10
OFF_AT_BOTTOM = ("decay", "dropout")
# What counts towards --trials: a failed trial (an error, or Ctrl-C) is retried on resume.
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
WORKER = f"{socket.gethostname()}:{os.getpid()}"  # which worker ran a trial (shared studies)


@contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna logs every trial to stderr and warns about experimental features; the library
    never prints, so both are silenced for the search and restored after."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


class Reporter(Callback):
    """Reports the validation objective to Optuna after each epoch; stops a pruned trial."""

    def __init__(self, trial: optuna.Trial, key: str) -> None:
        self.trial, self.key = trial, key
        self.pruned_at: int | None = None

    def on_epoch_end(self, record: EpochRecord, history: FitHistory, model: torch.nn.Module
                     ) -> str | None:
        value = record.val.get(self.key)
        if value is None or not math.isfinite(value):
            return None
        self.trial.report(float(value), record.epoch)
        if self.trial.should_prune():
            self.pruned_at = record.epoch
            return f"pruned at epoch {record.epoch}"
        return None


@dataclass
class Kept:
    number: int
    value: float
    params: dict[str, Any]
    settings: Settings
    val: dict[str, float]
    state_dict: dict[str, torch.Tensor]


class TopModels:
    """The best ``k`` trained models of this process (by objective), weights on CPU."""

    def __init__(self, k: int, maximize: bool) -> None:
        self.k, self.sign = k, (1.0 if maximize else -1.0)
        self._heap: list[tuple[float, int, Kept]] = []

    def offer(self, kept: Kept) -> None:
        item = (self.sign * kept.value, -kept.number, kept)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, item)
        elif item[:2] > self._heap[0][:2]:
            heapq.heapreplace(self._heap, item)

    def best_first(self) -> list[Kept]:
        return [k for *_, k in sorted(self._heap, key=lambda t: t[:2], reverse=True)]


class Objective:
    def __init__(self, ctx: Context, space: SearchSpace, epochs: int, key: str,
                 keeper: TopModels, deadline: float | None) -> None:
        self.ctx, self.space, self.epochs, self.key = ctx, space, epochs, key
        self.keeper, self.deadline = keeper, deadline
        self.seconds: list[float] = []

    def time_left(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def settings_of(self, trial: Any) -> Settings:
        settings = settings_from_overrides(dict(self.space.fn(trial)))
        if settings.epochs is None:
            settings.epochs = self.epochs
        return settings

    def train(self, trial: Any, settings: Settings, callbacks: list[Callback]
              ) -> tuple[torch.nn.Module, FitHistory]:
        """One trial's training run: seeded by the trial number, so it can be reproduced."""
        model, optimizer = knobs.build(self.ctx, settings, seed=self.ctx.seed + trial.number)
        left = self.time_left()
        history = fit(self.ctx, model, optimizer=optimizer, epochs=settings.epochs,
                      batch_size=settings.batch_size, scheduler=knobs.scheduler_factory(self.ctx),
                      callbacks=callbacks, restore_best=True,
                      time_budget_s=None if left is None else max(left, budget.MIN_USEFUL_S),
                      description=f"tune: trial {trial.number}")
        return model, history

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", WORKER)
        try:
            settings = self.settings_of(trial)
            reporter = Reporter(trial, self.key)
            model, history = self.train(trial, settings, [reporter])
        except (optuna.TrialPruned, KeyboardInterrupt):
            raise
        except Exception as e:
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            raise
        self.seconds.append(history.seconds)
        trial.set_user_attr("train_loss", _clean(history.train_losses()))
        trial.set_user_attr("val_loss", _clean(history.val_losses()))
        trial.set_user_attr(f"val_{self.key}", _clean(history.val_metric(self.key)))
        trial.set_user_attr("epochs", len(history.epochs))
        trial.set_user_attr("seconds", round(history.seconds, 2))
        trial.set_user_attr("stopped", history.stopped_reason)
        if reporter.pruned_at is not None:
            raise optuna.TrialPruned(f"pruned at epoch {reporter.pruned_at}")
        if history.best_epoch is None:
            trial.set_user_attr("error", f"no finite validation loss ({history.stopped_reason})")
            return math.nan  # Optuna records a failed trial
        val = history.epochs[history.best_epoch - 1].val
        trial.set_user_attr("val", _clean(val))
        value = float(val.get(self.key, math.nan))
        if math.isfinite(value):
            self.keeper.offer(Kept(trial.number, value, dict(trial.params), settings, dict(val),
                                   {k: v.detach().to("cpu", copy=True)
                                    for k, v in model.state_dict().items()}))
        return value

    def stop_when_out_of_time(self, study: optuna.Study, trial: Any) -> None:
        left = self.time_left()
        if left is not None and self.seconds and left < float(np.median(self.seconds)):
            study.stop()


@dataclass
class Search:
    """One run of the search: how it was set up, and whether Ctrl-C cut it short."""

    name: str
    where: str
    sampler: str
    key: str
    maximize: bool
    epochs: int
    n_trials: int
    space: SearchSpace
    objective: Objective
    keeper: TopModels
    before: int = 0
    interrupted: bool = False


def _clean(values: Any) -> Any:
    if isinstance(values, dict):
        return {k: _clean(v) for k, v in values.items()}
    if isinstance(values, list):
        return [_clean(v) for v in values]
    if isinstance(values, float) and not math.isfinite(values):
        return None
    return values


def at_edge(trial: optuna.trial.FrozenTrial) -> list[str]:
    """Float/int parameters whose best value sits at an end of their range."""
    out = []
    for name, dist in trial.distributions.items():
        low, high = getattr(dist, "low", None), getattr(dist, "high", None)
        if low is None or high is None or high <= low or name not in trial.params:
            continue
        v = float(trial.params[name])
        if getattr(dist, "log", False):
            pos = (math.log(v) - math.log(low)) / (math.log(high) - math.log(low))
        else:
            pos = (v - low) / (high - low)
        if pos < EDGE and any(w in name for w in OFF_AT_BOTTOM):
            continue  # the bottom of a decay or dropout range means "off", not "go lower"
        if pos < EDGE or pos > 1 - EDGE:
            out.append(f"{name}={v:.3g} ({'bottom' if pos < EDGE else 'top'} of {low:g}..{high:g})")
    return out


class HyperparameterSearch(Check):
    code = "tuning-advice"
    stage = "tune"
    severity = Severity.INFO
    title = "Hyper-parameter search (Optuna: TPE or random, hopeless trials pruned)"
    fix = ("Adopt the best trial's settings; where a best value sits at the edge of its range, "
           "widen the range and search again (`nnrecipe tune --trials N`, resumable).")
    order = 10

    def applies(self, ctx: Context) -> str | None:
        if not ctx.has_split("val"):
            return "no validation split: trials are compared on validation data"
        return budget.skip_reason(ctx)

    def run(self, ctx: Context) -> list[Finding]:
        n_trials = int(ctx.options.get("tune_trials") or DEFAULT_TRIALS)
        epochs = int(ctx.options.get("tune_epochs") or ctx.experiment.epochs)
        key = str(ctx.options.get("tune_metric") or "loss")
        storage, where = open_storage(ctx)
        allowance = budget.allowance(ctx, BUDGET_SHARE)
        space = search_space(ctx)
        keeper = TopModels(TOP_K, maximize=key != "loss")
        run = Search(study_name(ctx), where, str(ctx.options.get("tune_sampler") or "tpe").lower(),
                     key, key != "loss", epochs, n_trials, space,
                     Objective(ctx, space, epochs, key, keeper,
                               None if allowance is None else time.monotonic() + allowance),
                     keeper)
        with quiet_optuna():
            study = optuna.create_study(
                storage=storage, study_name=run.name, load_if_exists=True,
                direction="maximize" if run.maximize else "minimize",
                sampler=make_sampler(run.sampler, ctx.seed, n_trials),
                pruner=optuna.pruners.PercentilePruner(
                    PRUNE_PERCENTILE, n_startup_trials=PRUNER_STARTUP,
                    n_warmup_steps=max(1, epochs // 3)))
            if getattr(storage, "is_heartbeat_enabled", lambda: False)():
                # trials of workers that died (no heartbeat for the grace period) are marked
                # failed and queued again now, even if this process runs no trial of its own
                optuna.storages.fail_stale_trials(study)
            run.before = len(study.get_trials(deepcopy=False, states=FINISHED))
            if not study.get_trials(deepcopy=False):
                for params in space.starts:
                    study.enqueue_trial(params, skip_if_exists=True)
            to_run = max(0, n_trials - run.before)
            if to_run:
                try:
                    study.optimize(run.objective, n_trials=to_run, timeout=allowance,
                                   catch=(Exception,), gc_after_trial=False,
                                   callbacks=[optuna.study.MaxTrialsCallback(n_trials, FINISHED),
                                              run.objective.stop_when_out_of_time])
                except KeyboardInterrupt:
                    # Ctrl-C: the finished trials are in the storage (a rerun resumes) and
                    # are reported below; the interrupt is raised again at the end.
                    run.interrupted = True
            trials = study.get_trials(deepcopy=False)
        findings = self._report(ctx, study, trials, run)
        if run.interrupted:
            raise KeyboardInterrupt
        return findings

    def _report(self, ctx: Context, study: optuna.Study, trials: list[Any], run: Search
                ) -> list[Finding]:
        name, where, key, maximize = run.name, run.where, run.key, run.maximize
        epochs, before = run.epochs, run.before
        if run.interrupted:
            ctx.record("interrupted", "Ctrl-C: the finished trials are kept in the study; "
                                      "rerun with the same --out/--storage to resume")
        ctx.record("study", name)
        ctx.record("storage", where)
        ctx.record("sampler", WHY.get(run.sampler, run.sampler))
        ctx.record("pruner", f"PercentilePruner({PRUNE_PERCENTILE:g}, n_startup_trials="
                             f"{PRUNER_STARTUP}, n_warmup_steps={max(1, epochs // 3)}): the "
                             "worst quarter at each epoch is stopped")
        ctx.record("objective", f"validation {key} of the best epoch "
                                f"({'maximise' if maximize else 'minimise'})")
        ctx.record("trials_target", run.n_trials)
        ctx.record("trials_before_this_run", before)
        ctx.record("epochs_per_trial", epochs)
        counts = {s.name.lower(): sum(t.state == s for t in trials)
                  for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                            TrialState.RUNNING)}
        waiting = sum(t.state == TrialState.WAITING for t in trials)
        if waiting:
            counts["waiting"] = waiting
        ctx.record("counts", counts)
        self._space_table(ctx, run.space)
        complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
                    and math.isfinite(t.value)]
        if not complete:
            ctx.state["tune"] = {"study_name": name, "storage": where, "sampler": run.sampler,
                                 "metric": key, "top": [], "best": None, "counts": counts}
            errors = sorted({str(t.user_attrs.get("error")) for t in trials
                             if t.user_attrs.get("error")})
            return [self.finding(
                f"no trial completed ({counts}); " + (f"errors: {'; '.join(errors[:3])}"
                                                      if errors else "nothing to compare"),
                {"counts": counts, "errors": errors[:5]}, severity=Severity.WARNING,
                fix="Read the errors; a declared search space must return overrides the "
                    "model factory and optimizer accept.")]
        best = max(complete, key=lambda t: t.value if maximize else -t.value)  # type: ignore[operator]
        reproduced = ([] if run.interrupted
                      else self._reproduce(ctx, run.objective, run.keeper, complete, maximize))
        ctx.record("reproduced_trials", reproduced)
        kept = run.keeper.best_first()
        best_here = next((k for k in kept if k.number == best.number), None)
        test = {}
        if best_here is not None and ctx.has_split("test"):
            test = ctx.evaluate(knobs.rebuild(ctx, best_here.settings, best_here.state_dict),
                                "test")
        ctx.state["tune"] = {
            "study_name": name, "storage": where, "sampler": run.sampler, "metric": key,
            "direction": "maximize" if maximize else "minimize", "counts": counts,
            "best": {"number": best.number, "value": best.value, "params": dict(best.params),
                     "val": dict(best.user_attrs.get("val") or {}), "test": test,
                     "here": best_here is not None},
            "top": [{"number": k.number, "value": k.value, "params": k.params,
                     "settings": k.settings, "val": k.val, "state_dict": k.state_dict}
                    for k in kept],
        }
        ctx.record("best_trial", best.number)
        ctx.record("best_params", dict(best.params))
        ctx.record("best_value", best.value)
        ctx.record("best_val", best.user_attrs.get("val"))
        if test:
            ctx.record("best_test", test)
        rows = [[k, _fmt(v)] for k, v in best.params.items()]
        rows += [[f"validation {m}", _fmt(v)] for m, v in (best.user_attrs.get("val") or {}).items()]
        rows += [[f"test {m}", _fmt(v)] for m, v in test.items()]
        rows += [["epochs run", best.user_attrs.get("epochs", "—")],
                 ["worker", best.user_attrs.get("worker", "—")]]
        ctx.add_table(f"Best trial: {best.number}", ["setting", "value"], rows)
        self._trials_table(ctx, trials, key)
        self._workers_table(ctx, trials)
        self._plot_history(ctx, trials, key, maximize)
        importances = self._importances(ctx, study, complete)
        self._plot_best(ctx, best, key)
        return [self._advice(ctx, trials, complete, best, key, maximize, importances, before)]

    def _reproduce(self, ctx: Context, objective: Objective, keeper: TopModels,
                   complete: list[Any], maximize: bool) -> list[int]:
        """Retrain the study's best trials whose models are not in this process (a resumed
        study, or other workers'), from their parameters and seed, while time allows."""
        if not ctx.options.get("tune_reproduce", True):
            return []
        ranked = sorted(complete, key=lambda t: -t.value if maximize else t.value)[:TOP_K]
        have = {k.number for k in keeper.best_first()}
        done = []
        for t in ranked:
            if t.number in have:
                continue
            left = objective.time_left()
            if left is not None and objective.seconds and left < float(np.median(objective.seconds)):
                break
            with quiet_optuna():
                fixed = optuna.trial.FixedTrial(dict(t.params), number=t.number)
                settings = objective.settings_of(fixed)
            model, history = objective.train(fixed, settings, [])
            if history.best_epoch is None:
                continue
            val = history.epochs[history.best_epoch - 1].val
            keeper.offer(Kept(t.number, float(t.value), dict(t.params), settings, dict(val),
                              {k: v.detach().to("cpu", copy=True)
                               for k, v in model.state_dict().items()}))
            done.append(t.number)
        return done

    # ------------------------------------------------------------ report
    def _space_table(self, ctx: Context, space: SearchSpace) -> None:
        ctx.add_table("Search space", ["parameter", "range", "why"], space.description,
                      caption="the experiment's own" if space.declared else
                      "the default; declare Experiment.search_space to change it")

    def _workers_table(self, ctx: Context, trials: list[Any]) -> None:
        """Who ran what: one row per worker (host:pid) that started a trial of this study."""
        per: dict[str, dict[str, int]] = {}
        for t in trials:
            worker = t.user_attrs.get("worker")
            if worker is None or t.state == TrialState.WAITING:
                continue
            row = per.setdefault(str(worker), {"complete": 0, "pruned": 0, "fail": 0,
                                               "running": 0})
            key = t.state.name.lower()
            if key in row:
                row[key] += 1
        ctx.record("workers", per)
        if len(per) > 1 or any(w != WORKER for w in per):
            ctx.add_table("Workers", ["worker (host:pid)", "complete", "pruned", "failed",
                                      "running"],
                          [[w + (" (this process)" if w == WORKER else ""), *r.values()]
                           for w, r in sorted(per.items())],
                          caption="every process that ran trials of this study")

    def _trials_table(self, ctx: Context, trials: list[Any], key: str) -> None:
        rows = []
        for t in sorted(trials, key=lambda t: t.number):
            note = t.user_attrs.get("error") or t.user_attrs.get("stopped") or ""
            if note == "completed":
                note = ""
            if t.state == TrialState.FAIL and not note and "worker" in t.user_attrs:
                note = "its worker stopped beating (killed or lost); queued again"
            retried = t.system_attrs.get("failed_trial")
            if retried is not None:
                note = f"retry of trial {retried}" + (f"; {note}" if note else "")
            value = t.value if t.value is not None else (
                t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None)
            rows.append([t.number, t.state.name.lower(),
                         round(value, 4) if isinstance(value, float) and math.isfinite(value) else "—",
                         ", ".join(f"{k}={_fmt(v)}" for k, v in t.params.items()),
                         t.user_attrs.get("epochs", "—"), t.user_attrs.get("seconds", "—"), note,
                         t.user_attrs.get("worker", "—")])
        ctx.add_table("Trials", ["trial", "state", f"val {key}", "parameters", "epochs",
                                 "seconds", "note", "worker"], rows,
                      caption="pruned trials show their last reported value")

    def _plot_history(self, ctx: Context, trials: list[Any], key: str, maximize: bool) -> None:
        fig, (ax,) = new_figure()
        done = sorted((t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
                       and math.isfinite(t.value)), key=lambda t: t.number)
        pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
        ax.plot([t.number for t in done], [t.value for t in done], "o", color=COLORS[0],
                label="complete")
        if pruned:
            ax.plot([t.number for t in pruned],
                    [t.intermediate_values[max(t.intermediate_values)] for t in pruned], "x",
                    color=COLORS[1], label="pruned (last value)")
        best, xs, ys = None, [], []
        for t in done:
            if best is None or (t.value > best if maximize else t.value < best):
                best = t.value
            xs.append(t.number)
            ys.append(best)
        ax.step(xs, ys, where="post", color=COLORS[2], label="best so far")
        ax.set(xlabel="trial", ylabel=f"validation {key}", title="Optimisation history")
        if not maximize and all(v > 0 for v in ys):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ctx.add_figure("Optimisation history", fig)

    def _importances(self, ctx: Context, study: optuna.Study, complete: list[Any]
                     ) -> dict[str, float]:
        if len(complete) < 3:
            ctx.record("importances", f"not computed: {len(complete)} complete trials (< 3)")
            return {}
        try:
            with quiet_optuna():
                imp = optuna.importance.get_param_importances(
                    study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=ctx.seed))
        except Exception as e:  # noqa: BLE001 - e.g. every trial used the same value
            ctx.record("importances", f"not computed: {type(e).__name__}: {e}")
            return {}
        imp = {k: float(v) for k, v in imp.items()}
        ctx.record("importances", imp)
        if imp:
            ctx.add_figure("Parameter importances", bar_plot(
                imp, title=f"parameter importances (fANOVA, {len(complete)} trials: rough)",
                ylabel="share of the objective's variance"))
        return imp

    def _plot_best(self, ctx: Context, best: Any, key: str) -> None:
        series = {"train loss": best.user_attrs.get("train_loss") or [],
                  "val loss": best.user_attrs.get("val_loss") or []}
        series = {k: [math.nan if v is None else v for v in s] for k, s in series.items() if s}
        if series:
            params = ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
            ctx.add_figure("Best trial's learning curves", line_plot(
                series, title=f"trial {best.number}: {params}"[:90], xlabel="epoch",
                ylabel="loss", x=list(range(1, 1 + max(len(s) for s in series.values())))))

    def _advice(self, ctx: Context, trials: list[Any], complete: list[Any], best: Any, key: str,
                maximize: bool, importances: dict[str, float], before: int) -> Finding:
        first = next((t for t in sorted(complete, key=lambda t: t.number)
                      if t.number == min(x.number for x in trials)), None)
        counts = {s: sum(t.state.name.lower() == s for t in trials)
                  for s in ("complete", "pruned", "fail")}
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
        val = best.user_attrs.get("val") or {}
        parts = [f"best of {len(trials)} trials ({counts['complete']} complete, "
                 f"{counts['pruned']} pruned, {counts['fail']} failed"
                 + (f"; {before} from an earlier run of this study" if before else "")
                 + f"): trial {best.number} with {params}: validation {key} {best.value:.4g}"
                 + (f" (accuracy {val['accuracy']:.4g})" if "accuracy" in val and key != "accuracy"
                    else "")]
        if first is not None and first.number != best.number and first.value is not None:
            parts.append(f"the experiment's own settings (trial {first.number}) scored "
                         f"{first.value:.4g}")
        edges = at_edge(best)
        if edges:
            parts.append("at the edge of the search range: " + ", ".join(edges)
                         + " (widen the range)")
        if importances:
            top = max(importances, key=importances.get)  # type: ignore[arg-type]
            rough = len(complete) < IMPORTANCE_TRIALS_PER_PARAM * len(importances)
            parts.append(f"most important: {top} ({importances[top]:.0%}"
                         + (f"; rough: fANOVA from only {len(complete)} complete trials for "
                            f"{len(importances)} parameters, more trials may reorder it)"
                            if rough else ")"))
        return self.finding("; ".join(parts), {
            "best_trial": best.number, "best_params": dict(best.params), "best_value": best.value,
            "counts": counts, "at_edge": edges, "importances": importances,
            "importances_rough": bool(importances) and len(complete)
            < IMPORTANCE_TRIALS_PER_PARAM * len(importances), "metric": key})


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
