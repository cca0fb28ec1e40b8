"""Reading learning curves: validation below training (Q10), early-stopping criteria (Q11),
fluctuating weights (Q14). Each run goes through nnrecipe's trainer with the train stage's
monitor, and the page reports what its detectors said."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from nnrecipe.core.fit import Callback, EpochRecord, FitHistory
from nnrecipe.lab._base import (
    Conclusion,
    Lab,
    Numbers,
    Plot,
    Topic,
    above,
    decided,
    ratio_above,
    register,
)
from nnrecipe.lab.common import (
    Data,
    evaluate,
    fired,
    fmt,
    grid_legend,
    line,
    load,
    mlp,
    train_watched,
)
from nnrecipe.lab.topics.learning_rate import _noisy_labels
from nnrecipe.report.plots import COLORS, new_figure

_fired = fired


# ----------------------------------------------------------------- validation below training
VBT_DROPOUT = 0.6


def measure_val_below(lab: Lab, epochs: int = 6, dropout: float = VBT_DROPOUT) -> Numbers:
    data = load("digits")
    out: Numbers = {"epochs": epochs, "dropout": dropout, "runs": {}}
    with lab.task("validation below training", 2) as task:
        for name, p in (("no dropout", 0.0), (f"dropout {dropout:g}", dropout)):
            w = train_watched(data, lambda p=p: mlp(data.features, data.classes, hidden=128,
                                                    depth=1, dropout=p),
                              optimizer=lambda q: torch.optim.Adam(q, lr=1e-3), epochs=epochs,
                              seed=lab.seed)
            eps = w.recording.epochs
            out["runs"][name] = {
                "train_mean": [e["train_loss"] for e in eps],  # epoch average, train mode
                "train_mode_end": [e.get("train_mode_loss", math.nan) for e in eps],
                "train_eval_end": [e.get("train_eval_loss", math.nan) for e in eps],
                "val": [e.get("val_loss", math.nan) for e in eps],
                "findings": w.findings(),
                "verdict": {"fires": w.diagnosis.verdicts["val-below-train"].fires,
                            "cause": w.diagnosis.verdicts["val-below-train"].cause,
                            "contributions": w.diagnosis.verdicts["val-below-train"].contributions},
            }
            task.advance()
    return out


def _parts(r: Numbers, i: int) -> dict[str, float]:
    """The gap between the epoch-mean training loss and the validation loss at epoch i, split
    with the end-of-epoch weights (the same decomposition the detector uses)."""
    return {"averaging": r["train_mean"][i] - r["train_mode_end"][i],
            "dropout": r["train_mode_end"][i] - r["train_eval_end"][i],
            "rest": r["train_eval_end"][i] - r["val"][i]}


def conclude_val_below(n: Numbers) -> Conclusion:
    plain, drop = n["runs"].values()
    names = list(n["runs"])
    p1 = _parts(plain, 0)
    dl = _parts(drop, -1)
    gap1 = 1 - plain["val"][0] / plain["train_mean"][0]
    gapd = 1 - drop["val"][-1] / drop["train_mean"][-1]
    obs = [
        f"{names[0]}, epoch 1: epoch-mean training loss {fmt(plain['train_mean'][0])}, "
        f"validation {fmt(plain['val'][0])} ({gap1:.0%} below); the same weights at the end "
        f"of the epoch score {fmt(plain['train_eval_end'][0])} on training data — averaging "
        f"accounts for {fmt(p1['averaging'])} of the {fmt(plain['train_mean'][0] - plain['val'][0])} gap",
        f"{names[1]}, last epoch: epoch-mean training loss {fmt(drop['train_mean'][-1])}, "
        f"validation {fmt(drop['val'][-1])} ({gapd:.0%} below); train mode "
        f"{fmt(drop['train_mode_end'][-1])} vs eval mode {fmt(drop['train_eval_end'][-1])} on "
        f"the same weights — dropout accounts for {fmt(dl['dropout'])}, averaging "
        f"{fmt(dl['averaging'])}, the rest {fmt(dl['rest'])}",
        f"{names[1]}, last epoch, without dropout (eval mode) the training loss "
        f"{fmt(drop['train_eval_end'][-1])} is "
        f"{'below' if drop['train_eval_end'][-1] < drop['val'][-1] else 'above'} the validation "
        f"loss {fmt(drop['val'][-1])}",
        f"nnrecipe's detectors on the {names[1]} run: {_fired(drop['findings'])}"
        + (f" (cause named: {drop['verdict']['cause']})" if drop["verdict"]["fires"] else "")
        + f"; on the {names[0]} run: {_fired(plain['findings'])}",
    ]
    gap = plain["train_mean"][0] - plain["val"][0]
    # lines from reasoning: a 10% gap is one the eye notices on a curve; "explains" = more
    # than half of it; with dropout a 5% gap at the end, dropout's part the largest of three
    crit = [above("epoch-1 gap below the epoch-mean training loss, no dropout", gap1, 0.1),
            above("share of that gap from averaging over the epoch",
                  p1["averaging"] / gap if gap > 0 else 0.0, 0.5),
            above(f"last-epoch gap, {names[1]}", gapd, 0.05),
            above("dropout's part less the larger other part (last epoch)",
                  dl["dropout"] - max(dl["averaging"], dl["rest"]), 0.0)]
    averaging_shown = crit[0].holds and crit[1].holds
    dropout_shown = crit[2].holds and crit[3].holds
    shown = decided(crit)
    if shown:
        text = (f"Two causes, both reproduced. (1) The training loss reported for an epoch is "
                f"the average over its steps, taken while the model was still improving; the "
                f"validation loss is measured once, at the end. In the first epoch that alone "
                f"puts validation {gap1:.0%} below training. (2) Dropout is on while the "
                f"training loss is computed and off for validation: at the end of training, "
                f"with dropout {n['dropout']:g}, the same weights score "
                f"{fmt(drop['train_mode_end'][-1])} in train mode and "
                f"{fmt(drop['train_eval_end'][-1])} in eval mode, so validation ends "
                f"{gapd:.0%} below the reported training loss. For a billion-parameter language "
                f"model trained for less than an epoch, the first cause dominates; also check "
                f"that the validation set is not easier than training data and not leaked into "
                f"it (the data stage's split-leakage check).")
    else:
        text = ("The run did not show both causes clearly: "
                + (f"epoch-1 gap {gap1:.0%}; " if not averaging_shown else "")
                + (f"dropout gap at the end {gapd:.0%}." if not dropout_shown else ""))
    return Conclusion(shown, text, obs, crit)


def draw_val_below(n: Numbers) -> list[Plot]:
    fig, axes = new_figure(width=10, height=3.6, ncols=2)
    for ax, (name, r) in zip(axes, n["runs"].items(), strict=True):
        xs = np.arange(1, len(r["val"]) + 1)
        line(ax, xs, r["train_mean"], "o-", ms=3, color=COLORS[1], label="training (epoch mean)")
        line(ax, xs, r["train_mode_end"], "s--", ms=3, color=COLORS[3],
             label="training, end of epoch, train mode")
        line(ax, xs, r["train_eval_end"], "^--", ms=3, color=COLORS[2],
             label="training, end of epoch, eval mode")
        line(ax, xs, r["val"], "o-", ms=3, color=COLORS[0], label="validation")
        ax.set(title=name, xlabel="epoch", ylabel="loss", yscale="log")
        grid_legend(ax, fontsize=7)
    return [Plot("Why validation loss can sit below training loss", fig,
                 "a 64-128-10 MLP on digits, Adam 1e-3")]


VAL_BELOW = register(Topic(
    name="val-below-train",
    question="Your validation loss is often lower than your training loss. What might be "
             "happening?",
    questions=(10,),
    codes=("val-below-train",),
    advice="The train stage measures, at every epoch end, the training loss of the current "
           "weights in train and in eval mode, splits the gap the same way and names the cause "
           "(averaging, dropout, other regularisation, augmentation, an easier or leaked "
           "validation set).",
    setup="A 64-128-10 MLP on scikit-learn digits trained by nnrecipe's trainer with the train "
          "stage's monitor and end-of-epoch probe (Adam 1e-3, batch 32, 6 epochs), once without "
          "and once with dropout 0.6 after the hidden layer.",
    measure=measure_val_below, conclude=conclude_val_below, draw=draw_val_below,
))


# ------------------------------------------------------------------------- early stopping
# Criteria compared, each alone (the monitor's StoppingConfig with the others switched off).
STOP_VARIANTS: dict[str, dict[str, Any]] = {
    "patience 3": {"patience": 3, "gl_alpha": None, "pq_alpha": None},
    "patience 5": {"patience": 5, "gl_alpha": None, "pq_alpha": None},
    "patience 10": {"patience": 10, "gl_alpha": None, "pq_alpha": None},
    "GL > 2": {"patience": None, "gl_alpha": 2.0, "pq_alpha": None},
    "GL > 5": {"patience": None, "gl_alpha": 5.0, "pq_alpha": None},
    "PQ > 0.5": {"patience": None, "gl_alpha": None, "pq_alpha": 0.5},
    "PQ > 2": {"patience": None, "gl_alpha": None, "pq_alpha": 2.0},
}


def measure_stopping(lab: Lab, epochs: int = 50, train_samples: int = 300,
                     val_samples: int = 150) -> Numbers:
    from nnrecipe.train.stopping import StoppingConfig, stopping_verdict

    full = load("digits")
    # a small training set with 30% wrong labels and a big net: it overfits, and a small
    # validation set makes the curve noisy
    y = _noisy_labels(full.y[:train_samples], full.classes, 0.3, lab.seed + 7)
    data = Data("digits-noisy", full.X[:train_samples], y, full.Xv[:val_samples],
                full.yv[:val_samples], full.classes)
    with lab.task("early stopping", 1):
        w = train_watched(data, lambda: mlp(data.features, data.classes, hidden=256, depth=1),
                          optimizer=lambda q: torch.optim.Adam(q, lr=2e-3), epochs=epochs,
                          seed=lab.seed)
    val, tr = w.history.val_losses(), w.history.train_losses()
    stops = {}
    for name, kw in STOP_VARIANTS.items():
        cfg = StoppingConfig(**kw)
        stop = None
        for i in range(len(val)):
            verdict = stopping_verdict(val[: i + 1], tr[: i + 1], cfg)
            if verdict.stop:
                stop = i + 1
                break
        stops[name] = stop
    n = {"epochs": len(val), "val": val, "train": tr, "stops": stops,
         "accuracy": w.history.val_metric("accuracy"), "findings": w.findings(),
         "train_samples": train_samples, "val_samples": val_samples,
         "best_epoch": int(np.argmin(val)) + 1, "best_val": min(val),
         "rise": val[-1] / min(val) - 1}
    # per seed (a stop epoch and its regret do not survive averaging curves)
    n["rows"] = {name: _stop_row(val, stop) for name, stop in stops.items()}
    n["good"] = sum(1 for name, r in n["rows"].items()
                    if stops[name] is not None and _good(r))
    return n


def _stop_row(val: list[float], stop: int | None) -> dict[str, float]:
    end = stop or len(val)
    best_seen = min(val[:end])
    return {"stop": end, "best_kept": best_seen, "regret": best_seen / min(val) - 1,
            "saved": 1 - end / len(val)}


# a criterion is "good" when it keeps weights within 2% of the best validation loss and saves
# over 20% of the epochs (reasoning: 2% is under the epoch-to-epoch noise of this curve,
# 20% is a saving worth a rule)
def _good(row: dict[str, float]) -> bool:
    return row["regret"] < 0.02 and row["saved"] > 0.2


def conclude_stopping(n: Numbers) -> Conclusion:
    val = n["val"]
    best = n["best_epoch"]
    rows = n["rows"]
    fired = {k: r for k, r in rows.items() if n["stops"][k] is not None}
    obs = [f"the validation loss is lowest at epoch {fmt(best)} ({fmt(n['best_val'])}) and "
           f"ends at {fmt(val[-1])} after {n['epochs']} epochs ({n['rise']:.0%} above)"]
    for name, r in rows.items():
        obs.append(f"{name}: " + (f"stops at epoch {fmt(r['stop'])}" if n["stops"][name] else
                                  f"never stops in {n['epochs']} epochs")
                   + f", best weights kept {fmt(r['best_kept'])} ({r['regret']:.1%} above the "
                     f"best), {r['saved']:.0%} of the epochs saved")
    obs.append(f"nnrecipe's detectors on the full run: {_fired(n['findings'])}")
    # a validation loss that ends 5% above its best: an overfitting run worth stopping early
    crit = [above("validation loss at the end over its best, minus 1", n["rise"], 0.05),
            above("criteria that kept the best within 2% and saved 20% of the epochs",
                  n["good"], 0.5)]
    overfit = crit[0].holds
    good = [k for k, r in fired.items() if _good(r)]
    shown = decided(crit) and bool(good)
    if shown:
        earliest = min(fired, key=lambda k: fired[k]["stop"])
        safest = min(fired, key=lambda k: (fired[k]["regret"], -fired[k]["saved"]))
        never = [k for k in rows if n["stops"][k] is None]
        text = (f"On this overfitting run (validation best at epoch {fmt(best)}, "
                f"{n['rise']:.0%} worse by epoch {n['epochs']}), {len(good)} of {len(rows)} "
                f"criteria stopped within 2% of the best validation loss while saving over 20% "
                f"of the epochs. {earliest} stopped first (epoch "
                f"{fmt(fired[earliest]['stop'])}, {fired[earliest]['regret']:.1%} regret); "
                f"{safest} kept the best weights ({fired[safest]['regret']:.1%}). Patience "
                f"waits for k epochs without improvement — robust to noise, costs k epochs. "
                f"GL stops once validation is α% above its best — fast, but a noisy bump can "
                f"trigger it. PQ divides GL by the training progress, so it tolerates a rising "
                f"validation loss while training still improves fast"
                + (f" (here {', '.join(never)} never fired)." if never else ".")
                + " Whatever the criterion, keep the best weights, not the last.")
    else:
        text = ("This run did not overfit clearly enough to compare the criteria"
                if not overfit else "No criterion stopped near the best validation loss here")
        text += (f" (validation best at epoch {fmt(best)}, final {fmt(val[-1])} vs "
                 f"{fmt(n['best_val'])}).")
    return Conclusion(shown, text, obs, crit)


def draw_stopping(n: Numbers) -> list[Plot]:
    fig, (ax,) = new_figure(width=9, height=3.8)
    xs = np.arange(1, len(n["val"]) + 1)
    line(ax, xs, n["train"], color=COLORS[1], label="training (epoch mean)")
    line(ax, xs, n["val"], "o-", ms=2.5, color=COLORS[0], label="validation")
    lo, hi = min(n["val"]), max(n["val"][1:])
    for i, (name, stop) in enumerate(n["stops"].items()):
        if stop is not None:
            ax.axvline(stop, color=COLORS[(i + 2) % len(COLORS)], ls=":", lw=1.2)
            ax.text(stop, hi - (hi - lo) * 0.08 * (i + 1), f" {name}", fontsize=7,
                    color=COLORS[(i + 2) % len(COLORS)])
    ax.axvline(n["best_epoch"], color="black", ls="--", lw=1, label="best epoch")
    ax.set(title="where each criterion stops", xlabel="epoch", ylabel="loss",
           ylim=(0, max(n["val"][1:]) * 1.15))
    grid_legend(ax, fontsize=8, loc="lower left")
    return [Plot("Early-stopping criteria on a noisy validation curve", fig,
                 "digits, 300 training samples with 30% wrong labels, a 256-unit MLP, Adam 2e-3; "
                 "curves: mean ± sd over the seeds; dotted lines: each criterion's mean "
                 "stopping epoch")]


def table_stopping(n: Numbers) -> tuple[list[str], list[list[Any]]]:
    rows = []
    for name, stop in n["stops"].items():
        r = n["rows"][name]
        rows.append([name, fmt(stop) if stop is not None else f"never ({n['epochs']})",
                     fmt(r["best_kept"]), f"{r['regret']:.1%}", f"{r['saved']:.0%}"])
    return ["criterion", "stops at epoch", "best validation loss kept", "regret",
            "epochs saved"], rows


STOPPING = register(Topic(
    name="early-stopping",
    question="What criteria would you use for early stopping?",
    questions=(11,),
    codes=("overfitting",),
    advice="nnrecipe train stops early by default (patience on a smoothed validation loss with "
           "a relative min_delta, Prechelt's GL and PQ; Experiment.options['early_stopping'] "
           "sets them) and keeps the best weights; the overfitting finding names the epoch the "
           "validation loss turned.",
    setup="A 64-256-10 MLP on 300 scikit-learn digits with 30% of the labels replaced at "
          "random, Adam 2e-3 for 50 epochs through nnrecipe's trainer, validated on 150 samples "
          "each epoch. The train stage's stopping_verdict is then replayed epoch by epoch for "
          "each criterion on its own.",
    measure=measure_stopping, conclude=conclude_stopping, draw=draw_stopping,
    table=table_stopping,
))


# ------------------------------------------------------------------- fluctuating weights
# Adam at 5e-2 on this MLP (seeds 0-3): validation loss jumps 31-41% from epoch to epoch,
# 2-4% at 5e-3; the monitor's weights-fluctuating detector measured 18-24% jitter.
FLUCT_LR = 5e-2
EMA_DECAY = 0.98
FLUCT_RATIO = 3.0  # "fluctuates": jumps 3x those of the same net at a 10x lower rate


class EmaProbe(Callback):
    """Keeps an exponential moving average of the weights and validates it every epoch."""

    def __init__(self, data: Data, decay: float) -> None:
        self.data, self.decay = data, decay
        self.val: list[float] = []
        self.acc: list[float] = []
        self.avg: AveragedModel | None = None

    def on_fit_start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.avg = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(self.decay))

    def on_step_end(self, step: int, loss: float, model: nn.Module,
                    optimizer: torch.optim.Optimizer) -> str | None:
        assert self.avg is not None
        self.avg.update_parameters(model)
        return None

    def on_epoch_end(self, record: EpochRecord, history: FitHistory, model: nn.Module
                     ) -> str | None:
        assert self.avg is not None
        ev = evaluate(self.avg.module, self.data.Xv, self.data.yv)
        self.val.append(ev["loss"])
        self.acc.append(ev["accuracy"])
        return None


def swing(val: list[float]) -> float:
    """Median |log(v_t / v_(t-1))| over the second half: how far the validation loss jumps
    from one epoch to the next (0.1 = ~10% per epoch)."""
    v = np.log(np.asarray([x for x in val if math.isfinite(x) and x > 0]))
    tail = v[len(v) // 2 - 1:]
    return float(np.median(np.abs(np.diff(tail)))) if len(tail) > 1 else 0.0


def measure_fluctuating(lab: Lab, epochs: int = 12, lr: float = FLUCT_LR) -> Numbers:
    from nnrecipe.train.detectors import weights_fluctuating_verdict

    data = load("digits")
    out: Numbers = {"epochs": epochs, "lr": lr, "ema_decay": EMA_DECAY, "runs": {}}
    with lab.task("fluctuating weights", 2) as task:
        ema = EmaProbe(data, EMA_DECAY)
        high = train_watched(data, lambda: mlp(data.features, data.classes, hidden=64, depth=2),
                             optimizer=lambda q: torch.optim.Adam(q, lr=lr), epochs=epochs,
                             seed=lab.seed, callbacks=[ema])
        task.advance()
        low = train_watched(data, lambda: mlp(data.features, data.classes, hidden=64, depth=2),
                            optimizer=lambda q: torch.optim.Adam(q, lr=lr / 10), epochs=epochs,
                            seed=lab.seed)
        task.advance()
    v = high.diagnosis.verdicts["weights-fluctuating"]
    out["runs"][f"Adam {lr:g}"] = {"val": high.history.val_losses(),
                                   "swing": swing(high.history.val_losses()),
                                   "accuracy": high.history.val_metric("accuracy"),
                                   "jitter": v.jitter, "findings": high.findings(),
                                   "samples_example": _trajectory(high.recording)}
    ev = weights_fluctuating_verdict(ema.val, None)
    out["runs"][f"same run, EMA of the weights ({EMA_DECAY:g})"] = {
        "val": ema.val, "swing": swing(ema.val), "accuracy": ema.acc, "jitter": ev.jitter,
        "findings": []}
    lv = low.diagnosis.verdicts["weights-fluctuating"]
    out["runs"][f"Adam {lr / 10:g}"] = {"val": low.history.val_losses(),
                                        "swing": swing(low.history.val_losses()),
                                        "accuracy": low.history.val_metric("accuracy"),
                                        "jitter": lv.jitter, "findings": low.findings(),
                                        "samples_example": _trajectory(low.recording)}
    return out


def _trajectory(rec: Any, k: int = 4) -> list[list[float]]:
    """A few sampled weight coordinates over time (the monitor's weight samples)."""
    arr = rec.weight_samples.array()
    if arr.size == 0:
        return []
    cols = np.linspace(0, arr.shape[1] - 1, k).astype(int)
    return arr[:, cols].T.tolist()


def conclude_fluctuating(n: Numbers) -> Conclusion:
    high, ema, low = n["runs"].values()
    names = list(n["runs"])
    half = n["epochs"] // 2
    sw = [r["swing"] for r in (high, ema, low)]
    obs = [f"{name}: validation loss over the second half between {fmt(min(r['val'][half:]))} "
           f"and {fmt(max(r['val'][half:]))}, a typical jump of {s:.0%} from one epoch to the "
           f"next (the detector's jitter around the trend: {r['jitter']:.0%}); final "
           f"{fmt(r['val'][-1])}, accuracy {r['accuracy'][-1]:.1%}"
           for name, r, s in zip(names, (high, ema, low), sw, strict=True)]
    obs.append(f"nnrecipe's detectors: {names[0]}: {_fired(high['findings'])}; {names[2]}: "
               f"{_fired(low['findings'])}")
    crit = [ratio_above("epoch-to-epoch jump at the high rate / at the low rate",
                  sw[0] / max(sw[2], 1e-6), FLUCT_RATIO),
            above("final validation loss, high rate − its weights' EMA",
                  high["val"][-1] - ema["val"][-1], 0.0),
            above("final validation loss, high rate − low rate",
                  high["val"][-1] - low["val"][-1], 0.0)]
    shown = decided(crit)
    if shown:
        text = (f"At Adam {n['lr']:g} every step moves the weights a long way, so they bounce "
                f"around the minimum instead of settling: the validation loss jumps from epoch "
                f"to epoch (typically by {sw[0]:.0%}) and whichever epoch you stop "
                f"at is a lottery (final {fmt(high['val'][-1])}). Averaging the weights over "
                f"the last steps (an exponential moving average, decay {n['ema_decay']:g}) "
                f"lands near the centre of the bouncing: {fmt(ema['val'][-1])}, jumps of "
                f"{sw[1]:.0%}, with no extra training. A 10x lower rate removes the "
                f"cause: {fmt(low['val'][-1])}, jumps of {sw[2]:.0%}. Also: a larger "
                f"batch, learning-rate decay, or gradient clipping.")
    else:
        text = (f"This run did not show fluctuating weights clearly (epoch-to-epoch jumps of "
                f"{sw[0]:.0%} at the high rate vs {sw[2]:.0%} at the low one).")
    return Conclusion(shown, text, obs, crit)


def draw_fluctuating(n: Numbers) -> list[Plot]:
    fig, (a, b) = new_figure(width=10, height=3.6, ncols=2)
    for i, (name, r) in enumerate(n["runs"].items()):
        line(a, np.arange(1, len(r["val"]) + 1), r["val"], "o-", ms=3, color=COLORS[i],
             label=name)
    a.set(title="validation loss", xlabel="epoch", ylabel="loss", yscale="log")
    names = list(n["runs"])
    for j, key in enumerate((names[0], names[2])):
        for k, traj in enumerate(n["runs"][key].get("samples_example", [])):
            b.plot(np.asarray(traj, dtype=float) - float(traj[0]),
                   color=COLORS[0 if j == 0 else 2], lw=0.8, label=key if k == 0 else None)
    b.set(title="a few weights over time (change from their first value; one seed)",
          xlabel="monitor sample", ylabel="Δw")
    grid_legend(a, b, fontsize=7)
    return [Plot("Fluctuating weights, averaging and a lower rate", fig,
                 "a 64-64-64-10 MLP on digits")]


FLUCTUATING = register(Topic(
    name="weights-fluctuating",
    question="Your model's weights fluctuate a lot during training. How does that affect its "
             "performance? What to do about it?",
    questions=(14,),
    codes=("weights-fluctuating", "lr-too-high", "update-ratio"),
    advice="The monitor samples a few weights per layer and their update-to-weight ratio; "
           "weights-fluctuating fires when the validation loss jitters around its trend while "
           "the weights move fast.",
    setup="A 64-64-64-10 MLP on scikit-learn digits through nnrecipe's trainer with the "
          "monitor: Adam at 5e-2 (too high) for 12 epochs with an exponential moving average "
          "of its weights validated alongside, and Adam at 5e-3.",
    measure=measure_fluctuating, conclude=conclude_fluctuating, draw=draw_fluctuating,
))
