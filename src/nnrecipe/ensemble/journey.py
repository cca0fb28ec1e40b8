"""The journey: where the recipe took the model, step by step, on validation and test.

The last check of ``nnrecipe run``. It trains nothing: it reads what the stages left in
``ctx.state`` and lays it out as one table and one figure —

    dumb baseline -> first model (train) -> overfit (unregularised) -> regularised -> tuned
    -> ensemble

with the validation and test metric (accuracy for classification, else the loss) and the
loss at each point. Steps whose stage did not run show as "not run". The rows also go to
``findings.json`` (``extra.journey``).

``tuned-to-validation``: the search picks its best trial *by validation*, so the tuned model's
validation score is biased upwards (the best of N noisy scores). When validation rose through
tuning while the test metric fell, the search may have fit the validation set rather than the
task. Whether that is real is a question of noise: the test change is compared with the
binomial standard error of the two test accuracies (unpaired, so conservative: the same test
images make the two scores' errors correlated, and the paired error would be smaller). A fall
beyond :data:`Z_NOISE` standard errors is a warning; within the noise, an info that says so.
For a loss (regression) no standard error is recorded, so it is never more than an info.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnrecipe.core import data as data_mod
from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check
from nnrecipe.regularize.outcomes import Metric, primary_metric
from nnrecipe.report.plots import COLORS, legend_outside, new_figure

# A test fall counts as real beyond this many standard errors of the difference: the same
# two-sided ~5% rule the regularize stage uses for its comparisons (SE_MULTIPLIER there).
# On the demo the test accuracy fell 0.9833 -> 0.9778 (2 of 360 images) with a standard error
# of the difference of ~0.010: 0.5 SE, noise, so an info (measured).
Z_NOISE = 2.0


@dataclass(frozen=True)
class TunedVerdict:
    """Validation vs test change from the step before tuning to the tuned model."""

    before: str  # the step compared with ("regularised", "first model", ...)
    val_gain: float  # positive: better (accuracy up, or loss down)
    test_gain: float
    test_se: float  # standard error of the test difference (nan: unknown)
    n_test: int

    @property
    def fires(self) -> bool:
        return self.val_gain > 0 and self.test_gain < 0

    @property
    def beyond_noise(self) -> bool:
        return self.fires and math.isfinite(self.test_se) and -self.test_gain > Z_NOISE * self.test_se


def accuracy_se(p: float, n: int) -> float:
    """Binomial standard error of an accuracy ``p`` on ``n`` samples, with p shrunk towards
    1/2 by one success and one failure (so 100% on 360 images does not claim zero noise)."""
    if n <= 0 or not math.isfinite(p):
        return math.nan
    q = (p * n + 1) / (n + 2)
    return math.sqrt(q * (1 - q) / n)


def tuned_verdict(points: list[dict[str, Any]], metric: Metric, n_test: int
                  ) -> TunedVerdict | None:
    """Compare the tuned point with the last earlier point that has both val and test numbers
    (a pure function of the journey's numbers). None when there is nothing to compare."""
    m = metric.name
    steps = [p["step"] for p in points]
    if "tuned" not in steps:
        return None
    tuned = points[steps.index("tuned")]

    def both(p: dict[str, Any]) -> bool:
        return all(math.isfinite(float(p[s].get(m, math.nan))) for s in ("val", "test"))

    if not both(tuned):
        return None
    earlier = [p for p in points[:steps.index("tuned")] if p["step"] != "baseline" and both(p)]
    if not earlier:
        return None
    ref = earlier[-1]
    se = math.nan
    if m == "accuracy":
        se = math.hypot(accuracy_se(ref["test"][m], n_test), accuracy_se(tuned["test"][m], n_test))
    return TunedVerdict(before=ref["step"], val_gain=metric.gain(tuned["val"][m], ref["val"][m]),
                        test_gain=metric.gain(tuned["test"][m], ref["test"][m]),
                        test_se=se, n_test=n_test)


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
    code = "tuned-to-validation"
    severity = Severity.WARNING
    fix = ("Trust the test set over the search's best validation score: keep the model from "
           "before tuning (or the trial whose test score holds up), and re-validate the search "
           "on fresh data: a larger or second validation split, or k-fold cross-validation of "
           "the top trials. Fewer, wider trials overfit the validation set less than many "
           "narrow ones.")
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
        n_test = data_mod.dataset_len(ctx.dataset("test"), "test") if ctx.has_split("test") else 0
        verdict = tuned_verdict(points, metric, n_test)
        if verdict is None:
            return []
        ctx.record("tuned_vs_" + verdict.before.replace(" ", "_"), {
            "val_gain": verdict.val_gain, "test_gain": verdict.test_gain,
            "test_se": verdict.test_se, "n_test": n_test})
        return [self._tuned_finding(verdict, metric)] if verdict.fires else []

    def _tuned_finding(self, v: TunedVerdict, metric: Metric) -> Finding:
        m = metric.name
        sign = 1 if metric.higher_is_better else -1
        what = (f"through tuning, validation {m} improved by {abs(v.val_gain):.4g} while test "
                f"{m} got worse by {abs(v.test_gain):.4g} (the tuned model against the "
                f"{v.before} one)")
        evidence = {"compared_with": v.before, "val_change": sign * v.val_gain,
                    "test_change": sign * v.test_gain, "test_se": v.test_se, "n_test": v.n_test,
                    "z": Z_NOISE}
        if v.beyond_noise:
            return self.finding(
                f"{what}: {abs(v.test_gain) / v.test_se:.1f} standard errors of the "
                f"{v.n_test} test samples, beyond the noise ({Z_NOISE:g} SE). The search fit "
                "the validation set: its best trial's validation score is the best of many "
                "noisy scores. This overrides tuning-advice's 'adopt the best trial', which "
                "judged the trials on validation alone", evidence)
        noise = (f"within the noise of {v.n_test} test samples (standard error of the "
                 f"difference {v.test_se:.3g}; a real fall would exceed {Z_NOISE:g} SE)"
                 if math.isfinite(v.test_se) else
                 "with no standard error recorded for the loss, so this cannot be told from noise")
        return self.finding(
            f"{what}, {noise}. Not evidence that tuning hurt, nor that it helped: the best "
            "trial's validation score is the best of many noisy scores, so read the test "
            "column", evidence, severity=Severity.INFO)

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
        legend_outside(ax)
        ctx.add_figure("The journey", fig)


def _r(v: Any) -> Any:
    return "—" if v is None or not math.isfinite(float(v)) else round(float(v), 4)
