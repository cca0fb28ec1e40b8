"""``data-overview``: look at the data before anything else (no finding of its own).

The loading pass runs here, first, so its cost shows on this line of the report; the
section then shows what a careful engineer looks at first: how many samples each split has
and how many are usable, a grid of samples with their labels (images), the distributions of
the most unusual features (tables) and of the target (regression).
"""

from __future__ import annotations

import numpy as np

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding
from nnrecipe.data import figures
from nnrecipe.data.base import DataCheck
from nnrecipe.data.stats import column_stats
from nnrecipe.data.view import IMAGE, DataView

GRID_PER_CLASS, GRID_CLASSES, GRID_MAX = 6, 10, 64
N_FEATURE_PANELS = 8


class DataOverview(DataCheck):
    name = "data-overview"
    title = "What the data looks like: splits, a grid of samples, feature distributions"
    order = 1

    def applies(self, ctx: Context) -> str | None:
        self.view(ctx)  # the loading pass: its time is reported on this check
        return None

    def run(self, ctx: Context) -> list[Finding]:
        view = self.view(ctx)
        ctx.record("kind", view.kind)
        ctx.record("sample_shape", list(view.sample_shape))
        ctx.record("input_dtype", view.input_dtype)
        ctx.record("task", view.task)
        ctx.record("representation", view.rep_info)
        rows = []
        for s in view.splits.values():
            if s.labels is not None:
                k = len(np.unique(s.labels[s.ok]))
                what = f"{k} classes"
            elif s.target is not None and s.ok.any():
                t = s.target[s.ok]
                what = f"target {t.min():.3g} .. {t.max():.3g} (mean {t.mean():.3g})"
            else:
                what = "targets with no single value per sample"
            rows.append([s.name, s.n_total, s.n, int(s.ok.sum()), what])
            ctx.record(f"{s.name}_samples", s.n_total)
            ctx.record(f"{s.name}_usable", int(s.ok.sum()))
        ctx.add_table("Splits", ["split", "samples", "audited", "usable", "labels"], rows,
                      caption=f"{view.kind} inputs of shape {view.sample_shape}; distances use "
                              f"{view.rep_info}")
        if view.notes:
            ctx.add_table("How the data was read", ["note"], [[n] for n in view.notes])
        if view.kind == IMAGE:
            self._grid(ctx, view)
        else:
            self._features(ctx, view)
        if view.has_target:
            fig = figures.target_histogram(view)
            if fig is not None:
                ctx.add_figure("Target distribution per split", fig)
        return []

    def _grid(self, ctx: Context, view: DataView) -> None:
        tr = view.train
        rng = np.random.default_rng(ctx.seed)
        if tr.labels is not None:
            picks: list[int] = []
            for c in np.unique(tr.labels[tr.ok])[:GRID_CLASSES]:
                pos = np.flatnonzero(tr.ok & (tr.labels == c))
                picks += sorted(rng.choice(pos, min(GRID_PER_CLASS, len(pos)), replace=False))
            titles = [f"{view.class_name(int(tr.labels[p]))} [{int(tr.index[p])}]" for p in picks]
            ncols = GRID_PER_CLASS
        else:
            good = tr.good
            picks = sorted(rng.choice(good, min(GRID_MAX, len(good)), replace=False).tolist())
            titles = [f"[{int(tr.index[p])}]" + (f" y={tr.target[p]:.3g}"
                                                  if tr.target is not None else "") for p in picks]
            ncols = 8
        fig = figures.sample_grid(view, "train", picks, titles, ncols=ncols,
                                  title="training samples (label [index])")
        if fig is not None:
            ctx.add_figure("A grid of training samples", fig,
                           caption="random samples per class; look for anything odd")

    def _features(self, ctx: Context, view: DataView) -> None:
        tr = view.train
        good = tr.good
        if tr.X.shape[1] == 0 or len(good) < 2:
            return
        st = column_stats(tr.X, good)
        mean, std = st.mean, np.where(st.constant, 0.0, st.std)
        safe = np.where(std > 0, std, 1.0)
        third = np.zeros(tr.X.shape[1])
        for start in range(0, len(good), 16384):  # bounded float64 blocks, no copy of X
            block = tr.X[good[start:start + 16384]]
            third += (((block - mean) / safe) ** 3).sum(0)
        skew = np.where(std > 0, third / len(good), 0.0)
        order = np.argsort(-np.abs(skew), kind="stable")
        top = [int(j) for j in order if std[j] > 0][:N_FEATURE_PANELS]
        fig = figures.feature_histograms(view, top, title="the most skewed features, per split")
        if fig is not None:
            ctx.add_figure("Feature distributions", fig,
                           caption="the features with the most skewed distributions (heavy tails, "
                                   "outliers, sentinel values show up here)")
        rows = [[view.feature_names[j], float(mean[j]), float(std[j]), float(st.lo[j]),
                 float(st.hi[j]), float(skew[j])] for j in top]
        ctx.add_table("The most skewed features (train)",
                      ["feature", "mean", "std", "min", "max", "skewness"], rows)
