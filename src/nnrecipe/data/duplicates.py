"""``data-duplicates`` (within a split) and ``split-leakage`` (across splits).

Exact copies are found by hashing every full-resolution sample; near copies (re-encoded,
resized, slightly jittered) by nearest neighbours in the standardised representation, with
"near" meaning closer than a fraction of the typical nearest-neighbour distance (see
:func:`nnrecipe.data.neighbors.near_threshold_factor`), so the rule adapts to the data's scale
and density.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.data import figures, neighbors
from nnrecipe.data.base import (
    MAX_LISTED,
    CrossSplitCheck,
    DataCheck,
    fmt_list,
    pct,
    ref,
)
from nnrecipe.data.view import DataView, SplitView
from nnrecipe.report.export import record_flagged

K_NEAR = 10  # neighbours searched per sample (shared with outliers and the label baseline)

# Duplicates within a split. By reasoning: a few repeated samples only reweight the loss a
# little, but 1% or more means a systematic cause (data concatenated twice, augmented copies
# saved as data) that will also leak into any random split. By measurement: digits, wine and
# breast cancer have none; iris has one repeated flower (0.67%), which stays info.
DUP_WARN_FRACTION = 0.01

# Leakage. A leaked val/test sample is scored as if memorised, so a leaked fraction f inflates
# the measured accuracy by up to f times the error rate on unseen data; at 0.5% that is the
# size of the differences people choose models by. At least 2 samples, so a single
# coincidental copy (iris's repeated flower landing in both splits) stays info. From 20% on
# the split no longer measures generalisation at all: an error.
LEAK_WARN_FRACTION, LEAK_WARN_MIN = 0.005, 2
LEAK_ERROR_FRACTION = 0.20


@dataclass
class DupGroups:
    groups: list[np.ndarray]  # row positions of each group (size >= 2)
    exact: list[bool]         # the group's members are identical
    redundant: int            # samples beyond the first of each group
    threshold: float          # the "near" distance used
    median_nn: float


def duplicates_verdict(n: int, redundant: int) -> Severity | None:
    if redundant == 0 or n == 0:
        return None
    return Severity.WARNING if redundant / n >= DUP_WARN_FRACTION else Severity.INFO


def leakage_verdict(n_split: int, leaked: int) -> Severity | None:
    if leaked == 0 or n_split == 0:
        return None
    frac = leaked / n_split
    if frac >= LEAK_ERROR_FRACTION:
        return Severity.ERROR
    if frac >= LEAK_WARN_FRACTION and leaked >= LEAK_WARN_MIN:
        return Severity.WARNING
    return Severity.INFO


def near_threshold(view: DataView, split: str) -> tuple[float, float]:
    """(threshold, median nearest-neighbour distance) of a split, cached."""
    key = f"near-threshold:{split}"
    if key not in view.cache:
        sv = view.splits[split]
        if sv.ok.sum() < 3:
            view.cache[key] = (0.0, 0.0)
        else:
            dist, _ = view.knn(split, K_NEAR)
            med = neighbors.median_nn_distance(dist)
            dims = sv.rep.shape[1]  # type: ignore[union-attr]
            view.cache[key] = (neighbors.near_threshold_factor(dims) * med, med)
    return view.cache[key]


def duplicate_groups(view: DataView, split: str) -> DupGroups:
    key = f"dup-groups:{split}"
    if key in view.cache:
        return view.cache[key]
    sv = view.splits[split]
    good = sv.good
    rows, cols = [], []
    # exact copies: chain the members of each hash group
    h = sv.hashes[good]
    order = np.argsort(h, kind="stable")
    hs = h[order]
    same = np.flatnonzero(hs[1:] == hs[:-1])
    rows.append(good[order[same]])
    cols.append(good[order[same + 1]])
    thr, med = near_threshold(view, split)
    if thr > 0:
        dist, pos = view.knn(split, K_NEAR)
        close = (dist < thr) & (pos >= 0)
        r, c = np.nonzero(close)
        rows.append(good[r])
        cols.append(pos[r, c])
    a = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    b = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    groups: list[np.ndarray] = []
    exact: list[bool] = []
    if len(a):
        nodes, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
        m = len(nodes)
        g = coo_matrix((np.ones(len(a)), (inv[:len(a)], inv[len(a):])), shape=(m, m))
        _, comp = connected_components(g, directed=False)
        order = np.argsort(comp, kind="stable")
        bounds = np.flatnonzero(np.diff(comp[order])) + 1
        for members in np.split(nodes[order], bounds):
            if len(members) >= 2:
                members = np.sort(members)
                groups.append(members)
                exact.append(bool(np.all(sv.hashes[members] == sv.hashes[members[0]])))
        sizes = np.array([len(gr) for gr in groups])
        order = np.argsort(-sizes, kind="stable")
        groups = [groups[i] for i in order]
        exact = [exact[i] for i in order]
    redundant = int(sum(len(gr) - 1 for gr in groups))
    result = DupGroups(groups, exact, redundant, thr, med)
    view.cache[key] = result
    return result


def _label_of(view: DataView, sv: SplitView, p: int) -> str:
    if sv.labels is not None:
        return view.class_name(int(sv.labels[p]))
    if sv.target is not None:
        return f"{sv.target[p]:.3g}"
    return ""


class DataDuplicates(DataCheck):
    code = "data-duplicates"
    severity = Severity.WARNING
    title = "No exact or near-duplicate samples within a split"
    fix = ("Deduplicate before splitting (keep one sample per group), then split; find out "
           "why copies exist (data concatenated twice, augmented copies saved as data, the same "
           "item scraped from two sources) and fix it at the source.")
    order = 4

    def applies_to(self, view: DataView) -> str | None:
        most = max(int(s.ok.sum()) for s in view.splits.values())
        if most < 2:
            return "no split has two usable samples to compare"
        return None

    def run(self, ctx: Context) -> list[Finding]:
        view = self.view(ctx)
        out: list[Finding] = []
        for split, sv in view.splits.items():
            n = int(sv.ok.sum())
            if n < 2:
                continue
            with ctx.task(f"duplicates in {split}", None):
                dg = duplicate_groups(view, split)
            n_exact = sum(len(g) - 1 for g, e in zip(dg.groups, dg.exact, strict=True) if e)
            ctx.record(f"{split}_duplicate_groups", len(dg.groups))
            ctx.record(f"{split}_redundant_samples", dg.redundant)
            ctx.record(f"{split}_exact_redundant", n_exact)
            ctx.record(f"{split}_near_threshold", dg.threshold)
            ctx.record(f"{split}_median_nn_distance", dg.median_nn)
            sev = duplicates_verdict(n, dg.redundant)
            if sev is None:
                continue
            self._show(ctx, view, sv, dg)
            for g, e in zip(dg.groups, dg.exact, strict=True):  # flagged.csv: partner = 1st
                record_flagged(ctx, self.code, split, sv.index[list(g[1:])],
                               partner_split=split, partners=[int(sv.index[g[0]])] * (len(g) - 1),
                               details=["exact copy" if e else "near copy"] * (len(g) - 1))
            groups = [[ref(sv, p) for p in g] for g in dg.groups[:MAX_LISTED]]
            msg = (f"{split}: {len(dg.groups)} group{'s' if len(dg.groups) != 1 else ''} of "
                   f"duplicates, {dg.redundant} redundant sample{'s' if dg.redundant != 1 else ''} "
                   f"({pct(dg.redundant / n)} of {n}; {n_exact} exact copies, "
                   f"{dg.redundant - n_exact} near copies closer than {dg.threshold:.3g}, i.e. "
                   f"{dg.threshold / max(dg.median_nn, 1e-12):.2g}x the typical nearest-neighbour "
                   f"distance {dg.median_nn:.3g}). Largest groups: "
                   f"{fmt_list(['{' + ', '.join(g[:4]) + (', ...' if len(g) > 4 else '') + '}' for g in groups], 3)}."
                   f" Warning from {pct(DUP_WARN_FRACTION)} redundant.")
            evidence = {"split": split, "groups": groups, "n_groups": len(dg.groups),
                        "redundant": dg.redundant, "exact_redundant": n_exact,
                        "fraction": dg.redundant / n, "near_threshold": dg.threshold,
                        "median_nn_distance": dg.median_nn,
                        "warn_fraction": DUP_WARN_FRACTION}
            f = self.finding(msg, evidence, severity=sev)
            f.figures = [f"Duplicate groups in {split}"]  # only this split's grid
            out.append(f)
        return out

    def _show(self, ctx: Context, view: DataView, sv: SplitView, dg: DupGroups) -> None:
        rows = []
        for gi, (g, e) in enumerate(zip(dg.groups[:200], dg.exact, strict=False)):
            labels = sorted({_label_of(view, sv, int(p)) for p in g})
            rows.append([gi + 1, len(g), "exact" if e else "near",
                         ", ".join(ref(sv, int(p)) for p in g[:10]) + (" ..." if len(g) > 10 else ""),
                         ", ".join(labels)])
        ctx.add_table(f"Duplicate groups in {sv.name}", ["group", "size", "kind", "samples",
                                                          "labels"], rows)
        items = []
        for gi, g in enumerate(dg.groups[:8]):
            for p in g[:4]:
                items.append((sv.name, int(p), f"g{gi + 1} {_label_of(view, sv, int(p))} "
                                               f"[{int(sv.index[p])}]"))
        fig = figures.mixed_grid(view, items, title=f"duplicate groups in {sv.name} "
                                                    "(group label [index])", ncols=8)
        if fig is not None:
            ctx.add_figure(f"Duplicate groups in {sv.name}", fig)


class SplitLeakage(CrossSplitCheck):
    code = "split-leakage"
    severity = Severity.WARNING
    title = "No sample of val/test is (nearly) a copy of a training sample"
    fix = ("Remove the leaked samples from val/test (or deduplicate the whole dataset and split "
           "again). When samples come in groups (the same patient, user, scene or source "
           "document), split by group, e.g. sklearn's GroupShuffleSplit, so no group spans splits.")
    order = 5

    def run(self, ctx: Context) -> list[Finding]:
        view = self.view(ctx)
        out: list[Finding] = []
        names = list(view.splits)
        pairs = [(q, r) for i, r in enumerate(names) for q in names[i + 1:]]
        for q, r in pairs:
            qs, rs = view.splits[q], view.splits[r]
            n = int(qs.ok.sum())
            if n == 0 or not rs.ok.any():
                continue
            with ctx.task(f"leakage {q} vs {r}", None):
                leaked, partner, dist, exact = self._leaks(view, q, r)
            thr, _ = near_threshold(view, r)
            ctx.record(f"{q}_in_{r}_leaked", len(leaked))
            ctx.record(f"{q}_in_{r}_fraction", len(leaked) / n)
            sev = leakage_verdict(n, len(leaked))
            if sev is None:
                continue
            n_exact = int(exact.sum())
            pairs_ref = [[ref(qs, int(a)), ref(rs, int(b))] for a, b in zip(leaked, partner,
                                                                            strict=True)]
            self._show(ctx, view, qs, rs, leaked, partner, dist, exact)
            record_flagged(ctx, self.code, q, qs.index[leaked], scores=dist, score_kind="distance",
                           partner_split=r, partners=rs.index[partner],
                           details=["exact copy" if e else "near copy" for e in exact])
            msg = (f"{len(leaked)} of {n} {q} samples ({pct(len(leaked) / n)}) are in {r} too: "
                   f"{n_exact} exact copies, {len(leaked) - n_exact} near copies (distance < "
                   f"{thr:.3g}). E.g. {fmt_list([f'{a} = {b}' for a, b in pairs_ref], 3)}. "
                   f"{q} metrics are inflated by these memorisable samples (warning from "
                   f"{pct(LEAK_WARN_FRACTION)}, error from {pct(LEAK_ERROR_FRACTION)}).")
            evidence = {"split": q, "reference": r, "leaked": len(leaked), "of": n,
                        "fraction": len(leaked) / n, "exact": n_exact,
                        "pairs": pairs_ref[:MAX_LISTED], "near_threshold": thr}
            f = self.finding(msg, evidence, severity=sev)
            f.figures = [f"Leaked pairs {q}/{r}"]
            out.append(f)
        return out

    def _leaks(self, view: DataView, q: str, r: str
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        qs, rs = view.splits[q], view.splits[r]
        good = qs.good
        dist, partner = view.cross_nn(q, r)
        thr, _ = near_threshold(view, r)
        rh = rs.hashes[rs.good]
        sorted_h = np.sort(rh)
        qh = qs.hashes[good]
        loc = np.clip(np.searchsorted(sorted_h, qh), 0, max(0, len(sorted_h) - 1))
        exact = sorted_h[loc] == qh if len(sorted_h) else np.zeros(len(qh), bool)
        hit = exact | (dist < thr)
        if exact.any():  # point an exact copy at the identical partner, not the nearest
            by_hash = {int(h): int(p) for h, p in zip(rh, rs.good, strict=True)}
            partner = partner.copy()
            for i in np.flatnonzero(exact):
                partner[i] = by_hash[int(qh[i])]
            dist = np.where(exact, 0.0, dist)
        idx = np.flatnonzero(hit)
        return good[idx], partner[idx], dist[idx], exact[idx]

    def _show(self, ctx: Context, view: DataView, qs: SplitView, rs: SplitView,
              leaked: np.ndarray, partner: np.ndarray, dist: np.ndarray, exact: np.ndarray
              ) -> None:
        rows = [[ref(qs, int(a)), ref(rs, int(b)), "exact" if e else "near", float(d),
                 _label_of(view, qs, int(a)), _label_of(view, rs, int(b))]
                for a, b, d, e in list(zip(leaked, partner, dist, exact, strict=True))[:500]]
        ctx.add_table(f"{qs.name} samples found in {rs.name}",
                      [qs.name, rs.name, "kind", "distance", f"{qs.name} label",
                       f"{rs.name} label"], rows)
        items = []
        for a, b in list(zip(leaked, partner, strict=True))[:16]:
            items.append((qs.name, int(a), f"{qs.name}[{int(qs.index[a])}]"))
            items.append((rs.name, int(b), f"= {rs.name}[{int(rs.index[b])}]"))
        fig = figures.mixed_grid(view, items, title=f"{qs.name} samples and their copies in "
                                                    f"{rs.name}", ncols=8)
        if fig is not None:
            ctx.add_figure(f"Leaked pairs {qs.name}/{rs.name}", fig)
