"""The journey: where the recipe took the model, step by step, on validation and test.

The last check of ``nnrecipe run``. It trains nothing: it reads what the stages left in
``ctx.state`` and lays it out as one table and one figure —

    dumb baseline -> first model (train) -> overfit (unregularised) -> regularised -> tuned
    -> ensemble

with the validation and test metric (accuracy for classification, else the loss) and the
loss at each point. Steps whose stage did not run show as "not run". The rows also go to
``findings.json`` (``extra.journey``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding
from nnrecipe.core.registry import Check
from nnrecipe.regularize.outcomes import Metric, primary_metric
from nnrecipe.report.plots import COLORS, new_figure


def journey_points(state: dict[str, Any], metric: Metric) -> list[dict[str, Any]]:
    """One dict per recipe step: ``step``, ``what``, ``val`` and ``test`` metric dicts."""
    points: list[dict[str, Any]] = []

    def add(step: str, what: str, val: dict | None, test: dict | None) -> None:
        points.append({"step": step, "what": what, "val": dict(val or {}),
                       "test": dict(test or {}), "ran": val is not None})

    base = state.get("baselines") or {}
    kinds = [k for k in ("majority", "linear") if isinstance(base.get(k), dict)]
    if kinds:
        def score(k: str) -> float:
            v = base[k].get(metric.name, math.nan)
            return (v if metric.higher_is_better else -v) if math.isfinite(v) else -math.inf
        best = max(kinds, key=score)
        add("baseline", f"dumb baseline ({best}, on {base.get('split', 'val')})", base[best], None)
    else:
        add("baseline", "dumb baseline", None, None)
    train = state.get("train") or {}
    add("first model", "the train stage's run (best epoch)", train.get("val") if train else None,
        train.get("test"))
    reg = state.get("regularize") or {}
    ref, best_reg = reg.get("reference"), reg.get("best")
    add("overfit", "unregularised reference (final epoch)", ref.get("val") if ref else None,
        ref.get("test") if ref else None)
    if best_reg:
        what = ("regularised: " + (best_reg["name"] + (f" ({best_reg['setting']})"
                                                       if best_reg.get("setting") else ""))
                if best_reg["name"] != "unregularised reference"
                else "regularised: nothing helped beyond noise (the reference)")
        add("regularised", what, best_reg.get("val"), best_reg.get("test"))
    else:
        add("regularised", "regularised", None, None)
    tune = (state.get("tune") or {}).get("best")
    if tune:
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in tune.get("params", {}).items())
        add("tuned", f"tuned: trial {tune['number']} ({params})", tune.get("val"),
            tune.get("test") or None)
    else:
        add("tuned", "tuned", None, None)
    ens = state.get("ensemble")
    add("ensemble", f"ensemble of {ens['k']}" if ens else "ensemble",
        ens.get("val") if ens else None, ens.get("test") if ens else None)
    return points


class Journey(Check):
    name = "journey"
    stage = "ensemble"
    title = "The journey: baseline -> first model -> overfit -> regularised -> tuned -> ensemble"
    order = 90

    def run(self, ctx: Context) -> list[Finding]:
        metric = primary_metric(ctx)
        points = journey_points(ctx.state, metric)
        m = metric.name
        losses = m != "loss"  # for regression the metric is the loss: no second pair
        rows = [[p["step"], p["what"] if p["ran"] else f"{p['what']}: not run",
                 _r(p["val"].get(m)), _r(p["test"].get(m))]
                + ([_r(p["val"].get("loss")), _r(p["test"].get("loss"))] if losses else [])
                for p in points]
        ctx.add_table("The journey", ["step", "what", f"val {m}", f"test {m}"]
                      + (["val loss", "test loss"] if losses else []), rows,
                      caption="each point's numbers come from the stage that produced it")
        ctx.record("journey", [{"step": p["step"], "val": p["val"].get(m),
                                "test": p["test"].get(m)} for p in points])
        extra = ctx.state.setdefault("report_extra", {})
        extra["journey"] = {"metric": m, "points": [
            {k: v for k, v in p.items() if k != "ran"} for p in points]}
        ran = [p for p in points if p["ran"] and math.isfinite(p["val"].get(m, math.nan))]
        if len(ran) >= 2:
            self._plot(ctx, points, metric)
        return []

    def _plot(self, ctx: Context, points: list[dict[str, Any]], metric: Metric) -> None:
        m = metric.name
        fig, (ax,) = new_figure(width=7.0)
        xs = np.arange(len(points))
        for split, color, marker in (("val", COLORS[0], "o"), ("test", COLORS[1], "s")):
            ys = np.array([p[split].get(m, math.nan) for p in points], dtype=float)
            ok = np.isfinite(ys)
            if ok.any():
                ax.plot(xs[ok], ys[ok], marker + "-", color=color,
                        label="validation" if split == "val" else "test")
        ax.set_xticks(xs, [p["step"] for p in points], fontsize=8)
        ax.set(ylabel=m, title="The journey through the recipe")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ctx.add_figure("The journey", fig)


def _r(v: Any) -> Any:
    return "—" if v is None or not math.isfinite(float(v)) else round(float(v), 4)
