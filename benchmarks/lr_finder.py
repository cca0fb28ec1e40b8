"""How good is nnrecipe's learning-rate suggestion? Compared with a grid of short training runs.

On each task, the "truth" is a grid of constant learning rates (quarter-decade steps,
3.2e-5..1) trained for the task's short horizon (~250-300 steps) with Adam, scored by the best
validation loss reached, averaged over training seeds. Each method's suggested rate is then
trained the same way (same seeds), and we report

    ratio = validation loss at the suggestion / the grid's best validation loss

(1.00 = as good as the best grid rate; lower is better; below 1 when the suggestion falls
between grid points and beats them). Each finder is itself run with several seeds (its own
inits and batch orders); the table gives the mean ratio and the worst. The methods:

- ``nnrecipe``: ``find_lr`` as the overfit stage runs it (3 sweeps, then short validated
  runs of at most 100 steps, a third of the grid's horizon).
- ``nnrecipe-sweep``: nnrecipe without validation runs (a tenth of the median sweep edge).
- ``steepest`` and ``valley``: the two common rules on one fastai-style sweep (1e-7..10,
  100 steps, EMA 0.98 debiased smoothing, stop at 4x the minimum, first 10% and last 5 points
  dropped), implemented here as references.

Run: ``.venv/bin/python benchmarks/lr_finder.py [--tasks digits,tabular] [--seeds 5]
[--finder-seeds 3] [--jobs 2] [--cache FILE]``. Prints Markdown tables for README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
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
from nnrecipe.overfit.lr_range import find_lr, log_median, run_sweep
from nnrecipe.overfit.probes import ContextProbe

GRID = [10 ** (-4.5 + k / 4) for k in range(19)]  # 3.2e-5 .. 1, quarter decades


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
CACHE: dict[str, float] = {}


def val_loss_at(exp: Experiment, lr: float, seeds: int) -> float:
    """Mean over seeds of the best validation loss of a short constant-rate Adam run."""
    key = f"{exp.name}|{lr:.6g}|{seeds}"
    if key not in CACHE:
        CACHE[key] = _val_loss_at(exp, lr, seeds)
    return CACHE[key]


def _val_loss_at(exp: Experiment, lr: float, seeds: int) -> float:
    vals = []
    for seed in range(seeds):
        ctx = Context(exp, seed=100 + seed)
        model = ctx.fresh_model(seed=100 + seed)
        h = fit(ctx, model, optimizer=torch.optim.Adam(model.parameters(), lr=lr),
                restore_best=False)
        vals.append(h.best_val_loss if math.isfinite(h.best_val_loss) else math.inf)
    return float(np.mean(vals))


@dataclass
class TaskResult:
    task: str
    grid_best_lr: float
    grid_best: float
    suggestions: dict[str, list[float]]  # per method, one per finder seed
    ratios: dict[str, list[float]]
    confidence: list[str]
    nnrecipe_steps: list[int]
    grid_steps: int
    noise_floor: float  # ratio at the grid's best rate x 1.023
    seconds: float


def run_task(name: str, seeds: int, cache: str | None = None, finder_seeds: int = 1,
             run_steps: int | None = None) -> TaskResult:
    torch.set_num_threads(1)
    if cache and os.path.exists(cache):
        with open(cache) as fh:
            CACHE.update(json.load(fh))
    t0 = time.perf_counter()
    exp = TASKS[name]()
    grid = {lr: val_loss_at(exp, lr, seeds) for lr in GRID}
    best_lr = min(grid, key=grid.__getitem__)
    methods = ("nnrecipe", "nnrecipe-sweep", "steepest", "valley")
    suggestions: dict[str, list[float]] = {m: [] for m in methods}
    confidence, steps = [], []
    for fs in range(finder_seeds):  # the finders are random too: other inits, batch orders
        ctx = Context(exp, seed=fs)
        found = find_lr(ContextProbe(ctx, run_steps=run_steps), seed=0)
        lrs, losses = fastai_curve(*reference_sweep(ctx))
        for m, lr in zip(methods, (found.suggested, log_median(found.edge_lrs) / 10,
                                   steepest_rule(lrs, losses), valley_rule(lrs, losses)),
                         strict=True):
            suggestions[m].append(lr)
        confidence.append(found.confidence)
        steps.append(sum(len(s.losses) for s in found.sweeps)
                     + sum(len(r.train_losses) for r in found.runs))
    ratios = {m: [val_loss_at(exp, lr, seeds) / grid[best_lr] for lr in v]
              for m, v in suggestions.items()}
    # The noise floor: the grid's best rate nudged by 2% (the same rate in all but name, a
    # different trajectory) scores this ratio; no method can be expected to do better.
    floor = val_loss_at(exp, best_lr * 10 ** 0.01, seeds) / grid[best_lr]
    per_epoch = math.ceil(len(exp.train[0]) / exp.batch_size)
    if cache:
        with open(f"{cache}.{name}", "w") as fh:
            json.dump(CACHE, fh)
    return TaskResult(exp.name or name, best_lr, grid[best_lr], suggestions, ratios,
                      confidence, steps, len(GRID) * per_epoch * exp.epochs, floor,
                      time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--seeds", type=int, default=5, help="training seeds per grid point")
    ap.add_argument("--finder-seeds", type=int, default=3,
                    help="independent runs of each finder (seeds of its sweeps and runs)")
    ap.add_argument("--run-steps", type=int, default=None,
                    help="length of nnrecipe's validation runs (default: the stage's, <= 100)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cache", help="JSON file of grid results to reuse (while iterating)")
    args = ap.parse_args()
    names = args.tasks.split(",")
    n = len(names)
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run_task, names, [args.seeds] * n, [args.cache] * n,
                                [args.finder_seeds] * n, [args.run_steps] * n))
    if args.cache:
        merged: dict[str, float] = {}
        for name in names:
            with open(f"{args.cache}.{name}") as fh:
                merged.update(json.load(fh))
            os.remove(f"{args.cache}.{name}")
        with open(args.cache, "w") as fh:
            json.dump(merged, fh)
    report(results)


def report(results: list[TaskResult]) -> None:
    methods = list(results[0].ratios)
    print("Validation loss at the suggestion / the grid's best (mean over finder seeds, worst "
          "in brackets):\n")
    print("| task | grid best lr | noise floor | " + " | ".join(f"`{m}`" for m in methods)
          + " | nnrecipe confidence | nnrecipe steps (grid: per seed) |")
    print("|---|---|---|" + "---|" * len(methods) + "---|---|")
    for r in results:
        cells = [f"{np.mean(r.ratios[m]):.3f} ({max(r.ratios[m]):.3f})" for m in methods]
        conf = ", ".join(sorted(set(r.confidence), key=r.confidence.index))
        print(f"| {r.task} | {r.grid_best_lr:.1e} | {r.noise_floor:.3f} | " + " | ".join(cells)
              + f" | {conf} | {int(np.mean(r.nnrecipe_steps))} ({r.grid_steps}) |")
    means = [np.mean([np.mean(r.ratios[m]) for r in results]) for m in methods]
    worst = [max(max(r.ratios[m]) for r in results) for m in methods]
    floor = np.mean([r.noise_floor for r in results])
    print(f"| **mean** | | {floor:.3f} | " + " | ".join(f"**{v:.3f}**" for v in means) + " | | |")
    print("| worst | | | " + " | ".join(f"{v:.3f}" for v in worst) + " | | |")
    print("\nSuggested rates (per finder seed):\n")
    print("| task | " + " | ".join(f"`{m}`" for m in methods) + " |")
    print("|---|" + "---|" * len(methods))
    for r in results:
        print(f"| {r.task} | " + " | ".join(", ".join(f"{v:.1e}" for v in r.suggestions[m])
                                           for m in methods) + " |")
    print(f"\nseconds per task: {', '.join(f'{r.task} {r.seconds:.0f}' for r in results)}")


if __name__ == "__main__":
    main()
