"""How good is nnrecipe's learning-rate suggestion for the run the user will actually do?
Compared with a grid of training runs at that run's own horizon.

On each task and horizon (3 and 20 epochs by default), the "truth" is a grid of constant Adam
learning rates (half decades, 1e-4..0.32, refined to quarter decades next to each horizon's
best) trained for that many epochs, scored by the validation loss at the end of the run (the
model the user's run ends with), averaged over training seeds (``--score best``: the best
validation loss within the run instead, what a trainer that restores the best epoch keeps).
Each method's suggested rate is then trained the same way (same seeds):

    ratio = validation loss at the suggestion / the grid's best validation loss

(1.00 = as good as the best grid rate; lower is better; below 1 when the suggestion falls
between grid points and beats them). Constant-rate runs are prefixes of each other (the same
seed gives the same batches, and nothing depends on the total length), so every rate is
trained once for the longest horizon it is needed at and read at each shorter one. Methods
not named in ``--trained`` are scored off the grid instead (linear in log-rate between grid
points: never better than the grid's best, slightly pessimistic on a convex curve), which
saves most of the training when the machine is busy. Each finder is itself run with several
seeds (its own inits and batch orders) and told the horizon (the experiment's ``epochs``).
The methods:

- ``nnrecipe``: ``find_lr`` as the overfit stage runs it, horizon-aware (see
  ``nnrecipe.overfit.lr_range``).
- ``short``: the same run's best rate for its short runs' own length (<= 100 steps): what
  nnrecipe suggested before it knew the horizon.
- ``steepest``, ``valley`` and ``min/10``: the common rules on one fastai-style sweep
  (1e-7..10, 100 steps, EMA 0.98 debiased smoothing, stop at 4x the minimum, first 10% and
  last 5 points dropped), implemented here as references.
- ``cosine``: not a constant rate. The short runs' best rate used as the peak of a cosine
  decay to 0 over the whole run (``make_scheduler("cosine")``), always trained (a decaying
  run is not a prefix of a longer one, so each horizon is its own run), scored against the
  same constant-rate grid: does a decaying schedule let the short runs' rate transfer to the
  longer run without a horizon rule?

Cost: training steps and wall time of nnrecipe's range test against one plain range test (a
100-step sweep).

Run: ``nice -n 10 .venv/bin/python benchmarks/lr_finder.py [--tasks digits,tabular]
[--horizons 3,20] [--seeds 3] [--finder-seeds 3] [--first-finder-seed 0] [--jobs 2]
[--trained nnrecipe] [--cache FILE] [--json FILE]``. ``--first-finder-seed 3`` runs the
finders on seeds they were not tuned on (the horizon rule was tuned on seeds 0-2). Prints Markdown tables for README.md and the load average
during the run. ``--cache`` keeps every training curve (task, rate, seed) in a JSON file and
reuses it; ``--replay FILE`` re-decides nnrecipe's picks from a ``--json`` file's recorded
short runs with the current horizon rule (exact while the runs themselves are unchanged).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, make_friedman1
from sklearn.model_selection import train_test_split
from torch import nn

from nnrecipe import Experiment
from nnrecipe.core.context import Context
from nnrecipe.core.fit import fit
from nnrecipe.core.training import infinite_batches
from nnrecipe.examples.digits import DigitsCNN, digits_splits
from nnrecipe.overfit.lr_range import LRSuggestion, ShortRun, carry_to_horizon, find_lr, run_sweep
from nnrecipe.overfit.probes import ContextProbe
from nnrecipe.overfit.schedules import make_scheduler

# 1e-4 .. 0.32, half decades: the best constant Adam rate of these tasks lies between 2e-4 (20
# epochs) and 2e-2 (3 epochs); the ends are there to bracket it.
GRID = [10 ** (-4 + k / 2) for k in range(8)]
REFINE = 0.25  # decades: the neighbours of the best added to the grid


# ------------------------------------------------------------------------------ tasks
def _standardise(parts: dict[str, tuple[np.ndarray, np.ndarray]], y_too: bool = False
                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    X_tr, y_tr = parts["train"]
    mu, sd = X_tr.mean(0), X_tr.std(0) + 1e-8
    ymu, ysd = (y_tr.mean(), y_tr.std()) if y_too else (0.0, 1.0)
    out = {}
    for k, (X, y) in parts.items():
        yy = ((y - ymu) / ysd).astype(np.float32).reshape(-1, 1) if y_too else y
        out[k] = (((X - mu) / sd).astype(np.float32), yy)
    return out


def _split(X: np.ndarray, y: np.ndarray, stratify: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    X_tr, X_va, y_tr, y_va = train_test_split(X, y, test_size=0.25, random_state=0,
                                              stratify=y if stratify else None)
    return {"train": (X_tr, y_tr), "val": (X_va, y_va)}


def _mlp(d_in: int, d_out: int, width: int = 64) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, d_out))


def digits_task() -> Experiment:
    s = digits_splits(seed=0)
    # val + test as validation (719 images): with 360, one seed's loss ranges 0.002-0.018.
    val = tuple(np.concatenate([a, b]) for a, b in zip(s["val"], s["test"], strict=True))
    return Experiment(model=lambda: DigitsCNN(width=16), train=s["train"], val=val,
                      loss=nn.CrossEntropyLoss(), batch_size=64, epochs=18, name="digits CNN")


def tabular_task() -> Experiment:
    X, y = load_breast_cancer(return_X_y=True)
    s = _standardise(_split(X, y.astype(np.int64), stratify=True))
    return Experiment(model=lambda: _mlp(30, 2), train=s["train"], val=s["val"],
                      loss=nn.CrossEntropyLoss(), batch_size=32, epochs=22,
                      name="breast-cancer MLP")


def regression_task() -> Experiment:
    X, y = make_friedman1(n_samples=1600, noise=1.0, random_state=0)
    s = _standardise(_split(X, y, stratify=False), y_too=True)
    return Experiment(model=lambda: _mlp(10, 1), train=s["train"], val=s["val"],
                      loss=nn.MSELoss(), batch_size=32, epochs=8, name="friedman1 MLP (MSE)")


class GRUClassifier(nn.Module):
    def __init__(self, vocab: int = 8, classes: int = 3, hidden: int = 32) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, 16)
        self.gru = nn.GRU(16, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(self.emb(x))
        return self.head(h[-1])


def sequence_task() -> Experiment:
    """Which of tokens 0, 1, 2 occurs most often in a sequence of 20 tokens from 8."""
    rng = np.random.default_rng(0)
    seqs = rng.integers(0, 8, size=(2400, 20))
    counts = np.stack([(seqs == t).sum(1) for t in range(3)], 1)
    y = counts.argmax(1).astype(np.int64)
    s = _split(seqs.astype(np.int64), y, stratify=True)
    return Experiment(model=lambda: GRUClassifier(), train=s["train"], val=s["val"],
                      loss=nn.CrossEntropyLoss(), batch_size=64, epochs=11, name="sequence GRU")


TASKS: dict[str, Callable[[], Experiment]] = {
    "digits": digits_task, "tabular": tabular_task, "regression": regression_task,
    "sequence": sequence_task,
}


# ------------------------------------------------------------------- the reference rules
def fastai_smooth(losses: list[float], beta: float = 0.98) -> list[float]:
    out, avg = [], 0.0
    for i, v in enumerate(losses):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def fastai_curve(lrs: list[float], losses: list[float], num_it: int = 100
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Smooth, stop at 4x the minimum (or the first non-finite value), drop the ends."""
    sm = fastai_smooth(losses)
    best, end = math.inf, len(sm)
    for i, v in enumerate(sm):
        if not math.isfinite(v):
            end = i
            break
        best = min(best, v)
        if v > 4 * best:
            end = i + 1
            break
    lr, lo = np.asarray(lrs[:end]), np.asarray(sm[:end])
    return lr[num_it // 10: -5], lo[num_it // 10: -5]


def min10_rule(lrs: np.ndarray, losses: np.ndarray) -> float:
    """fastai's older suggestion: a tenth of the rate at the minimum of the smoothed curve."""
    return float(lrs[int(np.argmin(losses))]) / 10


def steepest_rule(lrs: np.ndarray, losses: np.ndarray) -> float:
    grads = (losses[1:] - losses[:-1]) / (np.log(lrs[1:]) - np.log(lrs[:-1]))
    return float(lrs[int(np.argmin(grads))])


def valley_rule(lrs: np.ndarray, losses: np.ndarray) -> float:
    """fastai's "valley": 2/3 of the way down the longest decreasing run of the curve."""
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return float(lrs[max_start + int(sections) + int(sections / 2)])


def reference_sweep(ctx: Context) -> tuple[list[float], list[float]]:
    """One plain sweep (no early stop here: fastai's stop is applied afterwards, which is
    equivalent because later steps cannot change earlier ones)."""
    model = ctx.fresh_model(seed=ctx.seed)
    opt = ctx.make_optimizer(model)
    sw = run_sweep(lambda b: ctx.step(model, b, opt), opt,
                   infinite_batches(ctx.loader("train")), diverge_factor=1e30)
    return sw.lrs, sw.losses


# --------------------------------------------------------------------------- measuring
CACHE: dict[str, list[float]] = {}


def curve(exp: Experiment, lr: float, seed: int, epochs: int, schedule: str = "constant"
          ) -> list[float]:
    """Validation loss after each of (at least) ``epochs`` epochs of an Adam run at rate
    ``lr`` (inf once non-finite). Constant-rate runs are prefixes of each other, so the cache
    keeps the longest curve per (task, rate, seed) and a shorter horizon reads its head; a
    decaying ``schedule`` (over exactly ``epochs``) is keyed by its length too."""
    key = f"{exp.name}|{lr:.6g}|{seed}"
    if schedule != "constant":
        key += f"|{schedule}|{epochs}"
    have = CACHE.get(key)
    if have is not None and (len(have) >= epochs or math.inf in have):
        return have + [math.inf] * (epochs - len(have))
    ctx = Context(exp, seed=100 + seed)
    model = ctx.fresh_model(seed=100 + seed)
    h = fit(ctx, model, optimizer=torch.optim.Adam(model.parameters(), lr=lr),
            epochs=epochs, restore_best=False, description=f"lr={lr:.2g}",
            scheduler=None if schedule == "constant" else make_scheduler(schedule))
    vals = [e.val.get("loss", math.inf) if e.val else math.inf for e in h.epochs]
    vals = [v if math.isfinite(v) else math.inf for v in vals]
    CACHE[key] = vals + [math.inf] * (epochs - len(vals))
    return CACHE[key]


SCORING = "final"  # or "best" (set by --score)


def score(exp: Experiment, lr: float, seeds: int, horizon: int, schedule: str = "constant"
          ) -> float:
    """Mean over training seeds of the validation loss at the end of ``horizon`` epochs (the
    model a run of that length ends with), or with ``--score best`` the best within them
    (what a trainer that restores the best epoch keeps)."""
    curves = [curve(exp, lr, s, horizon, schedule)[:horizon] for s in range(seeds)]
    if SCORING == "best":
        return float(np.mean([min(c) for c in curves]))
    return float(np.mean([c[horizon - 1] for c in curves]))


def grid_search(exp: Experiment, seeds: int, horizons: list[int]) -> dict[int, dict[float, float]]:
    """The grid at each horizon: every rate of GRID (half decades) trained for the longest
    horizon, then quarter-decade neighbours of each horizon's best, trained for that horizon
    only (fewer runs than a full quarter-decade grid, the same resolution near the optimum)."""
    longest = max(horizons)
    for lr in GRID:
        for s in range(seeds):
            curve(exp, lr, s, longest)
    out = {}
    for h in horizons:
        grid = {lr: score(exp, lr, seeds, h) for lr in GRID}
        for _ in range(2):  # refine while the best is a refinement point
            best = min(grid, key=grid.__getitem__)
            for lr in (best * 10 ** -REFINE, best * 10 ** REFINE):
                key = float(f"{lr:.6g}")
                if all(abs(math.log10(key / g)) > 0.01 for g in grid):
                    grid[key] = score(exp, key, seeds, h)
        out[h] = grid
    return out


@dataclass
class HorizonResult:
    task: str
    horizon: int  # epochs
    steps: int  # optimizer steps of the run at this horizon
    grid_best_lr: float
    grid_best: float
    suggestions: dict[str, list[float]]  # per method, one per finder seed
    ratios: dict[str, list[float]]
    noise_floor: float  # ratio at the grid's best rate nudged by 2%
    finder_steps: dict[str, list[int]]  # training steps each finder took
    finder_seconds: dict[str, list[float]]  # wall time of each finder run
    grid: dict[float, float]  # rate -> score at this horizon
    finds: list[dict]  # what nnrecipe's find_lr measured (for replaying rules)


METHODS = ("nnrecipe", "short", "steepest", "valley", "min/10", "cosine")
ALWAYS_TRAINED = ("cosine",)  # not a constant rate: it cannot be read off the grid


def _find_record(found: LRSuggestion) -> dict:
    """What a horizon rule may read from one find_lr run (JSON-able)."""
    state = found.to_state()
    state["runs"] = [{"lr": r.lr, "seed": r.seed, "val_loss": r.val_loss,
                      "steps": len(r.train_losses), "checkpoints": r.checkpoints}
                     for r in found.runs]
    state["sweep_steps"] = [len(s.losses) for s in found.sweeps]
    return state


def interpolated(grid: dict[float, float], lr: float) -> float:
    """A rate's score read off the grid (linear in log-rate between its neighbours, the end
    value beyond it; inf next to a rate that diverged): a pick is never scored better than
    the grid's best, and the chord over a convex curve is slightly pessimistic, the same for
    every method scored this way."""
    xs = sorted(grid)
    ys = [grid[x] for x in xs]
    if lr <= xs[0] or lr >= xs[-1]:
        return ys[0] if lr <= xs[0] else ys[-1]
    j = next(i for i, x in enumerate(xs) if x >= lr)
    if not (math.isfinite(ys[j - 1]) and math.isfinite(ys[j])):
        return math.inf
    t = (math.log(lr) - math.log(xs[j - 1])) / (math.log(xs[j]) - math.log(xs[j - 1]))
    return ys[j - 1] + t * (ys[j] - ys[j - 1])


def method_ratio(exp: Experiment, method: str, lr: float, seeds: int, horizon: int,
                 grid: dict[float, float], trained: tuple[str, ...]) -> float:
    """One pick's score / the grid's best: trained with the grid's seeds, or read off it."""
    best = min(grid.values())
    if method == "cosine":
        return score(exp, lr, seeds, horizon, "cosine") / best
    return (score(exp, lr, seeds, horizon) if method in trained
            else interpolated(grid, lr)) / best


def run_task(name: str, seeds: int, horizons: list[int], finder_seeds: int,
             cache: str | None = None, scoring: str = "final",
             trained: tuple[str, ...] = METHODS, first_seed: int = 0
             ) -> tuple[list[HorizonResult], float]:
    global SCORING
    SCORING = scoring
    torch.set_num_threads(1)
    if cache and os.path.exists(cache):
        with open(cache) as fh:
            CACHE.update(json.load(fh))
    t0 = time.perf_counter()
    base = TASKS[name]()
    grids = grid_search(base, seeds, horizons)
    _log(f"{name}: grid done in {time.perf_counter() - t0:.0f} s")
    if cache:  # the expensive part, kept even if the finders fail
        with open(f"{cache}.{name}", "w") as fh:
            json.dump(CACHE, fh)
    out = []
    sweeps, sweep_secs = {}, {}
    finder_range = range(first_seed, first_seed + finder_seeds)
    for fs in finder_range:  # the reference rules read one plain sweep per finder seed
        t1 = time.perf_counter()
        sweeps[fs] = fastai_curve(*reference_sweep(Context(base, seed=fs)))
        sweep_secs[fs] = time.perf_counter() - t1
    for horizon in sorted(horizons, reverse=True):  # the longest first: shorter picks reuse it
        exp = dataclasses.replace(base, epochs=horizon)
        grid = grids[horizon]
        best_lr = min(grid, key=grid.__getitem__)
        picks: dict[str, list[float]] = {m: [] for m in METHODS}
        steps: dict[str, list[int]] = {m: [] for m in METHODS}
        secs: dict[str, list[float]] = {m: [] for m in METHODS}
        finds = []
        for fs in finder_range:
            ctx = Context(exp, seed=fs)
            t1 = time.perf_counter()
            # one run gives both: the horizon-aware suggestion and the short runs' own best
            found = find_lr(ContextProbe(ctx), seed=0)
            took = time.perf_counter() - t1
            finds.append(_find_record(found))
            n = (sum(len(s.losses) for s in found.sweeps)
                 + sum(len(r.train_losses) for r in found.runs))
            for m, lr in (("nnrecipe", found.suggested), ("short", found.short_rate),
                          ("cosine", found.short_rate)):
                picks[m].append(lr)
                steps[m].append(n)
                secs[m].append(took)
            lrs, losses = sweeps[fs]
            for m, rule in (("steepest", steepest_rule), ("valley", valley_rule),
                            ("min/10", min10_rule)):
                picks[m].append(rule(lrs, losses))
                steps[m].append(100)
                secs[m].append(sweep_secs[fs])
        ratios = {m: [method_ratio(exp, m, lr, seeds, horizon, grid, trained) for lr in v]
                  for m, v in picks.items()}
        floor = score(exp, best_lr * 10 ** 0.01, seeds, horizon) / grid[best_lr]
        per_epoch = math.ceil(len(exp.train[0]) / exp.batch_size)
        out.append(HorizonResult(exp.name or name, horizon, per_epoch * horizon, best_lr,
                                 grid[best_lr], picks, ratios, floor, steps, secs,
                                 {float(k): v for k, v in sorted(grid.items())}, finds))
        _log(f"{name}: {horizon} epochs done at {time.perf_counter() - t0:.0f} s: "
             + ", ".join(f"{m} {np.median(r):.3f}/{max(r):.3f}" for m, r in ratios.items()))
    if cache:
        with open(f"{cache}.{name}", "w") as fh:
            json.dump(CACHE, fh)
    return sorted(out, key=lambda r: r.horizon), time.perf_counter() - t0


def grid_only(name: str, seeds: int, horizons: list[int], cache: str | None) -> float:
    """Train (and cache) the grid's curves only: the expensive part, reused by later runs."""
    torch.set_num_threads(1)
    if cache and os.path.exists(cache):
        with open(cache) as fh:
            CACHE.update(json.load(fh))
    t0 = time.perf_counter()
    grid_search(TASKS[name](), seeds, horizons)
    if cache:
        with open(f"{cache}.{name}", "w") as fh:
            json.dump(CACHE, fh)
    return time.perf_counter() - t0


def replay_pick(rec: dict) -> float:
    """nnrecipe's suggestion re-decided by the current horizon rule from what one find_lr run
    recorded (its short runs' checkpoints): exact as long as the runs themselves (which rates,
    which seeds, how long) are unchanged."""
    runs = [ShortRun(r["lr"], r["val_loss"], [0.0] * r["steps"], seed=r["seed"],
                     checkpoints=[(int(a), float(b)) for a, b in r["checkpoints"]])
            for r in rec["runs"]]
    if rec.get("method") != "validated" or not runs:
        return float(rec["suggested"])
    run_steps = max(r["steps"] for r in rec["runs"])
    noise = rec.get("noise")
    h = carry_to_horizon(rec["short_rate"], runs, run_steps, rec["horizon_steps"],
                         float(noise) if isinstance(noise, (int, float)) else math.nan)
    return h.rate if h is not None else float(rec["short_rate"])


def replay_task(name: str, results: list[dict], seeds: int, cache: str | None
                ) -> tuple[list[HorizonResult], float]:
    """Score the replayed picks of one task (training the new ones), beside the recorded
    results of the other methods."""
    torch.set_num_threads(1)
    if cache and os.path.exists(cache):
        with open(cache) as fh:
            CACHE.update(json.load(fh))
    t0 = time.perf_counter()
    out = []
    for r in results:
        exp = dataclasses.replace(TASKS[name](), epochs=r["horizon"])
        res = HorizonResult(**r)
        res.grid = {float(k): v for k, v in r["grid"].items()}
        picks = [replay_pick(rec) for rec in res.finds]
        res.suggestions["nnrecipe"] = picks
        res.ratios["nnrecipe"] = [score(exp, lr, seeds, res.horizon) / res.grid_best
                                  for lr in picks]
        if "cosine" not in res.ratios:  # a run recorded before the cosine column
            short = [float(rec["short_rate"]) for rec in res.finds]
            res.suggestions["cosine"] = short
            res.ratios["cosine"] = [score(exp, lr, seeds, res.horizon, "cosine")
                                    / res.grid_best for lr in short]
            for k in ("finder_steps", "finder_seconds"):
                getattr(res, k)["cosine"] = list(getattr(res, k)["nnrecipe"])
        out.append(res)
    if cache:
        with open(f"{cache}.{name}", "w") as fh:
            json.dump(CACHE, fh)
    return out, time.perf_counter() - t0


# The cosine grid: peaks from 3.2e-4 to 0.1 in half decades (the constant grid's best rates
# lie between 5.6e-4 and 1e-2, and a cosine run's best peak is not below its best constant
# rate: its mean rate is half its peak), refined like the constant grid.
COSINE_GRID = GRID[1:7]


def cosine_task(name: str, seeds: int, horizons: list[int], files: list[str],
                cache: str | None) -> list[dict]:
    """For an experiment that decays its rate by cosine: a grid of cosine peaks trained for
    each horizon (the truth), and the finders' recorded picks (``files``: --json outputs)
    trained as peaks: the short runs' best rate (nnrecipe's rule for a decaying schedule) and
    the constant-rate horizon rule's suggestion (what nnrecipe suggested before it read the
    schedule). Ratio = the pick's validation loss at the end / the best peak's."""
    torch.set_num_threads(1)
    if cache and os.path.exists(cache):
        with open(cache) as fh:
            CACHE.update(json.load(fh))
    base = TASKS[name]()
    recs: dict[int, list[dict]] = {}
    for f in files:
        with open(f) as fh:
            for r in json.load(fh)["results"]:
                if r["task"] == base.name and r["horizon"] in horizons:
                    recs.setdefault(r["horizon"], []).extend(r["finds"])
    out = []
    for h in horizons:
        exp = dataclasses.replace(base, epochs=h)
        grid = {lr: score(exp, lr, seeds, h, "cosine") for lr in COSINE_GRID}
        for _ in range(2):
            best = min(grid, key=grid.__getitem__)
            for lr in (best * 10 ** -REFINE, best * 10 ** REFINE):
                key = float(f"{lr:.6g}")
                if all(abs(math.log10(key / g)) > 0.01 for g in grid):
                    grid[key] = score(exp, key, seeds, h, "cosine")
        best_lr = min(grid, key=grid.__getitem__)
        ratios = {m: [score(exp, float(rec[k]), seeds, h, "cosine") / grid[best_lr]
                      for rec in recs.get(h, [])]
                  for m, k in (("peak = short runs' best", "short_rate"),
                               ("peak = constant-rate rule", "suggested"))}
        floor = score(exp, best_lr * 10 ** 0.01, seeds, h, "cosine") / grid[best_lr]
        out.append({"task": base.name, "horizon": h, "best_lr": best_lr,
                    "best": grid[best_lr], "floor": floor, "ratios": ratios,
                    "grid": {str(k): v for k, v in sorted(grid.items())}})
        _log(f"{name}: cosine grid at {h} epochs: best peak {best_lr:.2g}; "
             + "; ".join(f"{m} {np.median(v):.3f}/{max(v):.3f}" for m, v in ratios.items() if v))
    if cache:
        with open(f"{cache}.{name}", "w") as fh:
            json.dump(CACHE, fh)
    return out


def cosine_report(rows: list[dict]) -> None:
    print("Cosine decay to 0 over the run: validation loss at the end, each pick trained as "
          "the peak / the best peak of a cosine grid at the same horizon (median over "
          "finder runs, worst in brackets):\n")
    methods = list(rows[0]["ratios"]) if rows else []
    print("| task | epochs | best peak | noise floor | " + " | ".join(methods) + " |")
    print("|---|---|---|---|" + "---|" * len(methods))
    for r in rows:
        print(f"| {r['task']} | {r['horizon']} | {r['best_lr']:.1e} | {r['floor']:.3f} | "
              + " | ".join(f"{np.median(r['ratios'][m]):.3f} ({max(r['ratios'][m]):.3f})"
                           for m in methods) + " |")
    for h in sorted({r["horizon"] for r in rows}):
        vals = {m: [v for r in rows if r["horizon"] == h for v in r["ratios"][m]]
                for m in methods}
        print(f"| **{h} epochs: median / worst** | | | | " + " | ".join(
            f"**{np.median(v):.2f}** / {max(v):.2f}" for v in vals.values()) + " |")


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f}] {msg}", file=sys.stderr,
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--horizons", default="3,20", help="epochs of the runs scored")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per rate")
    ap.add_argument("--finder-seeds", type=int, default=3,
                    help="independent runs of each finder (seeds of its sweeps and runs)")
    ap.add_argument("--first-finder-seed", type=int, default=0,
                    help="the finders' seeds are this one and the next finder-seeds - 1")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cache", help="JSON file of training curves to reuse (while iterating)")
    ap.add_argument("--grid-only", action="store_true", help="only train and cache the grid")
    ap.add_argument("--score", choices=("final", "best"), default="final",
                    help="validation loss at the end of the run, or the best within it")
    ap.add_argument("--trained", default="all",
                    help="methods whose picks are trained with the grid's seeds (comma list, "
                         "or all); the others are read off the grid (see interpolated())")
    ap.add_argument("--replay", help="a --json file of an earlier run: re-decide nnrecipe's "
                                     "picks from its recorded short runs with the current "
                                     "horizon rule, and score them (the others as recorded)")
    ap.add_argument("--json", help="also write every result (grids, picks, what find_lr "
                                   "measured) to this JSON file")
    ap.add_argument("--merge", help="comma list of --json files (runs of different tasks): "
                                    "print their tables as one report, run nothing")
    ap.add_argument("--cosine-grid", help="comma list of --json files: train a grid of cosine "
                                          "peaks per task and horizon and score the recorded "
                                          "picks as peaks (see cosine_task)")
    args = ap.parse_args()
    if args.merge:
        merged_report(args.merge.split(","))
        return
    if args.cosine_grid:
        names = args.tasks.split(",")
        hs = sorted(int(h) for h in args.horizons.split(","))
        load0, t0 = os.getloadavg()[0], time.perf_counter()
        with ProcessPoolExecutor(args.jobs) as pool:
            rows = [r for rs in pool.map(cosine_task, names, [args.seeds] * len(names),
                                         [hs] * len(names),
                                         [args.cosine_grid.split(",")] * len(names),
                                         [args.cache] * len(names)) for r in rs]
        cosine_report(rows)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"cosine": rows, "seeds": args.seeds, "load_start": load0,
                           "load_end": os.getloadavg()[0]}, fh)
        print(f"\nwall time {time.perf_counter() - t0:.0f} s with {args.jobs} processes; load "
              f"average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
        return
    names = args.tasks.split(",")
    horizons = sorted(int(h) for h in args.horizons.split(","))
    n = len(names)
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    replayed: dict[str, list[dict]] = {}
    if args.replay:
        with open(args.replay) as fh:
            old = json.load(fh)
        by_name = {TASKS[k]().name: k for k in names}
        for r in old["results"]:
            if r["task"] in by_name:
                replayed.setdefault(by_name[r["task"]], []).append(r)
        names = [k for k in names if k in replayed]
        n = len(names)
    with ProcessPoolExecutor(args.jobs) as pool:
        if args.replay:
            results = list(pool.map(replay_task, names, [replayed[k] for k in names],
                                    [args.seeds] * n, [args.cache] * n))
        elif args.grid_only:
            secs = list(pool.map(grid_only, names, [args.seeds] * n, [horizons] * n,
                                 [args.cache] * n))
            results = []
        else:
            trained = METHODS if args.trained == "all" else tuple(args.trained.split(","))
            results = list(pool.map(run_task, names, [args.seeds] * n, [horizons] * n,
                                    [args.finder_seeds] * n, [args.cache] * n,
                                    [args.score] * n, [trained] * n,
                                    [args.first_finder_seed] * n))
    if args.cache:
        merged: dict[str, list[float]] = {}
        if os.path.exists(args.cache):
            with open(args.cache) as fh:
                merged.update(json.load(fh))
        for name in names:
            with open(f"{args.cache}.{name}") as fh:
                merged.update(json.load(fh))
            os.remove(f"{args.cache}.{name}")
        with open(args.cache, "w") as fh:
            json.dump(merged, fh)
    if args.grid_only:
        print("grid seconds per task: " + ", ".join(f"{nm} {sec:.0f}" for nm, sec in
                                                    zip(names, secs, strict=True)))
    else:
        global SCORING
        SCORING = args.score
        flat = [r for rs, _ in results for r in rs]
        report(flat, {nm: sec for nm, (_, sec) in zip(names, results, strict=True)})
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"results": [dataclasses.asdict(r) for r in flat],
                           "seeds": args.seeds, "finder_seeds": args.finder_seeds,
                           "first_finder_seed": args.first_finder_seed,
                           "scoring": args.score, "load_start": load0,
                           "load_end": os.getloadavg()[0]}, fh, default=str)
    print(f"\nwall time {time.perf_counter() - t0:.0f} s with {args.jobs} processes; load "
          f"average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
          f"({os.cpu_count()} cores)")


def merged_report(files: list[str]) -> None:
    """One report from several --json files (say, the tasks split across two invocations
    while the grid of some was still being trained)."""
    global SCORING
    flat: list[HorizonResult] = []
    for f in files:
        with open(f) as fh:
            data = json.load(fh)
        SCORING = data.get("scoring", SCORING)
        for r in data["results"]:
            res = HorizonResult(**r)
            res.grid = {float(k): v for k, v in r["grid"].items()}
            flat.append(res)
        print(f"{f}: finder seeds from {data.get('first_finder_seed', 0)}, "
              f"{data['finder_seeds']} of them, {data['seeds']} training seeds; load average "
              f"{data['load_start']:.1f} at the start, {data['load_end']:.1f} at the end")
    print()
    report(flat, {})


SCORING_TEXT = {"final": "at the end of the run", "best": "the best within the run"}


def report(results: list[HorizonResult], seconds: dict[str, float]) -> None:
    print(f"Validation loss ({SCORING_TEXT[SCORING]}) at the suggestion / the grid's best at "
          f"the same horizon (median over finder seeds, worst in brackets):\n")
    print("| task | epochs (steps) | grid best lr | noise floor | "
          + " | ".join(f"`{m}`" for m in METHODS) + " |")
    print("|---|---|---|---|" + "---|" * len(METHODS))
    for r in results:
        cells = [f"{np.median(r.ratios[m]):.3f} ({max(r.ratios[m]):.3f})" for m in METHODS]
        print(f"| {r.task} | {r.horizon} ({r.steps}) | {r.grid_best_lr:.1e} | "
              f"{r.noise_floor:.3f} | " + " | ".join(cells) + " |")
    for horizon in sorted({r.horizon for r in results}):
        rs = [r for r in results if r.horizon == horizon]
        med = [np.median([v for r in rs for v in r.ratios[m]]) for m in METHODS]
        worst = [max(v for r in rs for v in r.ratios[m]) for m in METHODS]
        print(f"| **{horizon} epochs: median / worst (task, seed)** | | | | "
              + " | ".join(f"**{a:.2f}** / {b:.2f}" for a, b in zip(med, worst, strict=True))
              + " |")
    constant = [m for m in METHODS if m not in ALWAYS_TRAINED]
    print("\nLike for like, every constant-rate method's picks read off the grid "
          "(interpolated(): never better than the grid's best), median / worst (task, seed):\n")
    print("| horizon | " + " | ".join(f"`{m}`" for m in constant) + " |")
    print("|---|" + "---|" * len(constant))
    for horizon in sorted({r.horizon for r in results}):
        rs = [r for r in results if r.horizon == horizon]
        read = {m: [interpolated(r.grid, lr) / r.grid_best for r in rs for lr in r.suggestions[m]]
                for m in constant}
        print(f"| {horizon} epochs | " + " | ".join(
            f"{np.median(v):.2f} / {max(v):.2f}" for v in read.values()) + " |")
    print("\nSuggested rates (per finder seed):\n")
    print("| task | epochs | " + " | ".join(f"`{m}`" for m in METHODS) + " |")
    print("|---|---|" + "---|" * len(METHODS))
    for r in results:
        print(f"| {r.task} | {r.horizon} | " + " | ".join(
            ", ".join(f"{v:.1e}" for v in r.suggestions[m]) for m in METHODS) + " |")
    print("\nCost of nnrecipe's range test against one plain range test (a 100-step sweep): "
          "training steps, and wall time (median over finder seeds):\n")
    for r in results:
        st = np.median(r.finder_steps["nnrecipe"])
        sec = np.median(r.finder_seconds["nnrecipe"])
        ref = np.median(r.finder_seconds["steepest"])
        print(f"- {r.task}, {r.horizon} epochs: {int(st)} steps ({st / 100:.1f}x), "
              f"{sec:.1f} s vs {ref:.2f} s ({sec / ref:.1f}x)")
    if seconds:
        print(f"\nseconds per task: {', '.join(f'{k} {v:.0f}' for k, v in seconds.items())}")


if __name__ == "__main__":
    main()
