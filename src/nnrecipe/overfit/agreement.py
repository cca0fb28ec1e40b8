"""One voice (issue 11 #4): the range test (``nnrecipe lr``, the overfit stage) and the train
stage's ``lr-too-high`` / ``lr-too-low`` judge the same learning rate, so they must agree or
the finding must say why they differ.

:func:`lr_disagreements` is a pure function of what both left behind: the range test's
suggestion and plausible range (``ctx.state["lr"]`` or the ``lr-suggestion`` finding's
evidence) and the train stage's findings. It is what the tests and
``benchmarks/lr_agreement.py`` (the demo and the healthy corpus) assert on.

What counts as a contradiction (only warnings and errors: an info is advice, not a verdict):

- ``lr-too-high`` at a rate the range test put *below* its plausible range (it would have
  said "raise it"), or inside it without the finding saying why the two differ (the train
  stage judges a whole run, the range test ~100 steps: later instability is possible, and
  the finding must say so);
- ``lr-too-low`` at a rate above the range, or inside it without an explanation;
- a fix that points at the range test's suggestion in the wrong direction ("lower the rate;
  the range test suggested X" with X above the rate, or "raise it" with X below).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from nnrecipe.core.findings import Finding, Severity

JUDGED = ("lr-too-high", "lr-too-low")
# How a finding says that it knows the range test disagrees (the train stage's wording:
# "The LR range test ... found ... inside its plausible range"); lower-cased substring.
EXPLAINED = "range test"


def lr_disagreements(suggestion: Mapping[str, Any] | None, findings: Iterable[Finding]
                     ) -> list[str]:
    """Sentences, one per contradiction between the range test and the train stage's
    learning-rate findings; empty when they agree (or either said nothing)."""
    if not suggestion:
        return []
    s, low, high = (_num(suggestion.get(k)) for k in ("suggested", "low", "high"))
    out: list[str] = []
    for f in findings:
        if f.code not in JUDGED or not f.severity >= Severity.WARNING:
            continue
        lr = _num(f.evidence.get("lr"))
        if not math.isfinite(lr) or lr <= 0:
            continue
        high_code = f.code == "lr-too-high"
        explained = EXPLAINED in f.message.lower()
        if math.isfinite(low) and math.isfinite(high) and low <= high:
            if high_code and lr < low:
                out.append(f"lr-too-high at {lr:.3g}, below the range test's plausible range "
                           f"[{low:.3g}, {high:.3g}]")
            elif not high_code and lr > high:
                out.append(f"lr-too-low at {lr:.3g}, above the range test's plausible range "
                           f"[{low:.3g}, {high:.3g}]")
            elif low <= lr <= high and not explained:
                out.append(f"{f.code} at {lr:.3g}, inside the range test's plausible range "
                           f"[{low:.3g}, {high:.3g}], without saying why they differ")
        fix = (f.fix or "").lower()
        if math.isfinite(s) and "suggested" in fix and EXPLAINED in fix:
            if high_code and s >= lr:
                out.append(f"lr-too-high's fix lowers {lr:.3g} towards the range test's "
                           f"suggestion {s:.3g}, which is not lower")
            elif not high_code and s <= lr:
                out.append(f"lr-too-low's fix raises {lr:.3g} towards the range test's "
                           f"suggestion {s:.3g}, which is not higher")
    return out


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan
