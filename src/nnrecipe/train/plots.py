"""The train stage's figures, drawn from a :class:`~nnrecipe.train.monitor.Recording` and the
verdicts of :func:`~nnrecipe.train.detectors.diagnose` (no pyplot: ``Figure`` objects)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from nnrecipe.report.plots import COLORS, legend_outside, new_figure
from nnrecipe.train import detectors as d
from nnrecipe.train.monitor import Recording
from nnrecipe.train.signals import moving_median, smoothing_window


def _epoch_steps(rec: Recording) -> np.ndarray:
    return np.asarray([e["step"] for e in rec.epochs], dtype=float)


def learning_curves(rec: Recording, verdicts: dict[str, Any], *, best_epoch: int | None = None,
                    stopped: str | None = None) -> Figure:
    """Training loss (steps, moving median, epoch mean, end-of-epoch eval mode) and validation
    loss, with the diagnosed regions shaded."""
    has_acc = any(math.isfinite(v) for v in rec.epoch_series("val_accuracy"))
    fig, axes = new_figure(width=10.0 if has_acc else 7.0, height=3.8, ncols=2 if has_acc else 1)
    ax = axes[0]
    loss = np.asarray(rec.loss, dtype=float)
    steps = np.arange(1, len(loss) + 1)
    ok = np.isfinite(loss)
    if ok.any():
        ax.plot(steps[ok], loss[ok], color=COLORS[0], alpha=0.25, lw=0.8, label="train (step)")
        w = smoothing_window(int(ok.sum()))
        ax.plot(steps[ok], moving_median(loss[ok], w), color=COLORS[0], lw=1.6,
                label=f"train (moving median, {w} steps)")
    es = _epoch_steps(rec)
    for key, label, color, style in (("train_loss", "train (epoch mean)", COLORS[0], "o"),
                                     ("train_eval_loss", "train (end of epoch, eval mode)", COLORS[2], "s--"),
                                     ("val_loss", "validation", COLORS[1], "o-")):
        ys = np.asarray(rec.epoch_series(key))
        if len(ys) and np.isfinite(ys).any():
            ax.plot(es, ys, style, color=color, ms=3.5, lw=1.3, label=label)
    _mark_regions(ax, rec, verdicts, es)
    if best_epoch is not None and 0 < best_epoch <= len(es):
        ax.axvline(es[best_epoch - 1], color=COLORS[2], ls=":", lw=1.2, label=f"best epoch {best_epoch}")
    if stopped:
        ax.axvline(len(loss), color="black", ls="-.", lw=1.0, label=f"stopped: {stopped}")
    finite = loss[ok]
    if len(finite) and finite.min() > 0 and finite.max() / finite.min() > 20:
        ax.set_yscale("log")
    elif len(finite) and finite.min() >= 0 and finite.max() > 20 * max(np.median(finite), 1e-12):
        # spikes and exact zeros: linear near 0, logarithmic above 1% of the initial loss
        ax.set_yscale("symlog", linthresh=max(float(np.median(finite)), 0.01 * float(finite[0]), 1e-6))
        ax.set_ylim(bottom=0)
    ax.set(title="learning curves", xlabel="optimizer step", ylabel="loss")
    ax.grid(alpha=0.3)
    legend_outside(ax, fontsize=7, below=has_acc)  # never over the curves
    if has_acc:
        acc = rec.epoch_series("val_accuracy")
        axes[1].plot(es, acc, "o-", color=COLORS[1], ms=3.5)
        axes[1].set(title="validation accuracy", xlabel="optimizer step", ylabel="accuracy")
        axes[1].grid(alpha=0.3)
    return fig


def _mark_regions(ax: Any, rec: Recording, v: dict[str, Any], es: np.ndarray) -> None:
    ov = v.get("overfitting")
    if ov is not None and ov.fires and ov.onset_epoch and ov.onset_epoch <= len(es):
        start = es[ov.onset_epoch - 2] if ov.onset_epoch >= 2 else 0
        ax.axvspan(start, es[-1], color=COLORS[1], alpha=0.08,
                   label=f"overfitting from epoch {ov.onset_epoch}")
    pv = v.get("loss-plateau")
    if pv is not None and pv.fires and pv.start_step is not None:
        ax.axvspan(pv.start_step + 1, pv.end_step + 1, color=COLORS[3], alpha=0.12,
                   label=f"plateau ({pv.kind})")
    dv = v.get("loss-diverging")
    if dv is not None and dv.fires and dv.best_step is not None:
        ax.axvspan(dv.best_step + 1, len(rec.loss), color=COLORS[1], alpha=0.15, label="diverging")
    hv = v.get("lr-too-high")
    if hv is not None and hv.fires and hv.spikes:
        ys = [rec.loss[i] for i in hv.spikes]
        ax.plot([i + 1 for i in hv.spikes], ys, "x", color=COLORS[1], ms=6, label="loss spikes")


def gradient_heatmap(rec: Recording) -> Figure:
    """log10 of each layer's gradient norm over the recorded steps."""
    g = rec.grad.array()
    fig, (ax,) = new_figure(width=8.0, height=max(2.4, 0.28 * len(rec.layers) + 1.2))
    if g.size == 0:
        ax.text(0.5, 0.5, "no gradients recorded", ha="center", transform=ax.transAxes)
        return fig
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log10(np.where(g > 0, g, np.nan)).T
    z = np.where(np.isfinite(z), z, np.nan)
    steps = rec.grad.steps
    im = ax.imshow(z, aspect="auto", interpolation="nearest", cmap="viridis",
                   extent=(steps[0] - 0.5, steps[-1] + 0.5, len(rec.layers) - 0.5, -0.5))
    ax.set_yticks(range(len(rec.layers)), [_short(n) for n in rec.layers], fontsize=7)
    ax.set(title="gradient norm per layer (log10), input at the top", xlabel="optimizer step")
    fig.colorbar(im, ax=ax, label="log10 ||grad||")
    return fig


def activation_fractions(rec: Recording) -> Figure:
    """One panel per kind of activation the model has (no empty panel)."""
    panels = [(rec.dead, {"relu"}, "dead ReLU units (fraction of the layer)", d.DEAD_FRACTION),
              (rec.saturated, {"tanh", "sigmoid"}, "saturated tanh/sigmoid outputs",
               d.SATURATED_FRACTION)]
    present = [p for p in panels if any(kind in p[1] for _, kind in rec.activations)]
    panels = present or panels[:1]
    fig, axes = new_figure(width=5.5 * len(panels), height=3.2, ncols=len(panels))
    for ax, (series, kinds, title, thr) in zip(axes, panels, strict=True):
        arr = series.array()
        drawn = 0
        for j, (name, kind) in enumerate(rec.activations):
            if kind in kinds and arr.size and j < arr.shape[1]:
                ax.plot(series.steps, arr[:, j], "o-", ms=2.5, lw=1.2,
                        color=COLORS[drawn % len(COLORS)], label=_short(name))
                drawn += 1
        ax.axhline(thr, ls="--", color="black", lw=0.8, label=f"threshold {thr:.0%}")
        ax.set(title=title, xlabel="optimizer step", ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
        if drawn:
            legend_outside(ax, fontsize=7)
        else:
            ax.text(0.5, 0.5, "no such layers (as nn modules)", ha="center", transform=ax.transAxes)
    return fig


def update_ratios(rec: Recording) -> Figure:
    u = rec.update.array()
    fig, (ax,) = new_figure(width=7.0, height=3.4)
    ax.axhspan(d.UPDATE_LOW, d.UPDATE_HIGH, color=COLORS[2], alpha=0.06, label="not flagged")
    ax.axhline(1e-3, color=COLORS[2], ls="--", lw=1, label="~1e-3 (rule of thumb)")
    for j, name in enumerate(rec.layers):
        if u.size and j < u.shape[1]:
            col = np.where(u[:, j] > 0, u[:, j], np.nan)
            ax.plot(rec.update.steps, col, lw=1.2, color=COLORS[j % len(COLORS)], label=_short(name))
    ax.set_yscale("log")
    ax.set(title="update / weight ratio per layer", xlabel="optimizer step", ylabel="||Δw|| / ||w||")
    ax.grid(alpha=0.3)
    legend_outside(ax, fontsize=7, ncol=2 if len(rec.layers) > 8 else 1)
    return fig


def prediction_dynamics(rec: Recording) -> Figure:
    """Outputs on a fixed batch, epoch after epoch."""
    fig, (ax,) = new_figure(width=7.0, height=3.4)
    preds = rec.predictions
    if not preds:
        ax.text(0.5, 0.5, "no fixed batch recorded", ha="center", transform=ax.transAxes)
        return fig
    epochs = [p["epoch"] for p in preds]
    if "p_true" in preds[0]:
        z = np.asarray([p["p_true"] for p in preds]).T
        im = ax.imshow(z, aspect="auto", cmap="RdYlGn", vmin=0, vmax=1, interpolation="nearest",
                       extent=(epochs[0] - 0.5, epochs[-1] + 0.5, len(z) - 0.5, -0.5))
        ax.set_yticks(range(len(z)), [f"#{i} (y={t})" for i, t in enumerate(rec.prediction_targets)],
                      fontsize=7)
        ax.set(title="p(true class) on a fixed validation batch", xlabel="epoch")
        fig.colorbar(im, ax=ax, label="probability of the true class")
    else:
        z = np.asarray([p["output"] for p in preds]).T
        for i, row in enumerate(z):
            color = COLORS[i % len(COLORS)]
            ax.plot(epochs, row, "o-", ms=2.5, color=color, lw=1)
            if i < len(rec.prediction_targets):
                ax.axhline(rec.prediction_targets[i], color=color, ls=":", lw=0.8)
        ax.set(title="predictions on a fixed batch (dotted: targets)", xlabel="epoch",
               ylabel="output")
        ax.grid(alpha=0.3)
    return fig


def _short(name: str, n: int = 22) -> str:
    return name if len(name) <= n else "…" + name[-(n - 1):]
