"""Writing a run's outputs: ``findings.json``, ``report.html`` and ``plots/*.png``.

Everything is rendered in memory first, then written under temporary names and renamed into
place, so a failure (a full disk, a kill) leaves the previous outputs or none, never a
truncated file, and the plots of a new run never mix with an older run's: the new
``plots/`` folder replaces the old one whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path

from nnrecipe.core.output import _TMP_PREFIX, atomic_write_all
from nnrecipe.core.results import RunResult
from nnrecipe.report.export import write_flagged
from nnrecipe.report.figures import assign_figure_files, plot_files
from nnrecipe.report.html import render_html


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "figure"


def _plots(result: RunResult) -> dict[str, bytes]:
    return plot_files(result)  # names shared with findings.json's figure_files


def write_outputs(result: RunResult, out_dir: Path) -> dict[str, Path]:
    """Write everything; returns the paths written. Safe to call on an interrupted run.
    Raises OSError (with nothing half-written left behind) when the folder cannot take it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    assign_figure_files(result)
    findings_json = json.dumps(result.to_dict(), indent=2, allow_nan=False).encode("utf-8")
    report_html = render_html(result).encode("utf-8")
    plots = _plots(result)
    paths = {"findings": out_dir / "findings.json", "report": out_dir / "report.html"}
    staged = out_dir / f"{_TMP_PREFIX}{os.getpid()}-plots"
    try:
        if plots:
            shutil.rmtree(staged, ignore_errors=True)
            staged.mkdir()
            for name, png in plots.items():
                (staged / name).write_bytes(png)
        # The two documents together: if either cannot be written, both old ones stay.
        atomic_write_all({paths["findings"]: findings_json, paths["report"]: report_html})
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    _swap_plots(out_dir / "plots", staged if plots else None)
    flagged = write_flagged(result.flagged, out_dir)
    if flagged is not None:
        paths["flagged"] = flagged
    return paths


def _swap_plots(target: Path, staged: Path | None) -> None:
    """Replace ``target`` by ``staged`` (or remove it when the run drew nothing)."""
    old = target.with_name(f"{_TMP_PREFIX}{os.getpid()}-plots-old")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    if staged is not None:
        os.replace(staged, target)
    with contextlib.suppress(OSError):
        shutil.rmtree(old)
