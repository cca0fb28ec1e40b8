"""`nnrecipe compare A B`: findings fixed/new/unchanged matched by code, stage and split; the
learning curves overlaid; the journey side by side; a clear error for a folder that is not a
run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from typer.testing import CliRunner

from nnrecipe.api import run
from nnrecipe.cli import app
from nnrecipe.report.compare import compare_runs, load_run
from tests.data.helpers import blobs, experiment


def _finding(code: str, sev: str = "warning", stage: str = "data", split: str = "train",
             check: str | None = None) -> dict[str, Any]:
    return {"code": code, "severity": sev, "stage": stage, "check": check or code,
            "message": f"{code} in {split}", "evidence": {"split": split}}


def _run_dir(tmp: Path, name: str, findings: list[dict[str, Any]], stages: dict[str, Any],
             journey: dict[str, Any] | None = None) -> Path:
    d = tmp / name
    d.mkdir()
    data = {"experiment": name, "command": "run", "findings": findings, "stages": stages,
            "summary": {}, **({"extra": {"journey": journey}} if journey else {})}
    (d / "findings.json").write_text(json.dumps(data))
    return d


STAGES = {"data": {"status": "warning", "checks": {}},
          "train": {"status": "passed", "checks": {"training": {"status": "passed", "tables": [
              {"title": "Learning curve", "columns": ["epoch", "train (mean)", "val loss",
                                                      "val accuracy"],
               "rows": [[1, 1.0, 1.1, 0.5], [2, 0.5, 0.7, 0.8]]}]}}}}


def test_findings_are_matched_by_code_stage_and_split(tmp_path: Path) -> None:
    a = _run_dir(tmp_path, "a", [_finding("data-duplicates"), _finding("data-duplicates", split="val"),
                                 _finding("outliers", "info"), _finding("overfitting", stage="train",
                                                                        check="training"),
                                 _finding("tuning-advice", "info", stage="tune")],
                 {**STAGES, "tune": {"status": "info", "checks": {}}})
    b = _run_dir(tmp_path, "b", [_finding("data-duplicates", split="val"),
                                 _finding("outliers", "warning"),
                                 _finding("split-leakage", split="val")], STAGES)
    cmp = compare_runs(load_run(a), load_run(b))
    assert [f["code"] for f in cmp.fixed] == ["data-duplicates", "overfitting"]
    assert [f["evidence"]["split"] for f in cmp.fixed if f["code"] == "data-duplicates"] == ["train"]
    assert [f["code"] for f in cmp.new] == ["split-leakage"]
    assert [fb["code"] for _, fb in cmp.unchanged] == ["data-duplicates"]
    assert [(fa["severity"], fb["severity"]) for fa, fb in cmp.changed] == [("info", "warning")]
    # B did not run the tune stage: its advice is not "fixed"
    assert [(w, f["code"]) for w, f in cmp.not_compared] == [("A", "tuning-advice")]
    assert cmp.worst_new() == "warning"


def test_cli_writes_the_comparison_with_curves_and_journey(tmp_path: Path) -> None:
    ja = {"metric": "accuracy", "points": [{"step": "tuned", "what": "t", "val": {"accuracy": 0.9},
                                            "test": {"accuracy": 0.88}}]}
    jb = {"metric": "accuracy", "points": [{"step": "tuned", "what": "t", "val": {"accuracy": 0.95},
                                            "test": {"accuracy": 0.93}}]}
    a = _run_dir(tmp_path, "a", [_finding("data-duplicates")], STAGES, ja)
    b = _run_dir(tmp_path, "b", [_finding("split-leakage", "error", split="val")], STAGES, jb)
    out = tmp_path / "cmp"
    res = CliRunner().invoke(app, ["compare", str(a), str(b), "--out", str(out),
                                   "--fail-on", "warning"])
    assert res.exit_code == 1, res.output  # B has a new error
    assert "1 fixed, 1 new, 0 unchanged" in res.output
    html = (out / "compare.html").read_text()
    assert "data:image/png;base64," in html and "The journey, side by side" in html
    assert "+0.05" in html  # the tuned step's test accuracy, B - A
    data = json.loads((out / "compare.json").read_text())
    assert data["fixed"][0]["code"] == "data-duplicates" and data["new"][0]["code"] == "split-leakage"
    assert CliRunner().invoke(app, ["compare", str(a), str(b), "--out", str(out)]).exit_code == 0


def test_cli_rejects_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["compare", str(tmp_path), str(tmp_path / "nope")])
    assert res.exit_code == 2 and "has no findings.json" in res.output


def test_compare_two_real_runs_after_a_fix(tmp_path: Path) -> None:
    X, y = blobs(n=700)
    Xd, yd = np.concatenate([X[:500], X[:20]]), np.concatenate([y[:500], y[:20]])  # duplicates
    only = ["data-duplicates", "class-imbalance"]
    run(experiment((Xd, yd), (X[500:], y[500:])), ["data"], out=tmp_path / "before", only=only)
    run(experiment((X[:500], y[:500]), (X[500:], y[500:])), ["data"], out=tmp_path / "after",
        only=only)
    cmp = compare_runs(load_run(tmp_path / "before"), load_run(tmp_path / "after"))
    assert [f["code"] for f in cmp.fixed] == ["data-duplicates"] and not cmp.new
