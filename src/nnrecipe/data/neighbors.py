"""Nearest neighbours for duplicates, leakage, outliers and the label-error baseline.

With faiss-cpu installed (``pip install nnrecipe[bench]``), small sets (up to ``EXACT_MAX``
reference samples) get faiss's exact search and larger ones its inverted-file index:
identical and near-identical vectors fall in the same cell, so duplicates and leaks are found
as reliably as by exact search, while the k-NN lists used for outlier scores are approximate
(a true neighbour in an unprobed cell is missed). The inverted file stores the rows as
float16 (half the memory of a float32 copy of the data) and only proposes candidates: their
distances are recomputed exactly from the float32 representation. Without faiss: an exact
brute-force search in numpy for small sets, and scikit-learn's exact search beyond.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

# Exact search costs N^2 * D; at 20k x 128 that is ~5e10 multiply-adds, a few seconds.
EXACT_MAX = 20_000
# faiss IVF, by reasoning about cost: training the quantizer costs ~ cells x samples x D x 10
# iterations with TRAIN_PER_CELL samples per cell, the search ~ N x (vectors scanned per query)
# x D. With N^(2/3)/5 cells (270 at 50k, 2,000 at 1M) and enough cells probed to scan about
# SCAN vectors per query, both stay ~1e11 multiply-adds at 1M x 32: tens of seconds on one
# core. Copies and near copies share a cell with their original, so duplicates and leaks are
# found as by exact search (recall 1.0 in benchmarks/data_audit.py); the 10-NN lists used for
# outlier scores and the label vote are approximate.
TRAIN_PER_CELL, SCAN, MAX_PROBE = 40, 2500, 32

# Query rows per search call (and rows added to an index at a time). Each chunk's temporaries
# (the rows, their standardisation, the candidates' rows for the exact distances) are a few
# times CHUNK x D x 4 bytes: 4 MB per copy at 64 features; the per-call cost of faiss is
# negligible at this size.
CHUNK = 16384
RERANK = 2048  # queries whose candidates' rows are gathered at a time (k+3 rows each)
# Candidates proposed beyond the k asked for, so that a neighbour whose float16 distance
# ranked it just past the k-th still gets its exact distance (measured: with none extra the
# 10-NN sets agreed with float32 codes' on 99.95% of neighbours, see _ivf).
EXTRA = 2


@dataclass
class Index:
    kind: str  # "exact" | "faiss" | "sklearn"
    data: Any  # the reference rows: an array, or a lazily computed nnrecipe.data.rep.Rep
    obj: Any = None
    large: bool = False  # an inverted file holding its own (float16) copy of every row; its
    # candidates' distances are recomputed exactly from ``data``


def _dense(X: Any) -> np.ndarray:
    """``X`` as a float32 C-contiguous array (a Rep is computed; an array is not copied)."""
    if isinstance(X, np.ndarray):
        return np.ascontiguousarray(X, dtype=np.float32)
    return np.ascontiguousarray(X[np.arange(len(X))], dtype=np.float32)


def _faiss() -> Any | None:
    try:
        import faiss
    except ImportError:
        return None
    return faiss


@contextmanager
def _threads(faiss: Any) -> Iterator[None]:
    """faiss's OpenMP threads follow torch's (the thread policy of nnrecipe.core.threads): its
    default of every core spins against the other jobs of a busy machine (building the index
    of 400k x 64 took 35 s with 2 threads on 2 loaded cores, 13 s with one)."""
    import torch

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, torch.get_num_threads()))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def build_index(X: Any, seed: int = 0) -> Index:
    """An index of the rows of ``X`` (an array or a Rep: large ones are read in chunks)."""
    n, d = X.shape
    faiss = _faiss() if d > 0 else None
    if faiss is not None:
        with _threads(faiss):
            return _build(X, seed, faiss)
    return _build(X, seed, None)


def _build(X: Any, seed: int, faiss: Any) -> Index:
    n, d = X.shape
    if n <= EXACT_MAX and faiss is not None:
        X = _dense(X)
        flat = faiss.IndexFlatL2(d)
        flat.add(X)
        return Index("faiss", X, flat)
    if n <= EXACT_MAX or d == 0:
        return Index("exact", _dense(X))
    if faiss is not None:
        return Index("faiss", X, _ivf(X, seed, faiss), large=True)
    from sklearn.neighbors import NearestNeighbors

    X = _dense(X)
    return Index("sklearn", X, NearestNeighbors().fit(X))


def _ivf(X: Any, seed: int, faiss: Any) -> Any:
    """An inverted file over the rows of ``X``, its rows stored as float16 residuals.

    Memory, measured on 400k x 64 float32 (98 MB of rows): float32 codes added chunk by
    chunk took 141 MB (faiss appends one row at a time, so every list's buffer grows by
    doubling: up to 2x its size), float32 codes in lists reserved to their final size 104 MB,
    float16 codes in reserved lists 55 MB. The rows' cells are assigned once, counted,
    the lists reserved, and the rows added with their precomputed cells (no second
    assignment pass). float16 keeps ~3 significant digits (distance errors up to 1e-3 on
    standardised rows): the index proposes the neighbours, the distances are recomputed in
    float32 (:func:`_rerank`); the proposed sets agree with float32 codes' on 99.95% of
    neighbours (32k queries, 400k x 64)."""
    n, d = X.shape
    nlist = int(min(max(16, n ** (2 / 3) / 5), n // TRAIN_PER_CELL))
    quantizer = faiss.IndexFlatL2(d)
    index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, faiss.ScalarQuantizer.QT_fp16)
    rng = np.random.default_rng(seed)
    m = TRAIN_PER_CELL * nlist
    sample = np.arange(n) if n <= m else np.sort(rng.choice(n, m, replace=False))
    index.cp.seed = seed
    index.train(np.ascontiguousarray(X[sample], dtype=np.float32))
    cell = np.empty(n, np.int64)
    for start in range(0, n, CHUNK):
        part = np.ascontiguousarray(X[start:start + CHUNK], dtype=np.float32)
        cell[start:start + len(part)] = quantizer.search(part, 1)[1][:, 0]
    lists = faiss.downcast_InvertedLists(index.invlists)
    for c, count in enumerate(np.bincount(cell, minlength=nlist).tolist()):
        if count:  # a buffer of the final size: appending then never reallocates
            lists.resize(c, count)
            lists.resize(c, 0)
    for start in range(0, n, CHUNK):
        part = np.ascontiguousarray(X[start:start + CHUNK], dtype=np.float32)
        a = np.ascontiguousarray(cell[start:start + len(part)])
        index.add_core(len(part), faiss.swig_ptr(part), None, faiss.swig_ptr(a))
    index.nprobe = int(np.clip(np.ceil(SCAN * nlist / n), 1, min(MAX_PROBE, nlist)))
    return index


def _rerank(ref: Any, query: np.ndarray, d2: np.ndarray, pos: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean distances of the proposed neighbours (rows of ``ref``, -1: none,
    which keep the index's distance and stay last), sorted by (distance, position)."""
    dist = np.sqrt(np.maximum(d2, 0))
    for start in range(0, len(query), RERANK):
        p = pos[start:start + RERANK]
        found = p >= 0
        rows = ref[np.where(found, p, 0).ravel()].reshape(*p.shape, -1)
        rows -= query[start:start + len(p), None, :]
        exact = np.sqrt(np.einsum("ijk,ijk->ij", rows, rows))
        dist[start:start + len(p)] = np.where(found, exact, dist[start:start + len(p)])
    order = np.lexsort((pos, dist), axis=1)
    return np.take_along_axis(dist, order, 1), np.take_along_axis(pos, order, 1)


def _pos_dtype(n: int) -> type:
    """Positions into ``n`` rows: int32 when they fit (half the memory of int64)."""
    return np.int32 if n < 2**31 - 1 else np.int64


def query_knn(ref: Any, query: Any, k: int, index: Index | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances and positions (into ``ref``) of each query's ``k`` nearest; the
    queries (an array or a Rep) are read CHUNK rows at a time."""
    index = index or build_index(ref)
    k = min(k, len(index.data))
    if len(query) == 0 or k == 0:
        return np.zeros((len(query), k), np.float32), np.zeros((len(query), k), np.int64)
    dist = np.empty((len(query), k), np.float32)
    pos = np.empty((len(query), k), _pos_dtype(len(index.data)))
    for start in range(0, len(query), CHUNK):
        q = np.ascontiguousarray(query[start:start + CHUNK], dtype=np.float32)
        dist[start:start + len(q)], pos[start:start + len(q)] = _search(index, q, k)
    return dist, pos


def _search(index: Index, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if index.kind == "exact":
        return _brute(index.data, query, k, exclude_self=False)
    if index.kind == "faiss":
        if index.large:
            with _threads(_faiss()):
                d2, pos = index.obj.search(query, k + EXTRA)
            dist, pos = _rerank(index.data, query, d2, pos)
            return dist[:, :k], pos[:, :k]
        with _threads(_faiss()):
            d2, pos = index.obj.search(query, k)
        return np.sqrt(np.maximum(d2, 0)), pos
    dist, pos = index.obj.kneighbors(query, n_neighbors=k)
    return dist, pos


def self_knn(X: Any, k: int, index: Index | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest *other* rows of each row of ``X`` (a duplicate counts, itself not)."""
    index = index or build_index(X)
    k = min(k, len(X) - 1)
    if k <= 0:
        return np.zeros((len(X), 0), np.float32), np.zeros((len(X), 0), np.int64)
    if index.kind == "exact":
        return _brute(index.data, index.data, k, exclude_self=True)
    dist = np.empty((len(X), k), np.float32)
    pos = np.empty((len(X), k), _pos_dtype(len(X)))
    for start in range(0, len(X), CHUNK):
        q = np.ascontiguousarray(X[start:start + CHUNK], dtype=np.float32)
        d, p = _search(index, q, k + 1)
        is_self = p == np.arange(start, start + len(q))[:, None]
        order = np.argsort(is_self, axis=1, kind="stable")[:, :k]  # self (if found) goes last
        dist[start:start + len(q)] = np.take_along_axis(d, order, 1)
        pos[start:start + len(q)] = np.take_along_axis(p, order, 1)
    return dist, pos


def _brute(ref: np.ndarray, query: np.ndarray, k: int, *, exclude_self: bool
           ) -> tuple[np.ndarray, np.ndarray]:
    rr = (ref.astype(np.float64) ** 2).sum(1)
    dist = np.empty((len(query), k), np.float32)
    pos = np.empty((len(query), k), np.int64)
    step = max(1, 2**24 // max(1, len(ref)))
    for start in range(0, len(query), step):
        q = query[start:start + step]
        d2 = (q.astype(np.float64) ** 2).sum(1)[:, None] + rr[None, :] - 2.0 * (q @ ref.T)
        if exclude_self:
            d2[np.arange(len(q)), np.arange(start, start + len(q))] = np.inf
        part = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < d2.shape[1] else \
            np.tile(np.arange(d2.shape[1]), (len(q), 1))
        dd = np.take_along_axis(d2, part, 1)
        order = np.lexsort((part, dd), axis=1)
        pos[start:start + len(q)] = np.take_along_axis(part, order, 1)
        dist[start:start + len(q)] = np.sqrt(np.maximum(np.take_along_axis(dd, order, 1), 0))
    return dist, pos


def median_nn_distance(nn_dist: np.ndarray) -> float:
    """The typical distance to a sample's nearest neighbour, ignoring exact copies (a set
    that is half duplicates must not make every distance look "near")."""
    if nn_dist.size == 0:
        return 0.0
    d1 = nn_dist[:, 0]
    nz = d1[d1 > 1e-6 * max(1.0, float(d1.max()))]
    return float(np.median(nz)) if len(nz) else 0.0


def near_threshold_factor(dims: int) -> float:
    """How close, as a fraction of the median nearest-neighbour distance, counts as "near".

    By reasoning: for points spread like a Poisson process in D dimensions, the nearest-
    neighbour distance d satisfies P(d < t * median) = 1 - 2^(-t^D) ~ t^D ln 2. We want that
    chance below 1e-4 on healthy data, so t = (1e-4 / ln 2)^(1/D), capped at 0.1 (reached from
    D = 4 up). By measurement: on digits, wine and breast cancer the smallest ratio is
    0.27-0.67, far above 0.1, while copies that were re-encoded, jittered by 1% noise or
    slightly rescaled sit below 0.05.
    """
    return float(min(0.1, (1e-4 / np.log(2)) ** (1.0 / max(1, dims))))


__all__ = ["build_index", "query_knn", "self_knn", "median_nn_distance", "near_threshold_factor",
           "Index"]
