"""The monitor under DDP: the pure decisions on scripted numbers, then real two-process runs
(``torchrun --nproc_per_node 2``, gloo on the CPU; tests/scale/ddp_script.py) and a Lightning
``Trainer(strategy="ddp", accelerator="cpu", devices=2)`` run (tests/scale/lightning_ddp.py).
Every subprocess has a timeout, and the scripts' process group one of 60 s: a hang fails."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from nnrecipe.core.findings import Severity
from nnrecipe.train.distributed import (
    RTOL,
    SAMPLES,
    _chunk_means,
    batchnorm_severity,
    divergence_verdict,
    fingerprints,
    first_nonfinite_rank,
    model_tensors,
    sample_indices,
    watcher_class,
)
from nnrecipe.train.watch import Watcher
from tests.seeds import TEST_SEED

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300


# ------------------------------------------------------------------ pure decisions
def _prints(n_tensors: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n_tensors, 1 + SAMPLES))
    p[:, 0] = np.abs(p[:, 0]) * 10  # norms
    return p


NAMES = ["0.weight", "0.bias", "1.running_mean"]
KINDS = ["parameter", "parameter", "buffer"]
NUMELS = [320, 32, 32]


def test_identical_replicas_agree() -> None:
    p = _prints()
    assert divergence_verdict(NAMES, KINDS, NUMELS, [p, p.copy()]) is None
    assert divergence_verdict(NAMES, KINDS, NUMELS, [p]) is None  # one rank: nothing to compare


def test_reordered_float32_sums_are_not_a_divergence() -> None:
    # a value moved by a few float32 ulps (a reduction in another order) is the same replica
    p = _prints()
    q = p * (1 + 3e-7)
    assert divergence_verdict(NAMES, KINDS, NUMELS, [p, q]) is None


def test_first_diverging_tensor_and_rank_are_named() -> None:
    p = _prints()
    q = p.copy()
    q[1, 5] += 1e-3 * max(abs(q[1, 5]), 1.0)  # one update of 1e-3 on one coordinate of 0.bias
    q[2, 3] += 1.0
    v = divergence_verdict(NAMES, KINDS, NUMELS, [p, q], batchnorm=[False, False, True])
    assert v is not None and v.tensor == "0.bias" and v.kind == "parameter" and v.ranks == [1]
    assert v.tensors == ["0.bias", "1.running_mean"] and not v.batchnorm_only
    assert v.rel_diff > 100 * RTOL


def test_the_odd_rank_out_is_named_not_rank_zero() -> None:
    # four ranks, rank 0 is the one that drifted: the majority is the reference
    p = _prints()
    odd = p.copy()
    odd[0, 1:] *= 1.01
    v = divergence_verdict(NAMES, KINDS, NUMELS, [odd, p, p.copy(), p.copy()])
    assert v is not None and v.ranks == [0] and v.tensor == "0.weight"


def test_batchnorm_statistics_alone() -> None:
    p = _prints()
    q = p.copy()
    q[2, 1:] += 0.5
    v = divergence_verdict(NAMES, KINDS, NUMELS, [p, q], batchnorm=[False, False, True])
    assert v is not None and v.batchnorm_only and v.tensor == "1.running_mean"
    assert batchnorm_severity(8) == Severity.WARNING  # below 16 samples per rank
    assert batchnorm_severity(64) == Severity.INFO and batchnorm_severity(None) == Severity.INFO


def test_nan_on_one_rank_only_is_a_divergence_nan_everywhere_is_not() -> None:
    p = _prints()
    q = p.copy()
    q[0, 2] = math.nan
    assert divergence_verdict(NAMES, KINDS, NUMELS, [p, q]) is not None
    p[0, 2] = math.nan
    assert divergence_verdict(NAMES, KINDS, NUMELS, [p, q]) is None  # loss-nonfinite's job


def test_which_rank_saw_the_nonfinite_value_first() -> None:
    # rank 1's loss went NaN at step 25; the all-reduce made every rank's gradients NaN then
    events = [{"loss_step": None, "grad_step": 25}, {"loss_step": 25, "grad_step": 25}]
    assert first_nonfinite_rank(events) == {"rank": 1, "step": 25, "where": "loss", "ranks": [1]}
    events = [{"loss_step": 9, "grad_step": 9}, {"loss_step": 4, "grad_step": 4}]
    assert first_nonfinite_rank(events)["rank"] == 1  # type: ignore[index]
    events = [{"loss_step": None, "grad_step": 7}, {"loss_step": None, "grad_step": 7}]
    assert first_nonfinite_rank(events) == {"rank": 0, "step": 7, "where": "gradients",
                                            "ranks": [0, 1]}
    assert first_nonfinite_rank([None, {"loss_step": None, "grad_step": None}]) is None


def test_fingerprints_follow_the_model() -> None:
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(4, 50), nn.BatchNorm1d(50), nn.Linear(50, 2))
    names, kinds, tensors, bn = model_tensors(a)
    assert names[:2] == ["0.weight", "0.bias"] and "1.running_mean" in names
    assert "1.num_batches_tracked" in names and bn[names.index("1.running_var")]
    assert not any(bn[i] for i, k in enumerate(kinds) if k == "parameter")
    idx = sample_indices(tensors)
    fp = fingerprints(tensors, idx)
    assert fp.shape == (len(tensors), 1 + SAMPLES)
    assert math.isclose(fp[0, 0], float(a[0].weight.detach().norm()), rel_tol=1e-6)
    b = nn.Sequential(nn.Linear(4, 50), nn.BatchNorm1d(50), nn.Linear(50, 2))
    b.load_state_dict(a.state_dict())
    assert divergence_verdict(names, kinds, [t.numel() for t in tensors],
                              [fp, fingerprints(model_tensors(b)[2], idx)]) is None
    with torch.no_grad():
        b[2].weight[1, 7] += 0.01  # one coordinate: the norm still shows it
    v = divergence_verdict(names, kinds, [t.numel() for t in tensors],
                           [fp, fingerprints(model_tensors(b)[2], idx)])
    assert v is not None and v.tensor == "2.weight"


def test_chunk_means_and_no_process_group() -> None:
    xs, ys = _chunk_means(np.array([1.0, 3.0, math.nan, 5.0]), 2)
    assert xs == [0.5, 2.5] and ys == [2.0, 5.0]
    assert watcher_class() is Watcher  # no process group: the ordinary watcher


# ------------------------------------------------------------------ torchrun
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
            "PYTHONWARNINGS": "ignore::FutureWarning"}


@pytest.fixture(scope="module")
def torchrun(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All scenarios of ddp_script.py in one two-process torchrun launch (one start-up)."""
    out = tmp_path_factory.mktemp("ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "tests/scale/ddp_script.py", "healthy,bnsync,lr,seed,bn,nan", str(out), str(TEST_SEED)]
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True,
                              timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"torchrun did not finish within {TIMEOUT_S} s (a hang?): "
                    f"{str(e.stderr)[-3000:]}")
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def _ranks(out: Path, scenario: str) -> list[dict[str, Any]]:
    return [json.loads((out / scenario / f"rank{r}.json").read_text()) for r in (0, 1)]


def _report(out: Path, scenario: str) -> dict[str, Any]:
    return json.loads((out / scenario / "findings.json").read_text())


@pytest.mark.statistical
def test_healthy_ddp_run_is_quiet_with_one_report(torchrun: Path) -> None:
    r0, r1 = _ranks(torchrun, "healthy")
    assert r0["type"] == r1["type"] == "DistributedWatcher"  # what nnrecipe.watch() gave
    assert r0["live"] == [] and r0["findings"] == []
    assert r1["live"] == []  # rank 1 shows nothing: findings come from rank 0
    assert set(r0["paths"]) == {"findings", "report"} and r1["paths"] == {}  # one report
    assert r0["steps"] == r1["steps"] == 120 and r0["gathers"] == 2  # step 100 and the end
    doc = _report(torchrun, "healthy")
    assert doc["findings"] == []
    ranks = doc["stages"]["train"]["checks"]["ranks"]
    assert ranks["metrics"]["world_size"] == 2 and not ranks["metrics"]["buffers_compared"]
    assert [row[0] for row in ranks["tables"][0]["rows"]] == [0, 1]
    assert "Loss per rank" in ranks["figures"]


@pytest.mark.statistical
def test_batchnorm_with_synced_buffers_is_quiet(torchrun: Path) -> None:
    r0, _ = _ranks(torchrun, "bnsync")
    assert r0["findings"] == [] and r0["live"] == []


def _only(findings: list[dict[str, Any]], code: str) -> dict[str, Any]:
    (f,) = [f for f in findings if f["code"] == code]
    return f


@pytest.mark.statistical
def test_a_rank_with_its_own_learning_rate_is_named(torchrun: Path) -> None:
    r0, r1 = _ranks(torchrun, "lr")
    f = _only(r0["findings"], "ranks-diverged")
    assert f["severity"] == "error" and f["evidence"]["ranks"] == [1]
    assert f["evidence"]["tensor"] == "0.weight" and "rank 1" in f["message"]
    assert f["evidence"]["step"] == 10  # the first gather after the drift began
    assert [g["code"] for g in r0["live"]] == ["ranks-diverged"]  # live, once, on rank 0
    assert r1["live"] == []
    doc = _report(torchrun, "lr")
    assert _only(doc["findings"], "ranks-diverged")["check"] == "ranks"
    ranks = doc["stages"]["train"]["checks"]["ranks"]
    assert ranks["status"] == "error"
    assert ranks["tables"][1]["title"] == "Tensors that differ across ranks"


def test_a_seed_per_rank_without_ddp_is_named(torchrun: Path) -> None:
    r0, _ = _ranks(torchrun, "seed")
    f = _only(r0["findings"], "ranks-diverged")
    assert f["severity"] == "error" and f["evidence"]["ranks"] == [1]
    assert f["evidence"]["tensor"] == "0.weight"
    assert f["evidence"]["n_diverged"] == f["evidence"]["n_compared"] == 6
    assert f["evidence"]["buffers_compared"]  # no DDP wrapper: buffers are compared too


@pytest.mark.statistical
def test_unsynchronised_batchnorm_statistics(torchrun: Path) -> None:
    r0, _ = _ranks(torchrun, "bn")
    f = _only(r0["findings"], "ranks-diverged")
    assert f["severity"] == "warning" and f["evidence"]["tensor"] == "1.running_mean"
    assert f["evidence"]["per_rank_batch"] == 8 and "SyncBatchNorm" in f["fix"]
    assert set(f["evidence"]["diverged_tensors"]) == {"1.running_mean", "1.running_var"}


def test_nan_on_one_rank_stops_every_rank_and_names_it(torchrun: Path) -> None:
    r0, r1 = _ranks(torchrun, "nan")
    assert r0["should_stop"] and r1["should_stop"]
    assert r0["steps"] == r1["steps"] == 26  # both stopped after step 25 (the NaN's step)
    f = _only(r0["findings"], "loss-nonfinite")
    assert f["evidence"]["first_rank"] == 1 and f["evidence"]["first_where"] == "loss"
    assert f["message"].startswith("rank 1 saw it first") and "input batch" in f["message"]
    assert _report(torchrun, "nan")["stages"]["train"]["checks"]["ranks"]["metrics"][
        "nonfinite_first"]["rank"] == 1


# ------------------------------------------------------------------ Lightning DDP
@pytest.mark.statistical
def test_lightning_ddp_one_report_and_a_clean_stop(tmp_path: Path) -> None:
    pytest.importorskip("lightning")  # the [lightning] extra, installed by `make test`
    env = {**_env(), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    proc = subprocess.Popen([sys.executable, "tests/scale/lightning_ddp.py", str(tmp_path),
                             str(TEST_SEED)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # Lightning's second rank is a child of this process
        proc.communicate()
        pytest.fail(f"Lightning DDP did not finish within {TIMEOUT_S} s (a hang?)")
    assert proc.returncode == 0, err[-4000:]
    h0, h1 = _ranks(tmp_path, "healthy")
    assert h0["type"] == h1["type"] == "DistributedWatcher"
    assert h0["steps"] == h1["steps"] == 28  # 4 epochs of 7 batches per rank
    assert not [f for f in h0["findings"] if f["severity"] != "info"] and h1["live"] == []
    assert set(h0["paths"]) == {"findings", "report"} and h1["paths"] == {}
    n0, n1 = _ranks(tmp_path, "nan")
    assert n0["should_stop"] and n1["should_stop"]
    assert n0["global_step"] == n1["global_step"] == 13  # both stopped at the NaN's step
    f = _only(n0["findings"], "loss-nonfinite")
    assert f["evidence"]["first_rank"] == 1 and f["message"].startswith("rank 1 saw it first")
    # live on rank 0 only (an info such as val-below-train after epoch 1 may come with it)
    assert [g["code"] for g in n0["live"] if g["severity"] != "info"] == ["loss-nonfinite"]
    assert n1["live"] == []
