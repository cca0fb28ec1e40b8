"""Overfit first, then regularise (Q1): a model too small to fit, a big one that overfits, and
the big one regularised (dropout + decoupled weight decay + nnrecipe's early stopping)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from nnrecipe.lab._base import (
    Conclusion,
    Criterion,
    Lab,
    Numbers,
    Plot,
    Topic,
    above,
    below,
    decided,
    ratio_above,
    ratio_below,
    register,
)
from nnrecipe.lab.common import (
    Data,
    evaluate,
    fired,
    fmt,
    grid_legend,
    line,
    linear_baseline,
    load,
    mlp,
    train_watched,
)
from nnrecipe.lab.topics.learning_rate import _noisy_labels
from nnrecipe.report.plots import COLORS, new_figure
from nnrecipe.train.stopping import EarlyStopping, StoppingConfig

SAMPLES, NOISE = 300, 0.2  # a small training set with 20% wrong labels: something to memorise
SMALL_HIDDEN = 2  # a 2-unit bottleneck cannot separate 10 digit classes (underfits)
BIG_HIDDEN, BIG_DEPTH = 256, 2  # ~85k weights for 300 samples: memorises them
DROPOUT, WEIGHT_DECAY = 0.5, 0.5  # AdamW's decoupled decay: 0.05% per step at lr 1e-3
PATIENCE = 5  # nnrecipe's early stopping (patience on the smoothed val loss, GL>10, PQ>3)
# The verdict's lines, from reasoning: "underfits" = training loss far from 0 (> 0.5 nats,
# where the big model reaches ~0.01) with validation within 50% of it (no real gap);
# "overfits" = training loss < 0.05 while the validation loss ends 10% above its best (the
# train stage's overfitting line) and 10x above the training loss.
UNDERFIT_TRAIN, UNDERFIT_GAP = 0.5, 1.5
OVERFIT_TRAIN, OVERFIT_RISE, OVERFIT_GAP = 0.05, 0.10, 10.0


def _arms(data: Data) -> dict[str, dict[str, Any]]:
    f, c = data.features, data.classes
    return {
        f"too small ({f}-{SMALL_HIDDEN}-{c})": {
            "model": lambda: mlp(f, c, hidden=SMALL_HIDDEN, depth=1),
            "optimizer": lambda p: torch.optim.Adam(p, lr=1e-2),  # not starved of steps either
            "stopping": False},
        f"big ({f}-{BIG_HIDDEN}-{BIG_HIDDEN}-{c})": {
            "model": lambda: mlp(f, c, hidden=BIG_HIDDEN, depth=BIG_DEPTH),
            "optimizer": lambda p: torch.optim.Adam(p, lr=1e-3),
            "stopping": False},
        "big, regularised": {
            "model": lambda: mlp(f, c, hidden=BIG_HIDDEN, depth=BIG_DEPTH, dropout=DROPOUT),
            "optimizer": lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=WEIGHT_DECAY),
            "stopping": True},
    }


def measure(lab: Lab, epochs: int = 40, samples: int = SAMPLES, noise: float = NOISE) -> Numbers:
    full = load("digits")
    sub = full.subset(samples)
    data = Data("digits-noisy", sub.X, _noisy_labels(sub.y, full.classes, noise, lab.seed + 7),
                full.Xv, full.yv, full.classes)
    baselines = linear_baseline(data)
    arms = _arms(data)
    out: Numbers = {"epochs": epochs, "samples": samples, "noise": noise,
                    "classes": data.classes,
                    "chance_loss": math.log(data.classes), "linear": baselines["linear"],
                    "runs": {}}
    with lab.task("overfit first", len(arms)) as task:
        for name, arm in arms.items():
            stopper = EarlyStopping(StoppingConfig(patience=PATIENCE)) if arm["stopping"] else None
            w = train_watched(data, arm["model"], optimizer=arm["optimizer"], epochs=epochs,
                              seed=lab.seed, baselines=baselines,
                              callbacks=[stopper] if stopper else [])
            h = w.history
            if stopper is not None and h.best_state is not None:
                w.model.load_state_dict(h.best_state)  # early stopping keeps the best epoch
            tr, va = evaluate(w.model, data.X, data.y), evaluate(w.model, data.Xv, data.yv)
            val_curve = h.val_losses()
            out["runs"][name] = {
                "params": sum(p.numel() for p in w.model.parameters()),
                "train_curve": h.train_losses(), "val_curve": val_curve,
                "train_loss": tr["loss"], "train_accuracy": tr["accuracy"],
                "val_loss": va["loss"], "val_accuracy": va["accuracy"],
                "best_val": min(val_curve), "best_epoch": int(np.argmin(val_curve)) + 1,
                "final_val": val_curve[-1], "epochs_run": len(val_curve),
                "stopped": h.stopped_reason, "early_stopping": arm["stopping"],
                "findings": w.findings(),
            }
            task.advance()
    return out


def criteria(n: Numbers) -> dict[str, list[Criterion]]:
    """The three verdicts, each as the criteria it rests on."""
    small, big, reg = n["runs"].values()
    return {
        "underfits": [
            above("too small: training loss", small["train_loss"], UNDERFIT_TRAIN),
            ratio_below("too small: validation / training loss",
                        small["val_loss"] / small["train_loss"], UNDERFIT_GAP)],
        "overfits": [
            below("big: training loss", big["train_loss"], OVERFIT_TRAIN),
            ratio_above("big: final / best validation loss", big["final_val"] / big["best_val"],
                        1 + OVERFIT_RISE),
            ratio_above("big: final validation / training loss",
                        big["final_val"] / big["train_loss"], OVERFIT_GAP)],
        "regularised_best": [
            above("validation loss, the better unregularised model − regularised",
                  min(big["val_loss"], small["val_loss"]) - reg["val_loss"], 0.0)],
    }


def verdicts(n: Numbers) -> dict[str, bool]:
    return {k: decided(cs) for k, cs in criteria(n).items()}


def conclude(n: Numbers) -> Conclusion:
    small, big, reg = n["runs"].values()
    names = list(n["runs"])
    crit = criteria(n)
    v = {k: decided(cs) for k, cs in crit.items()}
    obs = [f"{name} ({r['params']:,} weights): training loss {fmt(r['train_loss'])} "
           f"(accuracy {r['train_accuracy']:.0%} on the noisy labels), validation loss "
           f"{fmt(r['val_loss'])} (accuracy {r['val_accuracy']:.1%}); best validation "
           f"{fmt(r['best_val'])} at epoch {fmt(r['best_epoch'])} of {fmt(r['epochs_run'])}"
           + (f" — {r['stopped']}" if r["early_stopping"] else "")
           + f"; nnrecipe's detectors: {fired(r['findings'])}"
           for name, r in zip(names, (small, big, reg), strict=True)]
    obs.append("big model's validation loss over its last 10 epochs: "
               + ", ".join(fmt(x) for x in big["val_curve"][-10:]))
    obs.append(f"logistic regression (the skeleton stage's linear baseline): validation loss "
               f"{fmt(n['linear']['loss'])}, accuracy {n['linear']['accuracy']:.1%}; chance "
               f"(uniform prediction) ln {n['classes']} = {fmt(n['chance_loss'])}")
    shown = all(v.values())
    rise = big["final_val"] / big["best_val"] - 1
    small_gap = small["val_loss"] / small["train_loss"] - 1
    tail = big["val_curve"][-10:]
    still_rising = len(tail) == 10 and float(np.mean(tail[5:])) > float(np.mean(tail[:5]))
    if shown:
        text = (f"Overfit first. The {names[0]} model underfits: its training loss stops at "
                f"{fmt(small['train_loss'])} and validation follows it ({fmt(small['val_loss'])}, "
                f"{small['val_accuracy']:.0%} accuracy) — no regulariser can fix that, and the "
                f"run says nothing about whether the data, the loss or the pipeline could do "
                f"better. The {names[1]} model drives the training loss to "
                f"{fmt(big['train_loss'])}, memorising even the {n['noise']:.0%} wrong labels: "
                f"this proves the pipeline can learn, and the cost shows on validation, whose "
                f"loss bottoms at {fmt(big['best_val'])} (epoch {fmt(big['best_epoch'])}) and "
                f"then climbs {rise:.0%} by epoch {fmt(big['epochs_run'])} while training "
                f"improves"
                + (" — and is still climbing at the end: memorising has no ceiling on how much "
                   "it can cost" if still_rising else
                   " (levelling off by the end in this run, but nothing bounds it: the more "
                   "confidently the wrong labels are memorised, the higher it goes)")
                + f". The underfit model's damage is bounded by how little it learns: its "
                f"validation loss stays within {small_gap:.0%} of its training loss, which "
                f"training keeps below chance ({fmt(n['chance_loss'])}). Regularising the big model "
                f"(dropout {DROPOUT:g}, AdamW weight decay {WEIGHT_DECAY:g}, early stopping) "
                f"gives the best validation of the three: {fmt(reg['val_loss'])} "
                f"({reg['val_accuracy']:.0%} accuracy), below the big model's final "
                f"{fmt(big['val_loss'])} and the small model's {fmt(small['val_loss'])}. So: get a "
                f"model big enough to overfit (the training loss → ~0, starting with one batch), "
                f"then trade some of that training fit for validation by regularising.")
    else:
        missing = [k.replace("_", " ") for k, ok in v.items() if not ok]
        text = (f"This run did not show the whole effect (not shown: {', '.join(missing)}): "
                f"small model training/validation loss {fmt(small['train_loss'])}/"
                f"{fmt(small['val_loss'])}, big {fmt(big['train_loss'])}/{fmt(big['val_loss'])} "
                f"(best validation {fmt(big['best_val'])}), regularised "
                f"{fmt(reg['train_loss'])}/{fmt(reg['val_loss'])}.")
    return Conclusion(shown, text, obs, [c for cs in crit.values() for c in cs])


def draw(n: Numbers) -> list[Plot]:
    fig, (a, b) = new_figure(width=10, height=3.6, ncols=2)
    for i, (name, r) in enumerate(n["runs"].items()):
        xs = np.arange(1, len(r["val_curve"]) + 1)
        line(a, xs, r["train_curve"], color=COLORS[i], label=name)
        line(b, xs, r["val_curve"], color=COLORS[i], label=name)
        b.plot([float(r["best_epoch"])], [float(r["best_val"])], "o", ms=4, color=COLORS[i])
    for ax in (a, b):
        ax.axhline(n["chance_loss"], color=COLORS[5], ls=":", lw=1, label="chance (ln 10)")
    b.axhline(n["linear"]["loss"], color=COLORS[4], ls="--", lw=1, label="linear baseline")
    a.set(title="training loss (epoch mean, train mode)", xlabel="epoch", ylabel="cross-entropy",
          yscale="log")
    b.set(title="validation loss (dot: best epoch)", xlabel="epoch", ylabel="cross-entropy")
    grid_legend(a, b, fontsize=7)
    return [Plot("Underfit, overfit, then regularise", fig,
                 f"{n['samples']} digits with {n['noise']:.0%} wrong labels, up to "
                 f"{n['epochs']} epochs; the regularised run is stopped early and keeps its "
                 f"best epoch")]


def table(n: Numbers) -> tuple[list[str], list[list[Any]]]:
    rows = [[name, f"{r['params']:,}", fmt(r["train_loss"]), fmt(r["val_loss"]),
             f"{r['val_accuracy']:.1%}", fmt(r["epochs_run"]), fired(r["findings"])]
            for name, r in n["runs"].items()]
    return ["model", "weights", "training loss", "validation loss", "validation accuracy",
            "epochs", "nnrecipe's detectors"], rows


OVERFIT_FIRST = register(Topic(
    name="overfit-first",
    question="When building a neural network, should you overfit or underfit it first?",
    questions=(1,),
    codes=("underfitting", "overfitting", "cannot-overfit-batch"),
    advice="The skeleton stage checks that the model can overfit one small batch "
           "(cannot-overfit-batch); the train stage flags a model that stops far above what a "
           "linear model reaches (underfitting) and a validation loss that climbs while "
           "training improves (overfitting), and the regularize stage then measures which "
           "regularisers buy validation back.",
    setup="Three MLPs on 300 scikit-learn digits with 20% of the labels replaced, trained by "
          "nnrecipe's trainer with the train stage's monitor for up to 40 epochs (batch 32): "
          "a 64-2-10 net (Adam 1e-2), a 64-256-256-10 net (Adam 1e-3), and the same big net "
          "with dropout 0.5, AdamW weight decay 0.5 and nnrecipe's early stopping (patience 5, "
          "best epoch restored). Validation: the 540 clean held-out digits.",
    measure=measure, conclude=conclude, draw=draw, table=table,
))
