"""``ensemble-advice``: squeeze out the juice with an ensemble of up to 5 of the best models.

Members come from the tune stage (``ctx.state["tune"]["top"]``: its best trials' weights).
Without them (``tune`` not run, or fewer than 2 models) the regularize and train stages'
models are used, and what is still missing is trained here: more seeds of the best settings
known. Members are ordered by validation loss; the ensembles of the best 1, 2, ... k are
scored on validation, the size is chosen on validation, and the gain over the best single
model is measured on validation *and* test (the honest number, since the size was chosen on
validation). Predictions are averaged as probabilities (:mod:`.average`).

Options: ``ensemble_size`` (default and maximum 5, the recipe's limit), ``budget_s``.

``ctx.state["ensemble"]`` afterwards::

    {"k": int, "members": [names], "metric": "accuracy" | "loss",
     "val": {...}, "test": {...},                   # the chosen ensemble
     "single": {"name", "val": {...}, "test": {...}}, # the best single model
     "gain": {"val": float, "test": float | None}}  # in the metric, positive = better
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nnrecipe.core import budget
from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.fit import fit
from nnrecipe.core.registry import Check
from nnrecipe.ensemble.average import average_outputs
from nnrecipe.regularize import knobs
from nnrecipe.regularize.knobs import Settings
from nnrecipe.regularize.outcomes import (
    Metric,
    Scores,
    paired_se,
    primary_metric,
    score_model,
    score_outputs,
)
from nnrecipe.report.plots import COLORS, new_figure

MAX_MEMBERS = 5  # the recipe: "don't ensemble more than 5 models"
SE_MULTIPLIER = 2.0


@dataclass
class Member:
    name: str
    settings: Settings
    state_dict: dict[str, Any]
    val: Scores | None = None
    test: Scores | None = None


def gather(ctx: Context) -> list[Member]:
    """The trained models earlier stages left in ``ctx.state``, best source first."""
    members: list[Member] = []
    for t in (ctx.state.get("tune") or {}).get("top") or []:
        members.append(Member(f"tune trial {t['number']}", t["settings"], t["state_dict"]))
    if len(members) >= 2:
        return members
    reg = ctx.state.get("regularize") or {}
    for key in ("best", "reference"):
        c = reg.get(key)
        if c and c.get("state_dict") is not None and not any(
                m.state_dict is c["state_dict"] for m in members):
            members.append(Member(f"regularize: {c['name']}", c["settings"], c["state_dict"]))
    train = ctx.state.get("train") or {}
    if train.get("state_dict") is not None:
        members.append(Member("train stage model", Settings(), train["state_dict"]))
    return members


def best_settings(ctx: Context) -> Settings:
    top = (ctx.state.get("tune") or {}).get("top") or []
    if top:
        return top[0]["settings"]
    best = (ctx.state.get("regularize") or {}).get("best")
    if best:
        return best["settings"]
    return Settings()


class Ensemble(Check):
    code = "ensemble-advice"
    stage = "ensemble"
    severity = Severity.INFO
    title = "An ensemble of up to 5 of the best models, with its gain measured"
    fix = ("Ship the ensemble if its test gain is worth k times the inference cost; otherwise "
           "ship the best single model (or distil the ensemble into one).")
    order = 10

    def applies(self, ctx: Context) -> str | None:
        if not ctx.has_split("val"):
            return "no validation split: the ensemble size is chosen on validation data"
        return None

    def run(self, ctx: Context) -> list[Finding]:
        size = max(1, min(MAX_MEMBERS, int(ctx.options.get("ensemble_size") or MAX_MEMBERS)))
        metric = primary_metric(ctx)
        members = gather(ctx)[:size]
        trained = self._train_more(ctx, members, size)
        ctx.record("members_from_earlier_stages", len(members) - trained)
        ctx.record("members_trained_here", trained)
        if len(members) < 2:
            ctx.record("skipped", "fewer than 2 models (no time left to train more)")
            return []
        for m in members:
            model = knobs.rebuild(ctx, m.settings, m.state_dict)
            m.val = score_model(ctx, model, "val")
            m.test = score_model(ctx, model, "test") if ctx.has_split("test") else None
        members.sort(key=lambda m: m.val.metrics["loss"])  # type: ignore[union-attr]
        loss_fn = ctx.experiment.loss
        rows, ensembles = [], []
        for k in range(1, len(members) + 1):
            val = self._combine(ctx, loss_fn, [m.val for m in members[:k]], "val")  # type: ignore[misc]
            test = (self._combine(ctx, loss_fn, [m.test for m in members[:k]], "test")  # type: ignore[misc]
                    if members[0].test is not None else None)
            ensembles.append((val, test))
        single_val, single_test = ensembles[0]
        k_best = 1 + max(range(len(ensembles)), key=lambda i: (
            ensembles[i][0].value(metric) if metric.higher_is_better else -ensembles[i][0].value(metric),
            -ensembles[i][0].metrics["loss"], -i))
        for k, (val, test) in enumerate(ensembles, start=1):
            rows.append([k, ", ".join(m.name for m in members[:k]), _r(val.value(metric)),
                         _r(val.metrics["loss"]), _r(test.value(metric) if test else None),
                         _r(test.metrics["loss"] if test else None),
                         "chosen" if k == k_best else ""])
        ctx.add_table("Ensembles of the best k models (ordered by validation loss)",
                      ["k", "members", f"val {metric.name}", "val loss", f"test {metric.name}",
                       "test loss", ""], rows,
                      caption="predictions averaged as probabilities; k chosen on validation")
        self._plot(ctx, ensembles, metric, k_best)
        chosen_val, chosen_test = ensembles[k_best - 1]
        return [self._store_and_advise(ctx, metric, members, k_best, chosen_val, chosen_test,
                                       single_val, single_test)]

    def _combine(self, ctx: Context, loss_fn: Any, scores: list[Scores], split: str) -> Scores:
        out = average_outputs(loss_fn, [s.outputs for s in scores])
        return score_outputs(ctx, out, scores[0].targets, split)

    def _train_more(self, ctx: Context, members: list[Member], size: int) -> int:
        """Seeds of the best known settings until there are ``size`` members (or no time)."""
        settings = best_settings(ctx)
        trained = 0
        seconds: list[float] = []
        while len(members) < size:
            left = budget.time_left(ctx)
            if left is not None and (left < budget.MIN_USEFUL_S
                                     or (seconds and left < max(seconds))):
                break
            seed = ctx.seed + 1000 + trained
            model, optimizer = knobs.build(ctx, settings, seed=seed)
            h = fit(ctx, model, optimizer=optimizer, epochs=settings.epochs,
                    batch_size=settings.batch_size, scheduler=knobs.scheduler_factory(ctx),
                    time_budget_s=left, restore_best=True,
                    description=f"ensemble: member {len(members) + 1} (seed {seed})")
            seconds.append(h.seconds)
            members.append(Member(f"seed {seed}", settings,
                                  {k: v.detach().to("cpu", copy=True)
                                   for k, v in model.state_dict().items()}))
            trained += 1
        return trained

    def _plot(self, ctx: Context, ensembles: list[tuple[Scores, Scores | None]], metric: Metric,
              k_best: int) -> None:
        fig, (ax,) = new_figure()
        ks = list(range(1, len(ensembles) + 1))
        ax.plot(ks, [v.value(metric) for v, _ in ensembles], "o-", color=COLORS[0],
                label="validation")
        if ensembles[0][1] is not None:
            ax.plot(ks, [t.value(metric) for _, t in ensembles], "s--",  # type: ignore[union-attr]
                    color=COLORS[1], label="test")
        ax.axvline(k_best, color=COLORS[5], lw=0.8, ls=":", label=f"chosen k={k_best}")
        ax.set(xlabel="models in the ensemble (best first)", ylabel=metric.name,
               title="Ensemble size vs quality", xticks=ks)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ctx.add_figure("Ensemble size vs quality", fig)

    def _store_and_advise(self, ctx: Context, metric: Metric, members: list[Member], k: int,
                          val: Scores, test: Scores | None, single_val: Scores,
                          single_test: Scores | None) -> Finding:
        g_val = metric.gain(val.value(metric), single_val.value(metric))
        se_val = SE_MULTIPLIER * paired_se(metric, val, single_val)
        g_test = (metric.gain(test.value(metric), single_test.value(metric))
                  if test is not None and single_test is not None else None)
        se_test = (SE_MULTIPLIER * paired_se(metric, test, single_test)
                   if test is not None and single_test is not None else None)
        ctx.state["ensemble"] = {
            "k": k, "members": [m.name for m in members[:k]], "metric": metric.name,
            "val": dict(val.metrics), "test": dict(test.metrics) if test else {},
            "single": {"name": members[0].name, "val": dict(single_val.metrics),
                       "test": dict(single_test.metrics) if single_test else {}},
            "gain": {"val": g_val, "test": g_test}}
        ctx.record("k", k)
        ctx.record("members", [m.name for m in members[:k]])
        ctx.record("val", dict(val.metrics))
        ctx.record("test", dict(test.metrics) if test else None)
        ctx.record("gain_val", g_val)
        ctx.record("gain_test", g_test)
        m = metric.name
        msg = (f"an ensemble of {k} model{'s' if k > 1 else ''} (of {len(members)} tried) "
               f"vs the best single model ({members[0].name}): validation {m} "
               f"{single_val.value(metric):.4g} -> {val.value(metric):.4g} ({g_val:+.3g}, "
               f"noise ±{se_val:.2g})")
        if g_test is not None and test is not None and single_test is not None:
            msg += (f"; test {m} {single_test.value(metric):.4g} -> {test.value(metric):.4g} "
                    f"({g_test:+.3g}, noise ±{se_test:.2g})")
        honest = g_test if g_test is not None else g_val
        noise = se_test if se_test is not None else se_val
        if k == 1:
            msg += "; averaging did not beat the best model on validation: ship the single model"
        elif math.isfinite(noise) and honest > noise:
            msg += f"; a real gain, for {k}x the inference cost"
        else:
            msg += "; the gain is within the noise: probably not worth the inference cost"
        return self.finding(msg, {"k": k, "members": [mm.name for mm in members[:k]],
                                  "metric": m, "gain_val": g_val, "gain_test": g_test,
                                  "noise_val": se_val, "noise_test": se_test})


def _r(v: float | None) -> Any:
    return "—" if v is None or not math.isfinite(v) else round(float(v), 4)
