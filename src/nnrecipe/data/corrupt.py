"""``corrupt-samples``: samples that cannot be trained on.

A sample whose ``__getitem__`` raises crashes the DataLoader mid-epoch; one NaN or inf input
turns the loss into NaN and poisons every weight at the next step; a sample of another
shape breaks batching; an integer image among float ones (or the reverse) is usually one
that skipped the transform; a NaN or fractional class label silently breaks the loss. The
loading pass (``view.py``) records each of them and the audit goes on without them.
"""

from __future__ import annotations

from collections import Counter

from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.data.base import MAX_LISTED, DataCheck, fmt_list
from nnrecipe.data.view import Problem
from nnrecipe.report.export import record_flagged

KIND_TEXT = {
    "raised": "loading raised an exception",
    "not-a-pair": "not an (input, target) pair",
    "non-numeric": "non-numeric values",
    "nonfinite": "NaN or inf in the input",
    "shape": "another shape than the rest",
    "dtype": "another dtype than the rest",
    "label": "unusable label",
}


def corrupt_verdict(n_problems: int) -> Severity | None:
    """By reasoning, any corrupt sample is an error: one is enough to crash an epoch or to
    make the loss NaN, so there is no harmless fraction."""
    return Severity.ERROR if n_problems > 0 else None


class CorruptSamples(DataCheck):
    code = "corrupt-samples"
    severity = Severity.ERROR
    title = "Every sample loads, is finite, and has the shape, dtype and label type of the rest"
    fix = ("Drop or repair the listed samples before training: fix the file or the "
           "__getitem__ that raises, fill or drop NaN/inf values (impute missing values and add "
           "a 'was missing' indicator), resize/pad samples to one shape, apply the same "
           "transform (and dtype) to every sample, and make every label a whole class index.")
    order = 2

    def applies(self, ctx: Context) -> str | None:
        reason = super().applies(ctx)
        if reason and reason.startswith("the data could not be read"):
            return reason
        return None  # runs even when nothing in train is usable: that is its finding

    def run(self, ctx: Context) -> list[Finding]:
        view = self.view(ctx)
        row_notes = ctx.options.get("data_row_notes") or {}
        problems: list[Problem] = [p for s in view.splits.values() for p in s.problems]
        by_split = Counter(p.split for p in problems)
        by_kind = Counter(p.kind for p in problems)
        for s in view.splits.values():
            ctx.record(f"{s.name}_corrupt", by_split.get(s.name, 0))
            ctx.record(f"{s.name}_audited", s.n)
        severity = corrupt_verdict(len(problems))
        if severity is None:
            return []
        rows = []
        for p in problems:
            note = (row_notes.get(p.split) or {}).get(p.index) or (row_notes.get(p.split) or {}
                                                                   ).get(str(p.index))
            reason = p.reason + (f"; {note}" if note else "")
            rows.append([p.split, p.index if p.index >= 0 else "all", p.kind, reason[:300]])
        for p in problems:  # flagged.csv; a whole-split problem (index -1) has no index
            record_flagged(ctx, self.code, p.split, [p.index if p.index >= 0 else ""],
                           details=[p.kind])
        ctx.add_table("Samples that cannot be used", ["split", "index", "problem", "details"],
                      rows[:500], caption=f"{len(rows)} in all" + (" (first 500 shown)"
                                                                  if len(rows) > 500 else ""))
        parts = [f"{KIND_TEXT.get(k, k)}: {n}" for k, n in by_kind.most_common()]
        examples = [f"{r[0]}[{r[1]}]: {r[3]}" for r in rows[:3]]
        audited = {s.name: s.n for s in view.splits.values()}
        subsampled = [s.name for s in view.splits.values() if s.subsampled]
        msg = (f"{len(problems)} sample{'s' if len(problems) != 1 else ''} cannot be used "
               f"({'; '.join(parts)}). For example {fmt_list(examples, 3)}. The rest of the "
               "audit runs without them.")
        if subsampled:
            msg += f" Only a random subset of {', '.join(subsampled)} was read, so there may be more."
        if not view.train.ok.any():
            msg += " No training sample is usable."
        evidence = {
            "count": len(problems), "by_split": dict(by_split), "by_kind": dict(by_kind),
            "audited": audited,
            "samples": [{"split": r[0], "index": r[1], "problem": r[2], "details": r[3]}
                        for r in rows[:MAX_LISTED]],
        }
        return [self.finding(msg, evidence, severity=severity)]
