"""The self-contained HTML report: inline CSS, figures as data URIs, no scripts or fonts."""

from __future__ import annotations

import json
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from nnrecipe.core.findings import Severity
from nnrecipe.core.registry import CATALOGUE
from nnrecipe.core.results import RunResult
from nnrecipe.core.stages import STAGES

_env = Environment(loader=PackageLoader("nnrecipe", "report/templates"),
                   autoescape=select_autoescape(["html", "j2"]), trim_blocks=True,
                   lstrip_blocks=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.4g}"
        return f"{value:.3e}"
    if isinstance(value, (list, dict)):
        text = json.dumps(value, default=str)
        return text if len(text) <= 300 else text[:297] + "..."
    return str(value)


_env.filters["fmt"] = _fmt


def render_html(result: RunResult) -> str:
    from nnrecipe import __version__

    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    stage_rank = {s.name: i for i, s in enumerate(STAGES)}
    findings = sorted(result.findings, key=lambda f: (order[f.severity],
                                                      stage_rank.get(f.stage, 99), f.code))
    figures = {(s.name, c.name): c.figures for s in result.stages for c in s.checks}
    stage_titles = {s.name: s.step for s in STAGES}
    ran = {s.name for s in result.stages}
    template = _env.get_template("report.html.j2")
    return template.render(
        result=result, findings=findings, figures=figures, stage_titles=stage_titles,
        all_stages=STAGES, ran=ran, version=__version__, catalogue=CATALOGUE,
        counts={s.value: result.count(s) for s in Severity},
        journey=result.extra.get("journey"),
    )
