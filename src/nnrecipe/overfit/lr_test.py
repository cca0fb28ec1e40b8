"""``lr-suggestion``: the learning-rate range test, on fresh models, with the user's step.

Options (``ctx.options`` / ``Experiment.options``): ``lr_sweeps`` (3), ``lr_sweep_steps``
(100), ``lr_start`` / ``lr_end`` (1e-7 / 10), ``lr_run_steps`` (the short runs' length:
the experiment's planned steps, capped at 100), ``lr_validate`` (True).

The suggestion is for the run the experiment plans (``epochs`` x batches per epoch, the
*horizon*): the short runs find the best rate for their own length (``short_rate``) and
``lr_range.horizon_rate`` carries it to the horizon, by progress matching when the short
runs' held-out loss bottomed out, by (run steps / steps)^0.5 while it was still falling;
when ``options["schedule"]`` decays the rate (cosine, one-cycle, step), the suggestion is
the schedule's peak (``res.reasons`` says which).

What it leaves in ``ctx.state["lr"]`` for the later stages (all plain numbers)::

    {"suggested": float, "low": float, "high": float,      # the rate for the experiment's
                                                           # horizon and its plausible range
     "confidence": "high" | "medium" | "low", "reasons": [str, ...],
     "method": "validated" | "sweep", "edge_lrs": [float per sweep], "spread_decades": float,
     "tried": {lr: held-out loss}, "noise": float,         # relative, run-to-run at the rate
     "short_rate": float,          # the best rate for the short runs' length (run_steps);
                                   # = suggested when the horizon is no longer than them
     "horizon_steps": int | None,  # the planned run's optimizer steps (None: unknown)
     "horizon_best_step": int | None,  # where short_rate's held-out loss bottomed out
     "horizon_regime": str | None, # how it was carried: "same length", "bottomed out",
                                   # "still falling" or "decaying schedule"
     "user_lr": float, "optimizer": "Adam", "batch_size": int,
     "grad_norms": [float, ...],   # total grad norm per step of the runs at short_rate
     "early_losses": [float, ...], # the first steps' losses at short_rate
     "sweep_spike": float}         # largest early rise of a sweep's loss below the suggestion
"""

from __future__ import annotations

import math
import time

import numpy as np
from matplotlib.ticker import NullFormatter

from nnrecipe.core import budget
from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check
from nnrecipe.overfit.advice import sweep_spike
from nnrecipe.overfit.lr_range import (
    DEFAULT_END_LR,
    DEFAULT_START_LR,
    DEFAULT_SWEEP_STEPS,
    ROBUST_HALF_WIDTH,
    LRSuggestion,
    find_lr,
    robust_scores,
    smooth_centered,
)
from nnrecipe.overfit.probes import ContextProbe
from nnrecipe.overfit.schedules import schedule_name
from nnrecipe.report.plots import COLORS, new_figure

EARLY_STEPS = 30  # losses kept from the run at the suggestion, for the warmup advice
# Share of the time left under `run --budget`: the stages after this one train for real.
BUDGET_SHARE = 0.15


def user_lr(ctx: Context) -> tuple[float, str]:
    """The rate and class name of the optimizer the experiment's factory builds."""
    opt = ctx.make_optimizer(ctx.fresh_model(seed=ctx.seed))
    return float(opt.param_groups[0].get("lr", math.nan)), type(opt).__name__


def compare_to_user(user: float, res: LRSuggestion) -> str:
    if not (math.isfinite(user) and math.isfinite(res.suggested)):
        return ""
    if res.low <= user <= res.high:
        return f"your optimizer's rate {user:.3g} is inside the plausible range"
    ratio = res.suggested / user
    word = "above" if ratio > 1 else "below"
    factor = ratio if ratio > 1 else 1 / ratio
    return f"the suggestion is {factor:.1f}x {word} your optimizer's rate {user:.3g}"


class LRRangeTest(Check):
    code = "lr-suggestion"
    stage = "overfit"
    severity = Severity.INFO
    title = "Learning-rate range test: a suggested rate, its plausible range and confidence"
    fix = ("Train first with a constant rate at the suggestion (or anywhere in the range; Adam "
           "at 3e-4 is the safe default when unsure), and add decay only at the end. With "
           "low confidence, compare a few rates in the range on real training runs.")
    order = 10
    min_train_samples = 2  # one to train on, one held out when there is no val split

    def applies(self, ctx: Context) -> str | None:
        return budget.skip_reason(ctx)

    def run(self, ctx: Context) -> list[Finding]:
        opts = ctx.options
        probe = ContextProbe(ctx, run_steps=opts.get("lr_run_steps"))
        probe.schedule = schedule_name(opts)  # type: ignore[attr-defined]
        allowance = budget.allowance(ctx, BUDGET_SHARE)
        deadline = None if allowance is None else time.monotonic() + allowance
        res = find_lr(probe, repeats=int(opts.get("lr_sweeps", 3)),
                      start_lr=float(opts.get("lr_start", DEFAULT_START_LR)),
                      end_lr=float(opts.get("lr_end", DEFAULT_END_LR)),
                      num_steps=int(opts.get("lr_sweep_steps", DEFAULT_SWEEP_STEPS)),
                      validate=bool(opts.get("lr_validate", True)),
                      out_of_time=None if deadline is None
                      else (lambda: time.monotonic() > deadline))
        lr0, opt_name = user_lr(ctx)
        at_best = [r for r in res.runs if r.lr == res.short_rate]
        state = res.to_state()
        state.update(user_lr=lr0, optimizer=opt_name, batch_size=ctx.experiment.batch_size,
                     run_steps=probe.run_steps,
                     grad_norms=[v for r in at_best for v in r.grad_norms],
                     early_losses=at_best[0].train_losses[:EARLY_STEPS] if at_best else [],
                     sweep_spike=max((sweep_spike(sw.lrs, sw.losses, res.suggested)
                                      for sw in res.sweeps), default=0.0))
        ctx.state["lr"] = state
        for k in ("suggested", "low", "high", "confidence", "spread_decades", "noise",
                  "method", "user_lr", "run_steps"):
            ctx.record(k, state[k])
        ctx.record("edge_lrs", res.edge_lrs)
        self._tables(ctx, res)
        self._plot(ctx, res)
        if not math.isfinite(res.suggested):
            return [self.finding(
                "the range test found no usable rate: " + "; ".join(res.reasons),
                {"edge_lrs": res.edge_lrs, "tried": state["tried"]},
                fix="Fix the errors of the skeleton stage first (a loss that never falls or "
                    "is non-finite at every rate means the step or the data is broken).")]
        msg = (f"suggested learning rate {res.suggested:.3g} for {opt_name} (plausible range "
               f"{res.low:.3g} to {res.high:.3g}, confidence {res.confidence}): "
               + "; ".join(res.reasons))
        cmp = compare_to_user(lr0, res)
        if cmp:
            msg += f". {cmp.capitalize()}"
        evidence = {k: state[k] for k in ("suggested", "low", "high", "confidence",
                                          "spread_decades", "noise", "method", "edge_lrs",
                                          "tried", "user_lr", "run_steps")}
        return [self.finding(msg, evidence)]

    def _tables(self, ctx: Context, res: LRSuggestion) -> None:
        rows = []
        for sw, st in zip(res.sweeps, res.stats, strict=True):
            rows.append([sw.seed, len(sw.losses), sw.stopped, f"{st.edge_lr:.3g}",
                         f"{st.steepest_lr:.3g}", round(st.initial_loss, 4),
                         round(st.min_loss, 4)])
        ctx.add_table("Learning-rate sweeps", ["seed", "steps", "stopped", "edge (min loss)",
                                               "steepest", "initial loss", "min loss"], rows,
                      caption="Each sweep raises the rate exponentially on a fresh model with "
                              "its own batch order; the edge is where the smoothed loss "
                              "bottoms out.")
        if res.tried:
            lrs = sorted(res.tried)
            scores = robust_scores(res.tried, lrs)
            rows = [[f"{lr:.3g}", round(res.tried[lr], 5) if math.isfinite(res.tried[lr])
                     else "diverged", round(float(s), 5),
                     "suggested" if lr == res.suggested else
                     ("in range" if res.low <= lr <= res.high else "")]
                    for lr, s in zip(lrs, scores, strict=True)]
            reruns = sorted({r.lr for r in res.runs if r.seed != res.runs[0].seed})
            cap = (f"Short runs of {len(res.runs[0].train_losses)} steps at a constant rate "
                   "from the same initialisation; held-out loss (validation split, or 20% of "
                   "train held out). The score averages the loss over "
                   f"+-{ROBUST_HALF_WIDTH:g} decades around each rate, so a rate next to a "
                   "cliff is not chosen.")
            if reruns:
                cap += (f" Re-run with another seed (loss = mean of both): "
                        f"{', '.join(f'{lr:.3g}' for lr in reruns)}; run-to-run noise "
                        f"{res.noise:.1%}.")
            ctx.add_table("Candidate rates, validated", ["lr", "held-out loss", "score",
                                                          ""], rows, caption=cap)

    def _plot(self, ctx: Context, res: LRSuggestion) -> None:
        fig, axes = new_figure(width=10.0, height=3.6, ncols=2 if res.tried else 1)
        ax = axes[0]
        for i, sw in enumerate(res.sweeps):
            n = len(smooth_centered(sw.losses))
            color = COLORS[i % len(COLORS)]
            ax.plot(sw.lrs[:n], sw.losses[:n], color=color, alpha=0.25, lw=0.8)
            ax.plot(sw.lrs[:n], smooth_centered(sw.losses), color=color, lw=1.5,
                    label=f"sweep {i + 1}")
        finite = [v for sw in res.sweeps for v in sw.losses if math.isfinite(v)]
        if finite:
            lo, hi = np.percentile(finite, [0, 95])
            ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.1 * (hi - lo))
        ax.set(xscale="log", xlabel="learning rate", ylabel="training loss",
               title="loss while the rate rises")
        for a in axes:
            self._mark(a, res)
        ax.legend(fontsize=7)
        if res.tried:
            ax2 = axes[1]
            lrs = sorted(lr for lr, v in res.tried.items() if math.isfinite(v))
            ax2.plot(lrs, [res.tried[lr] for lr in lrs], "o-", color=COLORS[0],
                     label="held-out loss, short run")
            ax2.set(xscale="log", xlabel="learning rate", ylabel="held-out loss",
                    title="candidate rates, validated")
            ax2.xaxis.set_minor_formatter(NullFormatter())  # a decade or two: labels collide
            ax2.legend(fontsize=7)
        ctx.add_figure("Learning-rate range test", fig,
                       caption=f"Suggested rate {res.suggested:.3g} (dashed) and the plausible "
                               f"range {res.low:.3g}-{res.high:.3g} (shaded).")

    @staticmethod
    def _mark(ax: object, res: LRSuggestion) -> None:
        if math.isfinite(res.suggested):
            ax.axvline(res.suggested, color=COLORS[1], ls="--", lw=1.2,  # type: ignore[attr-defined]
                       label=f"suggested {res.suggested:.2g}")
        if math.isfinite(res.low) and math.isfinite(res.high) and res.high > res.low:
            ax.axvspan(res.low, res.high, color=COLORS[2], alpha=0.12,  # type: ignore[attr-defined]
                       label="plausible range")
        ax.grid(alpha=0.3)  # type: ignore[attr-defined]
