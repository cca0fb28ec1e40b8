"""What the memory work on big inputs (issue 16 #5) changed must not change any answer: the
float16 inverted file proposes neighbours whose distances are recomputed exactly, the
label-error baseline is built chunk by chunk, confident learning reads a split's
probabilities without copying them. The memory itself is measured in
``benchmarks/data_audit.py --memory`` (peak RSS per check), not asserted here."""

from __future__ import annotations

import numpy as np
import pytest
from cleanlab.filter import find_label_issues

from nnrecipe.data import label_errors as le
from nnrecipe.data import neighbors
from tests.data.helpers import blobs, check, experiment, found, run_data


def _large_index(monkeypatch: pytest.MonkeyPatch, X: np.ndarray) -> neighbors.Index:
    monkeypatch.setattr(neighbors, "EXACT_MAX", 300)  # the inverted file from 300 rows on
    index = neighbors.build_index(X)
    assert index.large and index.obj.ntotal == len(X)
    assert index.obj.code_size == 2 * X.shape[1]  # float16 codes: half a float32 copy
    return index


def test_the_float16_index_returns_exact_distances_of_its_neighbours(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 16)).astype(np.float32) * 50  # large values: float16 is coarse
    X[10] = X[20]                                          # an exact copy
    X[30] = X[40] + 1e-3                                   # a near copy below float16's step
    index = _large_index(monkeypatch, X)
    d, p = neighbors.self_knn(X, 5, index=index)
    exact = np.linalg.norm(X[p] - X[:, None, :], axis=2)
    np.testing.assert_allclose(d, exact, rtol=1e-5, atol=1e-4)
    assert np.all(np.diff(d, axis=1) >= 0)  # sorted by the exact distance
    assert p[10, 0] == 20 and d[10, 0] == 0.0 and p[20, 0] == 10
    assert p[30, 0] == 40 and 0 < d[30, 0] < 1e-2
    # the proposals: the same neighbours as an exact search on (nearly) every row
    D = np.linalg.norm(X[:, None] - X[None], axis=2)
    np.fill_diagonal(D, np.inf)
    agree = np.mean([len(set(p[i]) & set(np.argsort(D[i])[:5])) / 5 for i in range(len(X))])
    assert agree > 0.95, agree  # approximate search (nprobe covers every cell here): 1.0
    q = rng.normal(size=(50, 16)).astype(np.float32) * 50
    dq, pq = neighbors.query_knn(X, q, 3, index=index)
    np.testing.assert_allclose(dq, np.linalg.norm(X[pq] - q[:, None, :], axis=2),
                               rtol=1e-5, atol=1e-4)


def test_label_errors_are_the_same_whatever_the_chunk_size(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The neighbour vote and the logistic predictions are computed chunk by chunk: chunks
    of 7 rows (many chunks, split boundaries inside one) give the same findings as one."""
    X, y = blobs(n=1200, d=8, classes=4, sep=3.0)
    rng = np.random.default_rng(1)
    flip = rng.choice(1200, 60, replace=False)
    y = y.copy()
    y[flip] = (y[flip] + 1) % 4
    exp = experiment((X[:900], y[:900]), (X[900:], y[900:]))

    def flags() -> tuple[list[tuple[str, ...]], dict[str, float]]:
        res = run_data(exp, "label-errors")
        rows = [tuple(map(str, r)) for r in res.flagged if r[2] == "label-errors"]
        return rows, check(res, "label-errors").metrics

    whole_rows, whole_metrics = flags()
    monkeypatch.setattr(le, "CHUNK", 7)
    rows, metrics = flags()
    assert rows == whole_rows and len(rows) >= 40
    assert metrics == pytest.approx(whole_metrics)
    assert {r[0] for r in rows} == {"train", "val"}


def test_label_issue_cache_names_each_split_s_flagged_rows() -> None:
    X, y = blobs(n=600, d=8, classes=3)
    y = y.copy()
    y[:30] = (y[:30] + 1) % 3  # flipped, all in train
    res = run_data(experiment((X[:450], y[:450]), (X[450:], y[450:])), "label-errors")
    (f,) = found(res, "label-errors")
    listed = [r for r in res.flagged if r[2] == "label-errors"]
    assert f.evidence["flagged"] == len(listed)
    assert f.evidence["by_split"]["train"] == sum(r[0] == "train" for r in listed)
    assert sum(r[1] < 30 for r in listed if r[0] == "train") >= 25
    # the details share one string per (given, suggested) pair
    details = [r[7] for r in listed]
    assert len({id(s) for s in details}) == len(set(details))


def test_a_split_s_probabilities_are_read_in_place_with_the_same_result() -> None:
    """Every class in the split and its rows contiguous: cleanlab reads a view of P (no copy)
    and flags what it flags on a renormalised copy."""
    rng = np.random.default_rng(0)
    n, k = 600, 3
    y = rng.integers(0, k, 2 * n)
    P = rng.dirichlet(np.ones(k), 2 * n) * 0.5
    P[np.arange(2 * n), y] += 0.5
    wrong = rng.choice(n, 40, replace=False)
    P[wrong] = np.roll(P[wrong], 1, axis=1)
    sid = np.repeat([0, 1], n)
    seen: list[bool] = []

    def find(labels: np.ndarray, probs: np.ndarray, n_jobs: int) -> np.ndarray:
        seen.append(np.shares_memory(probs, P))
        return find_label_issues(labels, probs, n_jobs=n_jobs)

    flags = le.split_label_issues(find, y, P, sid)
    assert seen == [True, True]
    for s in (0, 1):
        mine = sid == s
        Ps = P[mine] / P[mine].sum(1, keepdims=True)
        assert np.array_equal(flags[mine], find_label_issues(y[mine], Ps, n_jobs=1))
    assert flags[wrong].mean() > 0.8 and flags[n:].mean() < 0.05
