"""Small drawing helpers. Figures are built with ``matplotlib.figure.Figure`` directly (no
pyplot): no global state, no GUI backend, safe in a user's notebook or a thread."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

COLORS = ("#0969da", "#cf222e", "#1a7f37", "#bf8700", "#8250df", "#57606a", "#e16f24")


def new_figure(width: float = 6.0, height: float = 3.4, ncols: int = 1, nrows: int = 1
               ) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def line_plot(series: dict[str, Sequence[float]], *, title: str = "", xlabel: str = "step",
              ylabel: str = "loss", logy: bool = False, hlines: dict[str, float] | None = None,
              x: Sequence[float] | None = None, logx: bool = False) -> Figure:
    """Curves by name on one axis, with optional labelled horizontal reference lines."""
    fig, (ax,) = new_figure()
    for i, (name, ys) in enumerate(series.items()):
        xs = np.arange(len(ys)) if x is None else np.asarray(x)[: len(ys)]
        ax.plot(xs, np.asarray(ys, dtype=float), label=name, color=COLORS[i % len(COLORS)], lw=1.5)
    for j, (name, y) in enumerate((hlines or {}).items()):
        ax.axhline(y, ls="--", lw=1, color=COLORS[(j + 3) % len(COLORS)], label=name)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def bar_plot(values: dict[str, float], *, title: str = "", ylabel: str = "",
             highlight: Sequence[str] = ()) -> Figure:
    fig, (ax,) = new_figure(width=max(4.0, 0.5 * len(values) + 2))
    names = list(values)
    colors = [COLORS[1] if n in highlight else COLORS[0] for n in names]
    ax.bar(names, [values[n] for n in names], color=colors)
    ax.set(title=title, ylabel=ylabel)
    ax.tick_params(axis="x", rotation=45 if len(names) > 6 else 0)
    ax.grid(alpha=0.3, axis="y")
    return fig


def image_grid(images: np.ndarray, labels: Sequence[str] | None = None, *, title: str = "",
               ncols: int = 8, cmap: str = "gray") -> Figure:
    """A grid of images, shape (N, H, W) or (N, H, W, C) or (N, C, H, W) with C in {1, 3}."""
    imgs = np.asarray(images, dtype=float)
    if imgs.ndim == 4 and imgs.shape[1] in (1, 3) and imgs.shape[-1] not in (1, 3):
        imgs = imgs.transpose(0, 2, 3, 1)
    if imgs.ndim == 4 and imgs.shape[-1] == 1:
        imgs = imgs[..., 0]
    n = len(imgs)
    ncols = max(1, min(ncols, n))
    nrows = max(1, int(np.ceil(n / ncols)))
    fig = Figure(figsize=(1.1 * ncols + 0.4, 1.2 * nrows + 0.5), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = imgs[i]
        lo, hi = np.nanmin(img), np.nanmax(img)
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
        ax.imshow(img, cmap=None if img.ndim == 3 else cmap, interpolation="nearest")
        if labels is not None:
            ax.set_title(str(labels[i]), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
