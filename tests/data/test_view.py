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
    assert np.isfinite(tr.rep).all()
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
