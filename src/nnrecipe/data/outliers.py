"""``outliers``: samples far from the rest, and values no healthy feature takes.

Two scores per sample. The *isolation* score is the mean distance to its 10 nearest training
samples divided by the median of that over train (so 1 is typical); the samples whose score
lies far out in the tail of the training scores form the *isolated set* (see
:func:`isolation_threshold`), listed in flagged.csv. The *extremity* is the largest robust z-score of the sample's features,
|x - median| / (IQR / 1.349), over the features where that is meaningful (at least 10
distinct values, a non-zero IQR); images use their per-sample brightness statistics. An
extreme value is usually a bug upstream: a unit error, a sentinel such as -999, an image
saved in another range.
"""

from __future__ import annotations

import numpy as np

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.data import figures
from nnrecipe.data.base import MAX_LISTED, DataCheck, fmt_list, ref, subsample, too_few
from nnrecipe.data.duplicates import K_NEAR
from nnrecipe.data.view import IMAGE, STAT_NAMES, TOKENS, DataView
from nnrecipe.report.export import record_flagged

# Extremity warning, by measurement: the largest robust z of any feature is 3.8 on iris, 4.5
# on wine, 25.5 on breast cancer (heavy-tailed areas), 42 on digits' rare pixels; heavy-tailed
# synthetic features reach 21 (Student t3) and 24 (lognormal) at 1,000 samples, 58 and 105 at
# 100,000. Sentinels and unit errors sit in the hundreds or thousands. 100 keeps every healthy
# set quiet; a lognormal feature at 1e5 samples crossing it deserves a log transform anyway.
ROBUST_Z_WARN = 100.0
# The isolated set: isolation >= max(ISOLATION_FLOOR, exp(median + ISOLATION_TAIL_IQRS x IQR))
# of the log isolation scores of train. A tail rule, because the spread of healthy scores
# depends on the dimension (IQR of log isolation 0.08 for 64-dim Gaussians, 0.46 on breast
# cancer). By measurement, the most isolated healthy sample sits 2.2-3.9 IQRs above the median
# (digits as images 2.2, wine 2.7, iris 2.8, 10-class synthetic data 2.9-3.1, breast cancer
# 3.9); planted outliers (3x the data's spread) 7.6-19 IQRs above. 6 IQRs leaves 2 of margin
# on both sides. The floor, by reasoning: a sample less than 2.5x as far from its neighbours
# as a typical one is not worth a look whatever the spread; it also keeps a set with a tiny
# IQR (exact copies, quantised values) from flagging ordinary samples. Tabular digits flags its
# few images with ink in a pixel almost no other image uses (isolation 10-19): odd, and shown.
ISOLATION_FLOOR = 2.5
ISOLATION_TAIL_IQRS = 6.0
MIN_DISTINCT = 10
N_SHOWN = 16
# By reasoning: the isolation score averages the distances to 10 neighbours and compares
# them with the median over train; with fewer than twice that many samples the "neighbours"
# are most of the set and "typical" is a handful of numbers, so nothing can stand out.
MIN_OUTLIER_SAMPLES = 2 * K_NEAR


def isolation_threshold(train_scores: np.ndarray) -> float:
    """The isolation score from which a sample belongs to the isolated set (pure)."""
    s = np.asarray(train_scores, dtype=np.float64)
    s = s[np.isfinite(s) & (s > 0)]
    if len(s) < MIN_OUTLIER_SAMPLES:
        return float("inf")
    logs = np.log(s)
    q25, med, q75 = np.percentile(logs, [25, 50, 75])
    return float(max(ISOLATION_FLOOR, np.exp(med + ISOLATION_TAIL_IQRS * (q75 - q25))))


def outliers_verdict(max_z: float, n_isolated: int) -> Severity | None:
    """Extreme values are a warning (bugs upstream); an isolated set is worth a look (info)."""
    if max_z >= ROBUST_Z_WARN:
        return Severity.WARNING
    if n_isolated > 0:
        return Severity.INFO
    return None


def robust_center_scale(M: np.ndarray, seed: int, rows: np.ndarray | None = None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column: median, IQR/1.349, and whether a robust z-score is meaningful there.
    Quartiles from a seeded subset of at most ~2e7 values (100k rows of a narrow table), so
    the float64 copies np.percentile makes stay bounded whatever the width."""
    limit = int(max(2_000, min(100_000, 2e7 // max(1, M.shape[1]))))
    rows = subsample(np.arange(len(M)) if rows is None else rows, limit, seed)
    S = M[rows]
    med = np.median(S, 0)
    q1, q3 = np.percentile(S, [25, 75], axis=0)
    scale = (q3 - q1) / 1.349
    distinct = np.array([len(np.unique(S[:2000, j])) for j in range(S.shape[1])])
    usable = (scale > 0) & (distinct >= MIN_DISTINCT)
    return med, np.where(scale > 0, scale, 1.0), usable


def _max_robust_z(M: np.ndarray, rows: np.ndarray, cols: np.ndarray, med: np.ndarray,
                  scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the largest |x - median| / scale over ``cols``, and the column holding it;
    in float32 blocks of 16k rows (no full copy of the matrix)."""
    zmax = np.empty(len(rows), np.float32)
    arg = np.empty(len(rows), np.int64)
    m32, s32 = med[cols].astype(np.float32), scale[cols].astype(np.float32)
    for start in range(0, len(rows), 16384):
        Z = np.abs(M[rows[start:start + 16384]][:, cols] - m32) / s32
        zmax[start:start + len(Z)] = Z.max(1)
        arg[start:start + len(Z)] = Z.argmax(1)
    return zmax, cols[arg]


class Outliers(DataCheck):
    code = "outliers"
    severity = Severity.WARNING
    title = "No extreme values; the most isolated samples shown"
    fix = ("Look at the listed samples. Fix values that are bugs (unit errors, sentinels like "
           "-999 or 99999 meaning 'missing', images in another range) at the source; for "
           "legitimate heavy tails, transform the feature (log, clipping, quantile transform) so "
           "that a few samples do not dominate the gradients.")
    order = 8

    def applies_to(self, view: DataView) -> str | None:
        return too_few(int(view.train.ok.sum()), MIN_OUTLIER_SAMPLES, "training")

    def run(self, ctx: Context) -> list[Finding]:
        view = self.view(ctx)
        tr = view.train
        M, names = self._columns(view)
        iso = self._isolation(view)
        ctx.record("max_isolation", max((float(v.max()) for v in iso.values() if len(v)),
                                        default=0.0))
        z_by_split: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        max_z = 0.0
        if M is not None and tr.ok.sum() >= 4:
            med, scale, usable = robust_center_scale(M["train"], ctx.seed, tr.good)
            cols = np.flatnonzero(usable)
            ctx.record("features_scored", int(len(cols)))
            for name, sv in view.splits.items():
                if not len(cols) or not sv.ok.any():
                    continue
                z_by_split[name] = _max_robust_z(M[name], sv.good, cols, med, scale)
                max_z = max(max_z, float(z_by_split[name][0].max()))
        ctx.record("max_robust_z", max_z)
        threshold = isolation_threshold(iso["train"]) if "train" in iso else float("inf")
        isolated = [(name, int(view.splits[name].good[i]), float(scores[i]))
                    for name, scores in iso.items()
                    for i in np.flatnonzero(scores >= threshold)]
        isolated.sort(key=lambda t: -t[2])
        ctx.record("isolation_threshold", threshold if np.isfinite(threshold) else None)
        ctx.record("isolated", len(isolated))
        sev = outliers_verdict(max_z, len(isolated))
        self._figures(ctx, view, iso, z_by_split, M, names, detailed=sev is not None,
                      threshold=threshold)
        extreme_rows: list[tuple[str, int]] = []
        for name, (zmax, _) in z_by_split.items():
            extreme_rows += [(name, int(view.splits[name].good[i]))
                             for i in np.flatnonzero(zmax >= ROBUST_Z_WARN)]
        # shared with the benchmark: (split, row) of every flagged sample, isolated or extreme
        view.cache["outlier-set"] = sorted({(s, r) for s, r, _ in isolated} | set(extreme_rows))
        if sev is None:
            return []
        extreme = []
        for name, (zmax, feat) in z_by_split.items():
            sv = view.splits[name]
            for i in np.flatnonzero(zmax >= ROBUST_Z_WARN)[np.argsort(-zmax[zmax >= ROBUST_Z_WARN])]:
                p = int(sv.good[i])
                extreme.append({"sample": ref(sv, p), "feature": names[feat[i]],
                                "value": float(M[name][p, feat[i]]),  # type: ignore[index]
                                "robust_z": round(float(zmax[i]), 1)})
                record_flagged(ctx, self.code, name, [sv.index[p]], scores=[zmax[i]],
                               score_kind="robust z", details=[
                                   f"{names[feat[i]]}={extreme[-1]['value']:.4g}"])
        worst = self._worst(view, iso, z_by_split, names)
        if sev == Severity.WARNING:
            feats = sorted({e["feature"] for e in extreme})
            msg = (f"{len(extreme)} sample{'s' if len(extreme) != 1 else ''} hold extreme "
                   f"values (robust z >= {ROBUST_Z_WARN:g}, i.e. that many IQRs/1.349 from the "
                   f"median) in {fmt_list(feats, 4)}: "
                   + fmt_list([f"{e['sample']} {e['feature']}={e['value']:.4g} "
                               f"(z={e['robust_z']:g})" for e in extreme], 3)
                   + ". Values this far out are usually unit errors, sentinels or corrupt records.")
        else:
            msg = (f"{len(isolated)} sample{'s are' if len(isolated) != 1 else ' is'} isolated: "
                   f"at least {threshold:.2g}x farther from their neighbours than typical (the "
                   f"threshold: {ISOLATION_TAIL_IQRS:g} IQRs above the median of the training "
                   f"scores in log scale, at least {ISOLATION_FLOOR:g}x); the most isolated "
                   + fmt_list([f"{ref(view.splits[s], r)} ({v:.1f}x)" for s, r, v in isolated], 5)
                   + ". Worth a look; no extreme values.")
        for s, r, v in isolated:  # flagged.csv: the whole isolated set
            record_flagged(ctx, self.code, s, [view.splits[s].index[r]], scores=[v],
                           score_kind="isolation")
        by_split = {s: sum(1 for t in isolated if t[0] == s) for s in iso}
        evidence = {"extreme": extreme[:MAX_LISTED], "n_extreme": len(extreme),
                    "max_robust_z": max_z, "most_isolated": worst[:MAX_LISTED],
                    "isolated": [{"sample": ref(view.splits[s], r), "isolation": round(v, 2)}
                                 for s, r, v in isolated[:MAX_LISTED]],
                    "n_isolated": len(isolated), "isolated_by_split": by_split,
                    "isolation_threshold": threshold, "z_warn": ROBUST_Z_WARN}
        return [self.finding(msg, evidence, severity=sev)]

    def _columns(self, view: DataView) -> tuple[dict[str, np.ndarray] | None, list[str]]:
        if view.kind == IMAGE:
            if view.train.stats is None:
                return None, []
            return {n: s.stats for n, s in view.splits.items()}, list(STAT_NAMES)  # type: ignore[misc]
        if view.kind == TOKENS:
            return None, []
        return {n: s.X for n, s in view.splits.items()}, view.feature_names

    def _isolation(self, view: DataView) -> dict[str, np.ndarray]:
        """Mean distance to the K_NEAR nearest training samples over its train median."""
        tr = view.train
        if tr.ok.sum() <= 2:
            return {}
        dist, _ = view.knn("train", K_NEAR)
        score = dist.mean(1)
        nz = score[score > 0]
        base = float(np.median(nz)) if len(nz) else 1.0
        out = {"train": score / base}
        for name, sv in view.splits.items():
            if name != "train" and sv.ok.any():
                d, _ = view.cross_knn(name, "train", K_NEAR)
                out[name] = d.mean(1) / base
        return out

    def _worst(self, view: DataView, iso: dict[str, np.ndarray],
               z_by_split: dict[str, tuple[np.ndarray, np.ndarray]], names: list[str]
               ) -> list[dict]:
        cands = []
        for name, scores in iso.items():
            sv = view.splits[name]
            top = np.argsort(-scores, kind="stable")[:N_SHOWN]
            for i in top:
                entry = {"sample": ref(sv, int(sv.good[i])), "split": name,
                         "row": int(sv.good[i]), "isolation": round(float(scores[i]), 2)}
                if name in z_by_split:
                    zmax, feat = z_by_split[name]
                    entry["most_extreme_feature"] = names[feat[i]]
                    entry["robust_z"] = round(float(zmax[i]), 1)
                cands.append(entry)
        cands.sort(key=lambda e: -e["isolation"])
        return cands[:N_SHOWN]

    def _figures(self, ctx: Context, view: DataView, iso: dict[str, np.ndarray],
                 z_by_split: dict[str, tuple[np.ndarray, np.ndarray]],
                 M: dict[str, np.ndarray] | None, names: list[str], detailed: bool,
                 threshold: float = float("inf")) -> None:
        """The table and (images) grid of the most isolated samples always; the score
        distribution and the extreme features' histograms when there is a finding."""
        worst = self._worst(view, iso, z_by_split, names)
        if not worst:
            return
        ctx.add_table("The most isolated samples",
                      ["sample", "isolation (x typical)", "most extreme feature", "robust z"],
                      [[w["sample"], w["isolation"], w.get("most_extreme_feature", ""),
                        w.get("robust_z", "")] for w in worst])
        if view.is_image:
            items = [(w["split"], w["row"], f"{w['sample']} x{w['isolation']:.1f}")
                     for w in worst]
            fig = figures.mixed_grid(view, items, title="the most isolated samples")
            if fig is not None:
                ctx.add_figure("The worst outliers", fig)
        if not detailed:
            return
        from nnrecipe.report.plots import new_figure

        fig, (ax,) = new_figure(width=5.5, height=2.8)
        for name, scores in iso.items():
            ax.hist(scores, bins=50, alpha=0.5, label=name,
                    color=figures.SPLIT_COLORS.get(name, "#57606a"))
        if np.isfinite(threshold):
            ax.axvline(threshold, ls="--", color="#cf222e", lw=1, label="isolated from here")
        ax.set_yscale("log")
        ax.set(title="isolation: distance to 10 nearest training samples / typical",
               xlabel="isolation", ylabel="samples")
        ax.legend(fontsize=8)
        ctx.add_figure("Isolation scores", fig)
        if M is not None and z_by_split.get("train") is not None:
            zmax, feat = z_by_split["train"]
            order = np.argsort(-zmax, kind="stable")
            top: list[int] = []
            for i in order:
                if int(feat[i]) not in top:
                    top.append(int(feat[i]))
                if len(top) == 4 or zmax[i] < 5:
                    break
            if top and zmax[order[0]] >= 5:
                fig = figures.feature_histograms(view, top, columns=M, names=names,
                                                 title="features holding the most extreme values")
                if fig is not None:
                    ctx.add_figure("Features with the most extreme values", fig)
