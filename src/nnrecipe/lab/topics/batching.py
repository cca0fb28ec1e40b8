"""Batches: gradient descent vs SGD vs mini-batch (Q12), epochs vs sampling with replacement
(Q13), and what batch size 1 and the full batch do (Q21, Q22)."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from nnrecipe.lab._base import (
    Conclusion,
    Lab,
    Numbers,
    Plot,
    Topic,
    above,
    below,
    decided,
    ratio_above,
    register,
)
from nnrecipe.lab.common import batches, fmt, grid_legend, line, load, mlp
from nnrecipe.lab.spread import Band
from nnrecipe.report.plots import COLORS, new_figure


def _full_loss(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model(X), y))


# ---------------------------------------------------------------- GD vs SGD vs mini-batch
# (batch size, learning rate, epochs): each method at a rate that is fast and stable for it
# (a sweep over 3 seeds: GD diverges above ~2, SGD with batch 1 oscillates above ~0.05).
GD_ARMS: dict[str, tuple[int | None, float, int]] = {
    "gradient descent (full batch)": (None, 1.0, 120),
    "mini-batch SGD (batch 32)": (32, 0.2, 12),
    "SGD (batch 1)": (1, 0.02, 2),
}


def _run_clocked(X: torch.Tensor, y: torch.Tensor, batch: int, lr: float, epochs: int,
                 seed: int, points: int = 60) -> dict[str, list[float]]:
    """Train, evaluating the full training loss at ~``points`` moments; the clock excludes
    the evaluations."""
    torch.manual_seed(seed)
    model = mlp(X.shape[1], 10, hidden=32, depth=1)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    n = len(X)
    total = epochs * math.ceil(n / batch)
    every = max(1, total // points)
    rec: dict[str, list[float]] = {"updates": [0], "epochs": [0.0], "seconds": [0.0],
                                   "loss": [_full_loss(model, X, y)]}
    gen = torch.Generator().manual_seed(seed)
    clock, updates, seen = 0.0, 0, 0
    for _ in range(epochs):
        for idx in batches(n, batch, gen):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
            opt.step()
            clock += time.perf_counter() - t0
            updates += 1
            seen += len(idx)
            if updates % every == 0 or updates == total:
                rec["updates"].append(updates)
                rec["epochs"].append(seen / n)
                rec["seconds"].append(clock)
                rec["loss"].append(_full_loss(model, X, y))
    return rec


def measure_gd(lab: Lab, samples: int = 512, scale: float = 1.0) -> Numbers:
    """``scale`` multiplies every arm's number of epochs (tests use less)."""
    data = load("digits")
    X, y = data.X[:samples], data.y[:samples]
    out: Numbers = {"samples": len(X), "runs": {}}
    with lab.task("GD vs SGD vs mini-batch", len(GD_ARMS)) as task:
        for name, (batch, lr, epochs) in GD_ARMS.items():
            rec = _run_clocked(X, y, batch or len(X), lr, max(1, round(epochs * scale)), lab.seed)
            out["runs"][name] = {"batch": batch or len(X), "lr": lr, **rec}
            task.advance()
    return out


def _at(rec: dict[str, Any], axis: str, x: float) -> float:
    """The loss at the first recorded point where ``axis`` reaches ``x`` (inf if never)."""
    for xi, loss in zip(rec[axis], rec["loss"], strict=True):
        if xi >= x:
            return float(loss)
    return math.inf


def _time_to(rec: dict[str, Any], target: float) -> float:
    for s, loss in zip(rec["seconds"], rec["loss"], strict=True):
        if loss <= target:
            return float(s)
    return math.inf


def conclude_gd(n: Numbers) -> Conclusion:
    gd, mb, sgd = n["runs"].values()
    names = list(n["runs"])
    k = min(gd["updates"][-1], mb["updates"][-1], sgd["updates"][-1])
    per_update = [_at(r, "updates", k) for r in (gd, mb, sgd)]
    per_epoch = [_at(r, "epochs", 1.0) for r in (gd, mb, sgd)]
    target = max(min(r["loss"]) for r in (gd, mb, sgd)) * 1.05  # a loss every arm reached
    times = [_time_to(r, target) for r in (gd, mb, sgd)]
    obs = [
        f"after {k} updates: " + ", ".join(f"{nm} {fmt(v)}" for nm, v in
                                           zip(names, per_update, strict=True)),
        "after one epoch (one pass over the data): " + ", ".join(
            f"{nm} {fmt(v)}" for nm, v in zip(names, per_epoch, strict=True)),
        f"time to reach loss {fmt(target)}: " + ", ".join(
            f"{nm} {fmt(t)} s" for nm, t in zip(names, times, strict=True)),
        "seconds per update: " + ", ".join(
            f"{nm} {fmt(r['seconds'][-1] / r['updates'][-1] * 1e3)} ms" for nm, r in
            zip(names, (gd, mb, sgd), strict=True)),
    ]
    crit = [ratio_above(f"loss after {k} updates, mini-batch / gradient descent",
                        per_update[1] / per_update[0], 1.0),
            ratio_above(f"loss after {k} updates, single-sample SGD / mini-batch",
                        per_update[2] / per_update[1], 1.0),
            ratio_above("loss after one epoch, mini-batch / single-sample SGD",
                        per_epoch[1] / per_epoch[2], 1.0),
            ratio_above("loss after one epoch, gradient descent / mini-batch",
                        per_epoch[0] / per_epoch[1], 1.0)]
    per_update_ok = crit[0].holds and crit[1].holds
    per_epoch_ok = crit[2].holds and crit[3].holds
    fastest = names[int(np.argmin([float(t) for t in times]))]
    shown = decided(crit)
    if shown:
        text = (f"Per update, the full-batch gradient is the best direction: after {k} updates "
                f"gradient descent is at {fmt(per_update[0])}, mini-batches at "
                f"{fmt(per_update[1])}, single samples at {fmt(per_update[2])}. Per pass over "
                f"the data the order reverses: SGD makes {sgd['updates'][-1] // max(1, round(sgd['epochs'][-1]))} "
                f"noisy steps per epoch and is at {fmt(per_epoch[2])} after one epoch, gradient "
                f"descent one step ({fmt(per_epoch[0])}). In wall time, on this machine, "
                f"{fastest} reached {fmt(target)} first"
                + (": a mini-batch costs little more than a single sample (vectorised) but "
                   "averages away most of the noise — why mini-batch SGD is the default."
                   if fastest.startswith("mini") else
                   f": with only {n['samples']} samples the whole set fits in one vectorised "
                   f"step ({fmt(gd['seconds'][-1] / gd['updates'][-1] * 1e3)} ms), so the exact "
                   f"gradient is nearly free; a GD step costs the whole dataset, which stops "
                   f"being true as the data grows — mini-batches keep the cost per step fixed."
                   if fastest.startswith("gradient") else
                   ": single-sample steps won here, an unusual outcome on vectorised hardware."))
    else:
        text = ("The expected ordering did not hold in this run: "
                + ("per update " if not per_update_ok else "")
                + ("per epoch" if not per_epoch_ok else "") + " (see the numbers).")
    return Conclusion(shown, text, obs, crit)


def draw_gd(n: Numbers) -> list[Plot]:
    fig, axes = new_figure(width=12, height=3.5, ncols=3)
    for i, (name, r) in enumerate(n["runs"].items()):
        for ax, axis in zip(axes, ("updates", "epochs", "seconds"), strict=True):
            line(ax, r[axis], r["loss"], color=COLORS[i], label=name, lw=1.4)
    titles = ("vs updates", "vs epochs (samples seen / N)", "vs wall time (s)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set(title=f"full training loss {title}", ylabel="loss", yscale="log",
               xscale="log" if title == "vs updates" else "linear")
        grid_legend(ax, fontsize=7)
    return [Plot("Gradient descent vs SGD vs mini-batch SGD", fig,
                 f"a 64-32-10 MLP on {n['samples']} digits; the same model and init for each")]


GD = register(Topic(
    name="gd-sgd-minibatch",
    question="Gradient descent vs SGD vs mini-batch SGD",
    questions=(12,),
    codes=(),
    advice="No finding: a choice. The trainer uses mini-batches (Experiment.batch_size); the "
           "regularize stage tries a smaller batch as a regulariser.",
    setup="A 64-32-10 MLP on 512 scikit-learn digits from the same initial weights: full-batch "
          "gradient descent (lr 1, 120 updates), mini-batch SGD (batch 32, lr 0.2, 12 epochs) "
          "and SGD on single samples (lr 0.02, 2 epochs). The full training loss is recorded "
          "against updates, epochs and the training clock (evaluations not timed).",
    measure=measure_gd, conclude=conclude_gd, draw=draw_gd,
))


# ------------------------------------------------------- epochs vs sampling with replacement
REPLACEMENT_ORDERS = 3  # data orders averaged per arm: the effect is ~10%, one order is noisy


def measure_replacement(lab: Lab, epochs: int = 4, orders: int = REPLACEMENT_ORDERS) -> Numbers:
    data = load("digits")
    n = len(data.X)
    out: Numbers = {"epochs": epochs, "orders": orders, "n": n, "runs": {}}
    with lab.task("epochs vs with replacement", 2 * orders) as task:
        for name, repl in (("epochs (without replacement)", False),
                           ("with replacement", True)):
            finals, curves, coverage, counts = [], [], [], None
            for o in range(orders):
                torch.manual_seed(lab.seed)  # the same init; only the data order differs
                model = mlp(data.features, data.classes, hidden=32, depth=1)
                opt = torch.optim.SGD(model.parameters(), lr=0.1)
                gen = torch.Generator().manual_seed(lab.seed * 1000 + o)
                seen = torch.zeros(n, dtype=torch.int64)
                curve, cov = [], []
                for _ in range(epochs):
                    for idx in batches(n, 16, gen, replacement=repl):
                        opt.zero_grad(set_to_none=True)
                        nn.functional.cross_entropy(model(data.X[idx]), data.y[idx]).backward()
                        opt.step()
                        seen[idx] += 1
                    curve.append(_full_loss(model, data.X, data.y))
                    cov.append(float((seen > 0).float().mean()))
                finals.append(curve[-1])
                curves.append(curve)
                coverage.append(cov)
                if counts is None:
                    counts = np.bincount(seen.numpy(), minlength=2 * epochs + 1).tolist()
                task.advance()
            out["runs"][name] = {"final_losses": finals, "curves": curves,
                                 "coverage": np.mean(coverage, axis=0).tolist(),
                                 "count_histogram": counts}
    return out


def conclude_replacement(n: Numbers) -> Conclusion:
    perm, repl = n["runs"].values()
    fp, fr = float(np.mean(perm["final_losses"])), float(np.mean(repl["final_losses"]))
    cov1 = repl["coverage"][0]
    never = repl["count_histogram"][0] / n["n"]
    obs = [
        f"after 1 epoch of draws with replacement {cov1:.1%} of the samples had been seen "
        f"(theory: 1 - 1/e = {1 - math.exp(-1):.1%}); with epochs 100%",
        f"after {n['epochs']} epochs with replacement {never:.1%} of the samples were never "
        f"drawn, while some were drawn {len(repl['count_histogram']) - 1}+ times; with epochs "
        f"every sample was used exactly {n['epochs']} times",
        f"final training loss (mean of {n['orders']} data orders): {fmt(fp)} with epochs vs "
        f"{fmt(fr)} with replacement",
    ]
    # coverage: 3 points around 1 - 1/e (the binomial sd of a 1257-sample fraction is ~1.4
    # points); the loss: any consistent gain, judged on its spread over seeds
    crit = [below("|coverage after one epoch with replacement − (1 − 1/e)|",
                  abs(cov1 - (1 - math.exp(-1))), 0.03),
            ratio_above("final loss with replacement / with epochs", fr / fp, 1.0)]
    shown = decided(crit)
    if shown:
        text = (f"Sampling with replacement leaves {1 - cov1:.0%} of the data unseen in an "
                f"epoch's worth of draws and repeats other samples; an epoch uses every sample "
                f"exactly once, so every example contributes equally and the gradient noise "
                f"partly cancels within an epoch. Here that gave a lower training loss after "
                f"{n['epochs']} epochs ({fmt(fp)} vs {fmt(fr)}, {1 - fp / fr:.0%} lower; "
                f"averaged over {n['orders']} data orders). Epochs also give a natural unit "
                f"for evaluation, checkpoints and schedules.")
    else:
        text = (f"Coverage after one epoch with replacement was {cov1:.1%}; the final losses were "
                f"{fmt(fp)} (epochs) vs {fmt(fr)} (with replacement): this run did not show "
                f"epochs converging faster.")
    return Conclusion(shown, text, obs, crit)


def draw_replacement(n: Numbers) -> list[Plot]:
    fig, (a, b) = new_figure(width=10, height=3.6, ncols=2)
    for i, (name, r) in enumerate(n["runs"].items()):
        mean = np.mean([[float(v) for v in c] for c in r["curves"]], axis=0)
        xs = np.arange(1, len(mean) + 1)
        a.plot(xs, mean, "o-", ms=3, color=COLORS[i], label=name)
        for c in r["curves"]:
            line(a, xs, c, color=COLORS[i], alpha=0.25, lw=0.8)
        hist = np.asarray([float(v) for v in r["count_histogram"]])
        b.bar(np.arange(len(hist)) + (i - 0.5) * 0.4, hist / n["n"], 0.4,
              color=COLORS[i], label=name)
    a.set(title="full training loss per epoch", xlabel="epoch", ylabel="loss", yscale="log")
    b.set(title=f"times each sample was used in {n['epochs']} epochs",
          xlabel="times used", ylabel="fraction of samples")
    grid_legend(a, b, fontsize=8)
    return [Plot("Epochs (without replacement) vs sampling with replacement", fig,
                 "SGD, batch 16, lr 0.1, a 64-32-10 MLP on digits; thin lines: single data "
                 "orders (mean over the seeds, band ± sd)")]


REPLACEMENT = register(Topic(
    name="epochs-vs-replacement",
    question="Why train in epochs (sampling without replacement) instead of sampling with "
             "replacement?",
    questions=(13,),
    codes=(),
    advice="No finding: nnrecipe's trainer shuffles a fresh permutation every epoch with a "
           "seeded generator, so every sample is used once per epoch and runs are repeatable.",
    setup="A 64-32-10 MLP on scikit-learn digits, SGD (batch 16, lr 0.1) for 4 epochs, from the "
          "same initial weights, either over a fresh permutation each epoch or over indices "
          "drawn uniformly with replacement; 3 data orders per arm.",
    measure=measure_replacement, conclude=conclude_replacement, draw=draw_replacement,
))


# ------------------------------------------------------------ batch size 1 and the full batch
EXTREME_BATCHES = (1, 4, 16, 64, 256, None)  # None: the whole training set


def _flat_grad(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    model.zero_grad()
    nn.functional.cross_entropy(model(X), y).backward()
    g = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).clone()
    model.zero_grad()
    return g


def measure_extremes(lab: Lab, draws: int = 30, epochs: int = 2) -> Numbers:
    data = load("digits")
    X, y = data.X, data.y
    n = len(X)
    torch.manual_seed(lab.seed)
    model = mlp(data.features, data.classes, hidden=32, depth=1)
    full = _flat_grad(model, X, y)
    gen = torch.Generator().manual_seed(lab.seed)
    sizes = [b or n for b in EXTREME_BATCHES]
    cos, noise = [], []
    for b in sizes:
        cs, ns = [], []
        for _ in range(draws if b < n else 1):
            idx = torch.randperm(n, generator=gen)[:b]
            g = _flat_grad(model, X[idx], y[idx])
            cs.append(float(nn.functional.cosine_similarity(g, full, dim=0)))
            ns.append(float((g - full).norm() ** 2 / full.norm() ** 2))
        cos.append(float(np.mean(cs)))
        noise.append(float(np.mean(ns)))
    # training at each extreme for the same number of epochs, rates scaled with the batch
    train_runs = {}
    for name, b, lr in (("batch 1", 1, 0.01), ("batch 32", 32, 0.2), ("full batch", n, 1.0)):
        torch.manual_seed(lab.seed)
        net = mlp(data.features, data.classes, hidden=32, depth=1)
        opt = torch.optim.SGD(net.parameters(), lr=lr)
        losses, t0 = [], time.perf_counter()
        g2 = torch.Generator().manual_seed(lab.seed)
        for _ in range(epochs):
            for idx in batches(n, b, g2):
                opt.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(net(X[idx]), y[idx])
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
        seconds = time.perf_counter() - t0
        train_runs[name] = {"batch": b, "lr": lr, "updates": len(losses),
                            "seconds_per_epoch": seconds / epochs,
                            "final_loss": _full_loss(net, X, y),
                            "val_loss": _full_loss(net, data.Xv, data.yv),
                            "step_loss_std": float(np.std(losses[len(losses) // 2:]))}
    # batch norm cannot even run a training step on a batch of one
    bn = mlp(data.features, data.classes, hidden=32, depth=1, norm=nn.BatchNorm1d)
    try:
        bn.train()(X[:1])
        bn_error = ""
    except ValueError as e:
        bn_error = str(e)
    return {"n": n, "batch_sizes": sizes, "cosine_to_full": cos, "relative_noise": noise,
            "noise_slope": _noise_slope(sizes, noise, n), "draws": draws, "epochs": epochs,
            "train": train_runs, "batchnorm_error": bn_error}


def _noise_slope(sizes: list[int], noise: list[float], n: int) -> float:
    """The variance of a mean of B samples falls like 1/B: the slope on log-log (B < N/4)."""
    small = [i for i, b in enumerate(sizes) if b < n // 4]
    return float(np.polyfit(np.log(np.asarray(sizes, dtype=float)[small]),
                            np.log(np.asarray(noise, dtype=float)[small]), 1)[0])


def conclude_extremes(n: Numbers) -> Conclusion:
    sizes, cos = n["batch_sizes"], n["cosine_to_full"]
    t = n["train"]
    one, mid, full = t["batch 1"], t["batch 32"], t["full batch"]
    slope = n["noise_slope"]
    obs = [
        "cosine between a mini-batch gradient and the full gradient (at init): "
        + ", ".join(f"{c:.2f} (B={b})" for b, c in zip(sizes, cos, strict=True)),
        f"gradient noise ||g_B - g||²/||g||² falls as B^{slope:.2f} (1/B predicts -1)",
        f"{n['epochs']} epochs: " + "; ".join(
            f"{k}: {r['updates']} updates, {fmt(r['seconds_per_epoch'])} s/epoch, training loss "
            f"{fmt(r['final_loss'])}, validation loss {fmt(r['val_loss'])}"
            for k, r in t.items()),
        f"step-loss standard deviation over the second half: batch 1 {fmt(one['step_loss_std'])}, "
        f"batch 32 {fmt(mid['step_loss_std'])}, full batch {fmt(full['step_loss_std'])}",
        ("BatchNorm1d on a batch of one, in training mode: " + n["batchnorm_error"])
        if n["batchnorm_error"] else "BatchNorm1d accepted a batch of one",
    ]
    # 1/B predicts slope -1; 0.3 allows the finite-population correction (B up to N/4) and
    # 20-30 draws per size
    crit = [below("cosine of a batch-1 gradient with the full gradient", cos[0], 0.5),
            above("cosine of the full-batch gradient with itself", cos[-1], 0.5),
            below("|noise slope on log-log + 1|", abs(slope + 1), 0.3),
            ratio_above(f"training loss after {n['epochs']} epochs, full batch / batch 32",
                        full["final_loss"] / mid["final_loss"], 1.0),
            ratio_above("seconds per epoch, batch 1 / batch 32",
                        one["seconds_per_epoch"] / mid["seconds_per_epoch"], 1.0)]
    shown = decided(crit)
    if shown:
        text = (f"Batch size 1: each step follows one sample's gradient, which points only "
                f"loosely along the true one (cosine {cos[0]:.2f}); the noise variance falls "
                f"like 1/B (measured B^{slope:.2f}). The loss jumps from step to step (std "
                f"{fmt(one['step_loss_std'])}), the rate must be small, there is no "
                f"vectorisation ({fmt(one['seconds_per_epoch'] / max(mid['seconds_per_epoch'], 1e-9))}x "
                f"the time per epoch of batch 32), and batch norm cannot train at all; in "
                f"exchange it makes the most updates per epoch (training loss "
                f"{fmt(one['final_loss'])} after {n['epochs']} epochs). Full batch: the exact "
                f"gradient (cosine 1) and a smooth curve, but only {full['updates']} updates in "
                f"{n['epochs']} epochs, so after the same data it is far behind (training loss "
                f"{fmt(full['final_loss'])} vs {fmt(mid['final_loss'])} for batch 32), it needs "
                f"memory for the whole set, and it loses the noise that lets SGD leave sharp "
                f"minima (not measured here).")
    else:
        text = (f"This run did not show the expected pattern (cosine {cos[0]:.2f} at B=1, noise "
                f"slope {slope:.2f}, full-batch loss {fmt(full['final_loss'])} vs "
                f"{fmt(mid['final_loss'])}).")
    return Conclusion(shown, text, obs, crit)


def draw_extremes(n: Numbers) -> list[Plot]:
    fig, (a, b) = new_figure(width=10, height=3.6, ncols=2)
    line(a, n["batch_sizes"], n["cosine_to_full"], "o-", color=COLORS[0], label="cosine to full")
    a.set(xscale="log", title="mini-batch gradient vs full gradient", xlabel="batch size",
          ylabel="cosine similarity", ylim=(0, 1.05))
    sizes = np.asarray(n["batch_sizes"], dtype=float)
    noise = n["relative_noise"]
    line(b, sizes[:-1], noise[:-1] if not isinstance(noise, Band) else Band(noise[:-1]), "o-",
         color=COLORS[1], label="measured")
    b.plot(sizes[:-1], float(noise[0]) / sizes[:-1], "--", color=COLORS[5], label="1/B")
    b.set(xscale="log", yscale="log")
    b.set(title="gradient noise ||g_B - g||² / ||g||²", xlabel="batch size")
    grid_legend(a, b, fontsize=8)
    return [Plot("How noisy is a mini-batch gradient?", fig,
                 "a 64-32-10 MLP at initialisation on digits; 30 random batches per size")]


EXTREMES = register(Topic(
    name="batch-size-extremes",
    question="What happens with batch size 1? And with the entire training set in one batch?",
    questions=(21, 22),
    codes=("lr-too-high", "batch-dependency"),
    advice="The regularize stage measures a smaller batch as a regulariser; when you change the "
           "batch size, scale the learning rate (see lr-batch-scaling).",
    setup="A 64-32-10 MLP on scikit-learn digits. At initialisation: gradients of 30 random "
          "batches of each size (1 to 256, and the full training set) compared with the full "
          "gradient. Then 2 epochs of SGD at batch 1 (lr 0.01), 32 (lr 0.2) and the full batch "
          "(lr 1), and a BatchNorm1d layer fed a batch of one.",
    measure=measure_extremes, conclude=conclude_extremes, draw=draw_extremes,
))
