"""flagged.csv: one row per flagged sample (split, index, code, score, partner), written next
to the report, and no file for a clean data set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from nnrecipe.api import run
from nnrecipe.report.export import COLUMNS, read_flagged
from tests.data.helpers import blobs, experiment, split_standardised


def _digits_with_problems() -> tuple[object, dict[str, object]]:
    X, y = load_digits(return_X_y=True)
    Xtr, Xva, ytr, yva = split_standardised(X, y)
    rng = np.random.default_rng(0)
    leak, src = rng.choice(len(Xva), 5, replace=False), rng.choice(len(Xtr), 5, replace=False)
    Xva, yva = Xva.copy(), yva.copy()
    Xva[leak], yva[leak] = Xtr[src], ytr[src]  # 5 exact copies of training images in val
    others = np.setdiff1d(np.arange(len(Xtr)), src)  # a leaked image copied twice would
    dup = rng.choice(others, 12, replace=False)  # have two partners; 12 copies in train
    Xtr2, ytr2 = np.concatenate([Xtr, Xtr[dup]]), np.concatenate([ytr, ytr[dup]])
    flip = rng.choice(len(Xtr), 60, replace=False)  # ~4.5% of labels flipped
    ytr2[flip] = (ytr2[flip] + rng.integers(1, 10, len(flip))) % 10
    planted = {"leak": set(zip(leak.tolist(), src.tolist(), strict=True)),
               "dup": {(len(Xtr) + i, int(d)) for i, d in enumerate(dup)},
               "flip": set(flip.tolist())}
    return experiment((Xtr2, ytr2), (Xva, yva), name="digits-broken"), planted


def test_flagged_csv_lists_planted_duplicates_leaks_and_label_errors(tmp_path: Path) -> None:
    exp, planted = _digits_with_problems()
    run(exp, ["data"], out=tmp_path, only=["data-duplicates", "split-leakage", "label-errors"])
    rows = read_flagged(tmp_path / "flagged.csv")
    assert rows and tuple(rows[0]) == COLUMNS
    by_code: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_code.setdefault(r["code"], []).append(r)
    leaks = {(int(r["index"]), int(r["partner_index"])) for r in by_code["split-leakage"]}
    assert leaks == planted["leak"]  # type: ignore[comparison-overlap]
    assert all(r["split"] == "val" and r["partner_split"] == "train" and float(r["score"]) == 0
               and r["score_kind"] == "distance" for r in by_code["split-leakage"])
    dups = {(int(r["index"]), int(r["partner_index"])) for r in by_code["data-duplicates"]}
    # each planted copy is flagged with its original as the partner (or the reverse order)
    assert {frozenset(p) for p in dups} == {frozenset(p) for p in planted["dup"]}  # type: ignore[attr-defined]
    labels = by_code["label-errors"]
    flagged = {int(r["index"]) for r in labels if r["split"] == "train"}
    assert len(flagged & planted["flip"]) >= 0.7 * len(planted["flip"])  # type: ignore[arg-type]
    assert all(0 <= float(r["score"]) <= 1 and r["score_kind"] == "label quality"
               and r["detail"].startswith("given ") for r in labels)


def test_no_flagged_csv_for_clean_data(tmp_path: Path) -> None:
    (tmp_path / "flagged.csv").write_text("stale\n")  # from an earlier run in the same folder
    X, y = blobs(n=800)
    run(experiment((X[:600], y[:600]), (X[600:], y[600:])), ["data"], out=tmp_path,
        only=["data-duplicates", "split-leakage", "label-errors", "conflicting-labels"])
    assert not (tmp_path / "flagged.csv").exists()
    assert (tmp_path / "report.html").exists()


def test_inspect_export_writes_the_flagged_rows_where_asked(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from nnrecipe.cli import app

    X, y = blobs(n=400)
    Xd, yd = np.concatenate([X, X[:12]]), np.concatenate([y, y[:12]])
    data = tmp_path / "data.npz"
    np.savez(data, X=Xd, y=yd)
    res = CliRunner().invoke(app, ["inspect", str(data), "--out", str(tmp_path / "run"),
                                   "--export", str(tmp_path / "exports" / "issues.csv")])
    assert res.exit_code in (0, 1), res.output
    rows = read_flagged(tmp_path / "exports" / "issues.csv")
    dups = [r for r in rows if r["code"] == "data-duplicates"]
    assert len(dups) == 12 and {int(r["index"]) for r in dups} == set(range(400, 412))
    assert rows == read_flagged(tmp_path / "run" / "flagged.csv")
    assert "flagged samples:" in res.output
