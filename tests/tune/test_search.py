import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from nnrecipe.api import run
from nnrecipe.experiment import Experiment
from nnrecipe.regularize.knobs import Settings
from nnrecipe.tune.samplers import make_sampler, startup_trials
from nnrecipe.tune.search import Kept, Reporter, TopModels, at_edge, quiet_optuna
from nnrecipe.tune.space import default_space, lr_range
from tests.toys import classification_experiment

ROOT = Path(__file__).resolve().parents[2]


def tiny_experiment(**overrides: Any) -> Experiment:
    kw: dict[str, Any] = {"epochs": 3}
    kw.update(overrides)
    return classification_experiment(**kw)


def _tune(exp: Experiment, **options: Any):  # noqa: ANN202
    res = run(exp, ["tune"], options={"tune_trials": 4, **options})
    (check,) = res.stages[0].checks
    return check


# ------------------------------------------------------------------- pure parts
def test_top_models_keeps_the_best_k() -> None:
    keep = TopModels(2, maximize=False)
    for n, v in enumerate([0.5, 0.2, 0.9, 0.1]):
        keep.offer(Kept(n, v, {}, Settings(), {}, {}))
    assert [k.number for k in keep.best_first()] == [3, 1]


def test_at_edge() -> None:
    dist = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)}
    t = optuna.trial.create_trial(params={"lr": 9.9e-3}, distributions=dist, value=0.1)
    assert at_edge(t) and "top" in at_edge(t)[0]
    t = optuna.trial.create_trial(params={"lr": 1e-3}, distributions=dist, value=0.1)
    assert at_edge(t) == []


def test_samplers_are_seeded_per_trial() -> None:
    """Same seed: same suggestions (reproducible); different trials: different points (two
    workers sharing a study do not duplicate each other's trials)."""
    def suggestions(seed: int) -> list[float]:
        with quiet_optuna():
            study = optuna.create_study(sampler=make_sampler("random", seed, 4))
            return [study.ask().suggest_float("x", 0, 1) for _ in range(4)]

    a, b = suggestions(0), suggestions(0)
    assert a == b and len(set(a)) == 4
    assert suggestions(1) != a
    assert startup_trials(8) == 3 and startup_trials(100) == 10


def test_lr_range_follows_the_lr_finder() -> None:
    from nnrecipe.core.context import Context

    ctx = Context(tiny_experiment())
    assert lr_range(ctx, 1e-3)[:2] == (1e-4, 1e-2)
    ctx.state["lr"] = {"suggested": 3e-3, "low": 2e-3, "high": 4e-3, "confidence": "high"}
    lo, hi, why = lr_range(ctx, 1e-3)
    assert lo == 1e-3 and math.isclose(hi, 9e-3) and "range test" in why
    space = default_space(ctx)
    assert [r[0] for r in space.description] == ["lr", "weight_decay", "batch_size"]
    assert space.starts[0]["lr"] == 1e-3 and space.starts[0]["batch_size"] == 32


def test_reporter_stops_a_pruned_trial() -> None:
    class FakeTrial:
        def __init__(self) -> None:
            self.reported: list[tuple[float, int]] = []

        def report(self, value: float, step: int) -> None:
            self.reported.append((value, step))

        def should_prune(self) -> bool:
            return len(self.reported) >= 2

    from nnrecipe.core.fit import EpochRecord, FitHistory

    trial = FakeTrial()
    rep = Reporter(trial, "loss")  # type: ignore[arg-type]
    assert rep.on_epoch_end(EpochRecord(1, 1.0, {"loss": 0.9}), FitHistory(), None) is None  # type: ignore[arg-type]
    assert "pruned" in rep.on_epoch_end(EpochRecord(2, 1.0, {"loss": 0.8}), FitHistory(), None)  # type: ignore[arg-type]
    assert rep.pruned_at == 2 and trial.reported == [(0.9, 1), (0.8, 2)]


# ------------------------------------------------------------------- wiring
def test_search_finds_settings_and_keeps_models(tmp_path: Path) -> None:
    res = run(tiny_experiment(), ["tune"], out=tmp_path,
              options={"tune_trials": 4, "tune_sampler": "tpe"})
    (check,) = res.stages[0].checks
    (f,) = check.findings
    assert f.code == "tuning-advice" and f.severity.value == "info"
    assert check.metrics["counts"]["complete"] + check.metrics["counts"]["pruned"] == 4
    assert "journal file" in check.metrics["storage"]
    assert (tmp_path / "tune" / "study.journal").exists()
    titles = [t.title for t in check.tables]
    assert titles[0] == "Search space" and titles[1].startswith("Best trial") and titles[2] == "Trials"
    trials = check.tables[2].rows
    assert trials[0][3] == "lr=0.001, weight_decay=1e-06, batch_size=32"  # the user's own first
    assert {f.title for f in check.figures} >= {"Optimisation history", "Best trial's learning curves"}


def test_hopeless_trials_are_pruned() -> None:
    # Trials 0-2 learn (lr 1e-2), later ones cannot (lr 1e-7): the pruner stops those
    # once 3 trials are complete and a third of the epochs (2 of 6) are done.
    def space(trial: optuna.Trial) -> dict[str, Any]:
        return {"lr": 1e-2 if trial.number < 3 else 1e-7}

    check = _tune(tiny_experiment(search_space=space, epochs=6), tune_trials=5)
    counts = check.metrics["counts"]
    assert counts == {"complete": 3, "pruned": 2, "fail": 0, "running": 0}
    assert all("pruned at epoch" in r[6] for r in check.tables[2].rows[3:])


def test_failing_space_is_a_warning_not_a_crash() -> None:
    def space(trial: optuna.Trial) -> dict[str, Any]:
        return {"no_such_kwarg": 1}

    check = _tune(tiny_experiment(search_space=space), tune_trials=2)
    (f,) = check.findings
    assert f.severity.value == "warning" and "no trial completed" in f.message
    assert "no_such_kwarg" in f.message


def test_a_study_resumes_where_it_stopped(tmp_path: Path) -> None:
    exp = tiny_experiment()
    first = _tune(exp, run_dir=str(tmp_path), tune_trials=2)
    assert first.metrics["trials_before_this_run"] == 0
    second = _tune(exp, run_dir=str(tmp_path), tune_trials=3)
    assert second.metrics["trials_before_this_run"] == 2
    assert second.metrics["counts"]["complete"] + second.metrics["counts"]["pruned"] == 3
    assert len(second.tables[2].rows) == 3
    # the best trials of the first run are retrained from their seeds for the ensemble
    assert set(second.metrics["reproduced_trials"]) <= {0, 1}


def test_sqlite_url_storage(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    check = _tune(tiny_experiment(), tune_storage=url, tune_trials=2)
    assert check.metrics["storage"].startswith("database sqlite")
    with quiet_optuna():
        study = optuna.load_study(study_name="nnrecipe-blobs", storage=url)
    assert len(study.trials) == 2


def test_two_processes_share_one_study(tmp_path: Path) -> None:
    journal = tmp_path / "shared.journal"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "tests.tune.worker", str(journal), "4"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-2000:]
    from nnrecipe.tune.storage import journal as open_journal

    with quiet_optuna():
        study = optuna.load_study(study_name="shared", storage=open_journal(journal))
    done = [t for t in study.trials if t.state.is_finished()]
    # both workers stop at the shared total (one may finish a trial already under way)
    assert 4 <= len(done) <= 5
    assert len({t.number for t in study.trials}) == len(study.trials)
    assert len({t.user_attrs.get("worker") for t in done}) == 2  # both contributed
    # per-trial seeds: sampled points are never duplicated (two workers starting on a fresh
    # study may both enqueue the experiment's own settings: those are "fixed_params")
    sampled = [tuple(sorted(t.params.items())) for t in done
               if t.params and "fixed_params" not in t.system_attrs]
    assert len(set(sampled)) == len(sampled)


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


def test_ctrl_c_keeps_the_finished_trials(tmp_path: Path) -> None:
    def space(trial: optuna.Trial) -> dict[str, Any]:
        if trial.number == 2:
            raise KeyboardInterrupt
        return {"lr": trial.suggest_float("lr", 1e-3, 1e-2, log=True)}

    exp = tiny_experiment(search_space=space)
    res = run(exp, ["tune"], options={"tune_trials": 4, "run_dir": str(tmp_path)})
    (check,) = res.stages[0].checks
    assert res.interrupted and check.reason == "interrupted"
    assert "resume" in check.metrics["interrupted"]
    assert [r[1] for r in check.tables[2].rows] == ["complete", "complete", "fail"]
    # the rerun resumes: 2 finished, 2 to go (the interrupted trial does not count)
    exp.search_space = lambda t: {"lr": t.suggest_float("lr", 1e-3, 1e-2, log=True)}
    again = _tune(exp, run_dir=str(tmp_path), tune_trials=4)
    assert again.metrics["trials_before_this_run"] == 2
    assert again.metrics["counts"]["complete"] + again.metrics["counts"]["pruned"] == 4


def test_database_url_without_driver_is_one_clear_error() -> None:
    from nnrecipe.core.context import Context
    from nnrecipe.errors import ConfigurationError
    from nnrecipe.tune.storage import open_storage

    ctx = Context(tiny_experiment(),
                  options={"tune_storage": "postgresql://me:secret@localhost:1/db"})
    with pytest.raises(ConfigurationError) as err:
        open_storage(ctx)
    # without the driver: an install hint; with it: the connection error. Never the password.
    assert "postgresql://me:***@localhost" in str(err.value) and "secret" not in str(err.value)


def test_how_to_add_workers() -> None:
    from nnrecipe.tune.storage import workers_hint

    db = workers_hint("exp.py", {"tune_storage": "postgresql://me:secret@db:5432/s",
                                 "tune_trials": 50}, Path("runs/x"), "blobs")
    assert ("nnrecipe tune exp.py --storage postgresql://me:***@db:5432/s --study-name "
            "nnrecipe-blobs --trials 50") in db and "secret" not in db
    assert "other" in db and "***" in db
    local = workers_hint("exp.py", {"tune_study_name": "s1"}, Path("runs/x"), None)
    assert "--storage runs/x/tune/study.journal --study-name s1" in local
    assert "on other machines, use a database" in local


def test_trials_name_their_worker(tmp_path: Path) -> None:
    from nnrecipe.tune.search import WORKER

    check = _tune(tiny_experiment(), run_dir=str(tmp_path), tune_trials=2)
    assert check.metrics["workers"] == {WORKER: {"complete": 2, "pruned": 0, "fail": 0,
                                                 "running": 0}}
    trials = check.tables[2]
    assert trials.columns[-1] == "worker" and {r[-1] for r in trials.rows} == {WORKER}
    assert [t.title for t in check.tables].count("Workers") == 0  # one process: no table
