"""Writing a run's outputs: ``findings.json``, ``report.html`` and ``plots/*.png``."""

from __future__ import annotations

import json
import re
from pathlib import Path

from nnrecipe.core.results import RunResult
from nnrecipe.report.export import write_flagged
from nnrecipe.report.html import render_html


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "figure"


def write_outputs(result: RunResult, out_dir: Path) -> dict[str, Path]:
    """Write everything; returns the paths written. Safe to call on an interrupted run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    plots = out_dir / "plots"
    for stage in result.stages:
        for check in stage.checks:
            for i, fig in enumerate(check.figures):
                plots.mkdir(exist_ok=True)
                p = plots / f"{stage.name}-{check.name}-{i}-{_slug(fig.title)}.png"
                p.write_bytes(fig.png)
    paths["findings"] = out_dir / "findings.json"
    paths["findings"].write_text(json.dumps(result.to_dict(), indent=2, allow_nan=False))
    paths["report"] = out_dir / "report.html"
    paths["report"].write_text(render_html(result), encoding="utf-8")
    flagged = write_flagged(result.flagged, out_dir)
    if flagged is not None:
        paths["flagged"] = flagged
    return paths
