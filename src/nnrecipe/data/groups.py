"""``group-leakage``: the same patient, user, session or document on both sides of a split.

Samples of one entity resemble each other far more than samples of different entities (same
voice, same scanner, same author). A split drawn sample by sample puts most entities in both
train and val, and validation then measures how well the model *recognises* entities it has
seen, not how it does on new ones: metrics come out optimistic, sometimes wildly.

- With group ids (``Experiment(groups={"train": ids, "val": ids})`` or ``inspect --groups
  COLUMN`` for a CSV) the check is exact: groups present in two splits, and how many samples
  they hold.
- Without them it can only look for the signature. Two numbers, from the nearest-neighbour
  search the duplicate checks already ran on the standardised representation:
  *clustering* c = median distance to the nearest / to the 10th nearest training sample (tight
  groups put a sample's nearest neighbour much closer than its 10th), and *proximity*
  r = median nearest-neighbour distance val->train / train->train. A split by group leaves
  val samples without their group-mates in train, so r > 1 (measured 1.2-8.7 on clustered
  synthetic data); a sample-level split gives r ~ 1 whether or not the data are grouped. In
  the data stage that is only worth an info (clustered data with r ~ 1); after training, when
  validation also beats training beyond the noise (``val-below-train`` with cause
  easier-or-leaked), group leakage is named as the likely cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Check
from nnrecipe.data.base import MAX_LISTED, CrossSplitCheck, fmt_list, pct
from nnrecipe.data.duplicates import K_NEAR, leakage_verdict
from nnrecipe.data.view import DataView, ViewUnavailable, get_view

# Proximity r (val->train over train->train median nearest-neighbour distance). Measured on
# sample-level random 75/25 splits (10 seeds each): digits 0.97-1.02, wine 0.88-1.08, breast
# cancer 0.93-1.15, iris 0.87-1.14, synthetic grouped and iid data 0.94-1.06; on splits by
# group of clustered data 1.19-8.65 (1.03 only when the groups barely differ). "As close as
# train is to itself" is r <= 1.15, the top of the sample-level range.
PROXIMITY_MAX = 1.15
# Clustering c (median d1 / median d10 within train). Measured: iid synthetic data 0.53
# (4 dims) to 0.92 (64 dims), digits 0.71, wine 0.65, breast cancer 0.71, iris 0.41 (low
# dimensional, with repeated flowers); groups of 5 with a within-group spread of 0.1-0.3 of
# the between-group spread 0.11-0.49. Below 0.3 the data are clearly made of tight groups.
CLUSTERED_MAX = 0.3
MIN_PROXIMITY_SAMPLES = 2 * K_NEAR


@dataclass
class Proximity:
    split: str
    r: float  # median NN distance split->train / train->train
    c: float  # median d1 / median d10 within train

    @property
    def close(self) -> bool:
        return self.r <= PROXIMITY_MAX

    @property
    def clustered(self) -> bool:
        return self.c <= CLUSTERED_MAX


def proximity(view: DataView, split: str) -> Proximity | None:
    """The two numbers above, or None when either split is too small."""
    tr, sv = view.train, view.splits[split]
    if tr.ok.sum() <= MIN_PROXIMITY_SAMPLES or sv.ok.sum() < K_NEAR:
        return None
    dist, _ = view.knn("train", K_NEAR)
    d1, d10 = dist[:, 0], dist[:, -1]
    dv, _ = view.cross_nn(split, "train")
    med_t = float(np.median(d1))
    if med_t <= 0 or float(np.median(d10)) <= 0:
        return None  # more than half the samples are exact copies: data-duplicates says so
    return Proximity(split, float(np.median(dv)) / med_t, med_t / float(np.median(d10)))


def group_hint_verdict(p: Proximity, val_beats_train: bool) -> Severity | None:
    """Pure decision without group ids. Data stage (val_beats_train False): info only when the
    data are tightly clustered *and* val sits as close to train as train to itself. After
    training, with validation beating training beyond the noise: warning when val sits that
    close and the data are clustered, info when only close."""
    if not p.close:
        return None
    if val_beats_train:
        return Severity.WARNING if p.clustered else Severity.INFO
    return Severity.INFO if p.clustered else None


def shared_groups(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group ids present in both ``a`` and ``b``, and the mask of ``b``'s samples in them."""
    shared = np.intersect1d(a, b)
    return shared, np.isin(b, shared)


_FIX = ("Split by group, so every patient/user/session/document is in exactly one split: "
        "sklearn's GroupShuffleSplit or GroupKFold (StratifiedGroupKFold to keep class "
        "balance) on the group ids. Then re-measure: the honest validation score is usually "
        "lower.")


class GroupLeakage(CrossSplitCheck):
    code = "group-leakage"
    severity = Severity.WARNING
    title = "No group (patient, user, session, document) has samples in two splits"
    fix = _FIX
    order = 5

    def run(self, ctx: Context) -> list[Finding]:
        groups = ctx.experiment.groups
        view = self.view(ctx)
        if groups:
            return self._exact(ctx, groups)
        return self._hint(ctx, view)

    def _exact(self, ctx: Context, groups: dict[str, Any]) -> list[Finding]:
        names = [s for s in ctx.experiment.splits() if s in groups]
        ctx.record("groups_given", names)
        if "train" not in names or len(names) < 2:
            ctx.record("note", "group ids for train and at least one other split are needed")
            return []
        out: list[Finding] = []
        for i, r in enumerate(names):
            for q in names[i + 1:]:
                shared, mask = shared_groups(groups[r], groups[q])
                n = len(groups[q])
                ctx.record(f"{q}_groups_in_{r}", int(len(shared)))
                ctx.record(f"{q}_samples_in_{r}_groups", int(mask.sum()))
                sev = leakage_verdict(n, int(mask.sum()))
                if sev is None:
                    continue
                n_groups_q = len(np.unique(groups[q]))
                listed = [str(g) for g in shared[:MAX_LISTED]]
                samples = [f"{q}[{int(j)}]" for j in np.flatnonzero(mask)[:MAX_LISTED]]
                ctx.add_table(f"Groups in both {r} and {q}", ["group", f"{r} samples",
                                                              f"{q} samples"],
                              [[str(g), int((groups[r] == g).sum()), int((groups[q] == g).sum())]
                               for g in shared[:500]])
                msg = (f"{len(shared)} of the {n_groups_q} groups in {q} also have samples in "
                       f"{r}: {fmt_list(listed, 5)}. They hold {int(mask.sum())} of {n} {q} "
                       f"samples ({pct(mask.sum() / n)}); {q} metrics on them measure "
                       f"recognising entities seen in {r}, not new ones (warning from "
                       "0.5%, error from 20%).")
                out.append(self.finding(msg, {"split": q, "reference": r,
                                              "shared_groups": listed,
                                              "n_shared_groups": int(len(shared)),
                                              "samples": int(mask.sum()), "of": n,
                                              "fraction": float(mask.sum() / n),
                                              "sample_refs": samples}, severity=sev))
        return out

    def _hint(self, ctx: Context, view: DataView) -> list[Finding]:
        ctx.record("groups_given", [])
        out: list[Finding] = []
        for sv in view.other_splits():
            p = proximity(view, sv.name)
            if p is None:
                continue
            ctx.record(f"{sv.name}_proximity", p.r)
            ctx.record("train_clustering", p.c)
            sev = group_hint_verdict(p, val_beats_train=False)
            if sev is None:
                continue
            msg = (f"no group ids were given, and the data look grouped: a training sample's "
                   f"nearest neighbour is {p.c:.2f}x as far as its 10th (tight clusters; "
                   f"{CLUSTERED_MAX:g} or less), while {sv.name} samples sit as close to train "
                   f"as training samples to each other (nearest-neighbour distance ratio "
                   f"{p.r:.2f}; a split by group gives > {PROXIMITY_MAX:g}). If the clusters "
                   f"are entities (patients, users, sessions), {sv.name} shares them with train. "
                   "Pass Experiment(groups=...) (or --groups COLUMN) to check exactly.")
            out.append(self.finding(msg, {"split": sv.name, "proximity": p.r,
                                          "clustering": p.c, "groups_given": False},
                                    severity=sev))
        return out


class GroupLeakageAfterTraining(Check):
    """After training: validation beat training beyond the noise and the data carry the
    signature of shared groups (no group ids given): name group leakage as the likely cause."""

    name = "group-leakage-after-training"
    stage = "train"
    title = "Validation beating training is not explained by shared groups"
    order = 95
    emits = ("group-leakage",)

    def applies(self, ctx: Context) -> str | None:
        state = ctx.state.get("train")
        if not state or "diagnosis" not in state:
            return "the training run did not complete"
        if ctx.experiment.groups:
            return "group ids were given: the data stage checked them exactly"
        if not ctx.has_split("val"):
            return "no validation split"
        vb = state["diagnosis"].verdicts.get("val-below-train")
        if vb is None or not vb.fires or vb.cause != "easier-or-leaked":
            return "validation did not beat training beyond the noise"
        return None

    def run(self, ctx: Context) -> list[Finding]:
        vb = ctx.state["train"]["diagnosis"].verdicts["val-below-train"]
        try:
            view = get_view(ctx)
        except ViewUnavailable:
            return []
        p = proximity(view, "val")
        if p is None:
            return []
        ctx.record("proximity", p.r)
        ctx.record("clustering", p.c)
        ctx.record("val_gap", vb.gap)
        sev = group_hint_verdict(p, val_beats_train=True)
        if sev is None:
            return []
        msg = (f"validation loss is {vb.gap:.0%} below the training loss (eval mode) beyond the "
               f"noise, and validation samples sit as close to training samples as training "
               f"samples to each other (nearest-neighbour distance ratio {p.r:.2f}; a split by "
               f"group gives > {PROXIMITY_MAX:g})")
        msg += (f", in tight clusters (nearest neighbour {p.c:.2f}x as far as the 10th)"
                if p.clustered else "")
        msg += (": likely cause, the same entities (patients, users, sessions) on both sides of "
                "the split. Pass Experiment(groups=...) to check exactly.")
        return [self.finding(msg, {"proximity": p.r, "clustering": p.c, "val_gap": vb.gap,
                                   "groups_given": False}, severity=sev, code="group-leakage")]


__all__ = ["GroupLeakage", "GroupLeakageAfterTraining", "Proximity", "proximity",
           "group_hint_verdict", "shared_groups"]
