"""The table of training problems and their diagnostics (Q28): each row a run broken on
purpose, watched by the train stage's monitor and diagnosed by its own detectors."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nnrecipe.lab._base import Conclusion, Lab, Numbers, Plot, Topic, check, decided, register
from nnrecipe.lab.common import (
    Data,
    Watched,
    fired,
    linear_baseline,
    load,
    mlp,
    train_watched,
)
from nnrecipe.lab.spread import Band
from nnrecipe.lab.topics.learning_rate import _noisy_labels
from nnrecipe.report.plots import COLORS, new_figure


@dataclass(frozen=True)
class Row:
    name: str
    symptom: str  # what you would see in your own curves
    setup: str  # how this run is broken
    expected: tuple[str, ...]  # any of these codes counts as the right diagnosis; () = none
    run: Callable[[int], Watched]


def _digits() -> Data:
    return load("digits")


def _scaled(factor: float) -> Data:
    d = _digits()
    return Data(f"digits x{factor:g}", d.X * factor, d.y, d.Xv * factor, d.yv, d.classes)


def _noisy_small() -> Callable[[int], Data]:
    def make(seed: int) -> Data:
        d = _digits()
        return Data("digits-noisy", d.X[:300], _noisy_labels(d.y[:300], 10, 0.3, seed + 7),
                    d.Xv[:150], d.yv[:150], d.classes)
    return make


def _adam(lr: float) -> Callable[[Any], torch.optim.Optimizer]:
    return lambda p: torch.optim.Adam(p, lr=lr)


def _sgd(lr: float) -> Callable[[Any], torch.optim.Optimizer]:
    return lambda p: torch.optim.SGD(p, lr=lr)


def _healthy(seed: int) -> Watched:
    d = _digits()
    return train_watched(d, lambda: mlp(d.features, d.classes, hidden=64, depth=1),
                         optimizer=_adam(1e-3), epochs=6, seed=seed,
                         baselines=linear_baseline(d))


def _lr_high(seed: int) -> Watched:
    d = _digits()
    return train_watched(d, lambda: mlp(d.features, d.classes, hidden=64, depth=2),
                         optimizer=_sgd(3.0), epochs=4, seed=seed)


def _lr_low(seed: int) -> Watched:
    d = _digits()
    return train_watched(d, lambda: mlp(d.features, d.classes, hidden=64, depth=2),
                         optimizer=_sgd(1e-3), epochs=4, seed=seed)


def _unscaled(seed: int) -> Watched:
    d = _scaled(50.0)
    return train_watched(d, lambda: mlp(d.features, d.classes, hidden=64, depth=2),
                         optimizer=_sgd(0.1), epochs=3, seed=seed)


def _raw_targets(seed: int) -> Watched:
    from nnrecipe.lab.topics.gradients import TARGET_SCALE, _regression_data

    X, y = _regression_data(seed)
    d = Data("regression, raw targets", X[:400], y[:400] * TARGET_SCALE, X[400:],
             y[400:] * TARGET_SCALE, 1)
    return train_watched(d, lambda: mlp(10, 1, hidden=32, depth=2), optimizer=_sgd(0.01),
                         epochs=5, seed=seed, loss=nn.MSELoss(), task="regression")


def _deep_sigmoid(seed: int) -> Watched:
    d = _digits()
    return train_watched(d, lambda: mlp(d.features, d.classes, hidden=32, depth=10,
                                        act=nn.Sigmoid),
                         optimizer=_sgd(0.05), epochs=4, seed=seed)


def _dead(seed: int) -> Watched:
    d = _digits()
    return train_watched(d, lambda: mlp(d.features, d.classes, hidden=64, depth=3),
                         optimizer=_adam(0.1), epochs=4, seed=seed)


def _saturated(seed: int) -> Watched:
    d = _scaled(10.0)
    return train_watched(d, lambda: mlp(d.features, d.classes, hidden=64, depth=2,
                                        act=nn.Tanh),
                         optimizer=_adam(1e-3), epochs=3, seed=seed)


def _overfit(seed: int) -> Watched:
    d = _noisy_small()(seed)
    return train_watched(d, lambda: mlp(d.features, d.classes, hidden=512, depth=1),
                         optimizer=_adam(2e-3), epochs=50, seed=seed)


def _underfit(seed: int) -> Watched:
    d = _digits()
    return train_watched(d, lambda: mlp(d.features, d.classes, hidden=1, depth=1),
                         optimizer=_adam(1e-2), epochs=8, seed=seed,
                         baselines=linear_baseline(d))


def _fluctuating(seed: int) -> Watched:
    d = _digits()
    return train_watched(d, lambda: mlp(d.features, d.classes, hidden=64, depth=2),
                         optimizer=_adam(5e-2), epochs=12, seed=seed)


def _dropout(seed: int) -> Watched:
    d = _digits()
    return train_watched(d, lambda: mlp(d.features, d.classes, hidden=128, depth=1,
                                        dropout=0.6),
                         optimizer=_adam(1e-3), epochs=6, seed=seed)


ROWS: tuple[Row, ...] = (
    Row("healthy (control)", "the loss falls fast, then slowly; validation tracks training",
        "64-64-10 MLP, Adam 1e-3, 6 epochs", (), _healthy),
    # dead-relu counts here: a first step that large kills the ReLUs (seed 2 ends at chance
    # with only that finding), and its fix starts with lowering the learning rate
    Row("learning rate far too high", "the loss jumps up, spikes or turns NaN",
        "SGD at lr 3", ("loss-nonfinite", "loss-diverging", "lr-too-high", "dead-relu"),
        _lr_high),
    Row("learning rate far too low", "the loss barely moves, a straight slow line",
        "SGD at lr 1e-3", ("lr-too-low", "loss-plateau"), _lr_low),
    Row("exploding gradients", "the gradient norm grows step over step, then NaN",
        "regression targets left x100, SGD at lr 0.01",
        ("exploding-gradients", "loss-nonfinite", "loss-diverging"), _raw_targets),
    Row("inputs not normalised", "the loss jumps in the first steps, then stalls near chance",
        "inputs x50, SGD at lr 0.1",
        ("exploding-gradients", "loss-nonfinite", "loss-diverging", "lr-too-high", "dead-relu"),
        _unscaled),
    Row("vanishing gradients", "the loss sits at its initial value; early layers do not move",
        "10 sigmoid layers, SGD at lr 0.05",
        ("vanishing-gradients", "saturated-activations", "loss-plateau"), _deep_sigmoid),
    Row("dead ReLUs", "accuracy stalls well below what the model should reach",
        "3 ReLU layers, Adam at lr 0.1", ("dead-relu",), _dead),
    Row("saturated activations", "tanh units stuck at ±1, slow learning",
        "tanh MLP on inputs x10", ("saturated-activations",), _saturated),
    Row("overfitting", "training loss keeps falling, validation loss turns up",
        "300 samples with 30% wrong labels, 512 hidden units, 50 epochs", ("overfitting",),
        _overfit),
    Row("underfitting", "training and validation loss both stay high",
        "a 1-unit hidden layer", ("underfitting",), _underfit),
    Row("weights fluctuating", "validation loss jumps from epoch to epoch",
        "Adam at lr 5e-2", ("weights-fluctuating", "lr-too-high"), _fluctuating),
    Row("validation below training", "validation loss sits under the training loss",
        "dropout 0.6", ("val-below-train",), _dropout),
)
ROW_NAMES = tuple(r.name for r in ROWS)


def measure_diagnostics(lab: Lab, rows: tuple[str, ...] = ROW_NAMES) -> Numbers:
    chosen = [r for r in ROWS if r.name in rows]
    out: Numbers = {"rows": []}
    with lab.task("training problems", len(chosen)) as task:
        for row in chosen:
            w = row.run(lab.seed)
            raised = w.codes
            hit = not raised if not row.expected else bool(set(raised) & set(row.expected))
            out["rows"].append({
                "name": row.name, "symptom": row.symptom, "setup": row.setup,
                "expected": list(row.expected), "raised": raised, "findings": w.findings(),
                "diagnosed": hit, "hit": float(hit),  # over seeds: the share diagnosed
                "losses": w.history.step_losses[:2000],
                "val": w.history.val_losses(), "epoch_steps": [e.steps for e in w.history.epochs],
                "final_train": w.history.train_losses()[-1] if w.history.epochs else float("nan"),
                "stopped": w.history.stopped_reason})
            task.advance()
    return out


def _diagnosed(r: Numbers) -> str:
    """'diagnosed', 'NOT diagnosed as expected', or over seeds 'diagnosed on 2 of 3 seeds'."""
    hit = r["hit"]
    seeds = len(getattr(hit, "values", ()))
    if hit >= 1:
        return "diagnosed" + (f" on all {seeds} seeds" if seeds else "")
    if seeds and hit > 0:
        return f"diagnosed on {round(hit * seeds)} of {seeds} seeds"
    return "NOT diagnosed as expected"


def conclude_diagnostics(n: Numbers) -> Conclusion:
    rows = n["rows"]
    ok = [r for r in rows if r["hit"] >= 1]
    missed = [r for r in rows if r["hit"] < 1]
    obs = []
    for r in rows:
        exp = ", ".join(r["expected"]) or "no finding"
        obs.append(f"{r['name']} ({r['setup']}): expected {exp}; nnrecipe raised "
                   f"{fired(r['findings'])} — {_diagnosed(r)}")
    # every row must be named on every seed: a detector that names a bug on one seed only is
    # not a diagnosis the table can promise
    crit = [check(f"{r['name']}: diagnosed as expected", r["hit"]) for r in rows]
    shown = decided(crit) and not missed and len(rows) > 1
    if shown:
        text = (f"All {len(rows)} rows reproduced: every broken run was named by nnrecipe's own "
                f"train-stage detectors with the problem it was broken with, and the healthy "
                f"control raised nothing. The table below is the seed's table of training "
                f"problems, each row a run you can rerun.")
    else:
        text = (f"{len(ok)} of {len(rows)} rows were diagnosed as expected; not always "
                f"diagnosed: " + "; ".join(f"{r['name']} ({_diagnosed(r)}; raised: "
                                           f"{fired(r['findings'])})" for r in missed) + ".")
    return Conclusion(shown, text, obs, crit)


def _relative(values: Any, first: float) -> np.ndarray:
    """``values / first`` for a log axis: non-finite points left out, clipped to [1e-3, 1e3]."""
    out = np.asarray([float(v) / first if np.isfinite(v) else np.nan for v in values])
    return np.clip(out, 1e-3, 1e3)


def draw_diagnostics(n: Numbers) -> list[Plot]:
    rows = n["rows"]
    cols = 4
    nrows = int(np.ceil(len(rows) / cols))
    fig, axes = new_figure(width=12, height=2.8 * nrows, ncols=cols, nrows=nrows)
    for ax, r in zip(axes, rows, strict=False):
        first = float(r["losses"][0]) if r["losses"] and np.isfinite(r["losses"][0]) else 1.0
        color = COLORS[0] if r["hit"] >= 1 else COLORS[1]
        losses = _relative(r["losses"], first)
        ax.plot(losses, color=color, lw=0.7, label="training (steps, mean over seeds)")
        if isinstance(r["losses"], Band):
            ax.fill_between(np.arange(len(losses)), _relative(r["losses"].lo, first),
                            _relative(r["losses"].hi, first), color=color, alpha=0.18, lw=0)
        val = _relative(r["val"], first)
        steps = [float(s) for s in r["epoch_steps"]][:len(val)]
        ax.plot(steps, val[:len(steps)], "o-", ms=2.5, lw=1, color=COLORS[3],
                label="validation (epochs)")
        if isinstance(r["val"], Band) and steps:
            ax.fill_between(steps, _relative(r["val"].lo, first)[:len(steps)],
                            _relative(r["val"].hi, first)[:len(steps)], color=COLORS[3],
                            alpha=0.18, lw=0)
        ax.set_title(r["name"], fontsize=8)
        ax.set_yscale("log")
        ax.tick_params(which="both", labelsize=6)
        # what was raised goes under the panel (an in-axes text over several seeds' codes
        # ran across its neighbours and collapsed the constrained layout)
        ax.set_xlabel("step · raised: " + "\n".join(textwrap.wrap(fired(r["findings"]), 52)),
                      fontsize=6, color=COLORS[5], loc="left")
        ax.grid(alpha=0.3)
    for ax in axes[len(rows):]:
        ax.axis("off")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=len(handles), fontsize=7,
               frameon=False)
    return [Plot("The loss of every row, with what nnrecipe raised", fig,
                 "loss / first training loss, log scale, clipped to [1e-3, 1e3]; mean over "
                 "seeds, shaded ± one standard deviation; red: not diagnosed as expected on "
                 "every seed")]


def table_diagnostics(n: Numbers) -> tuple[list[str], list[list[Any]]]:
    return (["problem", "what you see", "how it was broken", "expected", "nnrecipe raised",
             "diagnosed"],
            [[r["name"], r["symptom"], r["setup"], ", ".join(r["expected"]) or "nothing",
              fired(r["findings"]), _diagnosed(r)] for r in n["rows"]])


DIAGNOSTICS = register(Topic(
    name="training-problems",
    question="Problems encountered while training neural networks, and their diagnostics",
    questions=(28,),
    codes=("loss-nonfinite", "loss-diverging", "lr-too-high", "lr-too-low", "loss-plateau",
           "exploding-gradients", "vanishing-gradients", "dead-relu", "saturated-activations",
           "overfitting", "underfitting", "weights-fluctuating", "val-below-train"),
    advice="`nnrecipe train EXP` runs this monitor and these detectors on your experiment and "
           "reports each finding with its evidence, plots and fix.",
    setup="Twelve runs through nnrecipe's trainer with the train stage's monitor (per-layer "
          "gradients, activations, update ratios, learning curves) and its diagnose(): a "
          "healthy control and eleven runs each broken in one way (scikit-learn digits; a "
          "generated regression for the raw-target row).",
    measure=measure_diagnostics, conclude=conclude_diagnostics, draw=draw_diagnostics,
    table=table_diagnostics,
))
