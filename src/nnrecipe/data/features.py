"""Feature-level checks: ``constant-features``, ``unscaled-features``, ``shortcut-feature``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.data.base import MAX_LISTED, DataCheck, fmt_list, subsample, too_few
from nnrecipe.data.stats import column_stats, group_stats
from nnrecipe.data.view import IMAGE, STAT_NAMES, TOKENS, DataView, image_layout
from nnrecipe.report.plots import COLORS, new_figure

# ----------------------------------------------------------------- constant features

# A constant column carries no information and divides by zero when standardised. A few in
# a table are common leftovers (info); when half the columns are constant the data was most
# likely read or joined wrongly (warning); when all are, there is nothing to learn (error).
CONSTANT_WARN_FRACTION = 0.5
# Below this many samples a column can be constant by chance (a one-hot category of
# prevalence 15% is absent from 20 samples with probability 4%, from 5 samples with 44%), so
# "half the columns are constant" is no sign of a broken read: info at most.
CONSTANT_MIN_SAMPLES = 20


def constant_verdict(n_constant: int, n_features: int, n_samples: int = CONSTANT_MIN_SAMPLES
                     ) -> Severity | None:
    if n_constant == 0 or n_features == 0:
        return None
    if n_constant == n_features:
        return Severity.ERROR  # the samples are all identical: nothing to learn
    if n_constant / n_features >= CONSTANT_WARN_FRACTION and n_samples >= CONSTANT_MIN_SAMPLES:
        return Severity.WARNING
    return Severity.INFO


class ConstantFeatures(DataCheck):
    code = "constant-features"
    severity = Severity.INFO
    title = "Every input feature varies across the training set"
    fix = ("Drop constant columns (they carry no information) and never divide by their zero "
           "standard deviation when standardising; if many are constant, check how the data "
           "was read or joined. An input that is entirely constant cannot be learnt from.")
    order = 9

    def applies_to(self, view: DataView) -> str | None:
        if view.kind == TOKENS:
            return "token ids: constant positions (padding, a start token) are normal"
        return too_few(int(view.train.ok.sum()), 2, "training")

    def run(self, ctx: Context) -> list[Finding]:
        view = self.view(ctx)
        tr = view.train
        if view.kind == IMAGE:
            return self._images(ctx, view)
        st = column_stats(tr.X, tr.good)  # chunked: no copy of the training matrix
        const = np.flatnonzero(st.constant)
        d = tr.X.shape[1]
        ctx.record("constant_features", len(const))
        ctx.record("features", d)
        sev = constant_verdict(len(const), d, int(tr.ok.sum()))
        if sev is None:
            return []
        others = [column_stats(s.X[:, const], s.good) for n, s in view.splits.items()
                  if n != "train" and s.ok.any()]
        varies = [view.feature_names[j] for i, j in enumerate(const)
                  if any(not o.constant[i] or not np.isclose(o.mean[i], st.lo[j], rtol=1e-6,
                                                              atol=0)
                         for o in others)]
        rows = [[view.feature_names[j], float(st.lo[j]),
                 "yes" if view.feature_names[j] in varies else "no"] for j in const]
        ctx.add_table("Constant features (train)", ["feature", "value", "varies in val/test"], rows)
        names = [view.feature_names[j] for j in const]
        msg = (f"{len(const)} of {d} features are constant over the {int(tr.ok.sum())} usable "
               f"training samples: {fmt_list(names, 6)}.")
        if varies:
            msg += (f" {fmt_list(varies, 3)} vary in val/test: standardising with the training "
                    "std (0) would blow them up.")
        evidence = {"constant": names[:MAX_LISTED], "n_constant": len(const), "features": d,
                    "varies_elsewhere": varies[:MAX_LISTED]}
        return [self.finding(msg, evidence, severity=sev)]

    def _images(self, ctx: Context, view: DataView) -> list[Finding]:
        """Per-pixel constants are normal (black borders); whole constant channels are not."""
        c, h, w = image_layout(view.sample_shape, view.train.X.shape[1])
        st = column_stats(view.train.X, view.train.good)
        ch = group_stats(st, c)
        flat = ch.constant
        const_pixels = int(st.constant.sum())
        ctx.record("constant_pixels", const_pixels)
        ctx.record("constant_channels", int(flat.sum()))
        sev = constant_verdict(int(flat.sum()), c)
        if sev is None:
            return []
        if sev == Severity.INFO:
            sev = Severity.WARNING  # a constant channel is a conversion bug, not a leftover
        chans = [str(i) for i in np.flatnonzero(flat)]
        msg = (f"channel{'s' if len(chans) > 1 else ''} {', '.join(chans)} of the {c} image "
               f"channels {'are' if len(chans) > 1 else 'is'} constant over all "
               f"{int(view.train.ok.sum())} training images (value "
               f"{float(ch.lo[int(chans[0])]):.4g}).")
        fix = ("Check the image loading: a constant channel usually means an alpha channel, "
               "a grayscale image stored as RGB with a blank channel, or a channel-order mix-up "
               "(HWC read as CHW). Drop it or load the images in the right mode.")
        return [self.finding(msg, {"constant_channels": chans, "channels": c}, severity=sev,
                             fix=fix)]


# ------------------------------------------------------------------ unscaled features

# Network inputs should be roughly centred with unit scale: default initialisations assume it.
# By reasoning: a feature whose root-mean-square exceeds 10 saturates tanh/sigmoid units and
# makes its weights' gradients 10x (and the loss curvature 100x) those of unit features;
# |mean| > 3 std (and > 1 in absolute terms) means the signal is a small ripple on a large
# offset; stds spread over more than 100x mean some features are effectively invisible to
# gradient descent. Binary columns (one-hot categories) are exempt from all three. By
# measurement: standardised digits, iris, wine, breast cancer are quiet; raw breast cancer
# (area ~ 650 +- 350) and wine (proline ~ 750) fire; raw iris fires as uncentred (5.8 +- 0.8).
RMS_MAX = 10.0
OFFSET_RATIO, OFFSET_MIN = 3.0, 1.0
STD_SPREAD_MAX = 100.0
# ... unless the features share one range of values: pixels in [0, 1] fed as a table have
# stds spread over 102x only because border pixels are almost always 0 (their range is the
# others'); a value-range spread within sqrt(100) = 10x means rare values, not another scale.
RANGE_SPREAD_MIN = 10.0


@dataclass
class ScaleVerdict:
    large: list[int]
    uncentred: list[int]
    spread: float
    raw_pixels: bool

    @property
    def fires(self) -> bool:
        return bool(self.large or self.uncentred or self.spread > STD_SPREAD_MAX or self.raw_pixels)


def scale_verdict(mean: np.ndarray, std: np.ndarray, binary: np.ndarray,
                  raw_pixels: bool = False, value_range: np.ndarray | None = None
                  ) -> ScaleVerdict:
    """Pure decision on per-feature (or per-channel) means and stds (and, for tables, each
    feature's max - min: features sharing one range are on one scale)."""
    rms = np.sqrt(mean**2 + std**2)
    real = (~binary) & (std > 0)
    large = np.flatnonzero(real & (rms > RMS_MAX))
    uncentred = np.flatnonzero(real & (np.abs(mean) > OFFSET_RATIO * std)
                               & (np.abs(mean) > OFFSET_MIN))
    s = std[real]
    spread = float(s.max() / s.min()) if len(s) else 1.0
    if value_range is not None and len(s):
        r = value_range[real]
        if r.min() > 0 and r.max() / r.min() <= RANGE_SPREAD_MIN:
            spread = min(spread, STD_SPREAD_MAX)  # one range of values: not another scale
    return ScaleVerdict(large.tolist(), uncentred.tolist(), spread, raw_pixels)


class UnscaledFeatures(DataCheck):
    code = "unscaled-features"
    severity = Severity.WARNING
    title = "Inputs are centred and on a common, unit-like scale"
    fix = ("Standardise inputs with statistics of the training set only: x = (x - mean_train) / "
           "std_train per feature (sklearn's StandardScaler fit on train), per channel for "
           "images (after dividing raw 0-255 pixels by 255). Log-transform heavy-tailed "
           "positive features first.")
    order = 10

    def applies_to(self, view: DataView) -> str | None:
        if view.kind == TOKENS:
            return "token ids go through an embedding; their scale does not matter"
        return too_few(int(view.train.ok.sum()), 2, "training")

    def run(self, ctx: Context) -> list[Finding]:
        view = self.view(ctx)
        tr = view.train
        cols = column_stats(tr.X, tr.good)  # chunked: no copy of the training matrix
        st = cols
        if view.kind == IMAGE:
            c, h, w = image_layout(view.sample_shape, tr.X.shape[1])
            st = group_stats(cols, c)
            binary = np.zeros(c, dtype=bool)
            names = [f"channel {i}" for i in range(c)]
            raw = self._raw_pixels(view, float(cols.lo.min()), float(cols.hi.max()))
        else:
            S = tr.X[subsample(tr.good, 2000, ctx.seed)]
            binary = np.array([len(np.unique(S[:, j])) <= 2 for j in range(tr.X.shape[1])])
            names = view.feature_names
            raw = None
        # a constant column (float rounding included) has no scale to judge: std 0 here
        mean, std = st.mean, np.where(st.constant, 0.0, st.std)
        value_range = None if view.kind == IMAGE else np.asarray(cols.hi - cols.lo, float)
        v = scale_verdict(mean, std, binary, raw_pixels=raw is not None,
                          value_range=value_range)
        ctx.record("max_rms", float(np.sqrt(mean**2 + std**2).max()) if len(mean) else 0.0)
        ctx.record("std_spread", v.spread)
        ctx.record("uncentred", len(v.uncentred))
        ctx.record("large", len(v.large))
        if not v.fires:
            return []
        self._figure(ctx, names, mean, std)
        flagged = sorted(set(v.large) | set(v.uncentred))
        rows = [[names[j], float(mean[j]), float(std[j]), float(cols.lo[j]) if view.kind != IMAGE
                 else "", float(cols.hi[j]) if view.kind != IMAGE else "",
                 ", ".join(t for t, lst in (("large", v.large), ("uncentred", v.uncentred))
                           if j in lst)] for j in flagged[:200]]
        ctx.add_table("Features off the unit scale (train)", ["feature", "mean", "std", "min",
                                                              "max", "why"], rows)
        parts = []
        if raw is not None:
            parts.append(f"images hold raw integer pixel values in {raw[0]:g}..{raw[1]:g}")
        if v.large:
            parts.append(f"{len(v.large)} feature{'s' if len(v.large) > 1 else ''} with "
                         f"magnitude (rms) > {RMS_MAX:g}: " + fmt_list(
                             [f"{names[j]} ({mean[j]:.3g} +- {std[j]:.3g})" for j in v.large], 3))
        if v.uncentred:
            parts.append(f"{len(v.uncentred)} far from centred (|mean| > {OFFSET_RATIO:g} std): "
                         + fmt_list([f"{names[j]} ({mean[j]:.3g} +- {std[j]:.3g})"
                                     for j in v.uncentred], 3))
        if v.spread > STD_SPREAD_MAX:
            parts.append(f"standard deviations span {v.spread:.3g}x across features (more than "
                         f"{STD_SPREAD_MAX:g}x)")
        msg = "Inputs are not standardised: " + "; ".join(parts) + "."
        evidence = {"large": [names[j] for j in v.large][:MAX_LISTED],
                    "uncentred": [names[j] for j in v.uncentred][:MAX_LISTED],
                    "std_spread": v.spread, "raw_pixel_range": list(raw) if raw else None,
                    "mean": {names[j]: float(mean[j]) for j in flagged[:MAX_LISTED]},
                    "std": {names[j]: float(std[j]) for j in flagged[:MAX_LISTED]}}
        return [self.finding(msg, evidence)]

    def _raw_pixels(self, view: DataView, lo: float, hi: float) -> tuple[float, float] | None:
        """(min, max) when images hold whole numbers beyond [0, 1] (e.g. 0-255, 0-16)."""
        S = view.train.X[view.train.good[:500]]
        sampled = view.raw_inputs("train", view.train.good[:50].tolist())
        R = sampled if sampled is not None else S
        if hi > 1.5 and lo >= 0 and hi <= 255 and np.all(np.round(R) == R):
            return lo, hi
        return None

    def _figure(self, ctx: Context, names: list[str], mean: np.ndarray, std: np.ndarray
                ) -> None:
        if not len(mean):
            return
        order = np.argsort(-np.sqrt(mean**2 + std**2), kind="stable")[:40]
        fig, (ax,) = new_figure(width=max(5.0, 0.22 * len(order) + 2), height=3.2)
        x = np.arange(len(order))
        ax.errorbar(x, mean[order], yerr=std[order], fmt="o", ms=3, color=COLORS[0],
                    ecolor=COLORS[5], label="mean +- std")
        ax.axhspan(-1, 1, color=COLORS[2], alpha=0.12, label="unit scale")
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_xticks(x, [names[j][:18] for j in order], rotation=90, fontsize=6)
        ax.set(title="feature scale (train), largest first", ylabel="value (symlog)")
        ax.legend(fontsize=7)
        ctx.add_figure("Feature scales", fig)


# ------------------------------------------------------------------- shortcut features

# A single input feature (or, for images, a trivial statistic such as mean brightness) that
# predicts the label almost perfectly. The score is cross-fitted (rules learnt on one half,
# scored on the other, so small sets do not score by memorising) balanced accuracy: first of
# the best 16-quantile-bin rule for every feature (cheap), then of a 16-leaf decision tree on
# the 10 best features (quantile bins can straddle the gap between two classes; a tree puts
# its thresholds in the gap). By measurement, the best single feature reaches 0.95 on iris
# (petal width), 0.91 on breast cancer, 0.83 on wine, 0.27 on digits (and 0.18 for brightness);
# a leaked label column, an ID sorted by class or a brightness difference between classes
# scores 0.99-1.0. For regression, the cross-fitted R^2 of the same bins.
SHORTCUT_WARN = 0.99
BINS = 16
REFINE = 10  # features re-scored with a tree ...
TREE_ROWS = 50_000  # ... on at most this many samples
MIN_SHORTCUT_SAMPLES = 50
FIT_MAX = 200_000


# A label-encoded category (a violation type, a site, a product code) can give the label away
# through a many-to-one lookup that no 16-bin or 16-leaf rule follows when its codes
# interleave the classes (issue 13: dotnet/docs#17721, 65 violation types -> 3 risk levels).
# Columns with more than BINS distinct values but at most one per MIN_PER_VALUE samples are
# also scored as categories: the cross-fitted per-value majority (balanced accuracy; a value
# unseen in the fitting half counts as wrong). By reasoning, continuous features have about n
# distinct values and are never scored this way; on digits (pixels take 17 values) a pixel's
# per-value lookup predicts 10 classes no better than its bins (~0.27).
MIN_PER_VALUE = 5


def shortcut_verdict(best_score: float) -> Severity | None:
    return Severity.WARNING if best_score >= SHORTCUT_WARN else None


def single_feature_scores(M: np.ndarray, y: np.ndarray, task: str, seed: int) -> np.ndarray:
    """Cross-fitted score of the best one-feature rule, per column of ``M``."""
    scores = binned_scores(M, y, task, seed)
    for j in np.argsort(-scores, kind="stable")[:REFINE]:
        scores[j] = max(scores[j], tree_score(M[:, j], y, task, seed),
                        category_score(M[:, j], y, task, seed))
    return scores


def category_score(x: np.ndarray, y: np.ndarray, task: str, seed: int) -> float:
    """Cross-fitted balanced accuracy of a per-value majority lookup on ``x`` read as a
    label-encoded category; 0 when ``x`` does not look like one (or for regression)."""
    n = len(x)
    values, xi = np.unique(x, return_inverse=True)
    if task != "classification" or not BINS < len(values) <= n / MIN_PER_VALUE:
        return 0.0
    classes, yi = np.unique(y, return_inverse=True)
    k = len(classes)
    half = np.random.default_rng(seed).permutation(n) % 2 == 0
    pred = np.full(n, -1, dtype=np.int64)
    for fit in (half, ~half):
        T = np.zeros((len(values), k))
        np.add.at(T, (xi[fit], yi[fit]), 1)
        seen = T.sum(1) > 0
        T = T / np.maximum(np.bincount(yi[fit], minlength=k), 1)  # per-class rates
        lookup = np.where(seen, T.argmax(1), -1)
        pred[~fit] = lookup[xi[~fit]]
    return float(np.mean([(pred[yi == c] == c).mean() for c in range(k) if (yi == c).any()]))


def tree_score(x: np.ndarray, y: np.ndarray, task: str, seed: int) -> float:
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    if len(x) > TREE_ROWS:
        keep = np.random.default_rng(seed).choice(len(x), TREE_ROWS, replace=False)
        x, y = x[keep], y[keep]
    n = len(x)
    half = np.random.default_rng(seed).permutation(n) % 2 == 0
    pred = np.zeros(n) if task == "regression" else np.zeros(n, dtype=y.dtype)
    leaf = max(2, n // 400)
    for fit in (half, ~half):
        if task == "classification":
            model = DecisionTreeClassifier(max_leaf_nodes=BINS, min_samples_leaf=leaf,
                                           class_weight="balanced", random_state=seed)
        else:
            model = DecisionTreeRegressor(max_leaf_nodes=BINS, min_samples_leaf=leaf,
                                          random_state=seed)
        model.fit(x[fit, None], y[fit])
        pred[~fit] = model.predict(x[~fit, None])
    if task == "classification":
        return float(np.mean([(pred[y == c] == c).mean() for c in np.unique(y)]))
    var = y.var()
    return float(1 - ((y - pred) ** 2).mean() / var) if var > 0 else 0.0


def binned_scores(M: np.ndarray, y: np.ndarray, task: str, seed: int) -> np.ndarray:
    """Cross-fitted single-feature scores for every column of ``M``: balanced accuracy of
    the per-bin best class (classification) or R^2 of the per-bin mean (regression)."""
    n, d = M.shape
    rng = np.random.default_rng(seed)
    half = rng.permutation(n) % 2 == 0
    scores = np.zeros(d)
    if task == "classification":
        classes, yi = np.unique(y, return_inverse=True)
        k = len(classes)
    for j in range(d):
        x = M[:, j]
        edges = np.unique(np.quantile(x, np.linspace(0, 1, BINS + 1)[1:-1]))
        b = np.searchsorted(edges, x, side="right")
        nb = len(edges) + 1
        if task == "classification":
            pred = np.zeros(n, dtype=np.int64)
            for fit in (half, ~half):
                T = np.zeros((nb, k))
                np.add.at(T, (b[fit], yi[fit]), 1)
                T = T / np.maximum(np.bincount(yi[fit], minlength=k), 1)  # per-class rates
                pred[~fit] = T[b[~fit]].argmax(1)
            rec = [(pred[yi == c] == c).mean() for c in range(k) if (yi == c).any()]
            scores[j] = float(np.mean(rec))
        else:
            pred = np.zeros(n)
            for fit in (half, ~half):
                s = np.bincount(b[fit], weights=y[fit], minlength=nb)
                c = np.bincount(b[fit], minlength=nb)
                means = np.where(c > 0, s / np.maximum(c, 1), y[fit].mean())
                pred[~fit] = means[b[~fit]]
            var = y.var()
            scores[j] = float(1 - ((y - pred) ** 2).mean() / var) if var > 0 else 0.0
    return scores


class ShortcutFeature(DataCheck):
    code = "shortcut-feature"
    severity = Severity.WARNING
    title = "No single feature or trivial statistic predicts the label by itself"
    fix = ("Find out why this one feature gives the answer away. If it would not be available at "
           "prediction time, or is a proxy of how the data was collected (an ID or timestamp "
           "sorted by class, a file size, a watermark, a brightness difference between sources, "
           "the label leaked into a column), remove or randomise it; otherwise the model learns "
           "the shortcut instead of the task and fails on new data.")
    order = 12

    def applies_to(self, view: DataView) -> str | None:
        if not (view.has_labels or view.has_target):
            return "needs one label or target per sample"
        if view.train.ok.sum() < MIN_SHORTCUT_SAMPLES:
            return f"fewer than {MIN_SHORTCUT_SAMPLES} usable training samples"
        if view.has_labels and len(np.unique(view.train.labels[view.train.ok])) < 2:  # type: ignore[index]
            return "a single class"
        return None

    def run(self, ctx: Context) -> list[Finding]:
        view = self.view(ctx)
        tr = view.train
        # bounded work: ~2e7 feature values (200k rows of a 100-column table, 26k images)
        limit = int(max(5_000, min(FIT_MAX, 2e7 // max(1, tr.X.shape[1]))))
        rows = subsample(tr.good, limit, ctx.seed)
        cols = [tr.X[rows]]
        names = list(view.feature_names)
        if view.is_image and tr.stats is not None:
            cols.append(tr.stats[rows])
            names += list(STAT_NAMES)
        M = np.concatenate(cols, axis=1)
        y = tr.labels[rows] if view.has_labels else tr.target[rows]  # type: ignore[index]
        task = "classification" if view.has_labels else "regression"
        with ctx.task("single-feature predictors", None):
            scores = single_feature_scores(M, y, task, ctx.seed)
        what = "balanced accuracy" if task == "classification" else "R^2"
        best = int(np.argmax(scores)) if len(scores) else 0
        top = np.argsort(-scores, kind="stable")[:10]
        ctx.record("best_feature", names[best] if len(scores) else "")
        ctx.record("best_score", float(scores[best]) if len(scores) else 0.0)
        ctx.record("metric", what)
        chance = 1.0 / len(np.unique(y)) if task == "classification" else 0.0
        ctx.add_table(f"Best single-feature predictors ({what}, cross-fitted)",
                      ["feature", what], [[names[j], float(scores[j])] for j in top],
                      caption=f"chance level {chance:.2f}; warning from {SHORTCUT_WARN}")
        sev = shortcut_verdict(float(scores[best])) if len(scores) else None
        if sev is None:
            return []
        fig = self._figure(view, M[:, best], y, names[best], task)
        ctx.add_figure("The shortcut feature by class", fig)
        strong = [names[j] for j in top if scores[j] >= SHORTCUT_WARN]
        msg = (f"{names[best]} alone predicts the {'label' if task == 'classification' else 'target'}"
               f" with {what} {scores[best]:.3f} (warning from {SHORTCUT_WARN}; chance "
               f"{chance:.2f})" + (f"; so do {fmt_list(strong[1:], 3)}" if len(strong) > 1 else "")
               + ". A model will learn this one feature instead of the task.")
        evidence = {"feature": names[best], "score": float(scores[best]), "metric": what,
                    "others": {names[j]: float(scores[j]) for j in top[1:5]},
                    "warn": SHORTCUT_WARN}
        return [self.finding(msg, evidence, severity=sev)]

    def _figure(self, view: DataView, x: np.ndarray, y: np.ndarray, name: str, task: str) -> object:
        fig, (ax,) = new_figure(width=5.5, height=3.0)
        if task == "classification":
            bins = np.linspace(x.min(), x.max() if x.max() > x.min() else x.min() + 1, 41)
            for i, c in enumerate(np.unique(y)[:10]):
                ax.hist(x[y == c], bins=bins, alpha=0.5, label=view.class_name(int(c)),
                        color=COLORS[i % len(COLORS)])
            ax.legend(fontsize=7, ncol=2)
            ax.set(xlabel=name, ylabel="samples", title=f"{name} by class")
        else:
            idx = subsample(np.arange(len(x)), 5000, 0)
            ax.scatter(x[idx], y[idx], s=3, alpha=0.5, color=COLORS[0])
            ax.set(xlabel=name, ylabel="target", title=f"target vs {name}")
        return fig
