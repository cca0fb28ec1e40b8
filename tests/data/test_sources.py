"""Standalone data (npz, csv, image folders) and bad input: a finding or a one-line exit 2."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset
from typer.testing import CliRunner

from nnrecipe.cli import app
from nnrecipe.data.sources import experiment_from_data
from nnrecipe.errors import DataError, ExperimentError
from tests.data.helpers import blobs, experiment, found, run_data

runner = CliRunner()


def _inspect(tmp_path: Path, *args: str) -> tuple[int, str, dict]:
    out = tmp_path / "out"
    r = runner.invoke(app, ["inspect", *args, "--out", str(out), "--quiet"])
    data = json.loads((out / "findings.json").read_text()) if (out / "findings.json").exists() \
        else {}
    return r.exit_code, r.output, data


def _codes(data: dict) -> dict[str, str]:
    return {f["code"]: f["severity"] for f in data.get("findings", [])}


def test_npz_with_splits_and_string_labels(tmp_path: Path) -> None:
    X, y = blobs(n=600)
    names = np.array(["cat", "dog", "emu"])[y]
    np.savez(tmp_path / "d.npz", X=X[:450], y=names[:450], X_val=X[450:], y_val=names[450:])
    exp, name = experiment_from_data(str(tmp_path / "d.npz"))
    assert name == "d" and exp.task == "classification"
    assert exp.options["data_class_names"] == ["cat", "dog", "emu"]
    with pytest.raises(ExperimentError, match="no model"):
        exp.model()
    code, output, data = _inspect(tmp_path, str(tmp_path / "d.npz"))
    assert code == 0, output
    assert all(s == "info" for s in _codes(data).values())
    assert set(data["stages"]["data"]["checks"]) >= {"split-leakage", "label-errors"}


def test_csv_with_text_columns_stray_strings_and_missing_labels(tmp_path: Path) -> None:
    X, y = blobs(n=300, d=4)
    rows = ["a,b,c,d,colour,name,label"]
    for i in range(300):
        vals = [f"{v:.4f}" for v in X[i]]
        if i == 7:
            vals[1] = "abc"  # a string where a number is expected
        label = "" if i == 11 else str(y[i])
        rows.append(",".join(vals + [["red", "blue"][i % 2], f"id{i}", label]))
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    code, output, data = _inspect(tmp_path, str(tmp_path / "t.csv"), "--target", "label")
    assert code == 1, output  # the corrupt rows are an error
    (f,) = [f for f in data["findings"] if f["code"] == "corrupt-samples"]
    details = {s["index"]: s["details"] for s in f["evidence"]["samples"]}
    assert "'b' holds 'abc' where a number is expected" in details[7]
    assert "not a number" in details[11]
    overview = data["stages"]["data"]["checks"]["data-overview"]
    notes = " ".join(r[0] for t in overview["tables"] for r in t["rows"] if len(r) == 1)
    assert "'name'" in notes and "identifier" in notes and "one-hot" in notes


@pytest.mark.parametrize("args, message", [
    (["t.csv"], "--target COLUMN"),
    (["t.csv", "--target", "lable"], "did you mean label"),
    (["missing.npz"], "no such file"),
    (["empty.npz"], "X is empty"),
    (["bad.npz"], "must hold arrays 'X' and 'y'"),
    (["strings.npz"], "inputs must be numbers"),
    (["data.bin"], "nnrecipe inspect reads FILE.py"),
])
def test_unreadable_data_exits_2_with_one_line(tmp_path: Path, args: list[str], message: str
                                               ) -> None:
    (tmp_path / "t.csv").write_text("x,label\n1,0\n2,1\n")
    np.savez(tmp_path / "empty.npz", X=np.zeros((0, 3)), y=np.zeros(0))
    np.savez(tmp_path / "bad.npz", features=np.zeros((3, 3)))
    np.savez(tmp_path / "strings.npz", X=np.array([["a", "b"], ["c", "d"]]), y=np.array([0, 1]))
    (tmp_path / "data.bin").write_bytes(b"\x00\x01\x02")
    args = [str(tmp_path / args[0]), *args[1:]]
    code, output, _ = _inspect(tmp_path, *args)
    assert code == 2, output
    assert message in output and "Traceback" not in output


def test_image_folder_with_a_broken_file_and_odd_sizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for c, name in enumerate(["circle", "square"]):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(30):
            img = (rng.random((12, 12)) * 80 + 100 * c).astype(np.uint8)
            size = (12, 12) if i else (20, 16)
            Image.fromarray(img).resize(size).save(tmp_path / "imgs" / name / f"{i}.png")
    (tmp_path / "imgs" / "square" / "zz_broken.png").write_bytes(b"not an image")
    exp, _ = experiment_from_data(str(tmp_path / "imgs"))
    assert exp.options["data_class_names"] == ["circle", "square"]
    res = run_data(exp)
    (f,) = found(res, "corrupt-samples")
    assert f.evidence["count"] == 1 and "zz_broken.png" in f.evidence["samples"][0]["details"]
    assert res.stages[0].checks[0].figures  # the grid of samples
    notes = exp.options["data_notes"]
    assert any("resized to 12x12" in n for n in notes)


def test_image_folder_with_split_folders(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 4)):
        for name in ("a", "b"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(n):
                img = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
                Image.fromarray(img).save(tmp_path / split / name / f"{i}.jpg")
    exp, _ = experiment_from_data(str(tmp_path))
    assert len(exp.train) == 24 and len(exp.val) == 8 and exp.test is None
    x, label = exp.val[5]
    assert tuple(x.shape) == (3, 8, 8) and 0 <= float(x.min()) <= float(x.max()) <= 1
    assert label in (0, 1)


class Mixed(Dataset):
    def __len__(self) -> int:
        return 120

    def __getitem__(self, i: int):  # noqa: ANN204
        return torch.zeros(5 if i % 40 == 39 else 4) + i % 3, i % 3


def test_bad_input_becomes_findings_and_the_rest_runs() -> None:
    # mixed input shapes
    res = run_data(experiment(Mixed()))
    (f,) = found(res, "corrupt-samples")
    assert f.evidence["by_kind"] == {"shape": 3}
    assert {c.status for s in res.stages for c in s.checks} <= {"passed", "info", "warning",
                                                                 "error", "skipped"}
    # labels with NaN
    X, y = blobs(n=200)
    yf = y.astype(np.float32)
    yf[[4, 9]] = np.nan
    res = run_data(experiment((X, yf), task="classification"))
    (f,) = found(res, "corrupt-samples")
    assert [s["index"] for s in f.evidence["samples"]] == [4, 9]
    assert f.evidence["by_kind"] == {"label": 2}


def test_unusable_experiments_exit_2() -> None:
    from nnrecipe.api import run

    X, _ = blobs(n=50)
    with pytest.raises(ExperimentError, match="non-numeric"):
        run(experiment((X, np.array(["a"] * 50))), ["data"])
    with pytest.raises(ExperimentError, match="empty"):
        run(experiment((X[:0], np.zeros(0, dtype=np.int64))), ["data"])
    with pytest.raises(DataError, match="no such file"):
        experiment_from_data("/nonexistent/data.npz")
