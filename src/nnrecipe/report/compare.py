"""``nnrecipe compare RUN_A RUN_B``: what changed between two runs (say, before and after a fix).

Reads the two run folders' ``findings.json`` only (no torch, no re-running) and writes
``compare.html`` (self-contained, like the report) and ``compare.json``:

- findings **fixed** (in A, not in B), **new** (in B, not in A), **unchanged**, and those whose
  severity changed; a finding of a stage or check only one run ran is "not compared" (a stage
  B skipped fixed nothing). A finding is identified by its code, stage and the split it is about
  (``evidence["split"]``), so "duplicates in train" and "duplicates in val" stay apart, and a
  message whose numbers moved still counts as the same finding;
- the learning curves of both runs overlaid (the train stage's per-epoch table);
- the journey side by side, with the change of each step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnrecipe.errors import ConfigurationError

SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2}


@dataclass
class RunSummary:
    path: Path
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.data.get('experiment', '?')} ({self.path.name})"

    @property
    def findings(self) -> list[dict[str, Any]]:
        return list(self.data.get("findings", []))

    def table(self, stage: str, wanted: set[str]) -> dict[str, Any] | None:
        """The first table of ``stage`` whose columns include all of ``wanted``."""
        for check in (self.data.get("stages", {}).get(stage, {}).get("checks") or {}).values():
            for t in check.get("tables", []):
                if wanted <= set(t.get("columns", [])):
                    return t
        return None

    def ran(self, stage: str, check: str = "") -> bool:
        """Whether the run ran ``stage`` (and ``check``, when given, was not 'not run')."""
        s = (self.data.get("stages") or {}).get(stage)
        if not s or s.get("status") == "not run":
            return False
        c = (s.get("checks") or {}).get(check) if check else None
        return c is None or c.get("status") != "not run"

    @property
    def journey(self) -> dict[str, Any] | None:
        return (self.data.get("extra") or {}).get("journey")


def load_run(folder: str | Path) -> RunSummary:
    """A run folder written by nnrecipe (it holds ``findings.json``), or a clear error."""
    path = Path(folder)
    if not path.exists():
        raise ConfigurationError(f"no such run folder: {folder}")
    file = path / "findings.json" if path.is_dir() else path
    if not file.exists():
        raise ConfigurationError(f"{folder} has no findings.json: give a folder written by an "
                                 "nnrecipe command (its --out)")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigurationError(f"cannot read {file}: {e}") from e
    if not isinstance(data, dict) or "findings" not in data:
        raise ConfigurationError(f"{file} is not an nnrecipe findings.json")
    return RunSummary(path if path.is_dir() else path.parent, data)


def finding_key(f: dict[str, Any]) -> tuple[str, str, str]:
    split = (f.get("evidence") or {}).get("split", "")
    return (f.get("code", ""), f.get("stage", ""), str(split or ""))


@dataclass
class Comparison:
    a: RunSummary
    b: RunSummary
    fixed: list[dict[str, Any]] = field(default_factory=list)
    new: list[dict[str, Any]] = field(default_factory=list)
    unchanged: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    changed: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    # findings of a stage/check that only one of the runs ran: neither fixed nor new
    not_compared: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def worst_new(self) -> str | None:
        ranks = [SEVERITY_RANK.get(f["severity"], 0) for f in self.new]
        ranks += [SEVERITY_RANK.get(fb["severity"], 0) for fa, fb in self.changed
                  if SEVERITY_RANK.get(fb["severity"], 0) > SEVERITY_RANK.get(fa["severity"], 0)]
        if not ranks:
            return None
        return {v: k for k, v in SEVERITY_RANK.items()}[max(ranks)]

    def to_dict(self) -> dict[str, Any]:
        def brief(f: dict[str, Any]) -> dict[str, Any]:
            return {k: f.get(k) for k in ("code", "severity", "stage", "check", "message")}
        return {"a": str(self.a.path), "b": str(self.b.path),
                "fixed": [brief(f) for f in self.fixed], "new": [brief(f) for f in self.new],
                "unchanged": [brief(fb) for _, fb in self.unchanged],
                "severity_changed": [{"code": fa["code"], "stage": fa["stage"],
                                      "from": fa["severity"], "to": fb["severity"],
                                      "message": fb.get("message")} for fa, fb in self.changed],
                "not_compared": [{"only_in": w, **brief(f)} for w, f in self.not_compared],
                "summary": {k: v for k, v in self.counts().items()},
                "journey": journey_rows(self.a.journey, self.b.journey)}

    def counts(self) -> dict[str, int]:
        return {"fixed": len(self.fixed), "new": len(self.new),
                "unchanged": len(self.unchanged), "severity changed": len(self.changed),
                "not compared": len(self.not_compared)}


def compare_runs(a: RunSummary, b: RunSummary) -> Comparison:
    """Match the two runs' findings by :func:`finding_key` (a pure function of the JSON)."""
    def index(fs: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
        out: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for f in fs:
            out.setdefault(finding_key(f), []).append(f)
        return out

    ia, ib = index(a.findings), index(b.findings)
    cmp = Comparison(a, b)
    for key in sorted(set(ia) | set(ib)):
        fa, fb = ia.get(key, []), ib.get(key, [])
        for x, y in zip(fa, fb, strict=False):
            (cmp.unchanged if x.get("severity") == y.get("severity") else cmp.changed).append((x, y))
        for f in fa[len(fb):]:
            if b.ran(f.get("stage", ""), f.get("check", "")):
                cmp.fixed.append(f)
            else:
                cmp.not_compared.append(("A", f))
        for f in fb[len(fa):]:
            if a.ran(f.get("stage", ""), f.get("check", "")):
                cmp.new.append(f)
            else:
                cmp.not_compared.append(("B", f))
    order = {"error": 0, "warning": 1, "info": 2}
    cmp.fixed.sort(key=lambda f: (order.get(f["severity"], 3), f["code"]))
    cmp.new.sort(key=lambda f: (order.get(f["severity"], 3), f["code"]))
    return cmp


def journey_rows(ja: dict[str, Any] | None, jb: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per recipe step: A's and B's validation/test metric, and B - A."""
    if not ja and not jb:
        return []
    metric = (jb or ja or {}).get("metric", "accuracy")
    pa = {p["step"]: p for p in (ja or {}).get("points", [])}
    pb = {p["step"]: p for p in (jb or {}).get("points", [])}
    steps = list(dict.fromkeys([*pa, *pb]))
    rows = []
    for s in steps:
        row: dict[str, Any] = {"step": s, "what_a": (pa.get(s) or {}).get("what", ""),
                               "what_b": (pb.get(s) or {}).get("what", "")}
        for split in ("val", "test"):
            va = ((pa.get(s) or {}).get(split) or {}).get(metric)
            vb = ((pb.get(s) or {}).get(split) or {}).get(metric)
            row[f"{split}_a"], row[f"{split}_b"] = va, vb
            row[f"{split}_delta"] = (vb - va) if isinstance(va, (int, float)) and isinstance(
                vb, (int, float)) else None
        rows.append(row)
    return rows


CURVE_COLUMNS = ("train (mean)", "val loss", "val accuracy")


def curves(run: RunSummary) -> dict[str, list[tuple[float, float]]]:
    """Per-epoch learning curves from the train stage's table, by column name."""
    t = run.table("train", {"epoch"})
    if t is None:
        return {}
    cols = t["columns"]
    out: dict[str, list[tuple[float, float]]] = {}
    for name in CURVE_COLUMNS:
        if name in cols:
            j, e = cols.index(name), cols.index("epoch")
            pts = [(float(r[e]), float(r[j])) for r in t["rows"]
                   if isinstance(r[j], (int, float)) and isinstance(r[e], (int, float))]
            if pts:
                out[name] = pts
    return out


def curves_figure(a: RunSummary, b: RunSummary) -> Any | None:
    """Both runs' curves on one figure: losses left, validation accuracy right (if any)."""
    from nnrecipe.report.plots import COLORS, legend_outside, new_figure

    ca, cb = curves(a), curves(b)
    if not ca and not cb:
        return None
    has_acc = "val accuracy" in ca or "val accuracy" in cb
    fig, axes = new_figure(width=10.0 if has_acc else 7.0, height=3.6, ncols=2 if has_acc else 1)
    for run, cs, style in (("A", ca, "--"), ("B", cb, "-")):
        for j, name in enumerate(("train (mean)", "val loss")):
            if name in cs:
                xs, ys = zip(*cs[name], strict=True)
                axes[0].plot(xs, ys, style, marker="o" if len(xs) < 30 else None, ms=3,
                             color=COLORS[j], label=f"{run}: {name.replace(' (mean)', ' loss')}")
        if has_acc and "val accuracy" in cs:
            xs, ys = zip(*cs["val accuracy"], strict=True)
            axes[1].plot(xs, ys, style, marker="o" if len(xs) < 30 else None, ms=3,
                         color=COLORS[1], label=f"{run}: val accuracy")
    axes[0].set(title="learning curves (A dashed, B solid)", xlabel="epoch", ylabel="loss")
    losses = [y for cs in (ca, cb) for n in ("train (mean)", "val loss") for _, y in cs.get(n, [])]
    if losses and min(losses) > 0 and max(losses) / min(losses) > 20:
        axes[0].set_yscale("log")
    for ax in axes:
        ax.grid(alpha=0.3)
        legend_outside(ax, fontsize=7, below=has_acc)
    if has_acc:
        axes[1].set(title="validation accuracy", xlabel="epoch", ylabel="accuracy")
    return fig


def render_comparison(cmp: Comparison) -> str:
    from nnrecipe.core.results import FigureArtifact, figure_to_png
    from nnrecipe.report.figures import embed
    from nnrecipe.report.html import _env

    fig = curves_figure(cmp.a, cmp.b)
    figure = (embed(FigureArtifact("Learning curves, A vs B", figure_to_png(fig)),
                    "compare-curves.png", "curves") if fig is not None else None)
    return _env.get_template("compare.html.j2").render(
        cmp=cmp, counts=cmp.counts(), figure=figure,
        journey=journey_rows(cmp.a.journey, cmp.b.journey),
        metric=(cmp.b.journey or cmp.a.journey or {}).get("metric", ""))


def write_comparison(a_dir: str | Path, b_dir: str | Path, out_dir: str | Path
                     ) -> tuple[Comparison, dict[str, Path]]:
    """Compare two run folders and write ``compare.html`` and ``compare.json`` in ``out_dir``."""
    cmp = compare_runs(load_run(a_dir), load_run(b_dir))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"report": out / "compare.html", "json": out / "compare.json"}
    html = render_comparison(cmp)
    paths["json"].write_text(json.dumps(cmp.to_dict(), indent=2, default=str), encoding="utf-8")
    paths["report"].write_text(html, encoding="utf-8")
    return cmp, paths
