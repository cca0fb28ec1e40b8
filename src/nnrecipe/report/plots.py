"""Small drawing helpers. Figures are built with ``matplotlib.figure.Figure`` directly (no
pyplot): no global state, no GUI backend, safe in a user's notebook or a thread."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

COLORS = ("#0969da", "#cf222e", "#1a7f37", "#bf8700", "#8250df", "#57606a", "#e16f24")

# The report shows a figure at most ~1000 px wide (narrower on a phone), and figures are
# rendered at 100 dpi: a figure wider than 10 in is scaled down, and its text with it. Thumbnail
# grids are capped at this many columns so a 9 pt caption stays >= ~11 px on a wide screen.
MAX_GRID_COLUMNS = 8
THUMB_TITLE_PT = 9  # was 7 pt on up to 16 columns: ~6 px once the report scaled it down


def legend_outside(ax: Axes, fontsize: int = 8, *, below: bool = False, ncol: int = 1,
                   **kwargs: object) -> None:
    """The legend outside the axes, to the right (or ``below``, for a panel with a neighbour
    on its right), so it never covers the data; the constrained layout makes room for it.
    Nothing is drawn when nothing is labelled."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    if below:
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.16),
                  fontsize=fontsize, frameon=False, ncol=max(ncol, 2), **kwargs)  # type: ignore[arg-type]
    else:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
                  fontsize=fontsize, frameon=False, ncol=ncol, **kwargs)  # type: ignore[arg-type]


def rotate_long_ticks(ax: Axes, labels: Sequence[str], *, max_chars: int = 6,
                      fontsize: int = 8) -> None:
    """x tick labels that do not overlap: rotated and right-aligned when they are long or
    many (a bar chart of parameter names, say)."""
    long = max((len(s) for s in labels), default=0) > max_chars or len(labels) > 8
    ax.set_xticks(range(len(labels)), list(labels), fontsize=fontsize,
                  rotation=35 if long else 0, ha="right" if long else "center",
                  rotation_mode="anchor")


def wrap_title(title: str, width_in: float, fontsize: float = 12.0) -> str:
    """``title`` broken into lines that fit a figure ``width_in`` inches wide (a title wider
    than a narrow figure is cut off at both edges: "parameter importances (fANOVA, 5 trials:
    roug" on the demo). An average character is ~0.55 em, less the axes' margins."""
    chars = max(12, int((width_in - 0.6) * 72 / (0.55 * fontsize)))
    return "\n".join(textwrap.wrap(title, chars)) if len(title) > chars else title


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
    legend_outside(ax)
    return fig


def bar_plot(values: dict[str, float], *, title: str = "", ylabel: str = "",
             highlight: Sequence[str] = ()) -> Figure:
    names = list(values)
    longest = max((len(n) for n in names), default=0)
    width = min(10.0, max(4.0, 0.6 * len(values) + 2))
    fig, (ax,) = new_figure(width=width,
                            height=3.4 + (0.06 * min(longest, 30) if longest > 6 else 0))
    colors = [COLORS[1] if n in highlight else COLORS[0] for n in names]
    ax.bar(range(len(names)), [values[n] for n in names], color=colors)
    rotate_long_ticks(ax, names)
    ax.set(title=wrap_title(title, width), ylabel=ylabel)
    ax.grid(alpha=0.3, axis="y")
    return fig


def image_grid(images: np.ndarray, labels: Sequence[str] | None = None, *, title: str = "",
               ncols: int = 8, cmap: str = "gray") -> Figure:
    """A grid of images, shape (N, H, W) or (N, H, W, C) or (N, C, H, W) with C in {1, 3};
    at most :data:`MAX_GRID_COLUMNS` columns, so captions stay legible in the report."""
    imgs = np.asarray(images, dtype=float)
    if imgs.ndim == 4 and imgs.shape[1] in (1, 3) and imgs.shape[-1] not in (1, 3):
        imgs = imgs.transpose(0, 2, 3, 1)
    if imgs.ndim == 4 and imgs.shape[-1] == 1:
        imgs = imgs[..., 0]
    n = len(imgs)
    ncols = max(1, min(ncols, n, MAX_GRID_COLUMNS))
    nrows = max(1, int(np.ceil(n / ncols)))
    title_lines = max((str(s).count("\n") + 1 for s in labels), default=0) if labels is not None else 0
    fig = Figure(figsize=(1.25 * ncols + 0.4, 1.25 * nrows + 0.2 * title_lines * nrows + 0.5),
                 layout="constrained")
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
            ax.set_title(str(labels[i]), fontsize=THUMB_TITLE_PT)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
