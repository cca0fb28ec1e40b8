"""``nnrecipe tune --storage postgresql://...`` against a real PostgreSQL server (conftest.py).

Three workers (separate ``nnrecipe tune`` processes) share one study; one is killed with
SIGKILL in the middle of a trial. Its trial must end up failed (heartbeat lost) and be run
again, the other workers go on to the study's total, another process (this one, through the
Python API: one interpreter start-up fewer) resumes the study, and its report lists every
worker's trials.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from nnrecipe.api import run
from nnrecipe.tune.search import quiet_optuna
from tests.scale import tune_experiment
from tests.scale.conftest import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "tests/scale/tune_experiment.py"
STUDY = "scale"
TRIALS = 6
HEARTBEAT_S = 1  # grace: 3 beats (nnrecipe.tune.storage.GRACE_BEATS)
TIMEOUT_S = 240  # every wait is bounded: a hang fails the test instead of blocking CI


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1"}


def _tune(url: str, out: Path, trials: int) -> subprocess.Popen[str]:
    cmd = [str(Path(sys.executable).parent / "nnrecipe"), "tune", EXPERIMENT, "--storage", url,
           "--study-name", STUDY, "--trials", str(trials), "--sampler", "random",
           "--heartbeat", str(HEARTBEAT_S), "--out", str(out), "--fail-on", "never"]
    return subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _trials(url: str) -> list[optuna.trial.FrozenTrial]:
    with quiet_optuna():
        try:
            return optuna.load_study(study_name=STUDY, storage=url).get_trials(deepcopy=False)
        except KeyError:  # the study does not exist yet
            return []


def _wait_for_running_trial(url: str, worker: str, procs: list[subprocess.Popen[str]]) -> int:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        for t in _trials(url):
            # training, not still being set up: the worker tag is written before the point is
            # drawn, and a kill between the draws left a trial holding only {"lr"} while its
            # retry drew the rest (seen on an idle machine); batch_size is the default
            # space's last draw (nnrecipe.tune.space.default_space)
            if t.state == TrialState.RUNNING and t.user_attrs.get("worker") == worker \
                    and "batch_size" in t.params:
                return t.number
        for p in procs:
            if p.poll() is not None:
                out, err = p.communicate()
                pytest.fail(f"a worker exited early ({p.returncode}): {err[-2000:]}")
        time.sleep(0.1)
    pytest.fail(f"worker {worker} never ran a trial within {TIMEOUT_S} s")


def test_three_workers_one_killed_then_resumed(postgres: PostgresServer, tmp_path: Path) -> None:
    url = postgres.url()
    host = socket.gethostname()
    with quiet_optuna():  # Optuna's tables, made once here rather than by three racing workers
        optuna.storages.RDBStorage(url).engine.dispose()
    workers = [_tune(url, tmp_path / f"worker{i}", TRIALS) for i in range(3)]
    victim = workers[0]
    try:
        killed = _wait_for_running_trial(url, f"{host}:{victim.pid}", workers)
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        victim.wait(timeout=30)
        errors = []
        for p in workers[1:]:
            out, err = p.communicate(timeout=TIMEOUT_S)
            assert p.returncode == 0, err[-3000:]
            errors.append(err + out)
    finally:
        for p in workers:
            if p.poll() is None:
                p.kill()
                p.wait()
    finished = [t for t in _trials(url) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) >= TRIALS  # the survivors reached the study's total without the victim

    # every worker printed how to add more workers: the same storage and study
    for text in errors:
        assert f"--storage postgresql://nnrecipe:***@127.0.0.1:{postgres.port}/nnrecipe" in text
        assert f"--study-name {STUDY}" in text and "secret" not in text

    # a resume from another process, once the victim's heartbeat is surely stale; one trial
    # more than the study has, so that a retry still queued is run now
    time.sleep(max(0.0, HEARTBEAT_S * 3 + 1 - (time.monotonic() - killed_at)))
    torch.set_num_threads(1)
    result = run(tune_experiment.experiment(), ["tune"], out=tmp_path / "resume", options={
        "tune_storage": url, "tune_study_name": STUDY, "tune_trials": len(finished) + 1,
        "tune_sampler": "random", "tune_heartbeat_s": HEARTBEAT_S})
    assert result.worst() is None or result.worst().value == "info"

    trials = {t.number: t for t in _trials(url)}
    assert trials[killed].state == TrialState.FAIL  # not "running" forever
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1 and retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retries[0].params == trials[killed].params  # the same point, run again
    assert not [t for t in trials.values() if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               for t in trials.values()) == len(finished) + 1

    # the resumed report shows every worker's trials, the victim's failed one included
    report = (tmp_path / "resume" / "report.html").read_text()
    pids = [victim.pid, *(p.pid for p in workers[1:]), os.getpid()]
    for pid in pids:
        assert f"{host}:{pid}" in report
    doc = json.loads((tmp_path / "resume" / "findings.json").read_text())
    per_worker = doc["stages"]["tune"]["checks"]["tuning-advice"]["metrics"]["workers"]
    assert per_worker[f"{host}:{victim.pid}"]["fail"] >= 1
    assert sum(sum(v.values()) for v in per_worker.values()) == len(trials)
