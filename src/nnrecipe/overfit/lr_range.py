"""The learning-rate range test: measure (sweeps, short runs) -> decide (pure functions).

A *sweep* raises the learning rate exponentially, one optimizer step per value, from
``start_lr`` to ``end_lr`` and stops once the (online, EMA-smoothed) loss has diverged. One
sweep is a noisy curve, and a rule read off it (steepest slope, the "valley", min/10) is a
guess; so :func:`find_lr` repeats the sweep with different seeds and batch orders, takes the
*edge* (the rate at which the smoothed loss bottoms out before diverging) from each, and then
*validates* a few candidate rates below the edge with short real training runs, choosing the
rate whose neighbourhood (+-0.15 decade) has the lowest held-out loss, after re-running the
two best with another seed (their mean counts; their differences measure the noise). The spread of the edges across sweeps and the shape of the
held-out losses around the winner give the confidence and the plausible range.

The measuring is done by a :class:`Probe` (fresh models from an experiment, or a user's model
whose state is saved and restored); everything else here is arithmetic on recorded numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

DEFAULT_START_LR = 1e-7
DEFAULT_END_LR = 10.0
# 100 steps over 8 decades (12 a decade) is the common default (fastai, torch-lr-finder); the
# divergence stop usually ends the sweep after 70-90 of them.
DEFAULT_SWEEP_STEPS = 100
# Stop once the EMA of the loss exceeds 4x its minimum (the usual rule): well past the edge,
# so the minimum of the curve is seen, yet before the loss explodes to inf.
DIVERGE_FACTOR = 4.0
EMA_BETA = 0.9  # ~10-step memory: only for the online stop; the analysis smooths centred
MIN_STEPS_BEFORE_STOP = 10
# Candidate rates are the edge times 10^-k/2, k = 1..3 (edge/3 .. edge/30). Measured on the
# benchmark tasks: the best constant rate for a few hundred steps lies 0-1.2 decades below the
# edge of a 100-step sweep (the sweep spends ~8 steps at each rate, training spends hundreds);
# when the best candidate sits at either end, up to MAX_EXTENSIONS more half-decade steps.
CANDIDATE_DECADES = (0.5, 1.0, 1.5)
MAX_EXTENSIONS = 2
# Half-width (decades) of the neighbourhood a rate is judged by. A rate right below one that
# diverges is risky (the cliff moves with the seed: on the digits CNN, 1.2e-2 is the best rate
# for one seed and unstable for another), but the best rate often *is* close to the cliff.
# Replaying the benchmark's recorded candidate losses: +-0.25 decade gave up 12% on digits by
# backing off too far, +-0.15 kept clear of diverging neighbours at a cost of <= 8% anywhere.
ROBUST_HALF_WIDTH = 0.15
MAX_REFINEMENTS = 2  # extra runs at the robust choice when it falls between rates tried
RERUN_TOP = 2  # the best rates re-run with a second seed
# More seeds for the best rates while the short runs' steps stay within this budget: with the
# three sweeps (~250 steps) the whole test then costs about 10 plain range tests (100 steps).
# It only buys seeds when runs are short (a 40-step horizon: up to 4 more each for the two
# best); 100-step runs use it up on the first pass.
RUN_STEP_BUDGET = 750
MAX_EXTRA_SEEDS = 4
TIE_FRACTION = 1e-3  # of the loss at init: held-out losses closer than this are ties
# A candidate is "as good as the best" when its held-out loss is within this fraction of the
# best, or within twice the run-to-run noise measured by re-running the best with another seed.
RANGE_TOLERANCE = 0.05
# Confidence: sweeps agreeing within half a decade are consistent; more than a decade apart,
# the curve is dominated by noise (batch order, init) and any single-sweep rule is a guess.
SPREAD_HIGH = 0.5
SPREAD_LOW = 1.0
# The horizon rule (horizon_rate) never moves the rate more than this many decades below the
# short runs' best: further out it is an extrapolation, and a rate 30x lower than any
# validated one is not suggested blind.
MAX_HORIZON_DECADES = 1.5
# The horizon rule has two regimes, told apart by the held-out curve of the short runs at
# their best rate. It *bottomed out*: its end is above its minimum by more than
# BOTTOM_MARGIN (relative) and the run-to-run noise; then a longer run overfits (or bounces)
# at that rate, and the rate is carried by progress matching (rate x steps). Otherwise it was
# *still falling*: a longer run keeps improving at that rate and the rate only needs to come
# down as far as the extra steps' noise asks: (run_steps / steps) ** STILL_FALLING_EXPONENT.
# Measured (benchmarks/lr_finder.py, README): on the digits CNN, still falling at 100 steps,
# the best constant rate for 340 steps is the 100-step best or 0.25 decade lower (1/steps put
# it 0.55 decade lower: 1.5x the grid's best loss); on the breast-cancer MLP, which bottoms
# out, progress matching was within 1.21x. 0.5 is the square-root law of a noise-limited
# run (loss ~ a/(rate steps) + c rate: the best rate ~ steps^-1/2).
BOTTOM_MARGIN = 0.02
STILL_FALLING_EXPONENT = 0.5
# When the experiment decays its rate over the run (a cosine, one-cycle or step schedule;
# options["schedule"]), the suggestion is the schedule's peak, and the rule above (made for
# a constant rate) does not apply: the decay itself takes the rate down where the longer run
# needs it. The peak is the short runs' best rate x (run_steps / steps) ** DECAYING_EXPONENT.
# Measured (benchmarks/lr_finder.py --cosine-grid, 4 tasks, finder seeds 0-2, 20 epochs,
# against a grid of cosine peaks): peak = the short runs' best rate 1.06 / 1.34 (median /
# worst); peak = the constant-rate rule's shifted rate 1.48 / 6.15 (seeds 3-5: 1.04 / 1.89
# vs 1.18 / 4.24). The best peak was at or above the short runs' best on every task, so the
# exponent is 0 (no shift); an upward shift (the GRU's best peak was 1.8e-2, its short runs
# picked 5.7e-3 on two new seeds: 1.89) is not measured.
DECAYING_SCHEDULES = ("cosine", "one-cycle", "step")
DECAYING_EXPONENT = 0.0


# --------------------------------------------------------------------------- measuring
@dataclass
class Sweep:
    """One exponential sweep: the rate, loss and total gradient norm of every step."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    stopped: str = "reached end_lr"
    seed: int = 0


@dataclass
class ShortRun:
    """A short training run at a constant rate: held-out loss (at its end) and what happened
    on the way; ``checkpoints`` are (steps done, held-out loss) pairs."""

    lr: float
    val_loss: float
    train_losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    seed: int = 0
    stopped: str = "completed"
    checkpoints: list[tuple[int, float]] = field(default_factory=list)


# Where a short run's held-out loss is measured, as fractions of its length: dense enough to
# see when the loss bottoms out (a factor 8 in steps), cheap enough (6 evaluations of at most
# VAL_LIMIT samples, ~15% of a 100-step run on the benchmark tasks).
CHECKPOINT_FRACTIONS = (1 / 8, 1 / 4, 3 / 8, 1 / 2, 3 / 4, 1.0)


def checkpoint_steps(run_steps: int) -> list[int]:
    """The steps (1-based counts) after which a run of ``run_steps`` is evaluated."""
    return sorted({max(1, round(run_steps * f)) for f in CHECKPOINT_FRACTIONS})


class Probe(Protocol):
    """What :func:`find_lr` needs measured. Implementations must leave the user's objects as
    they found them. A probe may also say how long its short runs are (``run_steps``), how
    long the run the suggestion is for will be (``horizon_steps``; None: unknown) and the
    schedule that run decays its rate by (``schedule``, a name from schedules.SCHEDULES;
    None: a constant rate)."""

    def sweep(self, seed: int, start_lr: float, end_lr: float, num_steps: int) -> Sweep: ...

    def short_run(self, lr: float, seed: int) -> ShortRun: ...


def sweep_lr(i: int, num_steps: int, start_lr: float, end_lr: float) -> float:
    """The rate of step ``i`` of an exponential sweep."""
    return start_lr * (end_lr / start_lr) ** (i / max(1, num_steps - 1))


def group_ratios(optimizer: torch.optim.Optimizer) -> list[float]:
    """Each param group's rate relative to the first, so multi-rate setups keep their ratios."""
    base = float(optimizer.param_groups[0].get("lr", 0.0)) or 1.0
    return [float(g.get("lr", base)) / base if base else 1.0 for g in optimizer.param_groups]


def set_lr(optimizer: torch.optim.Optimizer, lr: float, ratios: Sequence[float] | None = None
           ) -> None:
    ratios = ratios or [1.0] * len(optimizer.param_groups)
    for g, r in zip(optimizer.param_groups, ratios, strict=True):
        g["lr"] = lr * r


def total_grad_norm(optimizer: torch.optim.Optimizer) -> float:
    grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    if not grads:
        return math.nan
    return float(torch.nn.utils.get_total_norm(grads))


class GradNormRecorder:
    """Records the total gradient norm right before every ``optimizer.step()`` (a step
    pre-hook, so it sees the user's own ``train_step`` too). Use as a context manager."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.norms: list[float] = []
        self._handle: Any = None

    def __enter__(self) -> GradNormRecorder:
        def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
            self.norms.append(total_grad_norm(opt))

        self._handle = self.optimizer.register_step_pre_hook(hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()


def diverged(ema: float, best: float, factor: float = DIVERGE_FACTOR) -> bool:
    """The online stop: the smoothed loss is ``factor`` x its minimum (for positive losses),
    or has risen by ``factor - 1`` times the minimum's magnitude (losses that can be < 0)."""
    if not math.isfinite(ema):
        return True
    if best > 0:
        return ema > factor * best
    return ema - best > (factor - 1) * max(abs(best), 1e-12)


def run_sweep(step: Callable[[Any], float], optimizer: torch.optim.Optimizer,
              batches: Iterable[Any], *, start_lr: float = DEFAULT_START_LR,
              end_lr: float = DEFAULT_END_LR, num_steps: int = DEFAULT_SWEEP_STEPS,
              diverge_factor: float = DIVERGE_FACTOR, seed: int = 0,
              on_step: Callable[[], None] | None = None) -> Sweep:
    """Sweep the rate of ``optimizer`` while ``step(batch)`` trains; the caller restores."""
    if not 0 < start_lr < end_lr:
        raise ValueError(f"need 0 < start_lr < end_lr, got start_lr={start_lr}, end_lr={end_lr}")
    if num_steps < 2:
        raise ValueError(f"a sweep needs at least 2 steps, got num_steps={num_steps}")
    ratios = group_ratios(optimizer)
    out = Sweep(seed=seed)
    ema, best = 0.0, math.inf
    it = iter(batches)
    with GradNormRecorder(optimizer) as rec:
        for i in range(num_steps):
            lr = sweep_lr(i, num_steps, start_lr, end_lr)
            set_lr(optimizer, lr, ratios)
            try:
                batch = next(it)
            except StopIteration:
                out.stopped = "ran out of batches"
                break
            loss = step(batch)
            if on_step is not None:
                on_step()
            out.lrs.append(lr)
            out.losses.append(loss)
            if not math.isfinite(loss):
                out.stopped = f"non-finite loss at lr={lr:.3g}"
                break
            ema = EMA_BETA * ema + (1 - EMA_BETA) * loss
            smooth = ema / (1 - EMA_BETA ** (i + 1))
            best = min(best, smooth)
            if i >= MIN_STEPS_BEFORE_STOP and diverged(smooth, best, diverge_factor):
                out.stopped = f"diverged at lr={lr:.3g}"
                break
        out.grad_norms = list(rec.norms[: len(out.losses)])
    return out


# --------------------------------------------------------------------------- deciding
def smooth_centered(values: Sequence[float], window: int | None = None) -> np.ndarray:
    """Centred moving average (no lag, unlike an EMA), shrinking at the ends. Only the finite
    prefix is smoothed: a sweep ends at its first non-finite loss."""
    arr = np.asarray(values, dtype=float)
    finite = np.isfinite(arr)
    n = len(arr) if finite.all() else int(np.argmin(finite))
    arr = arr[:n]
    if n == 0:
        return arr
    w = window or max(3, (n // 12) | 1)  # ~1/12 of the curve: about half a decade
    half = w // 2
    c = np.concatenate([[0.0], np.cumsum(arr)])
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) + half + 1, 0, n)
    return (c[hi] - c[lo]) / (hi - lo)


@dataclass
class SweepStats:
    """What one sweep says: where the smoothed loss bottoms out (the edge), where it falls
    fastest, how far it falls, and whether it spiked early."""

    edge_lr: float
    steepest_lr: float
    initial_loss: float
    min_loss: float
    fell: bool  # did the smoothed loss fall clearly (>= 10%) below its start?
    early_spike: float  # max rise of the raw loss above its running start, before the edge


def sweep_stats(sweep: Sweep) -> SweepStats:
    s = smooth_centered(sweep.losses)
    lrs = np.asarray(sweep.lrs[: len(s)], dtype=float)
    if len(s) < 3:
        lr = float(lrs[0]) if len(lrs) else math.nan
        return SweepStats(lr, lr, math.nan, math.nan, False, 0.0)
    i_min = int(np.argmin(s))
    slope = np.gradient(s, np.log10(lrs))
    i_steep = int(np.argmin(slope[: i_min + 1]))
    initial = float(np.mean(s[: max(1, len(s) // 10)]))
    drop = initial - float(s[i_min])
    fell = drop > 0.1 * abs(initial)
    raw = np.asarray(sweep.losses[: i_min + 1], dtype=float)
    spike = float(np.max(raw / max(abs(initial), 1e-12))) - 1.0 if len(raw) else 0.0
    return SweepStats(float(lrs[i_min]), float(lrs[i_steep]), initial, float(s[i_min]), fell,
                      max(0.0, spike))


def log_median(values: Sequence[float]) -> float:
    arr = np.log10(np.asarray([v for v in values if v > 0 and math.isfinite(v)], dtype=float))
    return float(10 ** np.median(arr)) if len(arr) else math.nan


def log_spread(values: Sequence[float]) -> float:
    """Max - min in decades."""
    arr = np.log10(np.asarray([v for v in values if v > 0 and math.isfinite(v)], dtype=float))
    return float(arr.max() - arr.min()) if len(arr) > 1 else 0.0


def candidate_lrs(edge: float, decades: Sequence[float] = CANDIDATE_DECADES) -> list[float]:
    """Rates below the edge to validate, highest first."""
    return [edge * 10 ** -d for d in decades]


def extension(tried: dict[float, float]) -> float | None:
    """The next rate to try when the best one sits at the edge of those tried (a half-decade
    step outward), or None when the best is inside."""
    ranked = sorted(tried)
    finite = {lr: v for lr, v in tried.items() if math.isfinite(v)}
    if not finite:
        return ranked[0] * 10 ** -0.5 if ranked else None
    best = min(finite, key=finite.__getitem__)
    if best == ranked[0]:
        return best * 10 ** -0.5
    if best == ranked[-1]:
        return best * 10 ** 0.5
    return None


def _curve(tried: dict[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Tried rates as log10 and their held-out losses, a run that diverged (non-finite)
    counted as the worst finite loss: it is bad, but how bad is unknown."""
    ranked = sorted(tried)
    finite = [v for v in tried.values() if math.isfinite(v)]
    worst = max(finite) if finite else math.nan
    y = np.asarray([tried[lr] if math.isfinite(tried[lr]) else worst for lr in ranked])
    return np.log10(ranked), y


def robust_scores(tried: dict[float, float], at: Sequence[float],
                  half_width: float = ROBUST_HALF_WIDTH) -> np.ndarray:
    """Mean held-out loss over +-``half_width`` decades around each rate in ``at``, on the
    piecewise-linear curve through the tried rates (flat beyond them).

    The plain argmin of one noisy run per rate likes rates next to a cliff: just below the
    rate where training starts to diverge, one seed does great and the next blows up.
    Averaging over a neighbourhood prefers the middle of a good region, and changes nothing
    on a flat or symmetric one.
    """
    x, y = _curve(tried)
    offsets = np.linspace(-half_width, half_width, 21)
    return np.array([np.mean(np.interp(math.log10(a) + offsets, x, y)) for a in at])


def _middle_of_ties(points: Sequence[float], scores: np.ndarray, tie: float) -> float:
    """The geometric middle of the points scoring within ``tie`` of the best (the best
    itself when there is no tie): on a plateau, the centre is safest in both directions."""
    ok = [p for p, sc in zip(points, scores, strict=True) if sc <= scores.min() + tie]
    ok.sort()
    return float(ok[(len(ok) - 1) // 2])


def robust_choice(tried: dict[float, float], tie: float = 0.0) -> float:
    """The rate (on a 0.02-decade grid within the tried span) with the best robust score."""
    x, y = _curve(tried)
    if len(x) == 0 or not np.isfinite(y).any():
        return math.nan
    fine = list(10 ** np.arange(x[0], x[-1] + 1e-9, 0.02))
    return _middle_of_ties(fine, robust_scores(tried, fine), tie)


def best_tried(tried: dict[float, float], tie: float = 0.0) -> float:
    """The tried rate (with a finite loss) with the best robust score."""
    finite = sorted(lr for lr, v in tried.items() if math.isfinite(v))
    if not finite:
        return math.nan
    return _middle_of_ties(finite, robust_scores(tried, finite), tie)


def refinement(tried: dict[float, float], tie: float = 0.0) -> float | None:
    """The robust choice, when it is not (within 0.1 decade) one of the rates tried."""
    choice = robust_choice(tried, tie)
    if not math.isfinite(choice):
        return None
    return choice if all(abs(math.log10(choice / lr)) > 0.1 for lr in tried) else None


def plausible_range(tried: dict[float, float], tolerance: float) -> tuple[float, float]:
    """The span of rates whose held-out loss is within ``tolerance`` (absolute) of the best,
    interpolating linearly in log-rate between tried rates; clipped to the tried span."""
    ranked = sorted(lr for lr, v in tried.items() if math.isfinite(v))
    if not ranked:
        return math.nan, math.nan
    x = np.log10(ranked)
    y = np.asarray([tried[lr] for lr in ranked])
    i = int(np.argmin(y))
    limit = y[i] + tolerance

    def walk(direction: int) -> float:
        j = i
        while 0 <= j + direction < len(x):
            k = j + direction
            if y[k] > limit:
                frac = (limit - y[j]) / (y[k] - y[j]) if y[k] != y[j] else 0.0
                return float(x[j] + frac * (x[k] - x[j]))
            j = k
        return float(x[j])

    return float(10 ** walk(-1)), float(10 ** walk(+1))


def held_out_curve(runs: Sequence[ShortRun], lr: float) -> dict[int, float]:
    """The held-out loss of the runs at ``lr`` at each checkpoint (steps done), the mean over
    seeds at the checkpoints every run has; empty without checkpoints or when one diverged."""
    curves = [dict(r.checkpoints) for r in runs if r.lr == lr and r.checkpoints
              and math.isfinite(r.val_loss)]
    if not curves:
        return {}
    common = sorted(set.intersection(*(set(c) for c in curves)))
    return {int(t): float(np.mean([c[t] for c in curves])) for t in common}


def best_step(runs: Sequence[ShortRun], lr: float) -> int | None:
    """The checkpoint (steps done) at which the held-out loss of the runs at ``lr`` is lowest
    (their mean over seeds, at the checkpoints every run has); None without checkpoints."""
    curve = held_out_curve(runs, lr)
    return min(curve, key=curve.__getitem__) if curve else None


def bottomed_out(curve: dict[int, float], noise: float = math.nan) -> bool:
    """The held-out curve ends clearly above its minimum: more than BOTTOM_MARGIN and more
    than the run-to-run noise (relative) above it."""
    if len(curve) < 2:
        return False
    low = min(curve.values())
    end = curve[max(curve)]
    margin = max(BOTTOM_MARGIN, noise if math.isfinite(noise) else 0.0)
    return end - low > margin * max(abs(low), 1e-12)


@dataclass
class Horizon:
    """How the short runs' best rate was carried to the experiment's horizon."""

    steps: int  # the run the suggestion is for (planned optimizer steps)
    run_steps: int  # the short runs' length
    short_rate: float  # the best rate at the short runs' length
    best_step: int  # where that rate's held-out loss bottomed out in the short runs
    rate: float  # the rate for ``steps``
    capped: bool  # the shift hit MAX_HORIZON_DECADES
    # "same length" | "bottomed out" | "still falling" | "decaying schedule"
    regime: str = "same length"
    schedule: str | None = None  # the experiment's decaying schedule, if any

    def reason(self) -> str:
        if self.steps <= self.run_steps:
            return (f"the short runs were as long as the experiment's run ({self.steps} steps): "
                    f"their best rate is the suggestion")
        if self.regime == "decaying schedule":
            return (f"the experiment trains {self.steps} steps with a {self.schedule} decay of "
                    f"the rate, the short runs {self.run_steps} at a constant rate: the "
                    f"suggestion is the schedule's peak, the short runs' best rate "
                    f"{self.short_rate:.3g}" + (
                        f" x (run steps / steps)^{DECAYING_EXPONENT:g} = {self.rate:.3g}"
                        if DECAYING_EXPONENT else "")
                    + "; the decay brings the rate down where the longer run needs it "
                      "(measured against longer runs: README)")
        head = (f"the experiment trains {self.steps} steps at a constant rate, the short runs "
                f"{self.run_steps}: ")
        if self.regime == "bottomed out":
            body = (f"at their best rate {self.short_rate:.3g} the held-out loss bottomed out at "
                    f"step {self.best_step} and rose after it, so a longer run would overfit "
                    f"there; a constant-rate run gets about as far as rate x steps, so the "
                    f"rate that reaches that point by step {self.steps} is {self.rate:.3g}")
        else:
            body = (f"at their best rate {self.short_rate:.3g} the held-out loss was still "
                    f"falling at their end, so a longer run keeps improving and the rate comes "
                    f"down only for the extra steps' noise: x (run steps / steps)^"
                    f"{STILL_FALLING_EXPONENT:g} = {self.rate:.3g}")
        return (head + body + " (measured against longer runs: README)"
                + (f"; the shift is capped at {MAX_HORIZON_DECADES:g} decades" if self.capped
                   else ""))


def horizon_rate(short_rate: float, best: int | None, run_steps: int, steps: int | None,
                 bottomed: bool = True, schedule: str | None = None) -> Horizon | None:
    """Carry the best rate of runs ``run_steps`` long to a run of ``steps`` (pure rule).

    ``bottomed`` (:func:`bottomed_out`): the short runs' held-out loss at ``short_rate``
    reached its minimum at step ``best`` and rose after it. Then progress matching: a
    constant-rate run's progress goes roughly as rate x steps (each Adam or SGD step moves
    the weights by about the rate), so the rate that reaches, by ``steps``, the point where
    the short runs did best is ``short_rate * best / steps``, with less step noise on the way.
    Otherwise (still falling) ``short_rate * (run_steps / steps) ** STILL_FALLING_EXPONENT``.
    With a decaying ``schedule`` (one of DECAYING_SCHEDULES) the rate is the schedule's peak,
    ``short_rate * (run_steps / steps) ** DECAYING_EXPONENT``, whatever the curve did.
    Never more than MAX_HORIZON_DECADES below ``short_rate``. None when the horizon is
    unknown."""
    if steps is None or not math.isfinite(short_rate):
        return None
    point = best or run_steps
    decaying = schedule if schedule in DECAYING_SCHEDULES else None
    if steps <= run_steps:
        return Horizon(steps, run_steps, short_rate, point, short_rate, False,
                       schedule=decaying)
    if decaying:
        rate, regime = short_rate * (run_steps / steps) ** DECAYING_EXPONENT, \
            "decaying schedule"
    elif bottomed and point < run_steps:
        rate, regime = short_rate * point / steps, "bottomed out"
    else:
        rate, regime = short_rate * (run_steps / steps) ** STILL_FALLING_EXPONENT, \
            "still falling"
    floor = short_rate * 10 ** -MAX_HORIZON_DECADES
    return Horizon(steps, run_steps, short_rate, point, max(rate, floor), rate < floor, regime,
                   decaying)


def carry_to_horizon(short_rate: float, runs: Sequence[ShortRun], run_steps: int | None,
                     steps: int | None, noise: float = math.nan, schedule: str | None = None
                     ) -> Horizon | None:
    """The horizon rule applied to what the short runs recorded (pure: the benchmark replays
    it on recorded runs). ``noise``: the relative run-to-run noise of the held-out loss;
    ``schedule``: the experiment's schedule name (None: a constant rate). None when the runs'
    or the experiment's length is unknown."""
    if not run_steps:
        return None
    curve = held_out_curve(runs, short_rate)
    best = min(curve, key=curve.__getitem__) if curve else None
    return horizon_rate(short_rate, best, run_steps, steps, bottomed_out(curve, noise),
                        schedule)


@dataclass
class LRSuggestion:
    """The outcome of :func:`find_lr` (also what ``ctx.state["lr"]`` holds, as a dict)."""

    suggested: float
    low: float
    high: float
    confidence: str  # "high" | "medium" | "low"
    reasons: list[str]
    edge_lrs: list[float] = field(default_factory=list)  # per sweep
    spread_decades: float = math.nan
    # rate -> held-out loss (mean over seeds for the RERUN_TOP best)
    tried: dict[float, float] = field(default_factory=dict)
    noise: float = math.nan  # relative run-to-run noise of the held-out loss at the suggestion
    method: str = "sweep"  # "validated" | "sweep"
    sweeps: list[Sweep] = field(default_factory=list)
    runs: list[ShortRun] = field(default_factory=list)
    stats: list[SweepStats] = field(default_factory=list)
    horizon: Horizon | None = None  # set when the experiment's run length is known

    @property
    def short_rate(self) -> float:
        """The best rate for the short runs' own length (= ``suggested`` without a horizon)."""
        return self.horizon.short_rate if self.horizon is not None else self.suggested

    def to_state(self) -> dict[str, Any]:
        h = self.horizon
        return {"suggested": self.suggested, "low": self.low, "high": self.high,
                "confidence": self.confidence, "reasons": list(self.reasons),
                "edge_lrs": list(self.edge_lrs), "spread_decades": self.spread_decades,
                "tried": {float(k): float(v) for k, v in sorted(self.tried.items())},
                "noise": self.noise, "method": self.method,
                "short_rate": self.short_rate,
                "horizon_steps": h.steps if h is not None else None,
                "horizon_best_step": h.best_step if h is not None else None,
                "horizon_regime": h.regime if h is not None else None}


def decide_confidence(spread: float, boundary: bool, margin: float | None, noise: float,
                      any_fell: bool) -> tuple[str, list[str]]:
    """Pure rule: how much to trust the suggestion, and why.

    ``margin`` is how much worse (relative) the best's neighbours are; a clear minimum has a
    margin well above the run-to-run ``noise``.
    """
    reasons: list[str] = []
    score = 2
    if not any_fell:
        reasons.append("the loss never fell clearly during the sweeps")
        score -= 2
    if spread > SPREAD_LOW:
        reasons.append(f"the sweeps disagree by {spread:.1f} decades (> {SPREAD_LOW:g})")
        score -= 2
    elif spread > SPREAD_HIGH:
        reasons.append(f"the sweeps disagree by {spread:.1f} decades (> {SPREAD_HIGH:g})")
        score -= 1
    else:
        reasons.append(f"the sweeps agree within {spread:.2f} decades")
    if boundary:
        reasons.append("the best rate is at the edge of the rates tried")
        score -= 1
    if math.isinf(noise):
        reasons.append("one of the best rates diverged when re-run with another seed, so it "
                       "was dropped")
        score -= 2
    if margin is not None and math.isfinite(noise):
        if margin < noise:
            reasons.append(f"neighbouring rates are within the run-to-run noise "
                           f"({margin:.1%} vs {noise:.1%}): the optimum is flat")
            score -= 1
        else:
            reasons.append(f"neighbouring rates are {margin:.1%} worse, above the run-to-run "
                           f"noise of {noise:.1%}")
    level = "high" if score >= 2 else "medium" if score == 1 else "low"
    return level, reasons


def find_lr(probe: Probe, *, repeats: int = 3, start_lr: float = DEFAULT_START_LR,
            end_lr: float = DEFAULT_END_LR, num_steps: int = DEFAULT_SWEEP_STEPS,
            validate: bool = True, seed: int = 0,
            out_of_time: Callable[[], bool] | None = None) -> LRSuggestion:
    """Repeat the sweep, then (``validate``) train briefly at candidate rates and choose.

    ``out_of_time()`` is asked before each short run; once it says yes, the choice is made
    from the runs done so far (from the sweeps alone if there are none).
    """
    sweeps = [probe.sweep(seed + i, start_lr, end_lr, num_steps) for i in range(repeats)]
    stats = [sweep_stats(s) for s in sweeps]
    usable = [st for st in stats if math.isfinite(st.edge_lr)]
    edges = [st.edge_lr for st in usable]
    edge = log_median(edges) if edges else math.nan
    spread = log_spread(edges)
    any_fell = any(st.fell for st in usable)
    base = {"edge_lrs": edges, "spread_decades": spread, "sweeps": sweeps, "stats": stats}
    if not math.isfinite(edge):
        return LRSuggestion(math.nan, math.nan, math.nan, "low",
                            ["no sweep produced a finite loss curve"], tried={}, noise=math.nan,
                            method="sweep", **base)
    if not validate:
        return _from_sweeps(edge, any_fell, base, "")
    # Differences below a thousandth of the loss at init are ties (a trivially separable
    # task reaches ~0 held-out loss at many rates; 1e-9 vs 1e-6 means nothing).
    initials = [st.initial_loss for st in usable if math.isfinite(st.initial_loss)]
    floor = TIE_FRACTION * abs(float(np.median(initials))) if initials else 0.0
    out_of_time = out_of_time or (lambda: False)
    tried, runs, boundary = _validate(probe, edge, seed, floor, out_of_time)
    if not tried:
        return _from_sweeps(edge, any_fell, base, "no time was left for validation runs")
    finite = {lr: v for lr, v in tried.items() if math.isfinite(v)}
    if not finite:
        low = min(tried)
        return LRSuggestion(low / 10, low / 100, low / 10, "low",
                            [f"every short run diverged (the lowest at {low:.3g}): a tenth of "
                             "the lowest rate tried"], tried=tried, noise=math.nan,
                            method="validated", runs=runs, **base)
    tried, noise = _rerun_top(probe, tried, floor, seed + 1, out_of_time, runs)
    finite = {lr: v for lr, v in tried.items() if math.isfinite(v)}
    if not finite:
        low = min(tried)
        return LRSuggestion(low / 10, low / 100, low / 10, "low",
                            [f"the rates that trained diverged with another seed: a tenth of "
                             f"the lowest rate tried ({low:.3g})"], tried=tried, noise=noise,
                            method="validated", runs=runs, **base)
    best = best_tried(tried, floor)
    scale = max(abs(finite[best]), floor, 1e-12)
    ranked = sorted(finite)
    i = ranked.index(best)
    neigh = [finite[ranked[j]] for j in (i - 1, i + 1) if 0 <= j < len(ranked)]
    margin = (min(neigh) - finite[best]) / scale if neigh else None
    tol = max(RANGE_TOLERANCE, 2 * noise) if math.isfinite(noise) else RANGE_TOLERANCE
    low, high = plausible_range(finite, tol * scale)
    level, reasons = decide_confidence(spread, boundary, margin, noise, any_fell)
    reasons.insert(0, f"the best held-out loss around it ({finite[best]:.4g} at this rate) "
                      f"among {len(finite)} short runs at rates from {ranked[0]:.2g} to "
                      f"{ranked[-1]:.2g} (median sweep edge {edge:.3g})")
    h = carry_to_horizon(best, runs, getattr(probe, "run_steps", None),
                         getattr(probe, "horizon_steps", None), noise,
                         getattr(probe, "schedule", None))
    if h is None or h.rate == best:
        if h is not None:
            reasons.insert(0, h.reason())
        res = LRSuggestion(best, min(low, best), max(high, best), level, reasons, tried=tried,
                           noise=noise, method="validated", runs=runs, **base)
        res.horizon = h
        return res
    shift = h.rate / best  # the plausible range moves with the rate
    reasons.insert(0, h.reason())
    return LRSuggestion(h.rate, min(low, best) * shift, max(high, best) * shift, level,
                        reasons, tried=tried, noise=noise, method="validated", runs=runs,
                        horizon=h, **base)


def _from_sweeps(edge: float, any_fell: bool, base: dict[str, Any], why: str) -> LRSuggestion:
    level, reasons = decide_confidence(base["spread_decades"], False, None, math.nan, any_fell)
    head = f"a tenth of the median sweep edge {edge:.3g}" + (f" ({why})" if why else "")
    return LRSuggestion(edge * 10 ** -1.0, edge * 10 ** -1.5, edge * 10 ** -0.5,
                        "low" if why else level, [head, *reasons], tried={}, noise=math.nan,
                        method="sweep", **base)


def _validate(probe: Probe, edge: float, seed: int, floor: float,
              out_of_time: Callable[[], bool]
              ) -> tuple[dict[float, float], list[ShortRun], bool]:
    """Short runs at the candidates, outward while the best is at the boundary, then at the
    robust choice while it falls between rates tried. Returns (tried, runs, at_boundary)."""
    runs: list[ShortRun] = []
    tried: dict[float, float] = {}

    def run(lr: float) -> bool:
        if out_of_time():
            return False
        r = probe.short_run(lr, seed)
        runs.append(r)
        tried[lr] = r.val_loss
        return True

    for lr in candidate_lrs(edge):
        if not run(lr):
            return tried, runs, True
    for _ in range(MAX_EXTENSIONS):
        nxt = extension(tried)
        if nxt is None or not run(nxt):
            break
    boundary = extension(tried) is not None
    for _ in range(MAX_REFINEMENTS):
        mid = refinement(tried, floor)
        if mid is None or not run(mid):
            break
    return tried, runs, boundary


def _rerun_top(probe: Probe, tried: dict[float, float], floor: float, seed: int,
               out_of_time: Callable[[], bool], runs: list[ShortRun]
               ) -> tuple[dict[float, float], float]:
    """Re-run the RERUN_TOP best rates with another seed: their loss becomes the mean of the
    seeds (one run per rate is noisy: 5-40% apart between seeds on the benchmark tasks), and
    the differences measure that noise. While the short runs' step budget allows
    (``RUN_STEP_BUDGET``, only when the probe says how long its runs are), the best rates get
    more seeds (short runs are cheap: a 40-step horizon affords five). A rate that diverges on
    re-run is dropped (NaN) and the noise is infinite. Returns (tried with the means, relative
    noise or NaN)."""
    values = {lr: [v] for lr, v in tried.items()}
    diffs: list[float] = []
    run_steps = getattr(probe, "run_steps", None)

    def used() -> int:
        return sum(len(r.train_losses) for r in runs)

    def means() -> dict[float, float]:
        return {lr: float(np.mean(v)) if all(math.isfinite(x) for x in v) else math.nan
                for lr, v in values.items()}

    for extra in range(1 + MAX_EXTRA_SEEDS):
        current = means()
        finite = sorted(lr for lr, v in current.items() if math.isfinite(v))
        if not finite:
            break
        order = np.argsort(robust_scores(current, finite), kind="stable")
        for lr in [finite[i] for i in order[:RERUN_TOP]]:
            if out_of_time() or (extra and (not run_steps
                                            or used() + run_steps > RUN_STEP_BUDGET)):
                return means(), float(np.mean(diffs)) if diffs else math.nan
            r = probe.short_run(lr, seed + extra)
            runs.append(r)
            if math.isfinite(r.val_loss):
                base = values[lr][0]
                diffs.append(abs(r.val_loss - base) / max(abs(base), floor, 1e-12))
            else:
                diffs.append(math.inf)
            values[lr].append(r.val_loss)
    return means(), float(np.mean(diffs)) if diffs else math.nan
