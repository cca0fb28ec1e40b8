"""The self-contained HTML report: inline CSS, figures as data URIs, no fonts, no external
scripts (a few inline lines fold the stage sections; the page reads the same without them).

Layout, top to bottom: a sticky bar with the verdict and the counts by severity; a table of
contents; the recipe checklist; the findings (each with its fix, evidence and the figures it
claims, linked to its check); the stages check by check (each check linked back to its
findings, with the figures no finding claimed); the journey; an appendix with the run's
details and files. Everything is computed here into plain dicts; the template only lays out.
"""

from __future__ import annotations

import json
import math
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import CATALOGUE
from nnrecipe.core.results import CheckResult, RunResult, TableArtifact
from nnrecipe.core.stages import STAGES
from nnrecipe.report.figures import (
    PLOTS_DIR,
    claimed_figures,
    embed,
    figure_filename,
    unclaimed_figures,
)

_env = Environment(loader=PackageLoader("nnrecipe", "report/templates"),
                   autoescape=select_autoescape(["html", "j2"]), trim_blocks=True,
                   lstrip_blocks=True)
_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
EMPTY = "–"  # what an empty cell shows (never "None")


def _fmt(value: Any) -> str:
    if value is None:
        return EMPTY
    if isinstance(value, float):
        if math.isnan(value):
            return EMPTY
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.4g}"
        return f"{value:.3e}"
    if isinstance(value, (list, dict)):
        text = json.dumps(value, default=str)
        return text if len(text) <= 300 else text[:297] + "..."
    return str(value)


_env.filters["fmt"] = _fmt


def _is_empty(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return isinstance(v, str) and v.strip() in ("", "—", "–", "-", "None", "nan")


def table_view(t: TableArtifact) -> dict[str, Any]:
    """A table without its all-empty columns (a regression run's "val accuracy", say)."""
    keep = [j for j in range(len(t.columns))
            if t.rows and not all(_is_empty(r[j] if j < len(r) else None) for r in t.rows)]
    if not t.rows:
        keep = list(range(len(t.columns)))
    dropped = [t.columns[j] for j in range(len(t.columns)) if j not in keep]
    return {"title": t.title, "caption": t.caption, "columns": [t.columns[j] for j in keep],
            "rows": [[r[j] if j < len(r) else None for j in keep] for r in t.rows],
            "dropped": dropped}


def _check_anchor(stage: str, check: str) -> str:
    return f"check-{stage}-{check}"


def verdict(result: RunResult) -> tuple[str, str]:
    """(css class, one line) for the top bar."""
    counts = {s: result.count(s) for s in Severity}
    if counts[Severity.ERROR]:
        text, cls = (f"broken: {counts[Severity.ERROR]} error"
                     f"{'s' if counts[Severity.ERROR] != 1 else ''} to fix first", "error")
    elif counts[Severity.WARNING]:
        text, cls = (f"{counts[Severity.WARNING]} warning"
                     f"{'s' if counts[Severity.WARNING] != 1 else ''} to look at", "warning")
    else:
        text, cls = "no errors or warnings", "passed"
    if result.interrupted:
        text += " (interrupted: partial results)"
    return cls, text


def build_view(result: RunResult) -> dict[str, Any]:
    """Everything the template shows, as plain data."""
    stage_rank = {s.name: i for i, s in enumerate(STAGES)}
    # the check result that holds each finding, and the figures it claims
    holder: dict[int, tuple[str, CheckResult]] = {}
    for s in result.stages:
        for c in s.checks:
            for f in c.findings:
                holder[id(f)] = (s.name, c)
    findings = sorted(result.findings, key=lambda f: (_ORDER[f.severity],
                                                      stage_rank.get(f.stage, 99), f.code))
    anchors = {id(f): f"finding-{i + 1}" for i, f in enumerate(findings)}
    fviews = []
    for f in findings:
        stage, check = holder[id(f)]
        anchor = anchors[id(f)]
        figs = [embed(check.figures[i], f"{PLOTS_DIR}/{figure_filename(stage, check.name, i, check.figures[i].title)}",
                      f"{anchor}-fig-{k + 1}")
                for k, i in enumerate(claimed_figures(check, f))]
        fviews.append({"f": f, "anchor": anchor, "check_anchor": _check_anchor(stage, check.name),
                       "check": check.name, "stage": stage, "figures": figs,
                       "evidence": [(k, v) for k, v in f.evidence.items()]})
    stages, journey_figures = [], []
    for s in result.stages:
        checks = []
        for c in s.checks:
            anchor = _check_anchor(s.name, c.name)
            figs = [embed(c.figures[i], f"{PLOTS_DIR}/{figure_filename(s.name, c.name, i, c.figures[i].title)}",
                          f"{anchor}-fig-{i + 1}")
                    for i in unclaimed_figures(c)]
            moved = c.name == "journey" and bool(figs)  # drawn once, in the journey section
            if moved:
                journey_figures, figs = figs, []
            checks.append({"c": c, "anchor": anchor, "figures": figs, "figures_moved": moved,
                           "tables": [table_view(t) for t in c.tables],
                           "findings": [{"anchor": anchors[id(f)], "f": f} for f in c.findings]})
        stages.append({"s": s, "anchor": f"stage-{s.name}", "checks": checks,
                       "step": next((i.step for i in STAGES if i.name == s.name), s.name)})
    ran = {s.name: s for s in result.stages}
    checklist = []
    for i, info in enumerate(STAGES):
        s = ran.get(info.name)
        checklist.append({"n": i + 1, "info": info, "s": s, "anchor": f"stage-{info.name}",
                          "chips": [{"c": c, "anchor": _check_anchor(info.name, c.name)}
                                    for c in (s.checks if s else [])]})
    journey = result.extra.get("journey")
    codes = sorted({f.code for f in findings})
    return {
        "findings": fviews, "stages": stages, "checklist": checklist,
        "journey": journey if journey and journey.get("points") else None,
        "journey_figures": journey_figures,
        "verdict": verdict(result),
        "counts": {s.value: result.count(s) for s in Severity},
        "glossary": [(c, CATALOGUE[c]) for c in codes if c in CATALOGUE],
        "has_flagged": bool(result.flagged),
    }


def render_html(result: RunResult) -> str:
    from nnrecipe import __version__

    template = _env.get_template("report.html.j2")
    return template.render(result=result, version=__version__, v=build_view(result))


__all__ = ["render_html", "build_view", "table_view", "verdict", "Finding"]
