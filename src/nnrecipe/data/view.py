"""One robust pass over the data, shared by every data check through ``ctx.state``.

The pass loads every sample of every split once (a random subset of very large map-style
datasets), never stops at a broken sample, and records what it found: samples whose
``__getitem__`` raised, non-numeric values, NaN/inf, a shape or dtype unlike the rest,
unusable labels. From the good samples it derives what the checks compute on:

- ``X``: the inputs flattened to float32 rows (images area-downsampled to at most 16x16 per
  channel, so a 224x224 photo costs 768 numbers, not 150,528), in the user's own scale;
- ``hashes``: a 64-bit digest of each full-resolution sample, for exact duplicates;
- ``rep``: a representation for distances, standardised with the *training* statistics
  (per feature for tables, per channel for images) and reduced by PCA when wide, computed
  when read (:mod:`nnrecipe.data.rep`);
- ``labels`` (classification) or ``target`` (regression), where they are one number per sample.

Nearest-neighbour searches on ``rep`` are cached here too, so duplicates, leakage, outliers
and the label-error baseline share one search.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from nnrecipe.core import data as data_mod
from nnrecipe.core.context import Context
from nnrecipe.data.rep import Rep, build_reps
from nnrecipe.errors import DataError

STATE_KEY = "data_view"
TABULAR, IMAGE, TOKENS = "tabular", "image", "tokens"

# A map-style dataset is read sample by sample; beyond this many samples per split a seeded
# random subset is audited (override with Experiment(options={"data_max_samples": N})).
# 50k samples of 8-bit images take about a minute to decode; in-memory arrays are always
# audited whole, since reading them costs nothing.
MAX_SAMPLES = 50_000
MAX_SIDE = 16      # images are area-downsampled to at most MAX_SIDE x MAX_SIDE per channel


@dataclass
class Problem:
    """One sample the loading pass could not use, and why."""

    split: str
    index: int
    kind: str  # raised | not-a-pair | non-numeric | nonfinite | shape | dtype | label
    reason: str


@dataclass
class SplitView:
    name: str
    n_total: int               # len(dataset)
    index: np.ndarray          # dataset index of each loaded row
    X: np.ndarray              # float32 (m, D); rows of unusable samples are zero
    ok: np.ndarray             # bool (m,): input and label usable
    hashes: np.ndarray         # uint64 (m,) digests of full-resolution inputs (0 if unusable)
    y_raw: list[Any]           # per row: the target as a numpy array (None if unusable)
    problems: list[Problem] = field(default_factory=list)
    stats: np.ndarray | None = None   # images: per-sample mean, std, min, max (m, 4)
    labels: np.ndarray | None = None  # int64 (m,), -1 where unusable (classification)
    target: np.ndarray | None = None  # float64 (m,), NaN where unusable (regression)
    rep: Rep | None = None            # float32 (m, d) rows on demand (nnrecipe.data.rep)
    Y: np.ndarray | None = None       # the targets stacked, when they came as one array
    sparse_labels: bool = False       # labels were sparse values, renumbered 0..k-1
    augmented: bool = False           # reading the same index twice gave different inputs
    int_inputs: bool = False          # a map-style dataset whose inputs are integers

    @property
    def n(self) -> int:
        return len(self.index)

    @property
    def subsampled(self) -> bool:
        return self.n < self.n_total

    @property
    def good(self) -> np.ndarray:
        """Row positions of the usable samples."""
        return np.flatnonzero(self.ok)


class DataView:
    """Everything the data checks need, computed once per run."""

    def __init__(self, splits: dict[str, SplitView], *, kind: str, sample_shape: tuple[int, ...],
                 input_dtype: str, task: str, class_names: list[str] | None,
                 feature_names: list[str], notes: list[str], rep_info: str) -> None:
        self.splits = splits
        self.kind = kind
        self.sample_shape = sample_shape
        self.input_dtype = input_dtype
        self.task = task
        self.class_names = class_names
        self.feature_names = feature_names
        self.notes = notes
        self.rep_info = rep_info
        self._knn: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        self._cross: dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray]] = {}
        self._indexes: dict[str, Any] = {}
        self._raw_getter: Callable[[str, list[int]], np.ndarray | None] | None = None
        self.cache: dict[str, Any] = {}  # results checks share (e.g. near-duplicate scale)

    # ------------------------------------------------------------ shortcuts
    @property
    def train(self) -> SplitView:
        return self.splits["train"]

    def other_splits(self) -> list[SplitView]:
        return [s for name, s in self.splits.items() if name != "train"]

    @property
    def has_labels(self) -> bool:
        return self.task == "classification" and self.train.labels is not None

    @property
    def has_target(self) -> bool:
        return self.task == "regression" and self.train.target is not None

    def class_name(self, c: int) -> str:
        if self.class_names is not None and 0 <= c < len(self.class_names):
            return str(self.class_names[c])
        return str(c)

    def n_classes(self) -> int:
        m = 0
        for s in self.splits.values():
            if s.labels is not None and (s.labels >= 0).any():
                m = max(m, int(s.labels.max()) + 1)
        return max(m, len(self.class_names or []))

    @property
    def is_image(self) -> bool:
        return self.kind == IMAGE

    def raw_inputs(self, split: str, positions: list[int]) -> np.ndarray | None:
        """Full-resolution inputs of some rows (for sample grids), or None if unavailable."""
        if self._raw_getter is None or not positions:
            return None
        return self._raw_getter(split, positions)

    # ------------------------------------------------------ nearest neighbours
    def knn(self, split: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``k`` nearest other usable samples of each usable sample of ``split``: distances
        and row positions (into ``split``'s rows), both shaped (n_good, k')."""
        from nnrecipe.data import neighbors

        for (name, kk), value in self._knn.items():
            if name == split and kk >= k:
                return value[0][:, :k], value[1][:, :k]
        s = self.splits[split]
        good = s.good
        index = self._index(split)
        from nnrecipe.data.base import one_blas_thread

        with one_blas_thread():
            dist, pos = neighbors.self_knn(_good_rows(s), k, index=index)
        pos = _positions(pos, good)
        self._knn[(split, k)] = (dist, pos)
        if index.large:
            # the last big query of this index: answer the later splits' (10-NN, what every
            # check asks; leakage queries a split against the earlier ones only) now and let
            # the index go: it holds a copy of every row of the split
            names = list(self.splits)
            for other in names[names.index(split) + 1:]:
                if self.splits[other].ok.any():
                    self.cross_knn(other, split, max(k, 10))
            self._indexes.pop(split, None)
            from nnrecipe.data.base import release_memory

            release_memory()
        return dist, pos

    def cross_knn(self, split: str, ref: str = "train", k: int = 1
                  ) -> tuple[np.ndarray, np.ndarray]:
        """``k`` nearest usable ``ref`` samples of each usable ``split`` sample: distances
        and row positions into ``ref``, shaped (n_good, k)."""
        from nnrecipe.data import neighbors

        for (q, r, kk), value in self._cross.items():
            if q == split and r == ref and kk >= k:
                return value[0][:, :k], value[1][:, :k]
        qs, rs = self.splits[split], self.splits[ref]
        from nnrecipe.data.base import one_blas_thread

        with one_blas_thread():
            dist, pos = neighbors.query_knn(_good_rows(rs), _good_rows(qs), k,
                                            index=self._index(ref))
        pos = _positions(pos, rs.good)
        self._cross[(split, ref, k)] = (dist, pos)
        return dist, pos

    def cross_nn(self, split: str, ref: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """Nearest usable ``ref`` sample of each usable ``split`` sample: distance, row."""
        dist, pos = self.cross_knn(split, ref, 10)  # 10: what the label baseline reuses
        return dist[:, 0], pos[:, 0]

    def _index(self, split: str) -> Any:
        from nnrecipe.data import neighbors

        if split not in self._indexes:
            s = self.splits[split]
            self._indexes[split] = neighbors.build_index(_good_rows(s))
        return self._indexes[split]


def _positions(pos: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Neighbour positions among the usable rows -> row positions of the split (-1: none);
    int32 when they fit (10 neighbours of 1.6M rows: 64 MB instead of 128 MB), mapped in
    chunks (whole-array temporaries were 3 x 128 MB there)."""
    from nnrecipe.data.neighbors import CHUNK

    out = np.empty(pos.shape, np.int32 if len(good) < 2**31 - 1 else np.int64)
    for start in range(0, len(pos), CHUNK):
        p = pos[start:start + CHUNK]
        out[start:start + len(p)] = np.where(p >= 0, good[np.clip(p, 0, None)], -1)
    return out


def _good_rows(s: SplitView) -> Rep:
    """The representation of the usable rows (computed when read, never stored whole)."""
    assert s.rep is not None
    return s.rep if s.ok.all() else s.rep.subset(s.good)


# ---------------------------------------------------------------- public entry


class ViewUnavailable(RuntimeError):
    """The loading pass failed earlier in this run (the check that ran it shows why)."""


def get_view(ctx: Context) -> DataView:
    """The cached :class:`DataView` of this run (built on first use). If building it fails,
    the first caller gets the error and later ones :class:`ViewUnavailable`."""
    view = ctx.state.get(STATE_KEY)
    if view is None:
        if STATE_KEY + ":error" in ctx.state:
            raise ViewUnavailable(ctx.state[STATE_KEY + ":error"])
        try:
            view = build_view(ctx)
        except Exception as e:
            ctx.state[STATE_KEY + ":error"] = f"{type(e).__name__}: {e}"
            raise
        ctx.state[STATE_KEY] = view
    return view


def build_view(ctx: Context) -> DataView:
    exp = ctx.experiment
    max_samples = int(ctx.options.get("data_max_samples", MAX_SAMPLES))
    rng = np.random.default_rng(ctx.seed)
    splits: dict[str, SplitView] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for name in exp.splits():
        ds = ctx.dataset(name)
        with ctx.task(f"loading {name}", None) as t:
            sv, shape = _load_split(name, ds, max_samples, rng, t.advance)
        splits[name] = sv
        if shape is not None:
            shapes[name] = shape
    sample_shape = shapes.get("train") or next(iter(shapes.values()), ())
    # Another split whose samples have another shape cannot be compared with train.
    for name, shape in shapes.items():
        if name != "train" and shape != sample_shape:
            sv = splits[name]
            sv.problems.append(Problem(name, -1, "shape", f"all {name} samples have shape "
                                       f"{shape}, but train samples have {sample_shape}"))
            sv.ok[:] = False
    dtype = _input_dtype(ctx, splits)
    kind = _kind(sample_shape, dtype)
    task = _task(ctx, splits)
    for sv in splits.values():
        _labels(sv, task)
    class_names = _compact_labels(splits, ctx.options.get("data_class_names"))
    _finish_images(splits, kind, sample_shape)
    from nnrecipe.data.base import one_blas_thread

    with one_blas_thread():
        rep_info = build_reps(splits, kind, sample_shape, ctx.seed)
    names = list(ctx.options.get("data_feature_names") or [])
    if len(names) != splits["train"].X.shape[1]:
        names = _default_feature_names(kind, sample_shape, splits["train"].X.shape[1])
    view = DataView(splits, kind=kind, sample_shape=sample_shape, input_dtype=dtype, task=task,
                    class_names=class_names, feature_names=names,
                    notes=list(ctx.options.get("data_notes") or []), rep_info=rep_info)
    view._raw_getter = _raw_getter(ctx)
    return view


# ---------------------------------------------------------------- loading


def _load_split(name: str, ds: Any, max_samples: int, rng: np.random.Generator,
                advance: Callable[..., None]) -> tuple[SplitView, tuple[int, ...] | None]:
    if isinstance(ds, TensorDataset) and len(ds.tensors) >= 2:
        return _load_tensors(name, ds.tensors[0], ds.tensors[1])
    n = data_mod.dataset_len(ds, name)
    index = np.arange(n)
    if n > max_samples:
        index = np.sort(rng.choice(n, max_samples, replace=False))
    return _load_items(name, ds, n, index, advance)


def _load_tensors(name: str, X: torch.Tensor, y: torch.Tensor
                  ) -> tuple[SplitView, tuple[int, ...]]:
    """In-memory (X, y): vectorised in chunks, no per-sample loop. The user's tensors are
    only read: a float32 CPU tensor that needs no downsampling is used in place, through a
    read-only view (no copy: peak memory stays a small multiple of the data); anything else is
    converted chunk by chunk into a new array."""
    n = len(X)
    shape = tuple(X.shape[1:])
    chw = _as_chw(np.zeros(shape, dtype=np.uint8)) if len(shape) >= 2 else None
    shrink = chw is not None and (chw.shape[1] > MAX_SIDE or chw.shape[2] > MAX_SIDE)
    width = int(np.prod(shape)) if not shrink else int(
        chw.shape[0] * min(chw.shape[1], MAX_SIDE) * min(chw.shape[2], MAX_SIDE))  # type: ignore[union-attr]
    in_place = (not shrink and X.dtype == torch.float32 and X.device.type == "cpu"
                and X.is_contiguous() and not X.requires_grad)
    if in_place:
        Xout = X.detach().numpy().reshape(n, width).view()
        Xout.flags.writeable = False  # this view only: the user's array stays as it was
    else:
        Xout = np.empty((n, width), dtype=np.float32)
    finite = np.empty(n, dtype=bool)
    hashes = np.empty(n, dtype=np.uint64)
    step = max(1, min(65536, 2**26 // max(1, int(np.prod(shape)))))
    for start in range(0, n, step):
        full = X[start:start + step].detach().cpu().float().reshape(-1, int(np.prod(shape))).numpy()
        finite[start:start + len(full)] = _finite_rows(full)
        hashes[start:start + len(full)] = row_hashes(full)
        if shrink:
            Xout[start:start + len(full)] = np.stack([_downsample_one(r.reshape(shape))
                                                      for r in full])
        elif not in_place:
            Xout[start:start + len(full)] = full
    problems = [Problem(name, int(i), "nonfinite", _nonfinite_reason(
        X[int(i)].detach().cpu().float().reshape(-1).numpy())) for i in np.flatnonzero(~finite)]
    if not finite.all():
        Xout = _writable(Xout)
        Xout[~finite] = 0
    hashes[~finite] = 0
    sv = SplitView(name, n, np.arange(n), Xout, finite.copy(), hashes, [], problems)
    sv.Y = y.detach().cpu().numpy()
    return sv, shape


def _load_items(name: str, ds: Any, n: int, index: np.ndarray, advance: Callable[..., None]
                ) -> tuple[SplitView, tuple[int, ...] | None]:
    """A map-style dataset, sample by sample; every failure becomes a Problem."""
    rows: list[np.ndarray | None] = []
    shapes: list[tuple[int, ...] | None] = []
    kinds: list[str | None] = []
    y_raw: list[Any] = []
    hashes = np.zeros(len(index), dtype=np.uint64)
    problems: list[Problem] = []
    paths = getattr(ds, "paths", None)
    for pos, i in enumerate(index.tolist()):
        if pos % 256 == 0:
            advance(min(256, len(index) - pos))
        x, y, problem = _read_item(ds, i, name)
        if problem is not None:
            if paths is not None and i < len(paths):
                problem.reason += f" ({paths[i]})"
            problems.append(problem)
            rows.append(None)
            shapes.append(None)
            kinds.append(None)
            y_raw.append(None)
            continue
        assert x is not None
        shapes.append(tuple(x.shape))
        kinds.append("f" if x.dtype.kind == "f" else "i")
        flat = np.ascontiguousarray(x, dtype=np.float32).reshape(1, -1)
        hashes[pos] = row_hashes(flat)[0]
        rows.append(_downsample_one(x.astype(np.float32, copy=False)))
        y_raw.append(y)
    known = [s for s in shapes if s is not None]
    modal_shape = Counter(known).most_common(1)[0][0] if known else None
    modal_kind = Counter(k for k in kinds if k is not None).most_common(1)
    modal_kind_s = modal_kind[0][0] if modal_kind else None
    ok = np.array([r is not None for r in rows], dtype=bool)
    n_modal = sum(1 for s in shapes if s == modal_shape)
    for pos, (shape, kind) in enumerate(zip(shapes, kinds, strict=True)):
        if shape is None:
            continue
        i = int(index[pos])
        if shape != modal_shape:
            problems.append(Problem(name, i, "shape", f"input shape {shape}, but {n_modal} "
                                    f"other samples have {modal_shape}"))
            ok[pos] = False
        elif kind != modal_kind_s:
            what = {"f": "floating-point", "i": "integer"}
            problems.append(Problem(name, i, "dtype", f"{what[kind or 'i']} input, but the other "
                                    f"samples are {what[modal_kind_s or 'f']}"))
            ok[pos] = False
    width = len(next((r for r, good in zip(rows, ok, strict=True) if good and r is not None),
                     np.zeros(0)))
    X = np.zeros((len(index), width), dtype=np.float32)
    for pos in np.flatnonzero(ok):
        X[pos] = rows[pos]
    finite = _finite_rows(X)
    for pos in np.flatnonzero(ok & ~finite):
        problems.append(Problem(name, int(index[pos]), "nonfinite", _nonfinite_reason(X[pos])))
    ok &= finite
    hashes[~ok] = 0
    X[~ok] = 0
    sv = SplitView(name, n, index, X, ok, hashes, y_raw, problems)
    sv.augmented = _augments(ds, sv, name)
    sv.int_inputs = modal_kind_s == "i"
    return sv, modal_shape


AUGMENT_PROBES = 8


def _augments(ds: Any, sv: SplitView, split: str) -> bool:
    """Whether the dataset transforms randomly on read: a few samples, read again."""
    for p in sv.good[:AUGMENT_PROBES]:
        x, _, problem = _read_item(ds, int(sv.index[p]), split)
        if problem is None and x is not None:
            again = row_hashes(np.ascontiguousarray(x, dtype=np.float32).reshape(1, -1))[0]
            if again != sv.hashes[p]:
                return True
    return False


def _writable(X: np.ndarray) -> np.ndarray:
    """``X`` itself if it is ours to change, else a copy (the user's data is never written;
    only data with unusable rows pays for the copy)."""
    return X if X.flags.writeable else X.copy()


def _read_item(ds: Any, i: int, split: str
               ) -> tuple[np.ndarray | None, np.ndarray | None, Problem | None]:
    try:
        item = ds[i]
    except Exception as e:  # noqa: BLE001 - the user's __getitem__ may raise anything
        return None, None, Problem(split, i, "raised", f"loading raised {type(e).__name__}: {e}")
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        return None, None, Problem(split, i, "not-a-pair", f"returned a {type(item).__name__}, "
                                   "not an (input, target) pair")
    arrays = []
    for what, value in (("input", item[0]), ("target", item[1])):
        try:
            arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        except Exception as e:  # noqa: BLE001 - arbitrary user objects
            return None, None, Problem(split, i, "non-numeric", f"{what} cannot be read as an "
                                       f"array: {type(e).__name__}: {e}")
        if arr.dtype.kind not in "biuf":
            return None, None, Problem(split, i, "non-numeric", f"{what} holds non-numeric "
                                       f"values (dtype {arr.dtype}), e.g. {_example(arr)}")
        arrays.append(arr)
    return arrays[0], arrays[1], None


def _example(arr: np.ndarray) -> str:
    flat = arr.reshape(-1)
    for v in flat[:1000]:
        try:
            float(v)
        except (TypeError, ValueError):
            return repr(v)[:40]
    return repr(flat[0])[:40] if flat.size else "an empty array"


def _downsample_one(x: np.ndarray) -> np.ndarray:
    """Flatten one sample; images larger than MAX_SIDE per side are area-averaged first."""
    chw = _as_chw(x)
    if chw is not None and (chw.shape[1] > MAX_SIDE or chw.shape[2] > MAX_SIDE):
        t = torch.from_numpy(np.ascontiguousarray(chw))[None]
        out = torch.nn.functional.adaptive_avg_pool2d(
            t, (min(chw.shape[1], MAX_SIDE), min(chw.shape[2], MAX_SIDE)))
        return out.reshape(-1).numpy()
    return x.reshape(-1)


def _as_chw(x: np.ndarray) -> np.ndarray | None:
    """The sample as (C, H, W) if it looks like an image, else None."""
    if x.ndim == 3 and x.shape[0] in (1, 3, 4) and min(x.shape[1:]) >= 4:
        return x
    if x.ndim == 3 and x.shape[-1] in (1, 3, 4) and min(x.shape[:2]) >= 4:
        return np.moveaxis(x, -1, 0)
    if x.ndim == 2 and min(x.shape) >= 8:
        return x[None]
    return None


def _finite_rows(X: np.ndarray) -> np.ndarray:
    out = np.empty(len(X), dtype=bool)
    for start in range(0, len(X), 65536):
        out[start:start + 65536] = np.isfinite(X[start:start + 65536]).all(axis=1)
    return out


def _nonfinite_reason(row: np.ndarray) -> str:
    nan, inf = int(np.isnan(row).sum()), int(np.isinf(row).sum())
    parts = ([f"{nan} NaN"] if nan else []) + ([f"{inf} inf"] if inf else [])
    return "input holds " + " and ".join(parts) + " value" + ("s" if nan + inf > 1 else "")


_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
VECTOR_HASH_MAX_WORDS = 4096  # wider rows (images) are hashed row by row with blake2b


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, element-wise (uint64 arithmetic wraps)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def row_hashes(X: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """A 64-bit digest per row of a float32 matrix (0 for rows outside ``mask``).

    Narrow rows are hashed column by column, vectorised over rows, by chaining splitmix64's
    finaliser (a bijective mixer, so equal rows hash equally and unequal ones collide with
    probability ~2^-64); wide rows with blake2b. ``+ 0.0`` turns -0.0 into 0.0."""
    out = np.zeros(len(X), dtype=np.uint64)
    for start in range(0, len(X), 65536):
        block = np.ascontiguousarray(X[start:start + 65536] + np.float32(0.0), dtype=np.float32)
        if block.shape[1] % 2:
            block = np.concatenate([block, np.zeros((len(block), 1), np.float32)], axis=1)
        words = block.view(np.uint64)
        if words.shape[1] <= VECTOR_HASH_MAX_WORDS:
            h = np.full(len(block), _GOLDEN, dtype=np.uint64)
            with np.errstate(over="ignore"):
                for j in range(words.shape[1]):
                    h = _mix(h ^ words[:, j]) + _GOLDEN
            out[start:start + len(block)] = h
        else:
            raw = block.view(np.uint8).reshape(len(block), -1)
            out[start:start + len(block)] = [
                int.from_bytes(hashlib.blake2b(r.tobytes(), digest_size=8).digest(), "little")
                for r in raw]
    if mask is not None:
        out[~mask] = 0
    return out


# ---------------------------------------------------------------- what the data is


def _input_dtype(ctx: Context, splits: dict[str, SplitView]) -> str:
    ds = ctx.dataset("train")
    if isinstance(ds, TensorDataset):
        return str(ds.tensors[0].dtype).replace("torch.", "")
    return "int64" if splits["train"].int_inputs else "float32"


def _kind(shape: tuple[int, ...], dtype: str) -> str:
    if len(shape) >= 2 and _as_chw(np.zeros(shape, dtype=np.uint8)) is not None:
        return IMAGE
    if dtype.startswith("int") and len(shape) <= 2:
        return TOKENS  # integer ids for an embedding (sequences of tokens)
    return TABULAR


def _task(ctx: Context, splits: dict[str, SplitView]) -> str:
    exp = ctx.experiment
    if exp.task:
        return exp.task
    from nnrecipe.experiment import CLASSIFICATION_LOSSES, REGRESSION_LOSSES

    if isinstance(exp.loss, CLASSIFICATION_LOSSES):
        return "classification"
    if isinstance(exp.loss, REGRESSION_LOSSES):
        return "regression"
    tr = splits["train"]
    if tr.Y is not None:
        kind = tr.Y.dtype.kind
    else:
        ys = [y for y in tr.y_raw[:256] if y is not None]
        kind = np.asarray(ys[0]).dtype.kind if ys else "i"
    return "regression" if kind == "f" else "classification"


def _stacked_targets(sv: SplitView) -> np.ndarray | None:
    """Targets as one float64 array (m, *shape), NaN rows where unusable; None when the
    targets have no common shape."""
    if sv.Y is not None:
        Y = sv.Y.astype(np.float64)
    else:
        shapes = {np.shape(y) for y, good in zip(sv.y_raw, sv.ok, strict=True)
                  if good and y is not None}
        if len(shapes) != 1:
            return None
        (shape,) = shapes
        Y = np.full((sv.n, *shape), np.nan)
        for p in sv.good:
            Y[p] = np.asarray(sv.y_raw[p], dtype=np.float64)
    Y[~sv.ok] = np.nan
    return Y


def _labels(sv: SplitView, task: str) -> None:
    """One number per sample where the targets allow it; unusable labels become problems."""
    Y = _stacked_targets(sv)
    if Y is None:
        return
    good = sv.good
    if Y.ndim == 1 or (Y.ndim == 2 and Y.shape[1] == 1):
        vals = Y.reshape(len(Y))
    elif task == "classification" and Y.ndim == 2:
        G = Y[good]
        sums = G.sum(1)
        fin = np.isfinite(sums)
        if not (np.all(G[fin] >= 0) and np.allclose(sums[fin], 1.0, atol=1e-3)):
            return  # multi-label or structured targets: no single label per sample
        vals = np.full(sv.n, np.nan)
        vals[good] = np.where(fin, np.nan_to_num(G).argmax(1), np.nan)
    else:
        return
    v = vals[good]
    nan = ~np.isfinite(v)
    bad = nan.copy()
    for p in good[nan]:
        raw = sv.Y[p] if sv.Y is not None else sv.y_raw[p]
        sv.problems.append(Problem(sv.name, int(sv.index[p]), "label",
                                   f"target is {np.asarray(raw).tolist()!r}, not a number"))
    if task == "classification":
        frac = ~nan & (v != np.round(np.nan_to_num(v)))
        neg = ~nan & ~frac & (v < 0)
        for p in good[frac]:
            sv.problems.append(Problem(sv.name, int(sv.index[p]), "label",
                                       f"label {vals[p]:g} is not a whole class index"))
        for p in good[neg]:
            sv.problems.append(Problem(sv.name, int(sv.index[p]), "label",
                                       f"label {vals[p]:g} is a negative class index"))
        bad |= frac | neg
    sv.ok[good[bad]] = False
    if task == "classification":
        sv.labels = np.where(sv.ok, np.nan_to_num(vals), -1).astype(np.int64)
    else:
        sv.target = np.where(sv.ok, vals, np.nan)
    if not sv.ok.all():
        sv.X = _writable(sv.X)
        sv.X[~sv.ok] = 0
    sv.hashes[~sv.ok] = 0


def _compact_labels(splits: dict[str, SplitView], names: list[str] | None
                    ) -> list[str] | None:
    """Sparse class indices (say 7 labels up to 10^9, e.g. IDs used as labels) become
    0..k-1, named by their values, so per-class arrays stay small."""
    present = [s.labels[s.ok] for s in splits.values() if s.labels is not None]
    if not present:
        return names
    values = np.unique(np.concatenate(present))
    if not len(values) or values.max() < max(1000, 10 * len(values)):
        return names
    for s in splits.values():
        if s.labels is not None:
            s.labels = np.where(s.ok, np.searchsorted(values, s.labels), -1)
            s.sparse_labels = True
    return [names[v] if names is not None and v < len(names) else str(v) for v in values]


def _finish_images(splits: dict[str, SplitView], kind: str, shape: tuple[int, ...]) -> None:
    """Per-sample statistics of images (brightness etc.), used by outliers and shortcuts."""
    if kind != IMAGE:
        return
    for sv in splits.values():
        if sv.X.shape[1] == 0:
            continue
        X = sv.X
        sv.stats = np.stack([X.mean(1), X.std(1), X.min(1), X.max(1)], axis=1).astype(np.float32)


STAT_NAMES = ("mean brightness", "contrast (std)", "darkest pixel", "brightest pixel")


def image_layout(shape: tuple[int, ...], width: int) -> tuple[int, int, int]:
    """(C, h, w) of the downsampled image rows stored in ``X``."""
    chw = _as_chw(np.zeros(shape, dtype=np.uint8))
    assert chw is not None
    c, h, w = chw.shape
    h2, w2 = min(h, MAX_SIDE), min(w, MAX_SIDE)
    if c * h2 * w2 != width:
        return 1, 1, width
    return c, h2, w2


def _default_feature_names(kind: str, shape: tuple[int, ...], width: int) -> list[str]:
    if kind == IMAGE:
        c, h, w = image_layout(shape, width)
        if c * h * w == width:
            return [f"c{ci} y{yi} x{xi}" if c > 1 else f"pixel y{yi} x{xi}"
                    for ci in range(c) for yi in range(h) for xi in range(w)]
    return [f"feature {j}" for j in range(width)]


def _raw_getter(ctx: Context) -> Callable[[str, list[int]], np.ndarray | None]:
    def get(split: str, positions: list[int]) -> np.ndarray | None:
        view: DataView = ctx.state[STATE_KEY]
        sv = view.splits[split]
        ds = ctx.dataset(split)
        out = []
        for p in positions:
            i = int(sv.index[p])
            if isinstance(ds, TensorDataset):
                out.append(ds.tensors[0][i].float().numpy())
                continue
            try:
                x = ds[i][0]
                out.append(np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x,
                                      dtype=np.float32))
            except Exception:  # noqa: BLE001 - shown as a blank tile
                out.append(np.zeros(view.sample_shape, dtype=np.float32))
        try:
            return np.stack(out)
        except ValueError:
            return None
    return get


def require_train(view: DataView) -> str | None:
    """A reason to skip when the training split has no usable samples."""
    if not view.train.ok.any():
        return "no usable training samples (see corrupt-samples)"
    return None


__all__ = ["DataView", "SplitView", "Problem", "get_view", "build_view", "row_hashes",
           "DataError", "require_train"]
