"""Causes the monitor sees directly, applied after the learning-curve rules.

:func:`monitor_causes` runs the gradient-hygiene rules (:mod:`nnrecipe.train.grad_accumulation`)
and the mixed-precision rules (:mod:`nnrecipe.train.precision`) over a recording and lets a
cause they find absorb the findings that are only its symptoms, so a report names one cause
first instead of five unrelated-looking problems. :func:`nnrecipe.train.detectors.diagnose`
calls it last; the verdicts land in ``Diagnosis.verdicts`` under their codes.
"""

from __future__ import annotations

from typing import Any

from nnrecipe.core.findings import Finding
from nnrecipe.train.grad_accumulation import accumulation_findings
from nnrecipe.train.precision import precision_findings

CAUSE_CODES = ("grads-not-zeroed", "accumulation-discarded", "fp16-overflow", "loss-scale-collapse")


def monitor_causes(rec: Any, findings: list[Finding], verdicts: dict[str, Any]) -> list[Finding]:
    out, v = precision_findings(rec, findings)
    verdicts.update(v)
    out, v = accumulation_findings(rec, out)  # last: a stale gradient is named first
    verdicts.update(v)
    return out
