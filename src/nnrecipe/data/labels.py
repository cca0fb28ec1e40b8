"""``class-imbalance`` and ``conflicting-labels``: what the label column says at a glance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.data import figures
from nnrecipe.data.base import MAX_LISTED, DataCheck, fmt_list, pct
from nnrecipe.data.view import DataView
from nnrecipe.report.export import record_flagged

# Largest-to-smallest class ratio in train. By reasoning: at 10:1 a constant prediction of the
# majority already scores >= 91% (binary), accuracy stops telling models apart, and the
# minority class gets a tenth of the gradient signal: a warning. From 3:1 it is worth knowing
# (report per-class metrics): info. By measurement: digits 1.1, iris 1.0, wine 1.5, breast
# cancer 1.7 stay quiet.
IMBALANCE_WARN, IMBALANCE_INFO = 10.0, 3.0
MIN_PER_CLASS = 5  # fewer training samples than this: the class cannot be learnt or validated

# Conflicting labels. By measurement: none of digits, iris, wine, breast cancer has a single
# identical input with two labels. One or two such pairs in a large set are believable
# annotation slips (info); from 0.5% of samples on they cap the reachable accuracy and point
# at a systematic cause (labels joined to the wrong rows, inputs that lost the information
# telling classes apart): a warning.
CONFLICT_WARN_FRACTION = 0.005


@dataclass
class ImbalanceVerdict:
    severity: Severity | None
    ratio: float
    reasons: list[str]


def imbalance_verdict(train_counts: dict[str, int], missing_in_train: list[str]
                      ) -> ImbalanceVerdict:
    """Pure decision on class counts (classes absent from train have count 0 here)."""
    present = {c: n for c, n in train_counts.items() if n > 0}
    reasons: list[str] = []
    if len(present) <= 1:
        only = next(iter(present), "none")
        return ImbalanceVerdict(Severity.ERROR, float("inf"),
                                [f"the training labels hold a single class ({only}); a "
                                 "classifier needs at least two"])
    big, small = max(present.values()), min(present.values())
    ratio = big / small
    sev: Severity | None = None
    if ratio >= IMBALANCE_WARN:
        sev = Severity.WARNING
        reasons.append(f"the largest class has {ratio:.1f}x the samples of the smallest "
                       f"(warning from {IMBALANCE_WARN:g}x)")
    elif ratio >= IMBALANCE_INFO:
        sev = Severity.INFO
        reasons.append(f"the largest class has {ratio:.1f}x the samples of the smallest")
    rare = [c for c, n in present.items() if n < MIN_PER_CLASS]
    if rare:
        sev = Severity.WARNING
        reasons.append(f"class{'es' if len(rare) > 1 else ''} {fmt_list(rare)} "
                       f"{'have' if len(rare) > 1 else 'has'} fewer than {MIN_PER_CLASS} "
                       "training samples")
    if missing_in_train:
        sev = Severity.WARNING
        reasons.append(f"class{'es' if len(missing_in_train) > 1 else ''} "
                       f"{fmt_list(missing_in_train)} appear{'' if len(missing_in_train) > 1 else 's'}"
                       " in val/test but never in train")
    return ImbalanceVerdict(sev, ratio, reasons)


class ClassImbalance(DataCheck):
    code = "class-imbalance"
    severity = Severity.WARNING
    title = "Classes are represented in reasonable proportions in every split"
    fix = ("Report per-class metrics (balanced accuracy, per-class recall, PR curves) rather "
           "than accuracy; weight the loss by inverse class frequency "
           "(CrossEntropyLoss(weight=...)) or oversample the rare classes (WeightedRandomSampler); "
           "initialise the output bias to the log class prior; collect more of the rare classes; "
           "split with stratification (train_test_split(..., stratify=y)).")
    order = 3

    def applies_to(self, view: DataView) -> str | None:
        if view.task != "classification":
            return "not a classification task"
        if view.train.labels is None:
            return "the targets are not one class index per sample"
        return None

    def _encoding(self, view: DataView, counts: dict[str, np.ndarray]) -> str:
        return _label_encoding(view, counts)

    def run(self, ctx: Context) -> list[Finding]:
        view = self.view(ctx)
        k = view.n_classes()
        names = [view.class_name(c) for c in range(k)]
        counts = {s.name: np.bincount(s.labels[s.ok], minlength=k)[:k]  # type: ignore[index]
                  for s in view.splits.values() if s.labels is not None}
        rows = [[names[c]] + [int(counts[s][c]) for s in counts] for c in range(k)]
        ctx.add_table("Samples per class", ["class", *counts], rows)
        fig = figures.class_histogram(view)
        if fig is not None:
            ctx.add_figure("Class frequencies per split", fig)
        tr = counts["train"]
        missing = [names[c] for c in range(k) if tr[c] == 0
                   and any(counts[s][c] > 0 for s in counts if s != "train")]
        train_counts = {names[c]: int(tr[c]) for c in range(k)}
        v = imbalance_verdict(train_counts, missing)
        encoding = self._encoding(view, counts)
        if encoding:
            v.reasons.append(encoding)
            v.severity = v.severity or Severity.INFO
        weighted = loss_weights_classes(getattr(ctx.experiment, "loss", None))
        if weighted and v.severity == Severity.WARNING and not missing and not encoding:
            # the recipe's remedy is in place: what is left is to read per-class metrics
            # (healthy corpus: imbalance-95-5 with CrossEntropyLoss(weight=...) warned on
            # every seed)
            v.severity = Severity.INFO
            v.reasons.append(f"the loss already weights the classes ({weighted})")
        ctx.record("imbalance_ratio", v.ratio)
        ctx.record("classes_in_train", int((tr > 0).sum()))
        if v.severity is None:
            return []
        evidence = {"train_counts": train_counts, "ratio": v.ratio, "missing_in_train": missing,
                    "counts_by_split": {s: [int(n) for n in c] for s, c in counts.items()},
                    "warn_ratio": IMBALANCE_WARN}
        msg = "Class labels: " + "; ".join(v.reasons) + "."
        fix = None
        if v.severity == Severity.ERROR:
            fix = ("Check how the labels were read (a filter or join that kept one class, the "
                   "label column taken from the wrong field); a one-class problem is not "
                   "classification: consider anomaly detection.")
        return [self.finding(msg, evidence, severity=v.severity, fix=fix)]


def loss_weights_classes(loss: object) -> str:
    """Which class weighting the loss carries ("" when none): ``weight=`` of
    CrossEntropyLoss/NLLLoss (or any loss with a class-weight tensor), ``pos_weight=`` of
    BCEWithLogitsLoss."""
    for attr in ("weight", "pos_weight"):
        w = getattr(loss, attr, None)
        if w is not None and getattr(w, "numel", lambda: 0)() > 0:
            return f"{type(loss).__name__}({attr}=...)"
    return ""


def _label_encoding(view: DataView, counts: dict[str, np.ndarray]) -> str:
    """Labels that CrossEntropyLoss would reject or misread: sparse values, or 1..C."""
    if view.train.sparse_labels:
        shown = ", ".join(view.class_name(c) for c in range(min(3, view.n_classes())))
        return (f"the labels are sparse values ({shown}, ...), not class indices 0..C-1: map "
                "them to 0..C-1 before training")
    total = sum(counts.values())
    if view.class_names is None and len(total) > 2 and total[0] == 0:
        first = int(np.flatnonzero(total)[0])
        return (f"no sample has label 0; labels start at {first}. CrossEntropyLoss expects "
                "0..C-1: if they are numbered from 1, subtract 1")
    return ""


def conflicts_verdict(n: int, n_conflicting: int) -> Severity | None:
    if n_conflicting == 0 or n == 0:
        return None
    return Severity.WARNING if n_conflicting / n >= CONFLICT_WARN_FRACTION else Severity.INFO


class ConflictingLabels(DataCheck):
    code = "conflicting-labels"
    severity = Severity.WARNING
    title = "Identical inputs carry the same label"
    fix = ("Look at the listed groups: relabel them by majority or expert review, drop them, or "
           "add the missing information to the input that tells the classes apart. If many "
           "rows conflict, check how labels were joined to inputs.")
    order = 6

    def applies_to(self, view: DataView) -> str | None:
        if view.task != "classification" or view.train.labels is None:
            return "needs one class label per sample"
        usable = sum(int(s.ok.sum()) for s in view.splits.values() if s.labels is not None)
        if usable < 2:
            return "a single usable labelled sample: nothing to compare"
        return None

    def run(self, ctx: Context) -> list[Finding]:
        view = self.view(ctx)
        hs, labels, where = [], [], []
        for s in view.splits.values():
            if s.labels is None:
                continue
            g = s.good
            hs.append(s.hashes[g])
            labels.append(s.labels[g])
            where += [(s.name, int(p)) for p in g]
        h = np.concatenate(hs)
        y = np.concatenate(labels)
        order = np.lexsort((y, h))
        hs_sorted = h[order]
        starts = np.flatnonzero(np.r_[True, hs_sorted[1:] != hs_sorted[:-1]])
        ends = np.r_[starts[1:], len(h)]
        groups = []
        for a, b in zip(starts, ends, strict=True):
            if b - a > 1 and y[order[a]] != y[order[b - 1]]:
                groups.append(order[a:b])
        n = len(h)
        n_conf = int(sum(len(g) for g in groups))
        ctx.record("conflicting_groups", len(groups))
        ctx.record("conflicting_samples", n_conf)
        sev = conflicts_verdict(n, n_conf)
        if sev is None:
            return []
        described = []
        rows = []
        items = []
        for gi, g in enumerate(groups):
            members = [f"{where[i][0]}[{int(view.splits[where[i][0]].index[where[i][1]])}]"
                       f"={view.class_name(int(y[i]))}" for i in g]
            described.append(members)
            if gi < 300:
                rows.append([gi + 1, len(g), ", ".join(members[:10]),
                             ", ".join(sorted({view.class_name(int(y[i])) for i in g}))])
            if gi < 8:
                items += [(where[i][0], where[i][1], f"g{gi + 1} {view.class_name(int(y[i]))}")
                          for i in g[:4]]
        for g in groups:  # flagged.csv: every member, the group's first as the partner
            (s0, p0) = where[g[0]]
            for i in g[1:]:
                s, p = where[i]
                record_flagged(ctx, self.code, s, [view.splits[s].index[p]], partner_split=s0,
                               partners=[view.splits[s0].index[p0]],
                               details=[f"label {view.class_name(int(y[i]))} vs "
                                        f"{view.class_name(int(y[g[0]]))}"])
        ctx.add_table("Identical inputs with different labels",
                      ["group", "size", "samples (=label)", "labels"], rows)
        fig = figures.mixed_grid(view, items, title="identical inputs, different labels")
        if fig is not None:
            ctx.add_figure("Conflicting groups", fig)
        msg = (f"{len(groups)} group{'s' if len(groups) != 1 else ''} of identical inputs carry "
               f"different labels ({n_conf} samples, {pct(n_conf / n)} of all): "
               f"{fmt_list(['{' + ', '.join(m[:3]) + '}' for m in described], 3)}. "
               f"No model can get them all right (warning from {pct(CONFLICT_WARN_FRACTION)}).")
        evidence = {"groups": described[:MAX_LISTED], "n_groups": len(groups),
                    "samples": n_conf, "fraction": n_conf / n}
        return [self.finding(msg, evidence, severity=sev)]
