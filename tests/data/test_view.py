"""The loading pass and the neighbour search."""

import numpy as np
import torch
from torch.utils.data import Dataset

from nnrecipe.core.context import Context
from nnrecipe.data import neighbors
from nnrecipe.data.view import build_view, row_hashes
from tests.data.helpers import blobs, experiment


class Messy(Dataset):
    """A dataset with one of every kind of broken sample."""

    def __init__(self) -> None:
        self.X, self.y = blobs(n=200, d=6)

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i: int):  # noqa: ANN204
        x, y = torch.from_numpy(self.X[i]), int(self.y[i])
        if i == 3:
            raise OSError("disk error")
        if i == 5:
            x = x.clone()
            x[2] = float("nan")
        if i == 7:
            x = torch.zeros(5)
        if i == 9:
            x = x.long()
        if i == 11:
            return x, float("nan")
        if i == 13:
            return x, "seven"
        return x, y


def test_every_broken_sample_is_named_and_the_rest_is_kept() -> None:
    view = build_view(Context(experiment(Messy())))
    tr = view.train
    kinds = {p.index: p.kind for p in tr.problems}
    assert kinds == {3: "raised", 5: "nonfinite", 7: "shape", 9: "dtype", 11: "label",
                     13: "non-numeric"}
    assert tr.ok.sum() == 200 - 6
    assert not tr.ok[[3, 5, 7, 9, 11, 13]].any()
    assert np.isfinite(tr.rep.array()).all()
    assert (tr.labels[tr.ok] >= 0).all()


def test_arrays_are_read_whole_and_never_modified() -> None:
    X, y = blobs(n=300, d=4)
    X[10, 1] = np.inf
    before = X.copy()
    tX = torch.from_numpy(X)
    view = build_view(Context(experiment((tX, torch.from_numpy(y)))))
    assert [p.index for p in view.train.problems] == [10]
    assert np.array_equal(tX.numpy(), before, equal_nan=True)
    assert view.kind == "tabular" and view.task == "classification"


def test_images_are_downsampled_but_hashed_at_full_resolution() -> None:
    rng = np.random.default_rng(0)
    X = rng.random((40, 3, 64, 64)).astype(np.float32)
    X[1] = X[0]
    X[2] = X[0]
    X[2, 0, 0, 0] += 0.5  # differs in one full-resolution pixel
    view = build_view(Context(experiment((X, np.arange(40) % 2))))
    tr = view.train
    assert view.kind == "image" and tr.X.shape[1] == 3 * 16 * 16
    assert tr.hashes[0] == tr.hashes[1] != tr.hashes[2]


def test_row_hashes_ignore_the_sign_of_zero() -> None:
    a = np.array([[0.0, 1.0]], dtype=np.float32)
    b = np.array([[-0.0, 1.0]], dtype=np.float32)
    assert row_hashes(a)[0] == row_hashes(b)[0]


def test_self_knn_matches_brute_force_and_keeps_duplicates() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5)).astype(np.float32)
    X[7] = X[3]
    d, p = neighbors.self_knn(X, 3)
    D = np.linalg.norm(X[:, None] - X[None], axis=2)
    np.fill_diagonal(D, np.inf)
    assert np.array_equal(p[:, 0][np.arange(300) != 3], D.argmin(1)[np.arange(300) != 3])
    assert p[3, 0] == 7 and d[3, 0] < 1e-3
    assert np.allclose(np.sort(D, 1)[:, :3], d, atol=1e-3)


def test_ivf_search_finds_copies_at_scale() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(neighbors.EXACT_MAX + 5000, 16)).astype(np.float32)
    X[100] = X[200] + 1e-4
    index = neighbors.build_index(X)
    d, p = neighbors.self_knn(X, 2, index=index)
    assert p[100, 0] == 200 and p[200, 0] == 100


def test_a_failing_loading_pass_crashes_one_check_and_skips_the_rest(monkeypatch) -> None:  # noqa: ANN001
    from nnrecipe.data import view as view_mod
    from tests.data.helpers import run_data

    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("unexpected")

    monkeypatch.setattr(view_mod, "_load_split", broken)
    res = run_data(experiment(blobs(n=50)))
    statuses = [c.status for s in res.stages for c in s.checks]
    assert statuses[0] == "crashed" and set(statuses[1:]) == {"skipped"}
    assert "RuntimeError: unexpected" in res.stages[0].checks[1].reason


def test_rep_rows_computed_on_demand_equal_the_whole_matrix(monkeypatch) -> None:  # noqa: ANN001
    from sklearn.decomposition import PCA

    from nnrecipe.data import rep as rep_mod

    monkeypatch.setattr(rep_mod, "CHUNK", 7)  # several chunks, contiguous runs and jumps
    rng = np.random.default_rng(0)
    X = rng.normal(3.0, 2.0, size=(100, 200)).astype(np.float32)
    before = X.copy()
    ok = np.ones(100, bool)
    ok[[4, 31]] = False
    mean = X.mean(0).astype(np.float32)
    inv = (1 / X.std(0)).astype(np.float32)
    inv[5] = 0.0  # a feature left out of distances
    pca = PCA(rep_mod.PCA_DIMS, random_state=0).fit((X - mean) * inv)
    for p in (None, pca):
        full = (X - mean) * inv
        full = (pca.transform(full) if p is not None else full).astype(np.float32)
        full[~ok] = 0
        r = rep_mod.Rep(X, ok, mean, inv, p)
        assert r.shape == full.shape and len(r) == 100
        np.testing.assert_allclose(r.array(), full, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(r[10:50], full[10:50], rtol=1e-5, atol=1e-5)
        rows = np.array([0, 1, 2, 3, 40, 41, 99, 5])
        np.testing.assert_allclose(r[rows], full[rows], rtol=1e-5, atol=1e-5)
        sub = r.subset(np.flatnonzero(ok))
        np.testing.assert_allclose(sub[3:20], full[ok][3:20], rtol=1e-5, atol=1e-5)
    assert np.array_equal(X, before)  # the input is only read


def test_a_large_index_answers_the_later_splits_then_is_released(monkeypatch) -> None:  # noqa: ANN001
    """Beyond EXACT_MAX rows the index is an inverted file holding a copy of every row: the
    view answers the 10-NN queries of the later splits with it and lets it go."""
    monkeypatch.setattr(neighbors, "EXACT_MAX", 300)
    X, y = blobs(n=2000, d=8)
    exp = experiment((X[:1200], y[:1200]), (X[1200:1600], y[1200:1600]),
                     (X[1600:], y[1600:]))
    view = build_view(Context(exp))
    view.knn("train", 10)
    assert "train" not in view._indexes
    assert {k for k in view._cross} == {("val", "train", 10), ("test", "train", 10)}
    view.knn("val", 10)  # 400 rows: large too; only test is queried against val
    assert ("test", "val", 10) in view._cross and ("train", "val", 10) not in view._cross
    # the cached answers are the right ones: nearest training row of each validation row
    d, p = view.cross_nn("val", "train")
    R, Q = view.train.rep.array(), view.splits["val"].rep.array()
    D = np.linalg.norm(Q[:, None] - R[None], axis=2)
    agree = (p == D.argmin(1)).mean()
    assert agree > 0.95, agree  # approximate search (here nprobe covers all 22 cells): 1.0
    assert np.allclose(d[p == D.argmin(1)], D.min(1)[p == D.argmin(1)], atol=1e-3)
