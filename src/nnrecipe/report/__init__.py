"""Rendering what a run recorded: the HTML report, findings.json, PNG plots, flagged.csv, the
comparison of two runs and the TensorBoard export. Imported on first use (``nnrecipe codes``
reads only the static catalogue)."""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "render_html": "nnrecipe.report.html",
    "write_outputs": "nnrecipe.report.write",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nnrecipe.report' has no attribute {name!r}")


__all__ = ["render_html", "write_outputs"]
