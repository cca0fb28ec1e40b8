"""``inputs-not-normalized``: the exact batch that reaches the network, looked at.

The recipe: "visualize just before the net" — the only source of truth is what goes into
``model(x)``, after the dataset, the collate function and the user's own step have done their
work. The probe (:mod:`nnrecipe.skeleton.probe`) captures it with a forward pre-hook on the
model while the user's ``train_step`` runs. The numbers that matter are those the first
learned layer (Linear/Conv/RNN) sees, so a model that normalises inside its ``forward`` (a
first BatchNorm, ``x / 255``) is judged on what comes out of that normalisation. Token ids
going into an embedding are ids, not features, and are not judged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.axes import Axes

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check
from nnrecipe.report.plots import COLORS, new_figure
from nnrecipe.skeleton.probe import get_probe, probe_skip_reason

# By reasoning: PyTorch's default init (kaiming_uniform, a=sqrt(5)) draws first-layer weights
# of variance 1/(3 fan_in), sized for inputs of unit scale; a feature of mean m or std s
# scales its share of the first pre-activations by that factor. At 5 the pre-activations are
# 5x (variance 25x) what the init assumes: saturated tanh/sigmoid, a loss at init far from
# ln C, and steps dominated by one feature. Standardised features stay far below (|mean| ~ 0,
# std ~ 1; a batch of ~200 samples would need a single >= 70-sigma outlier to reach std 5),
# pixels in [0, 1] have |mean|, std < 1, raw 0-255 pixels have mean ~100 and std ~70.
MEAN_MAX = 5.0
STD_MAX = 5.0
MAX_FEATURES_SHOWN = 64
EMBEDDING_TYPES = ("Embedding", "EmbeddingBag")


@dataclass
class FeatureStats:
    axis: int  # the feature/channel axis of the input
    means: np.ndarray
    stds: np.ndarray
    minimum: float
    maximum: float
    mean: float
    std: float
    values: np.ndarray | None = None  # (samples, features) when there are few features


def feature_axis(x: torch.Tensor, first_layer_type: str | None) -> int:
    """Channels for images and Conv1d signals (axis 1), the last axis otherwise."""
    if x.ndim >= 4 or (x.ndim == 3 and first_layer_type == "Conv1d"):
        return 1
    return x.ndim - 1 if x.ndim >= 2 else 0


def feature_stats(x: torch.Tensor, axis: int) -> FeatureStats:
    xf = x.double()
    flat = xf.reshape(-1, 1) if xf.ndim == 1 else xf.movedim(axis, -1).reshape(-1, xf.shape[axis])
    return FeatureStats(axis, flat.mean(0).numpy(), flat.std(0, unbiased=False).numpy(),
                        float(xf.min()), float(xf.max()), float(xf.mean()),
                        float(xf.std(unbiased=False)),
                        flat[:20000].numpy() if flat.shape[1] <= 4 else None)


def normalization_verdict(means: np.ndarray, stds: np.ndarray, mean_max: float = MEAN_MAX,
                          std_max: float = STD_MAX) -> list[int]:
    """Pure decision: the features whose mean is far from 0 or whose std is far above 1."""
    bad = (np.abs(means) > mean_max) | (stds > std_max)
    return [int(i) for i in np.nonzero(bad)[0]]


class InputsNotNormalized(Check):
    code = "inputs-not-normalized"
    stage = "skeleton"
    severity = Severity.WARNING
    title = "The batch that reaches the model is normalised"
    fix = ("Standardise inputs with statistics of the training set: per channel for images "
           "(x - mean) / std, per feature for tables (sklearn StandardScaler fitted on train "
           "only), log1p first for heavy-tailed counts. Apply the same transform to val/test.")
    order = 10

    def applies(self, ctx: Context) -> str | None:
        return probe_skip_reason(ctx, self.name)

    def run(self, ctx: Context) -> list[Finding]:
        probe = get_probe(ctx, self.name)["a"]
        raw = [x for x in probe.inputs if x is not None]
        if not raw:
            ctx.record("skipped", "model(x) did not receive a tensor")
            return []
        x_model = torch.cat(raw) if all(r.shape[1:] == raw[0].shape[1:] for r in raw) else raw[0]
        layer = probe.first_layer
        ctx.record("dtype_at_model", str(x_model.dtype))
        ctx.record("shape_at_model", list(x_model.shape))
        ctx.record("first_layer", list(layer) if layer else None)
        ids = layer is not None and layer[1] in EMBEDDING_TYPES
        if ids or (not x_model.is_floating_point() and not probe.first_layer_inputs):
            ctx.record("token_ids", True)
            self._plot(ctx, x_model, None, "token ids reaching model(x)")
            return []
        seen = probe.first_layer_inputs or raw
        x = torch.cat(seen) if all(s.shape[1:] == seen[0].shape[1:] for s in seen) else seen[0]
        if not x.is_floating_point():
            ctx.record("skipped", f"the first layer receives {x.dtype}")
            return []
        axis = feature_axis(x, layer[1] if layer else None)
        stats = feature_stats(x, axis)
        inside = bool(probe.first_layer_inputs) and not _same(x_model, x)
        for key in ("minimum", "maximum", "mean", "std"):
            ctx.record(key, getattr(stats, key))
        ctx.record("feature_axis", axis)
        ctx.record("features", len(stats.means))
        ctx.record("normalised_inside_model", inside)
        self._table(ctx, stats, x_model, x, inside)
        self._plot(ctx, x_model, stats, "the batch reaching model(x)")
        bad = normalization_verdict(stats.means, stats.stds)
        if not bad:
            return []
        worst = sorted(bad, key=lambda i: -max(abs(stats.means[i]), stats.stds[i]))[:10]
        what = "channel" if x.ndim >= 4 else "feature"
        evidence = {"dtype": str(x.dtype), "shape": list(x.shape), "min": stats.minimum,
                    "max": stats.maximum, "mean": stats.mean, "std": stats.std,
                    f"{what}s_off": len(bad), f"{what}s_total": len(stats.means),
                    "worst": {int(i): {"mean": float(stats.means[i]), "std": float(stats.stds[i])}
                              for i in worst},
                    "first_layer": list(layer) if layer else None,
                    "thresholds": {"abs_mean": MEAN_MAX, "std": STD_MAX}}
        i = worst[0]
        raw_hint = " (raw 0-255 pixels?)" if stats.maximum > 50 and stats.minimum >= 0 else ""
        return [self.finding(
            f"{len(bad)} of {len(stats.means)} input {what}s reach the first layer "
            f"({layer[0] if layer else 'model'}) unnormalised: {what} {i} has mean "
            f"{stats.means[i]:.4g} and std {stats.stds[i]:.4g} (limits: |mean| <= {MEAN_MAX:g}, "
            f"std <= {STD_MAX:g}); the whole batch spans [{stats.minimum:.4g}, "
            f"{stats.maximum:.4g}]{raw_hint}", evidence)]

    def _table(self, ctx: Context, stats: FeatureStats, x_model: torch.Tensor, x: torch.Tensor,
               inside: bool) -> None:
        rows = [["dtype at model(x)", str(x_model.dtype)], ["shape", str(tuple(x_model.shape))],
                ["range", f"[{stats.minimum:.4g}, {stats.maximum:.4g}]"],
                ["mean / std (all values)", f"{stats.mean:.4g} / {stats.std:.4g}"],
                ["features/channels (axis)", f"{len(stats.means)} (axis {stats.axis})"],
                ["per-feature |mean| max", f"{float(np.abs(stats.means).max()):.4g}"],
                ["per-feature std min / max",
                 f"{float(stats.stds.min()):.4g} / {float(stats.stds.max()):.4g}"]]
        if inside:
            rows.append(["note", "the model normalises its input before the first layer; "
                                 "statistics are those of the first layer's input"])
        ctx.add_table("What reaches the network", ["quantity", "value"], rows)

    def _plot(self, ctx: Context, x: torch.Tensor, stats: FeatureStats | None, title: str) -> None:
        xs = x.detach().float()
        fig, axes = new_figure(width=10, height=3.6, ncols=2 if stats is not None else 1)
        if xs.ndim == 4 and (xs.shape[1] in (1, 3) or xs.shape[-1] in (1, 3)):
            _mosaic(axes[0], xs, title)
        else:
            _heatmap(axes[0], xs, title)
        if stats is not None and stats.values is not None and len(stats.means) <= 4:
            _histograms(axes[1], stats, "channel" if xs.ndim >= 4 else "feature")
        elif stats is not None:
            _stats_axes(axes[1], stats)
        ctx.add_figure("The batch that reaches the model", fig)


def mosaic(images: np.ndarray, ncols: int = 8, pad: int = 1) -> np.ndarray:
    """Images (N, H, W[, C]) tiled into one array, each scaled to [0, 1] on its own (the
    true range is in the title): one imshow instead of a subplot per image."""
    n, h, w = images.shape[:3]
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    shape = (nrows * (h + pad) - pad, ncols * (w + pad) - pad) + images.shape[3:]
    out = np.ones(shape)
    for i, img in enumerate(images):
        lo, hi = float(np.min(img)), float(np.max(img))
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
        r, c = divmod(i, ncols)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = img
    return out


def _mosaic(ax: Axes, x: torch.Tensor, title: str) -> None:
    n = min(16, len(x))
    imgs = x[:n].numpy()
    if imgs.shape[1] in (1, 3) and imgs.shape[-1] not in (1, 3):
        imgs = imgs.transpose(0, 2, 3, 1)
    if imgs.shape[-1] == 1:
        imgs = imgs[..., 0]
    ax.imshow(mosaic(imgs), cmap="gray" if imgs.ndim == 3 else None, interpolation="nearest")
    ax.axis("off")
    ax.set_title(f"{title}: {n} samples, values in [{float(x.min()):.3g}, {float(x.max()):.3g}]",
                 fontsize=9)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)


def _heatmap(ax: Axes, x: torch.Tensor, title: str) -> None:
    if x.ndim >= 3:  # (N, T, F): the first sample; deeper inputs are flattened per sample
        img, what = x[0].reshape(x.shape[1], -1).numpy(), "sample 0"
        xlabel, ylabel = "feature", "position"
    elif x.ndim == 2:
        img, what = x[:64].numpy(), f"{min(64, len(x))} samples"
        xlabel, ylabel = "feature / position", "sample"
    else:
        img, what = x[:64].reshape(-1, 1).numpy(), "values"
        xlabel, ylabel = "", "sample"
    im = ax.imshow(img, aspect="auto", interpolation="nearest", cmap="viridis")
    ax.figure.colorbar(im, ax=ax)
    ax.set(title=f"{title} ({what})", xlabel=xlabel, ylabel=ylabel)


def _histograms(ax: Axes, stats: FeatureStats, what: str) -> None:
    assert stats.values is not None
    for c in range(stats.values.shape[1]):
        ax.hist(stats.values[:, c], bins=50, alpha=0.55, color=COLORS[c % len(COLORS)],
                label=f"{what} {c}: mean {stats.means[c]:.3g}, std {stats.stds[c]:.3g}")
    ax.set(title=f"values per {what} (aim: mean ~0, std ~1)", xlabel="value",
           ylabel="count")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def _stats_axes(ax: Axes, stats: FeatureStats) -> None:
    k = len(stats.means)
    if k <= MAX_FEATURES_SHOWN:
        ax.errorbar(np.arange(k), stats.means, yerr=stats.stds, fmt="o", ms=3, color=COLORS[0],
                    ecolor=COLORS[0], label="mean ± std")
        ax.axhline(0, lw=0.8, color="#8c959f")
        for y in (-MEAN_MAX, MEAN_MAX):
            ax.axhline(y, ls="--", lw=1, color=COLORS[3])
        ax.set(xlabel="feature / channel", title="per-feature mean ± std (|mean| limit dashed)")
    else:
        ax.hist(stats.means, bins=40, alpha=0.6, color=COLORS[0], label="per-feature mean")
        ax.hist(stats.stds, bins=40, alpha=0.6, color=COLORS[1], label="per-feature std")
        ax.axvline(STD_MAX, ls="--", lw=1, color=COLORS[3])
        ax.set(xlabel="value", title="per-feature means and stds (limit dashed)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
