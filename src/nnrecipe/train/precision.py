"""Mixed precision seen by the monitor: ``loss-scale-collapse`` and ``fp16-overflow``.

Under ``torch.autocast(dtype=torch.float16)`` with a ``torch.amp.GradScaler``, the scaler
multiplies the loss by its scale (2**16 to start), skips every step whose gradients come out
inf/NaN and halves the scale, and doubles it after ``growth_interval`` (2000) clean steps. A
few skipped steps while it searches its scale are the design, not a failure: they are not
``loss-nonfinite`` (the monitor reads the scale after each step and marks the steps it
skipped) and, as ``optimizer.step()`` never runs on them, their gradients are never measured
(no ``exploding-gradients``). The gradients the monitor does measure are unscaled (the scaler
unscales them before it calls ``optimizer.step()``, where the monitor's hook runs).

What is a finding:

* **the scale keeps collapsing**: at or below 1 it no longer lifts small gradients above
  float16's underflow, so the scaler has stopped doing its job; or it keeps skipping steps
  long after the search (a healthy scaler skips about one step per ``growth_interval``).
* **float16 overflow in the forward pass**: a non-finite loss under float16 autocast whose
  forward pass, re-run in float32 on the same input, is finite (float16's largest value is
  65504; activations or logits beyond it become inf). The scaler cannot fix that: it only
  scales the backward pass.

The fix for both: bfloat16 (the exponent range of float32, no scaler needed), keep the loss and
softmax/log-sums in float32, or a lower learning rate.

The train stage's own precision: :func:`training_autocast` runs the enclosed training steps
under ``torch.autocast`` for ``options["precision"]`` (``"bf16"``; ``"fp32"``/None: plain
float32). ``"fp16"`` is refused with one line: the stage's steps (the built-in one, or a
user's ``train_step``) apply no GradScaler, and float16 gradients without one underflow
silently; a float16 loop belongs in the user's own code under ``watch(..., scaler=...)``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import Declared
from nnrecipe.errors import ConfigurationError

if TYPE_CHECKING:  # the verdicts are pure; torch is imported where autocast is entered
    import torch

# Reasoning: the scale exists to lift gradients above float16's smallest normal (6.1e-5); at
# 1 or below it lifts nothing, so a scale that has fallen that far has collapsed.
SCALE_FLOOR = 1.0
# A healthy scaler, past its search, skips about 1 step per growth_interval (2000): it grows
# the scale and backs off once. A quarter of the second half's steps skipped (and at least 5)
# is two orders of magnitude above that.
SKIP_SHARE = 0.25
MIN_SKIPS = 5
# fp16 overflow is an error when it hits this share of steps (the scaler skips them all: that
# much of the training is lost); a rare overflow the scaler absorbs is a warning.
OVERFLOW_ERROR_SHARE = 0.10
FIX = ("Train in bfloat16 (torch.autocast(device_type, dtype=torch.bfloat16): float32's "
       "exponent range, no GradScaler needed); keep the loss, softmax and log-sum-exp in "
       "float32; lower the learning rate. If you stay in float16, use torch.amp.GradScaler "
       "and pass it to watch(..., scaler=scaler).")


class LossScaleCollapse(Declared):
    code = "loss-scale-collapse"
    stage = "train"
    severity = Severity.WARNING
    title = "The mixed-precision loss scale keeps collapsing"
    fix = FIX


class Fp16Overflow(Declared):
    code = "fp16-overflow"
    stage = "train"
    severity = Severity.WARNING
    title = "The float16 forward pass overflows (inf activations or loss)"
    fix = FIX


@dataclass
class ScaleVerdict:
    fires: bool
    severity: Severity = Severity.WARNING
    final_scale: float = math.nan
    min_scale: float = math.nan
    skipped: int = 0
    late_skipped: int = 0  # skipped steps in the second half
    late_steps: int = 0


def scale_verdict(scales: Sequence[float], skipped: Sequence[int]) -> ScaleVerdict:
    """Pure decision over the scaler's scale after each step and the skipped step indices."""
    s = [x for x in scales if math.isfinite(x)]
    if len(s) < 2:
        return ScaleVerdict(False)
    half = len(scales) // 2
    late = [i for i in skipped if i >= half]
    late_steps = len(scales) - half
    low = min(s[half:]) <= SCALE_FLOOR
    busy = len(late) >= MIN_SKIPS and len(late) >= SKIP_SHARE * late_steps
    return ScaleVerdict(low or busy, Severity.ERROR if low else Severity.WARNING, s[-1],
                        min(s), len(skipped), len(late), late_steps)


@dataclass
class OverflowVerdict:
    fires: bool
    severity: Severity = Severity.WARNING
    steps: list[int] = field(default_factory=list)  # non-finite losses under float16
    share: float = 0.0
    finite_in_float32: bool | None = None


def overflow_verdict(losses: Sequence[float], precision: str | None,
                     finite_in_float32: bool | None) -> OverflowVerdict:
    """Pure decision: non-finite losses under float16 autocast, unless the re-run in float32
    was non-finite too (then it is not a precision problem)."""
    if precision != "float16":
        return OverflowVerdict(False)
    bad = [i for i, v in enumerate(losses) if not math.isfinite(v)]
    share = len(bad) / len(losses) if losses else 0.0
    fires = bool(bad) and finite_in_float32 is not False
    sev = Severity.ERROR if share >= OVERFLOW_ERROR_SHARE else Severity.WARNING
    return OverflowVerdict(fires, sev, bad, share, finite_in_float32)


def _trace(rec: Any) -> dict[str, Any]:
    return dict(rec.overflow or (rec.nonfinite if rec.nonfinite and
                                 rec.nonfinite.get("where") == "loss" else None) or {})


def precision_findings(rec: Any, findings: list[Finding]) -> tuple[list[Finding], dict[str, Any]]:
    """Both rules over a recording. A float16 overflow that explains every non-finite loss
    replaces ``loss-nonfinite``; non-finite losses only on steps the scaler skipped are not
    ``loss-nonfinite`` either (the scaler dropped them on purpose)."""
    trace = _trace(rec)
    sv = scale_verdict(rec.loss_scale, rec.scaler_skipped)
    ov = overflow_verdict(rec.loss, rec.precision, trace.get("finite_in_float32"))
    out = list(findings)
    bad = [i for i, v in enumerate(rec.loss) if not math.isfinite(v)]
    skipped = set(rec.scaler_skipped)
    if bad and all(i in skipped for i in bad) and rec.nonfinite is None:
        out = [f for f in out if f.code != "loss-nonfinite"]
    if ov.fires:
        out = [f for f in out if f.code != "loss-nonfinite"]
        where = trace.get("forward_origin")
        msg = (f"under float16 autocast the loss was non-finite on {len(ov.steps)} of "
               f"{len(rec.loss)} steps (first at step {ov.steps[0]})")
        if ov.finite_in_float32:
            msg += "; the same forward pass re-run in float32 is finite, so float16 overflowed"
        if where:
            msg += f"; the first layer whose float16 output is non-finite is '{where}'"
        if rec.scaler_skipped:
            msg += (f"; the GradScaler skipped {len(rec.scaler_skipped)} steps, but it scales "
                    "only the backward pass and cannot prevent a forward overflow")
        out.insert(0, Fp16Overflow.make_finding(
            msg, {"steps": ov.steps[:50], "share": ov.share, "forward_origin": where,
                  "finite_in_float32": ov.finite_in_float32,
                  "scaler_skipped": len(rec.scaler_skipped)}, severity=ov.severity))
    if sv.fires:
        msg = (f"the GradScaler's loss scale fell to {sv.min_scale:.3g} (now {sv.final_scale:.3g}"
               f"; it starts at 65536 and halves on every skipped step) and it skipped "
               f"{sv.skipped} steps, {sv.late_skipped} of the last {sv.late_steps}")
        msg += ("; at or below 1 it no longer protects small gradients from float16 underflow"
                if sv.min_scale <= SCALE_FLOOR else
                "; a healthy scaler skips about one step per 2000 once its scale is found")
        f = LossScaleCollapse.make_finding(msg, {
            "final_scale": sv.final_scale, "min_scale": sv.min_scale, "skipped": sv.skipped,
            "late_skipped": sv.late_skipped, "late_steps": sv.late_steps}, severity=sv.severity)
        if ov.fires:  # the overflow is why the scale collapses: one cause, named once
            out[0].message += f"; the loss scale collapsed with it ({msg})"
            out[0].evidence["loss_scale"] = f.evidence
        else:
            out.insert(0, f)
    return out, {"loss-scale-collapse": sv, "fp16-overflow": ov}


# ``options["precision"]`` values (the names Lightning and Hugging Face users already type) and
# the autocast dtype each means (a torch attribute name); None: no autocast (float32).
PRECISIONS: dict[str, str | None] = {
    "fp32": None, "float32": None, "32": None, "32-true": None,
    "bf16": "bfloat16", "bfloat16": "bfloat16", "bf16-mixed": "bfloat16",
    "fp16": "float16", "float16": "float16", "16": "float16", "16-mixed": "float16"}


def precision_dtype(spec: Any) -> torch.dtype | None:
    """The autocast dtype that ``options["precision"]`` names (None: float32); a
    :class:`ConfigurationError` (one line, exit 2) for a name it does not know."""
    import torch

    if spec is None:
        return None
    key = (str(spec).removeprefix("torch.") if isinstance(spec, torch.dtype)
           else str(spec).strip().lower())
    if key not in PRECISIONS:
        raise ConfigurationError(f"options['precision'] must be one of "
                                 f"{', '.join(sorted(PRECISIONS))}; got {spec!r}")
    name = PRECISIONS[key]
    return None if name is None else getattr(torch, name)


@contextlib.contextmanager
def training_autocast(spec: Any, device: torch.device | str = "cpu"
                      ) -> Iterator[torch.dtype | None]:
    """Run the enclosed training steps under ``torch.autocast(device, dtype)`` for
    ``options["precision"]``; yields the dtype (None: float32, nothing changed). The monitor
    records it (``Recording.precision``), so the mixed-precision rules apply. The context may
    span a whole ``fit()``: autocast's weight cache is off (a cached copy would be stale after
    the first update), and the optimizers' elementwise updates are not autocast ops.

    Raises :class:`ConfigurationError` before anything runs for float16 (no GradScaler in the
    stage's steps: gradients would underflow silently; bfloat16 needs none) and for a device
    without autocast."""
    import torch

    dtype = precision_dtype(spec)
    if dtype is None:
        yield None
        return
    device_type = torch.device(device).type
    if dtype is torch.float16:
        raise ConfigurationError(
            "options['precision']='fp16' needs a GradScaler, which the train stage's steps do "
            "not apply (float16 gradients underflow silently without one): use 'bf16' "
            "(float32's exponent range, no scaler needed), or train float16 in your own loop "
            "under nnrecipe.watch(model, optimizer, scaler=torch.amp.GradScaler())")
    if not torch.amp.is_autocast_available(device_type):
        raise ConfigurationError(f"options['precision']={spec!r}: torch.autocast is not "
                                 f"available on the {device_type!r} device")
    # cache_enabled=False: this context spans many steps, and autocast's cache of low-precision
    # weight copies lives until the context exits, so with it every forward after the first
    # would use the first step's weights (measured: a toy MLP did not learn at all in bf16)
    with torch.autocast(device_type, dtype=dtype, cache_enabled=False):
        yield dtype
