"""``group-leakage``: exact with group ids (Experiment(groups=...), inspect --groups COLUMN);
without them a hint from the data (clustered, val as close to train as train to itself), and
after training when validation also beats training."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.model_selection import GroupShuffleSplit, train_test_split
from typer.testing import CliRunner

from nnrecipe.cli import app
from nnrecipe.core.context import Context
from nnrecipe.core.findings import Severity
from nnrecipe.data.groups import (
    GroupLeakageAfterTraining,
    Proximity,
    group_hint_verdict,
)
from nnrecipe.errors import ExperimentError
from nnrecipe.train.detectors import ValBelowVerdict
from tests.data.helpers import check, experiment, found, healthy, run_data
from tests.seeds import TEST_SEED


def patients(n_groups: int = 150, per: int = 6, d: int = 16, spread: float = 0.2,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Recordings of patients: each patient's samples cluster around the patient's own point,
    and the label is the patient's (a diagnosis)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_groups, d))
    g = np.repeat(np.arange(n_groups), per)
    X = centers[g] + spread * rng.normal(size=(len(g), d))
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    y = (centers[:, 0] > 0).astype(np.int64)[g]
    return X, y, np.array([f"p{i:03d}" for i in g])


def _random_split(X, y, g, seed):
    return train_test_split(X, y, g, test_size=0.25, random_state=seed)


def _group_split(X, y, g, seed):
    tr, va = next(GroupShuffleSplit(1, test_size=0.25, random_state=seed).split(X, groups=g))
    return X[tr], X[va], y[tr], y[va], g[tr], g[va]


# ------------------------------------------------------------------ with group ids


def test_shared_patients_are_reported_exactly_and_a_group_split_is_quiet() -> None:
    X, y, g = patients()
    Xtr, Xva, ytr, yva, gtr, gva = _random_split(X, y, g, 0)
    res = run_data(experiment((Xtr, ytr), (Xva, yva), groups={"train": gtr, "val": gva}),
                   "group-leakage")
    (f,) = found(res, "group-leakage")
    shared = set(gtr) & set(gva)
    assert f.severity == Severity.ERROR  # nearly every val patient is also in train
    assert f.evidence["n_shared_groups"] == len(shared)
    assert f.evidence["samples"] == int(np.isin(gva, list(shared)).sum())
    Xtr, Xva, ytr, yva, gtr, gva = _group_split(X, y, g, 0)
    res = run_data(experiment((Xtr, ytr), (Xva, yva), groups={"train": gtr, "val": gva}),
                   "group-leakage")
    assert found(res, "group-leakage") == []
    assert check(res, "group-leakage").metrics["val_groups_in_train"] == 0


def test_one_shared_group_of_many_is_info() -> None:
    X, y, g = patients()
    Xtr, Xva, ytr, yva, gtr, gva = _group_split(X, y, g, 0)
    gva = gva.copy()
    gva[0] = gtr[0]  # one sample with a training patient's id: 1 of ~225
    res = run_data(experiment((Xtr, ytr), (Xva, yva), groups={"train": gtr, "val": gva}),
                   "group-leakage")
    (f,) = found(res, "group-leakage")
    assert f.severity == Severity.INFO and f.evidence["shared_groups"] == [str(gtr[0])]


def test_bad_groups_get_one_clear_message() -> None:
    X, y, g = patients(n_groups=10)
    with pytest.raises(ExperimentError, match="has 60 samples but 59 group ids"):
        experiment((X, y), groups={"train": g[:-1]})
    with pytest.raises(ExperimentError, match="names split 'val'"):
        experiment((X, y), groups={"val": g})
    with pytest.raises(ExperimentError, match="must be a dict"):
        experiment((X, y), groups=g)


def test_csv_groups_column(tmp_path: Path) -> None:
    X, y, g = patients(n_groups=40, per=5, d=4)
    split = np.where(np.random.default_rng(0).random(len(y)) < 0.75, "train", "val")
    lines = ["a,b,c,d,patient,split,label"] + [
        ",".join([f"{v:.5f}" for v in X[i]] + [g[i], split[i], str(y[i])]) for i in range(len(y))]
    (tmp_path / "p.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["inspect", str(tmp_path / "p.csv"), "--target", "label",
                                 "--groups", "patient", "--out", str(out), "--quiet"])
    data = json.loads((out / "findings.json").read_text())
    (f,) = [f for f in data["findings"] if f["code"] == "group-leakage"]
    assert f["severity"] == "error" and r.exit_code == 1
    assert f["evidence"]["n_shared_groups"] == len(set(g[split == "train"]) & set(g[split == "val"]))
    r = CliRunner().invoke(app, ["inspect", str(tmp_path / "p.csv"), "--target", "label",
                                 "--groups", "patiant", "--out", str(tmp_path / "o2")])
    assert r.exit_code == 2 and "did you mean patient" in r.output


# ------------------------------------------------------------------ without group ids


def test_group_hint_verdict_on_scripted_numbers() -> None:
    tight_close, loose_close = Proximity("val", 1.0, 0.15), Proximity("val", 1.0, 0.7)
    apart = Proximity("val", 2.3, 0.15)
    assert group_hint_verdict(tight_close, False) == Severity.INFO
    assert group_hint_verdict(loose_close, False) is None
    assert group_hint_verdict(apart, False) is None
    assert group_hint_verdict(tight_close, True) == Severity.WARNING
    assert group_hint_verdict(loose_close, True) == Severity.INFO
    assert group_hint_verdict(apart, True) is None


@pytest.mark.statistical
def test_clustered_data_split_by_sample_gets_a_hint_and_split_by_group_does_not() -> None:
    # worst of seeds 0-9: proximity 1.01 (limit 1.15) / clustering 0.264 (limit 0.3) on the
    # random split; proximity 3.46 on the group split (asserted > 1.5)
    X, y, g = patients(seed=TEST_SEED)
    Xtr, Xva, ytr, yva, _, _ = _random_split(X, y, g, TEST_SEED)
    res = run_data(experiment((Xtr, ytr), (Xva, yva)), "group-leakage")
    (f,) = found(res, "group-leakage")
    assert f.severity == Severity.INFO and not f.evidence["groups_given"]
    Xtr, Xva, ytr, yva, _, _ = _group_split(X, y, g, TEST_SEED)
    res = run_data(experiment((Xtr, ytr), (Xva, yva)), "group-leakage")
    assert found(res, "group-leakage") == []
    assert check(res, "group-leakage").metrics["val_proximity"] > 1.5


def test_healthy_sets_get_no_group_hint() -> None:
    for name in ("digits", "breast_cancer"):
        res = run_data(healthy(name), "group-leakage")
        assert found(res, "group-leakage") == [], name


def _after_training(exp, cause: str, fires: bool = True) -> tuple[Context, GroupLeakageAfterTraining]:
    ctx = Context(exp)
    vb = ValBelowVerdict(fires, cause, {}, 0.3)
    ctx.state["train"] = {"diagnosis": SimpleNamespace(verdicts={"val-below-train": vb})}
    return ctx, GroupLeakageAfterTraining()


def test_after_training_val_beating_train_on_shared_patients_names_group_leakage() -> None:
    X, y, g = patients()
    Xtr, Xva, ytr, yva, _, _ = _random_split(X, y, g, 0)
    ctx, chk = _after_training(experiment((Xtr, ytr), (Xva, yva)), "easier-or-leaked")
    assert chk.applies(ctx) is None
    (f,) = chk.run(ctx)
    assert f.code == "group-leakage" and f.severity == Severity.WARNING and f.stage == "train"
    # another cause (dropout), or validation not beating training: nothing to add
    ctx, chk = _after_training(experiment((Xtr, ytr), (Xva, yva)), "dropout")
    assert chk.applies(ctx)
    ctx, chk = _after_training(experiment((Xtr, ytr), (Xva, yva)), "", fires=False)
    assert chk.applies(ctx)
    # split by patient: val samples are far from train, so not the cause
    Xtr, Xva, ytr, yva, _, _ = _group_split(X, y, g, 0)
    ctx, chk = _after_training(experiment((Xtr, ytr), (Xva, yva)), "easier-or-leaked")
    assert chk.run(ctx) == []
