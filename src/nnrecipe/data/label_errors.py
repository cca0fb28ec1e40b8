"""``label-errors``: likely mislabeled samples, by confident learning (cleanlab).

Confident learning needs out-of-sample predicted probabilities. A quick baseline gives them:
the average of a logistic regression's out-of-fold probabilities and a k-nearest-neighbour
vote (leave-one-out, from the neighbour search the duplicate checks already ran). The linear
model alone mistakes a non-linear boundary for label noise (on two concentric circles it
"finds" 52% of labels wrong), the neighbour vote alone is coarse; the average is right on
both (0% on circles, moons, digits) and finds 85-100% of flipped labels on digits, iris, wine
and breast cancer. cleanlab's ``find_label_issues`` then flags samples and its confident
joint estimates the overall noise rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.data import figures
from nnrecipe.data.base import (
    MAX_LISTED,
    DataCheck,
    fmt_list,
    one_blas_thread,
    pct,
    ref,
    release_memory,
)
from nnrecipe.data.duplicates import K_NEAR
from nnrecipe.data.view import DataView
from nnrecipe.report.export import record_flagged

# The given-vs-suggested matrix shows which classes get confused; for fewer flagged samples
# than this it is a k x k grid of empty cells around one or two counts (the demo drew a 10x10
# grid for one sample) and the table lists them all anyway (reasoning).
MIN_MATRIX_FLAGGED = 5

# Severity by the estimated noise rate. Confident learning always flags a few samples of real
# data, so the count alone says little. Measured (LR+kNN baseline, this module): healthy
# digits 0.0%, iris 0.0%, wine 0.0%, breast cancer 0.18%; clean synthetic data with genuinely
# overlapping classes up to 3.1% (moons with noise 0.3) and 10% (make_classification,
# class_sep=0.5). With labels flipped at random: 5% flipped -> 5.6-6.1% estimated, 10% ->
# 9.5-13%. A warning from 5% separates the two groups.
NOISE_WARN = 0.05
# On data whose classes truly overlap, most flagged samples are ambiguous rather than wrong:
# the baseline suggests another class with little conviction, while a flipped label is one
# it contradicts confidently. So the warning also needs a share of the rows flagged with a
# *confident* suggestion (the baseline gives the suggested class >= CONFIDENT_P): at least
# half of the warning line. Measured with benchmarks/label_errors_margin.py (3 seeds each):
# healthy overlapping data make_classification class_sep=1.0 (the healthy corpus's setups:
# 3 classes / 1k rows and 5 classes / 10k rows) estimated 8-16% noise with mean suggestion
# confidence 0.53-0.62 - the mean-confidence rule (>= 0.6) that stood here warned on 2 of 6 -
# but only 0.05-0.5% of rows flagged confidently (0.4-1.1% with 2% flips added): >= 5x under
# the line. Moons (noise 0.3) 2.5-2.8% confident, but its noise estimate 3.4-4.0% is under
# NOISE_WARN. Flipped labels the baseline can see: 10% flipped on digits, iris, wine, breast
# cancer, blobs, moons: 3.9-8.3% confident, all warn (as before); 5% flipped: 2.0-5.6%,
# 6 of 15 warn (as before: 5% flips sit on the 5% line). Nothing that warned with the old
# rule on flipped labels is lost.
CONFIDENT_P = 0.8
CONFIDENT_SHARE_WARN = NOISE_WARN / 2
# When the labels cannot be predicted from the inputs at all (random labels, features that
# carry no signal, a baseline far too weak for the data), every label looks "wrong": on
# random 4-channel images with random labels cleanlab estimates 67% noise. Cohen's kappa of
# the baseline against the given labels measures how much it learnt beyond chance: ~0 there,
# 0.63 on heavily overlapping clean classes, 0.76-0.85 with 10% flipped labels on the
# healthy sets. Below 0.5 the estimate says more about the baseline than about the labels.
KAPPA_MIN = 0.5
FOLDS = 5
FIT_MAX = 20_000  # each fold's logistic regression is fit on at most this many samples
MIN_SAMPLES = 30
# The baseline's probabilities in float32: every (n, k) copy (cleanlab makes two per split:
# rows by class and a margin copy) is half the size (1.6M x 10: 64 MB instead of 128 MB).
# Measured on the planted 50k x 64 benchmark: the same 2524 flags (precision 0.962, recall
# 0.972) as float64; probabilities need no more than float32's 7 digits.
PROBA_DTYPE = np.float32
# Rows predicted / voted at a time. Each chunk's temporaries (the rows' representation, its
# standardisation, the pooled copy, probabilities) are a few times CHUNK x D x 4 bytes; below
# glibc's 32 MB mmap threshold they stay in the heap after use, so they are kept small (4 MB
# per copy at 64 features) and the heap is trimmed between phases (base.release_memory).
CHUNK = 16384


@dataclass
class LabelVerdict:
    severity: Severity | None
    reason: str


def label_errors_verdict(n_flagged: int, noise_rate: float, confident_share: float,
                         kappa: float = 1.0) -> LabelVerdict:
    """``confident_share``: the share of all rows flagged with a suggestion the baseline gives
    at least ``CONFIDENT_P``."""
    if n_flagged == 0:
        return LabelVerdict(None, "")
    if kappa < KAPPA_MIN:
        return LabelVerdict(Severity.INFO, f"but the quick baseline barely predicts the labels "
                                           f"from the inputs (Cohen's kappa {kappa:.2f} < "
                                           f"{KAPPA_MIN}), so this says little about the labels")
    if noise_rate >= NOISE_WARN and confident_share >= CONFIDENT_SHARE_WARN:
        return LabelVerdict(Severity.WARNING, f"estimated noise rate {pct(noise_rate)} >= "
                                              f"{pct(NOISE_WARN)}, {pct(confident_share)} of "
                                              f"the samples contradicted confidently (p >= "
                                              f"{CONFIDENT_P}; line {pct(CONFIDENT_SHARE_WARN)})")
    if noise_rate >= NOISE_WARN:
        return LabelVerdict(Severity.INFO, f"estimated noise rate {pct(noise_rate)}, but only "
                                           f"{pct(confident_share)} of the samples are "
                                           f"contradicted confidently (p >= {CONFIDENT_P}; a "
                                           f"warning needs {pct(CONFIDENT_SHARE_WARN)}): the "
                                           f"classes may simply overlap")
    return LabelVerdict(Severity.INFO, f"estimated noise rate {pct(noise_rate)} < "
                                       f"{pct(NOISE_WARN)}: a handful, worth a look")


def oof_logistic(X: Any, y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Out-of-fold class probabilities of a logistic regression (columns 0..k-1). ``X`` is a
    matrix or a function from row positions to their rows (so that the rows of several splits
    need not be copied into one matrix)."""
    rows = X if callable(X) else (lambda idx: X[idx])
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold, StratifiedKFold

    counts = np.bincount(y, minlength=k)
    folds = min(FOLDS, len(y))
    if counts[counts > 0].min() >= folds:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    else:
        splitter = KFold(folds, shuffle=True, random_state=seed)
    rng = np.random.default_rng(seed)
    P = np.full((len(y), k), 1.0 / k, dtype=PROBA_DTYPE)
    for tr, te in splitter.split(np.zeros(len(y)), y):
        if len(tr) > FIT_MAX:
            tr = np.sort(rng.choice(tr, FIT_MAX, replace=False))
        classes = np.unique(y[tr])
        if len(classes) < 2:
            continue
        model = LogisticRegression(max_iter=300, C=1.0)
        model.fit(rows(tr), y[tr])
        release_memory()  # the fit's float64 copies, before the chunks of predictions
        P[te] = 1e-6
        for start in range(0, len(te), CHUNK):
            part = te[start:start + CHUNK]
            P[np.ix_(part, classes)] = model.predict_proba(rows(part))
    P /= P.sum(1, keepdims=True)  # in place: a second (n, k) float64 array is 128 MB at 1.6M
    return P


def split_label_issues(find: Any, y: np.ndarray, P: np.ndarray, split_id: np.ndarray
                       ) -> np.ndarray:
    """Confident learning per split, on the shared baseline's probabilities (rows summing
    to 1).

    Pooled, cleanlab estimates one noise rate for all rows and flags that share of the least
    confident ones, wherever they are: with 10% of the training labels flipped and clean
    validation labels, 1.1% of the validation rows were flagged (all wrongly) against 0.5-0.7%
    false flags among the clean training rows (digits, 3 seeds). Labels of different splits
    often come from different processes (a curated test set), so each split gets its own
    confident joint and its own count of issues. A split too small for that (fewer than
    MIN_SAMPLES rows, or a single class) is judged with the pooled thresholds."""
    out = np.zeros(len(y), dtype=bool)
    pooled: np.ndarray | None = None
    for s in np.unique(split_id):
        mine = split_id == s
        if mine.sum() < MIN_SAMPLES or len(np.unique(y[mine])) < 2 or mine.all():
            pooled = find(y, P, n_jobs=1) if pooled is None else pooled
            out[mine] = pooled[mine]
            continue
        present = np.unique(y[mine])
        rows = np.flatnonzero(mine)
        if len(present) == P.shape[1] and rows[-1] - rows[0] + 1 == len(rows):
            # every class, contiguous rows (the pooled rows come split by split): a view, no
            # copy of the split's probabilities (1.6M x 10 float64: 128 MB)
            out[mine] = find(y[mine], P[rows[0]:rows[-1] + 1], n_jobs=1)
            continue
        # the split's own classes only: a class it lacks has no threshold to estimate
        lut = np.full(P.shape[1], -1)
        lut[present] = np.arange(len(present))
        Ps = P[np.ix_(mine, present)]
        Ps /= Ps.sum(1, keepdims=True)
        out[mine] = find(lut[y[mine]], Ps, n_jobs=1)
    return out


def cohen_kappa(given: np.ndarray, predicted: np.ndarray, k: int) -> float:
    """Agreement beyond chance: (accuracy - expected) / (1 - expected)."""
    acc = float((given == predicted).mean())
    pe = float((np.bincount(given, minlength=k) / len(given)
                * np.bincount(predicted, minlength=k) / len(given)).sum())
    return (acc - pe) / (1 - pe) if pe < 1 else 0.0


def knn_vote(neighbour_labels: np.ndarray, k: int) -> np.ndarray:
    """Class probabilities from neighbours' labels (-1 = none), smoothed toward uniform."""
    n, m = neighbour_labels.shape
    P = np.zeros((n, k))
    for j in range(m):
        lab = neighbour_labels[:, j]
        ok = lab >= 0
        P[np.flatnonzero(ok), lab[ok]] += 1
    total = P.sum(1, keepdims=True) + 1.0
    P += 1.0 / k
    P /= total
    return P


class LabelErrors(DataCheck):
    code = "label-errors"
    severity = Severity.WARNING
    title = "Labels agree with what similar samples say (confident learning)"
    fix = ("Review the listed samples (highest-ranked first) and correct or drop the wrong "
           "labels; if there are many, audit the labelling process (ambiguous guidelines, a "
           "shifted label column, an annotator who confused two classes). cleanlab's "
           "CleanLearning can train robustly to the remaining noise.")
    order = 7

    def applies_to(self, view: DataView) -> str | None:
        if view.task != "classification" or view.train.labels is None:
            return "needs one class label per sample"
        tr = view.train
        classes = np.unique(tr.labels[tr.ok])  # type: ignore[index]
        if len(classes) < 2:
            return "fewer than two classes in train"
        if tr.ok.sum() < MIN_SAMPLES:
            return f"fewer than {MIN_SAMPLES} usable training samples"
        return None

    def run(self, ctx: Context) -> list[Finding]:
        from cleanlab.count import estimate_joint
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores

        view = self.view(ctx)
        parts = [s for s in view.splits.values() if s.labels is not None and s.ok.any()]
        train_classes = np.unique(view.train.labels[view.train.ok])  # type: ignore[index]
        # Samples of classes never seen in train cannot be judged (class-imbalance reports them)
        split_of, pos_of, y = [], [], []
        for si, s in enumerate(parts):
            g = s.good[np.isin(s.labels[s.good], train_classes)]  # type: ignore[index]
            split_of.append(np.full(len(g), si, np.int8 if len(parts) < 128 else np.int64))
            pos_of.append(g)
            y.append(s.labels[g])  # type: ignore[index]
        sid, spos = np.concatenate(split_of), np.concatenate(pos_of)
        del split_of, pos_of

        def rows_of(idx: np.ndarray) -> np.ndarray:
            """The representation of pooled rows ``idx`` (no pooled copy of every split)."""
            out = np.empty((len(idx), parts[0].rep.shape[1]), np.float32)  # type: ignore[union-attr]
            for si, s in enumerate(parts):
                mine = sid[idx] == si
                if mine.any():
                    out[mine] = s.rep[spos[idx[mine]]]  # type: ignore[index]
            return out

        lut = np.full(int(max(c.max() for c in y if len(c)) if y else 0) + 2, -1, dtype=np.int64)
        lut[train_classes] = np.arange(len(train_classes))
        ya = lut[np.concatenate(y)]
        k = len(train_classes)
        with ctx.task("label-error baseline (logistic regression + kNN)", None), \
                one_blas_thread():
            P = oof_logistic(rows_of, ya, k, ctx.seed)
            release_memory()
            ctx.record("baseline_lr_accuracy", float((P.argmax(1) == ya).mean()))
            # the neighbours' vote is added to the logistic probabilities a chunk at a time:
            # at 1.6M rows x 10 classes each (n, k) float64 array is 128 MB, the neighbour
            # labels (n, 10) int32 64 MB
            knn_right = 0
            at = 0
            for si, s in enumerate(parts):
                g = spos[sid == si]
                for start in range(0, len(g), CHUNK):
                    nl = self._neighbour_labels(view, s.name, g[start:start + CHUNK])
                    nl = np.where((nl >= 0) & (nl < len(lut)), lut[np.clip(nl, 0, len(lut) - 1)],
                                  -1)
                    p_knn = knn_vote(nl, k)
                    rows = slice(at + start, at + start + len(nl))
                    knn_right += int((p_knn.argmax(1) == ya[rows]).sum())
                    P[rows] += p_knn
                at += len(g)
            ctx.record("baseline_knn_accuracy", knn_right / max(1, len(ya)))
            P /= P.sum(1, keepdims=True)
        baseline_acc = float((P.argmax(1) == ya).mean())
        ctx.record("baseline_oof_accuracy", baseline_acc)
        present = np.bincount(ya, minlength=k) > 0
        if present.sum() < 2:
            return []
        release_memory()
        with ctx.task("confident learning (cleanlab)", None), one_blas_thread():
            issues = split_label_issues(find_label_issues, ya, P, sid)
            joint = estimate_joint(ya, P)
            quality = get_label_quality_scores(ya, P)
        noise = float(max(0.0, 1.0 - np.trace(joint)))
        n_rows = len(ya)
        suggested = P.argmax(1)
        kappa = cohen_kappa(ya, suggested, k)
        flagged = np.flatnonzero(issues)
        flagged = flagged[np.argsort(quality[flagged], kind="stable")]
        # From here on only the flagged rows, most suspicious first: the (n, k) float64
        # probabilities and the per-row arrays go before the outputs are built (on random
        # labels cleanlab flags over half of the rows, so the outputs are large too).
        f_split, f_pos, f_given = sid[flagged], spos[flagged], ya[flagged]
        f_sug, f_quality = suggested[flagged], quality[flagged]
        f_p_given, f_p_sug = P[flagged, f_given], P[flagged, f_sug]
        del P, issues, quality, suggested, flagged
        release_memory()
        conf = float(f_p_sug.mean()) if len(f_sug) else 0.0
        confident = float((f_p_sug >= CONFIDENT_P).sum()) / n_rows
        # shared with later stages and the benchmark: per split, the flagged rows and the
        # class each looks like, most suspicious first (arrays: one entry per flagged row)
        view.cache["label-issues"] = {
            s.name: (f_pos[f_split == si], train_classes[f_sug[f_split == si]])
            for si, s in enumerate(parts)}
        ctx.record("flagged", len(f_pos))
        ctx.record("flagged_fraction", len(f_pos) / n_rows)
        ctx.record("estimated_noise_rate", noise)
        ctx.record("mean_suggestion_confidence", conf)
        ctx.record("confident_flag_share", confident)
        ctx.record("baseline_kappa", kappa)
        verdict = label_errors_verdict(len(f_pos), noise, confident, kappa)
        if verdict.severity is None:
            return []
        names = [view.class_name(int(c)) for c in train_classes]
        rows, listed, items = [], [], []
        for rank in range(min(len(f_pos), 500)):
            sv = parts[f_split[rank]]
            split, pos = sv.name, int(f_pos[rank])
            given, sug = names[f_given[rank]], names[f_sug[rank]]
            p_given, p_sug = float(f_p_given[rank]), float(f_p_sug[rank])
            rows.append([rank + 1, ref(sv, pos), given, sug, p_given, p_sug,
                         float(f_quality[rank])])
            if rank < MAX_LISTED:
                listed.append({"sample": ref(sv, pos), "given": given, "suggested": sug,
                               "p_given": round(p_given, 3), "p_suggested": round(p_sug, 3)})
            if rank < 32:
                where = f"[{int(sv.index[pos])}]" if split == "train" else ref(sv, pos)
                items.append((split, pos, f"{given}->{sug}? {where}"))
        ctx.add_table("Suspected label errors (most suspicious first)",
                      ["rank", "sample", "given", "suggested", "p(given)", "p(suggested)",
                       "label quality"], rows,
                      caption=f"{len(f_pos)} flagged; baseline out-of-fold accuracy "
                              f"{baseline_acc:.3f}")
        fig = figures.mixed_grid(view, items, title="suspected label errors (given -> suggested?)")
        if fig is not None:
            ctx.add_figure("Suspected label errors", fig)
        if len(f_pos) >= MIN_MATRIX_FLAGGED:  # a few are read best in the table above
            M = np.zeros((k, k), dtype=int)
            np.add.at(M, (f_given, f_sug), 1)
            ctx.add_figure("Given vs suggested labels", figures.count_matrix(
                M, names, title="flagged samples: given vs suggested", xlabel="suggested",
                ylabel="given"))
        by_split = {s.name: int((f_split == si).sum()) for si, s in enumerate(parts)}
        # one string per (given, suggested) pair, shared by its rows of flagged.csv
        detail = [[f"given {a}, suggested {b}" for b in names] for a in names]
        for si, s in enumerate(parts):  # flagged.csv, most suspicious first
            mine = f_split == si
            record_flagged(ctx, self.code, s.name, s.index[f_pos[mine]], scores=f_quality[mine],
                           score_kind="label quality", details=[
                               detail[a][b] for a, b in zip(f_given[mine].tolist(),
                                                            f_sug[mine].tolist(), strict=True)])
        flagged_n = len(f_pos)
        msg = (f"{flagged_n} of {n_rows} samples ({pct(flagged_n / n_rows)}) look "
               f"mislabeled; {verdict.reason}. Most suspicious: "
               + fmt_list([f"{d['sample']} labelled {d['given']}, looks like {d['suggested']}"
                           for d in listed], 3) + ".")
        evidence = {"flagged": flagged_n, "of": n_rows, "by_split": by_split,
                    "estimated_noise_rate": noise, "mean_suggestion_confidence": conf,
                    "confident_flag_share": confident,
                    "baseline_oof_accuracy": baseline_acc, "baseline_kappa": kappa,
                    "samples": listed,
                    "noise_warn": NOISE_WARN,
                    "confident_share_warn": CONFIDENT_SHARE_WARN}
        return [self.finding(msg, evidence, severity=verdict.severity)]

    def _neighbour_labels(self, view: DataView, split: str, rows: np.ndarray) -> np.ndarray:
        """Labels of each row's nearest training samples (itself excluded for train)."""
        tr = view.train
        if split == "train":
            nb = view.knn("train", K_NEAR)[1]
        else:
            nb = view.cross_knn(split, "train", K_NEAR)[1]
        at = np.searchsorted(view.splits[split].good, rows)
        out = np.empty((len(at), nb.shape[1]), np.int32)
        for start in range(0, len(at), CHUNK):  # int32, a chunk of temporaries at a time
            part = nb[at[start:start + CHUNK]]
            out[start:start + len(part)] = np.where(
                part >= 0, tr.labels[np.clip(part, 0, None)], -1)  # type: ignore[index]
        return out
