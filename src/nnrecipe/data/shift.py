"""``distribution-shift``: val/test do not look like train.

Three views of the same question, each on at most ``SAMPLE_MAX`` samples per split:

- per feature, the two-sample Kolmogorov-Smirnov statistic D (the largest gap between the two
  cumulative distributions) and its p-value;
- jointly, a domain classifier: a logistic regression trained to tell the split from train,
  scored by out-of-fold ROC AUC (0.5 = indistinguishable);
- for the labels, the total-variation distance between class frequencies with a chi-square
  test (for regression targets, KS again).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.data import figures
from nnrecipe.data.base import CrossSplitCheck, fmt_list, one_blas_thread, subsample, too_few
from nnrecipe.data.view import STAT_NAMES, DataView

# A shift must be both real (significant) and large enough to matter (effect size), since with
# 1e5 samples any difference is significant. By measurement on random 75/25 splits of digits,
# iris, wine and breast cancer: the largest per-feature KS D is 0.06-0.25 (small splits are
# noisy) but never significant after the Bonferroni correction; domain AUCs are 0.38-0.55;
# class TVDs up to 0.19 (38-sample iris splits), with chi-square p > 0.01.
KS_MIN, ALPHA = 0.1, 1e-3  # D >= 0.1 (10% of the mass moved) and p < ALPHA / n_features
AUC_WARN, AUC_Z = 0.7, 4.0  # a classifier that tells splits apart 70% of the time, at 4 s.e.
LABEL_TVD = 0.1             # 10% of the label mass moved, with chi-square p < ALPHA
SAMPLE_MAX = 20_000
# By reasoning: with fewer samples than this in val/test, no KS statistic can reach the
# Bonferroni-corrected significance and the domain classifier has nothing to cross-validate
# (it needs 10 per side), so the check could only ever pass: it says so instead.
MIN_SHIFT_SAMPLES = 10


@dataclass
class ShiftStats:
    split: str
    ks: np.ndarray          # per feature D
    ks_p: np.ndarray        # per feature p
    auc: float
    auc_z: float
    label_tvd: float
    label_p: float
    target_ks: float = 0.0
    target_p: float = 1.0
    reasons: list[str] = field(default_factory=list)


def shift_verdict(s: ShiftStats, names: list[str]) -> list[str]:
    """Pure decision: the reasons the split is shifted (empty: it is not)."""
    reasons = []
    n_feat = max(1, len(s.ks))
    sig = np.flatnonzero((s.ks >= KS_MIN) & (s.ks_p < ALPHA / n_feat))
    if len(sig):
        order = sig[np.argsort(-s.ks[sig])]
        reasons.append(f"{len(sig)} feature{'s' if len(sig) > 1 else ''} shifted (KS D >= "
                       f"{KS_MIN:g}, p < {ALPHA:g}/{n_feat}): " + fmt_list(
                           [f"{names[j]} D={s.ks[j]:.2f}" for j in order], 3))
    if s.auc >= AUC_WARN and s.auc_z >= AUC_Z:
        reasons.append(f"a classifier tells {s.split} from train with ROC AUC {s.auc:.2f} "
                       f"(>= {AUC_WARN:g}; 0.5 = indistinguishable)")
    if s.label_tvd >= LABEL_TVD and s.label_p < ALPHA:
        reasons.append(f"class frequencies differ by total variation {s.label_tvd:.2f} "
                       f"(>= {LABEL_TVD:g}, chi-square p={s.label_p:.1e})")
    if s.target_ks >= KS_MIN and s.target_p < ALPHA:
        reasons.append(f"the target distribution differs (KS D={s.target_ks:.2f}, "
                       f"p={s.target_p:.1e})")
    return reasons


def domain_auc(A: np.ndarray, B: np.ndarray, seed: int) -> tuple[float, float]:
    """Out-of-fold ROC AUC of a logistic regression telling B from A, and its z-score."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    n1, n2 = len(A), len(B)
    if min(n1, n2) < 10:
        return 0.5, 0.0
    X = np.concatenate([A, B])
    d = np.r_[np.zeros(n1), np.ones(n2)]
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    p = cross_val_predict(LogisticRegression(max_iter=300, C=0.1), X, d, cv=folds,
                          method="predict_proba")[:, 1]
    auc = float(roc_auc_score(d, p))
    se = float(np.sqrt((n1 + n2 + 1) / (12.0 * n1 * n2)))  # AUC's s.e. under no difference
    return auc, (auc - 0.5) / se


class DistributionShift(CrossSplitCheck):
    code = "distribution-shift"
    severity = Severity.WARNING
    title = "Validation and test data look like the training data"
    fix = ("Make the splits come from the same distribution: shuffle before splitting (data "
           "sorted by time, class or source makes the tail differ), stratify by label, apply "
           "the same preprocessing to every split with the training statistics. If the shift is "
           "real (val/test from a later period or another site), keep it, but expect lower "
           "scores and consider training on data closer to deployment.")
    order = 11

    def applies_to(self, view: DataView) -> str | None:
        reason = super().applies_to(view)
        if reason:
            return reason
        if view.train.ok.sum() < MIN_SHIFT_SAMPLES:
            return too_few(int(view.train.ok.sum()), MIN_SHIFT_SAMPLES, "training")
        most = max(int(s.ok.sum()) for s in view.other_splits())
        if most < MIN_SHIFT_SAMPLES:
            return (f"at most {most} usable val/test samples; comparing distributions needs "
                    f"at least {MIN_SHIFT_SAMPLES}")
        return None

    def run(self, ctx: Context) -> list[Finding]:
        view = self.view(ctx)
        tr = view.train
        out: list[Finding] = []
        names = list(view.feature_names) + (list(STAT_NAMES) if view.is_image else [])
        rows_tr = subsample(tr.good, SAMPLE_MAX, ctx.seed)
        for name, sv in view.splits.items():
            if name == "train" or sv.ok.sum() < MIN_SHIFT_SAMPLES:
                continue
            rows = subsample(sv.good, SAMPLE_MAX, ctx.seed)
            with ctx.task(f"train vs {name}", None), one_blas_thread():
                st = self._stats(view, name, rows_tr, rows, ctx.seed)
            reasons = shift_verdict(st, names)
            ctx.record(f"{name}_max_ks", float(st.ks.max()) if len(st.ks) else 0.0)
            ctx.record(f"{name}_domain_auc", st.auc)
            ctx.record(f"{name}_label_tvd", st.label_tvd)
            top = np.argsort(-st.ks, kind="stable")[:15]
            ctx.add_table(f"Most shifted features, train vs {name}", ["feature", "KS D", "p"],
                          [[names[j], float(st.ks[j]), float(st.ks_p[j])] for j in top],
                          caption=f"domain classifier ROC AUC {st.auc:.3f} (z={st.auc_z:.1f}); "
                                  f"label total variation {st.label_tvd:.3f}")
            if not reasons:
                continue
            shown = [int(j) for j in top[:4] if st.ks[j] >= KS_MIN]
            if shown:
                cols = {n: (np.concatenate([s.X, s.stats], axis=1) if view.is_image
                            and s.stats is not None else s.X) for n, s in view.splits.items()}
                fig = figures.feature_histograms(view, shown, columns=cols, names=names,
                                                 title=f"the most shifted features, train vs {name}")
                if fig is not None:
                    ctx.add_figure(f"Shifted features train vs {name}", fig)
            if st.label_tvd >= LABEL_TVD:
                fig = figures.class_histogram(view)
                if fig is not None:
                    ctx.add_figure(f"Class frequencies (train vs {name})", fig)
            msg = f"{name} differs from train: " + "; ".join(reasons) + "."
            severity = None
            if tr.augmented and not sv.augmented:
                # By reasoning: augmentation applied to train only shifts the input
                # statistics by design (noise, crops, colour jitter); the skeleton stage's
                # augmentation-active reports it. Still worth knowing, not a warning.
                severity = Severity.INFO
                msg += (" The training set is augmented on read (the same index gave different "
                        "inputs) and the " + name + " set is not, which by itself shifts input "
                        "statistics; compare them with augmentation off.")
            evidence = {"split": name, "domain_auc": st.auc, "domain_auc_z": st.auc_z,
                        "label_tvd": st.label_tvd, "label_p": st.label_p,
                        "shifted_features": {names[j]: round(float(st.ks[j]), 3) for j in top
                                             if st.ks[j] >= KS_MIN},
                        "ks_min": KS_MIN, "auc_warn": AUC_WARN}
            evidence["train_augmented"] = tr.augmented
            f = self.finding(msg, evidence, severity=severity)
            f.figures = [f"Shifted features train vs {name}", f"Class frequencies (train vs {name})"]
            out.append(f)
        return out

    def _stats(self, view: DataView, name: str, rows_tr: np.ndarray, rows: np.ndarray,
               seed: int) -> ShiftStats:
        from scipy.stats import chi2_contingency, ks_2samp

        tr, sv = view.train, view.splits[name]

        def cols(s: object, r: np.ndarray) -> np.ndarray:
            M = s.X[r]  # type: ignore[attr-defined]
            if view.is_image and s.stats is not None:  # type: ignore[attr-defined]
                M = np.concatenate([M, s.stats[r]], axis=1)  # type: ignore[attr-defined]
            return M

        A, B = cols(tr, rows_tr), cols(sv, rows)
        varying = (A.max(0) > A.min(0)) | (B.max(0) > B.min(0))
        ks = np.zeros(A.shape[1])
        ks_p = np.ones(A.shape[1])
        if varying.any():
            res = ks_2samp(A[:, varying], B[:, varying], axis=0, method="asymp")
            ks[varying] = np.atleast_1d(res.statistic)
            ks_p[varying] = np.atleast_1d(res.pvalue)
        auc, z = domain_auc(tr.rep[rows_tr], sv.rep[rows], seed)  # type: ignore[index]
        tvd, p = 0.0, 1.0
        if tr.labels is not None and sv.labels is not None:
            k = view.n_classes()
            a = np.bincount(tr.labels[rows_tr], minlength=k)[:k]
            b = np.bincount(sv.labels[rows], minlength=k)[:k]
            tvd = float(0.5 * np.abs(a / a.sum() - b / b.sum()).sum())
            keep = (a + b) > 0
            if keep.sum() >= 2:
                p = float(chi2_contingency(np.stack([a[keep], b[keep]]))[1])
        st = ShiftStats(name, ks, ks_p, auc, z, tvd, p)
        if tr.target is not None and sv.target is not None:
            res = ks_2samp(tr.target[rows_tr], sv.target[rows], method="asymp")
            st.target_ks, st.target_p = float(res.statistic), float(res.pvalue)
        return st
