"""The representation distances are computed on, computed on demand and never stored whole.

Each split's rows are standardised with the *training* statistics (per feature for tables,
per channel for images; float64 and constant-aware: :mod:`nnrecipe.data.stats`) and reduced
by PCA when wider than ``MAX_REP_DIMS``. A :class:`Rep` holds only the recipe (mean, 1/std,
the PCA) and the split's rows, and computes rows when indexed: ``rep[i:j]``, ``rep[idx]``.
Keeping the whole matrix would cost as much memory as the data again (a 0.41 GB table of 64
features: 0.41 GB more, for the whole run); the nearest-neighbour search reads it in chunks
(:mod:`nnrecipe.data.neighbors`), the label-error baseline and the domain classifier read at
most 20k rows at a time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_REP_DIMS = 128  # wider representations are reduced by PCA ...
PCA_DIMS = 64       # ... to this many components (fit on at most PCA_FIT samples of train)
PCA_FIT = 20_000
CHUNK = 16384  # rows computed at a time (a few 4 MB temporaries at 64 features)


class Rep:
    """Rows of the representation of one split (or of a subset of its rows), on demand.

    Indexing returns a new float32 array (rows of unusable samples are zero); ``shape`` and
    ``len`` behave as for the matrix it stands for."""

    def __init__(self, X: np.ndarray, ok: np.ndarray, mean: np.ndarray, inv: np.ndarray,
                 pca: Any = None, rows: np.ndarray | None = None) -> None:
        self.X, self.ok, self.mean, self.inv, self.pca = X, ok, mean, inv, pca
        self.rows = rows  # positions into X this Rep stands for (None: all)
        self.dims = PCA_DIMS if pca is not None else X.shape[1]

    def __len__(self) -> int:
        return len(self.X) if self.rows is None else len(self.rows)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), self.dims)

    def subset(self, rows: np.ndarray) -> Rep:
        """The rows ``rows`` (positions into this Rep) as a Rep of their own (no copy)."""
        pos = rows if self.rows is None else self.rows[rows]
        return Rep(self.X, self.ok, self.mean, self.inv, self.pca, np.asarray(pos))

    def __getitem__(self, idx: Any) -> np.ndarray:
        if isinstance(idx, slice):
            idx = np.arange(len(self))[idx]
        idx = np.asarray(idx)
        pos = idx if self.rows is None else self.rows[idx]
        out = np.empty((len(pos), self.dims), np.float32)
        for start in range(0, len(pos), CHUNK):
            part = pos[start:start + CHUNK]
            contiguous = len(part) and np.all(np.diff(part) == 1)
            block = self.X[int(part[0]):int(part[-1]) + 1] if contiguous else self.X[part]
            block = (block - self.mean) * self.inv
            if self.pca is not None:
                block = self.pca.transform(block)
            block[~self.ok[part]] = 0
            out[start:start + len(part)] = block
        return out

    def array(self) -> np.ndarray:
        """The whole matrix (for small sets and tests)."""
        return self[np.arange(len(self))]


def build_reps(splits: dict[str, Any], kind: str, shape: tuple[int, ...], seed: int) -> str:
    """Give every split its :class:`Rep`; returns a one-line description for the report."""
    from nnrecipe.data.stats import column_stats, distance_scale, group_stats
    from nnrecipe.data.view import IMAGE, image_layout

    tr = splits["train"]
    good = tr.good
    d = tr.X.shape[1]
    st_tr = column_stats(tr.X, good)
    if kind == IMAGE:
        c, h, w = image_layout(shape, d)
        if len(good):
            ch_tr = group_stats(st_tr, c)
            mean = np.repeat(ch_tr.mean, h * w)
            inv = np.repeat(distance_scale(ch_tr), h * w)
        else:
            mean, inv = np.zeros(d), np.ones(d)
        info = f"pixels downsampled to {c}x{h}x{w}, standardised per channel"
    else:
        mean = st_tr.mean if len(good) else np.zeros(d)
        inv = distance_scale(st_tr) if len(good) else np.ones(d)
        info = "features standardised with the training mean and std"
    dropped = int((inv == 0).sum())
    if dropped and kind != IMAGE:
        info += (f" ({dropped} feature{'s' if dropped > 1 else ''} constant in train left out "
                 "of distances)")
    mean32, inv32 = mean.astype(np.float32), inv.astype(np.float32)
    pca = None
    if d > MAX_REP_DIMS and len(good) > PCA_DIMS:
        from sklearn.decomposition import PCA

        rng = np.random.default_rng(seed)
        fit = good if len(good) <= PCA_FIT else np.sort(rng.choice(good, PCA_FIT, replace=False))
        pca = PCA(PCA_DIMS, svd_solver="randomized", random_state=seed)
        pca.fit((tr.X[fit] - mean32) * inv32)
        info += f", reduced to {PCA_DIMS} PCA components"
    for sv in splits.values():
        sv.rep = Rep(sv.X, sv.ok, mean32, inv32, pca)
    return info


__all__ = ["Rep", "build_reps", "MAX_REP_DIMS", "PCA_DIMS", "PCA_FIT"]
