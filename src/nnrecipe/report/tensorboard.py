"""The monitor's signals and the findings as TensorBoard event files, beside the user's own
curves: ``nnrecipe.watch(model, optimizer, tensorboard=writer_or_logdir)`` while training, or
``nnrecipe train EXP --tensorboard DIR`` after the train stage.

Tags (all under ``nnrecipe/``, so they group apart from the user's):

- ``loss``, ``lr``: per optimizer step;
- ``grad_norm/<layer>`` and ``grad_norm/total``: per-layer gradient L2 norms;
- ``update_ratio/<layer>``: ||Δw|| / ||w|| per step (healthy ~1e-3);
- ``dead_fraction/<relu>``, ``saturated_fraction/<tanh|sigmoid>``: the fraction of units;
- ``epoch/<key>``: the per-epoch numbers (``val_loss``, ``val_accuracy``, ...), at the step
  the epoch ended;
- text ``findings/<code>``: each finding (severity, message, fix), at the step it was seen.

A writer is anything with ``add_scalar`` and ``add_text`` (torch's ``SummaryWriter``, or
tensorboardX's); a path makes a ``torch.utils.tensorboard.SummaryWriter`` there, which needs the
``tensorboard`` package (``pip install 'nnrecipe[tensorboard]'``). Writing is incremental: each
:meth:`TensorBoardExport.write` adds only the points recorded since the last one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from nnrecipe.core.findings import Finding
from nnrecipe.errors import ConfigurationError

PREFIX = "nnrecipe"


def open_writer(target: Any) -> tuple[Any, bool]:
    """(writer, owned): a SummaryWriter for a path (owned: closed by us), or the given one."""
    if isinstance(target, (str, Path)):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ConfigurationError(
                "the TensorBoard export needs the tensorboard package: pip install "
                f"'nnrecipe[tensorboard]' ({e})") from e
        Path(target).mkdir(parents=True, exist_ok=True)
        return SummaryWriter(log_dir=str(target)), True
    if not (callable(getattr(target, "add_scalar", None))
            and callable(getattr(target, "add_text", None))):
        raise ConfigurationError(
            f"tensorboard= takes a log folder or a SummaryWriter, got {type(target).__name__}")
    return target, False


def _tag(name: str) -> str:
    return name.replace(" ", "_") or "model"


class TensorBoardExport:
    """Writes a :class:`~nnrecipe.train.recording.Recording` and findings to TensorBoard."""

    def __init__(self, target: Any) -> None:
        self.writer, self._owned = open_writer(target)
        self._last: dict[str, int] = {}  # per signal: the last step written
        self._findings: set[tuple[str, str]] = set()

    def _new(self, key: str, steps: list[int]) -> range:
        """Indices of ``steps`` after the last written step of ``key`` (steps are sorted)."""
        last = self._last.get(key, -1)
        start = next((i for i, s in enumerate(steps) if s > last), len(steps))
        if len(steps):
            self._last[key] = max(last, int(steps[-1]))
        return range(start, len(steps))

    def _scalar(self, tag: str, value: float, step: int) -> None:
        if value is not None and math.isfinite(float(value)):
            self.writer.add_scalar(f"{PREFIX}/{tag}", float(value), int(step))

    def write(self, rec: Any) -> None:
        """Add what ``rec`` recorded since the last call."""
        steps = list(range(len(rec.loss)))
        for i in self._new("loss", steps):
            self._scalar("loss", rec.loss[i], i)
            if i < len(rec.lr):
                self._scalar("lr", rec.lr[i], i)
        self._series("grad_norm", rec.grad, rec.layers)
        for i in self._new("grad_total", list(rec.grad.steps)):
            if i < len(rec.grad_total):
                self._scalar("grad_norm/total", rec.grad_total[i], rec.grad.steps[i])
        self._series("update_ratio", rec.update, rec.layers)
        acts = [name for name, _ in rec.activations]
        kinds = dict(rec.activations)
        self._series("dead_fraction", rec.dead, acts, keep=lambda n: kinds.get(n) == "relu")
        self._series("saturated_fraction", rec.saturated, acts,
                     keep=lambda n: kinds.get(n) in ("tanh", "sigmoid"))
        epochs = [int(e.get("step", e.get("epoch", 0))) for e in rec.epochs]
        for i in self._new("epoch", epochs):
            for key, value in rec.epochs[i].items():
                if key not in ("epoch", "step") and isinstance(value, (int, float)):
                    self._scalar(f"epoch/{key}", value, epochs[i])

    def _series(self, name: str, series: Any, columns: list[str], keep: Any = None) -> None:
        arr = series.array()
        for i in self._new(name, list(series.steps)):
            for j, col in enumerate(columns):
                if j < arr.shape[1] and (keep is None or keep(col)):
                    self._scalar(f"{name}/{_tag(col)}", arr[i, j], series.steps[i])

    def finding(self, f: Finding, step: int) -> None:
        """A finding as text (once per code and severity)."""
        key = (f.code, f.severity.value)
        if key in self._findings:
            return
        self._findings.add(key)
        self.writer.add_text(f"{PREFIX}/findings/{f.code}",
                             f"**{f.severity.value}** ({f.stage}): {f.message}\n\n**Fix:** {f.fix}",
                             int(step))

    def flush(self) -> None:
        if hasattr(self.writer, "flush"):
            self.writer.flush()

    def close(self) -> None:
        self.flush()
        if self._owned:
            self.writer.close()


def export_train_stage(target: Any, train_state: dict[str, Any], findings: list[Finding]) -> None:
    """After ``nnrecipe train``: the train stage's recording and its findings."""
    rec = train_state.get("recording")
    if rec is None:
        return
    tb = TensorBoardExport(target)
    try:
        tb.write(rec)
        for f in findings:
            tb.finding(f, max(0, len(rec.loss) - 1))
    finally:
        tb.close()
