"""Writing lab pages: one self-contained HTML page per topic (figures as data URIs, inline CSS,
no scripts or fonts), the PNGs beside it, the numbers as JSON, and an index for ``all``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from nnrecipe.core.findings import to_jsonable
from nnrecipe.core.results import FigureArtifact, figure_to_png
from nnrecipe.lab._base import Conclusion, Numbers, Plot, Topic
from nnrecipe.lab.spread import criteria_rows
from nnrecipe.report.html import _fmt

_env = Environment(loader=PackageLoader("nnrecipe", "lab/templates"),
                   autoescape=select_autoescape(["html", "j2"]), trim_blocks=True,
                   lstrip_blocks=True)
_env.filters["fmt"] = _fmt


@dataclass
class RenderedPlot:
    title: str
    caption: str
    artifact: FigureArtifact

    @property
    def uri(self) -> str:
        return self.artifact.data_uri()


@dataclass
class Entry:
    """One topic's outcome, ready to render."""

    topic: Topic
    numbers: Numbers = field(default_factory=dict)
    conclusion: Conclusion | None = None
    plots: list[RenderedPlot] = field(default_factory=list)
    table: tuple[list[str], list[list[Any]]] | None = None
    error: str = ""
    seconds: float = 0.0
    seed: int = 0
    seeds: list[int] = field(default_factory=list)  # the seeds the conclusion is decided over
    per_seed: list[Numbers] = field(default_factory=list)  # each seed's own numbers

    @property
    def href(self) -> str:
        return f"{self.topic.name}.html"


def render_plots(plots: list[Plot]) -> list[RenderedPlot]:
    return [RenderedPlot(p.title, p.caption, FigureArtifact(p.title, figure_to_png(p.figure),
                                                            p.caption)) for p in plots]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:50] or "figure"


def _code_rows(codes: tuple[str, ...]) -> list[dict[str, str]]:
    from nnrecipe.core.registry import CATALOGUE
    from nnrecipe.core.runner import load_stage_checks

    load_stage_checks()
    rows = []
    for code in codes:
        info = CATALOGUE.get(code)
        rows.append({"code": code} if info is None else
                    {"code": code, "title": info.title, "fix": info.fix, "stage": info.stage,
                     "severity": info.severity.value})
    return rows


def numbers_json(numbers: Numbers) -> str:
    return json.dumps(to_jsonable(numbers), indent=1, allow_nan=False)


def entry_json(entry: Entry) -> str:
    """The numbers behind a page: each seed's own, and the criteria decided over them."""
    if not entry.per_seed:
        return numbers_json(entry.numbers) if entry.numbers else ""
    crit = criteria_rows(entry.conclusion) if entry.conclusion else []
    return numbers_json({"seeds": entry.seeds, "criteria": crit,
                         "per_seed": dict(zip(map(str, entry.seeds), entry.per_seed,
                                              strict=False))})


def write_topic(entry: Entry, out_dir: Path, *, index_link: bool = False) -> Path:
    from nnrecipe import __version__

    out_dir.mkdir(parents=True, exist_ok=True)
    plots_dir = out_dir / "plots"
    for i, p in enumerate(entry.plots):
        plots_dir.mkdir(exist_ok=True)
        (plots_dir / f"{entry.topic.name}-{i}-{_slug(p.title)}.png").write_bytes(p.artifact.png)
    text = entry_json(entry)
    if text:
        (out_dir / f"{entry.topic.name}.json").write_text(text)
    html = _env.get_template("topic.html.j2").render(
        topic=entry.topic, conclusion=entry.conclusion, plots=entry.plots, table=entry.table,
        error=entry.error, seconds=entry.seconds, seed=entry.seed, version=__version__,
        seeds=entry.seeds or [entry.seed],
        criteria=criteria_rows(entry.conclusion) if entry.conclusion else [],
        codes=_code_rows(entry.topic.codes), numbers_json=text, index_link=index_link)
    path = out_dir / entry.href
    path.write_text(html, encoding="utf-8")
    return path


def write_index(entries: list[Entry], out_dir: Path, *, seconds: float, seed: int,
                seeds: list[int] | None = None) -> Path:
    from nnrecipe import __version__

    ok = [e for e in entries if not e.error and e.conclusion is not None]
    html = _env.get_template("index.html.j2").render(
        entries=entries, seconds=seconds, seed=seed, version=__version__,
        seeds=seeds or [seed],
        shown=sum(1 for e in ok if e.conclusion.shown),  # type: ignore[union-attr]
        not_shown=sum(1 for e in ok if not e.conclusion.shown),  # type: ignore[union-attr]
        crashed=sum(1 for e in entries if e.error))
    path = out_dir / "index.html"
    path.write_text(html, encoding="utf-8")
    return path
