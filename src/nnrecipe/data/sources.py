"""Data files without a model: ``nnrecipe inspect data.npz | table.csv --target COL | folder/``.

Each source becomes an :class:`~nnrecipe.Experiment` whose model factory is a placeholder
(the data stage never builds a model) and whose loss only tells the task. Anything that
stops the data from being read at all raises :class:`DataError` with one clear message (the
CLI exits 2); problems with individual values or files are kept in the data, where the
``corrupt-samples`` check reports them by row or file.

- ``.npz``: arrays ``X`` and ``y``, optionally ``X_val``/``y_val`` and ``X_test``/``y_test``.
- ``.csv``: pandas; ``--target`` names the label column; numeric columns are used as they
  are, text columns with few distinct values are one-hot encoded, identifier-like text
  columns are left out; a column named ``split`` with values train/val/test splits the rows.
- a folder of ``class_name/*.png|jpg|...`` (or ``train/``, ``val/``, ``test/`` folders of those),
  read with Pillow into [0, 1] floats at the most common size and mode.
"""

from __future__ import annotations

import difflib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from nnrecipe.errors import DataError, ExperimentError
from nnrecipe.experiment import Experiment

SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val",
               "test": "test"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_CATEGORIES = 30       # one-hot columns per text column (rarer values share one "other")
ID_UNIQUE_FRACTION = 0.5  # a text column with more distinct values than this is an identifier
MAX_CLASSES_NUMERIC = 50  # a whole-number target with at most this many values is a class


def _no_model(*args: Any, **kwargs: Any) -> nn.Module:
    raise ExperimentError("this experiment was read from a data file and has no model; "
                          "write an experiment file (FILE.py with experiment()) to run more "
                          "than the data stage")


def experiment_from_data(target: str, target_column: str | None = None,
                         groups_column: str | None = None) -> tuple[Experiment, str]:
    """An Experiment for the data stage from a data file or folder, and its name."""
    path = Path(target)
    if not path.exists():
        raise DataError(f"no such file or folder: {target}")
    if path.is_dir():
        return from_image_folder(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return from_npz(path)
    if suffix in (".csv", ".tsv", ".txt"):
        return from_csv(path, target_column, groups_column)
    if groups_column is not None:
        raise DataError(f"--groups names a column of a CSV file; for {path.name} pass the group "
                        "ids in an experiment file: Experiment(groups={'train': ids, 'val': ids})")
    raise DataError(f"{path}: nnrecipe inspect reads FILE.py (an experiment), FILE.npz, "
                    f"FILE.csv with --target COLUMN, or a folder of class_name/*.png images; "
                    f"got a {suffix or 'file without extension'}")


def _experiment(splits: dict[str, tuple[Any, Any]] | dict[str, Dataset], task: str, name: str,
                options: dict[str, Any], groups: dict[str, Any] | None = None) -> Experiment:
    loss = nn.CrossEntropyLoss() if task == "classification" else nn.MSELoss()
    return Experiment(model=_no_model, train=splits["train"], val=splits.get("val"),
                      test=splits.get("test"), loss=loss, task=task, name=name,
                      options=options, groups=groups or None)


# -------------------------------------------------------------------- labels


def encode_labels(values: np.ndarray, what: str) -> tuple[np.ndarray, str, list[str] | None]:
    """Labels as numbers: (float array with NaN for missing, task, class names or None)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "OUS":
        missing = np.array([v is None or (isinstance(v, float) and np.isnan(v)) or
                            (isinstance(v, str) and v.strip() == "") for v in arr.reshape(-1)])
        present = arr.reshape(-1)[~missing]
        numeric = _to_numbers(present)
        if numeric is not None:
            out = np.full(arr.shape[0], np.nan)
            out[~missing] = numeric
            return _numeric_labels(out, what)
        names = sorted({str(v) for v in present})
        lookup = {n: i for i, n in enumerate(names)}
        out = np.full(arr.shape[0], np.nan)
        out[~missing] = [lookup[str(v)] for v in present]
        return out, "classification", names
    if arr.dtype.kind == "b":
        return arr.astype(np.float64), "classification", None
    if arr.dtype.kind not in "iuf":
        raise DataError(f"{what} has dtype {arr.dtype}, which nnrecipe cannot read as labels")
    return _numeric_labels(arr.astype(np.float64), what)


def _numeric_labels(y: np.ndarray, what: str) -> tuple[np.ndarray, str, None]:
    if y.ndim > 1:
        return y, ("classification" if np.all(np.isin(y[np.isfinite(y)], (0, 1))) else
                   "regression"), None
    fin = y[np.isfinite(y)]
    whole = fin.size > 0 and np.all(fin == np.round(fin))
    few = len(np.unique(fin)) <= min(MAX_CLASSES_NUMERIC, max(2, len(fin) // 5))
    return y, ("classification" if whole and few and fin.min() >= 0 else "regression"), None


def _to_numbers(values: np.ndarray) -> np.ndarray | None:
    try:
        return np.array([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------- npz


def from_npz(path: Path) -> tuple[Experiment, str]:
    arrays = read_npz(path)
    if "X" not in arrays or "y" not in arrays:
        raise DataError(f"{path} must hold arrays 'X' and 'y' (and optionally X_val, y_val, "
                        f"X_test, y_test); it holds {', '.join(sorted(arrays)) or 'nothing'}")
    splits: dict[str, tuple[Any, Any]] = {}
    task, class_names = "classification", None
    for split, suffix in (("train", ""), ("val", "_val"), ("test", "_test")):
        xk, yk = f"X{suffix}", f"y{suffix}"
        if (xk in arrays) != (yk in arrays):
            raise DataError(f"{path} has {xk if xk in arrays else yk} without "
                            f"{yk if xk in arrays else xk}")
        if xk not in arrays:
            continue
        X, y = arrays[xk], arrays[yk]
        if X.dtype.kind not in "biuf":
            raise DataError(f"{path}: {xk} holds {X.dtype} values; inputs must be numbers")
        if len(X) == 0:
            raise DataError(f"{path}: {xk} is empty")
        if len(X) != len(y):
            raise DataError(f"{path}: {xk} has {len(X)} samples but {yk} has {len(y)}")
        splits[split] = (_float32_tensor(X), y)
    # labels are encoded over all splits together so class indices agree
    all_y = np.concatenate([np.asarray(y).reshape(len(y), -1) if np.asarray(y).ndim > 1
                            else np.asarray(y) for _, y in splits.values()])
    encoded, task, class_names = encode_labels(all_y, f"{path}: y")
    start = 0
    for split, (X, y) in list(splits.items()):
        part = encoded[start:start + len(y)]
        start += len(y)
        splits[split] = (X, part.astype(np.float32) if task == "regression" or
                         np.isnan(part).any() else part.astype(np.int64))
    options: dict[str, Any] = {"data_notes": [f"read {path.name}: " + ", ".join(
        f"{s} {X.shape}" for s, (X, _) in splits.items())]}
    if class_names:
        options["data_class_names"] = class_names
    return _experiment(splits, task, path.stem, options), path.stem


_ZIP_MAGIC, _NPY_MAGIC = b"PK\x03\x04", b"\x93NUMPY"
_SAVE_HINT = "save the arrays with np.savez(path, X=X, y=y) (or np.savez_compressed)"


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive. Members stored uncompressed (``np.savez``) are
    memory-mapped read-only, so a large file is paged in as the checks read it instead of
    copied into memory; compressed members (``np.savez_compressed``) are decompressed.
    Anything else gets one message that says what the file is instead."""
    import zipfile

    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from e
    if head.startswith(_NPY_MAGIC):
        raise DataError(f"{path} is a single .npy array (np.save), not an .npz archive of X "
                        f"and y; {_SAVE_HINT}")
    if not head.startswith(_ZIP_MAGIC):
        what = "an empty file" if not head else f"a file starting with bytes {head!r}"
        raise DataError(f"{path} is not an .npz archive (an .npz is a zip file; this is "
                        f"{what}); {_SAVE_HINT}")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{path}: a damaged or truncated zip archive ({e}); {_SAVE_HINT}") from e
    arrays: dict[str, np.ndarray] = {}
    with zf:
        members = zf.infolist()
        other = [m.filename for m in members if not m.filename.endswith(".npy")]
        if other:
            raise DataError(f"{path} is a zip archive but not an .npz: it holds "
                            f"{', '.join(other[:3])}{' ...' if len(other) > 3 else ''}, "
                            f"{'which is not a NumPy array' if len(other) == 1 else 'not NumPy arrays'}"
                            f"; {_SAVE_HINT}")
        for m in members:
            key = m.filename[:-4]
            try:
                arrays[key] = _npz_member(path, zf, m)
            except DataError:
                raise
            except ValueError as e:
                if "allow_pickle" in str(e) or "object" in str(e).lower():
                    raise DataError(f"{path}: array {key!r} holds Python objects (dtype=object), "
                                    "which nnrecipe does not unpickle; save numbers (and string "
                                    "labels as fixed-width strings, e.g. y.astype(str))") from e
                raise DataError(f"{path}: array {key!r} cannot be read ({e})") from e
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise DataError(f"{path}: array {key!r} is damaged or truncated "
                                f"({type(e).__name__}: {e})") from e
    return arrays


def _float32_tensor(X: np.ndarray) -> torch.Tensor:
    """A float32 tensor; a float32 (memory-mapped) array is wrapped, not copied. The data
    stage only reads it (torch warns about read-only arrays; that is what we want here)."""
    import warnings

    if X.dtype != np.float32 or not X.flags.c_contiguous:
        return torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(X)


def _npz_member(path: Path, zf: Any, m: Any) -> np.ndarray:
    """One ``.npy`` member: memory-mapped when stored uncompressed, else read."""
    import struct
    import zipfile

    fmt = np.lib.format
    with zf.open(m) as f:
        if f.read(6) != _NPY_MAGIC[:6]:
            raise DataError(f"{path}: member {m.filename} is not a NumPy array (no .npy "
                            f"header); {_SAVE_HINT}")
    if m.compress_type != zipfile.ZIP_STORED:
        with zf.open(m) as f:
            return fmt.read_array(f, allow_pickle=False)
    with open(path, "rb") as raw:
        raw.seek(m.header_offset)
        local = raw.read(30)
        if len(local) < 30 or local[:4] != _ZIP_MAGIC:
            raise DataError(f"{path}: member {m.filename} has a damaged zip header")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        start = m.header_offset + 30 + name_len + extra_len
        raw.seek(start)
        version = fmt.read_magic(raw)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(raw)
        else:
            shape, fortran, dtype = fmt.read_array_header_2_0(raw)
        offset = raw.tell()
    if dtype.hasobject:
        raise ValueError("object arrays need allow_pickle")
    count = int(np.prod(shape)) if shape else 1
    if offset + count * dtype.itemsize > start + m.file_size:
        raise DataError(f"{path}: array {m.filename[:-4]!r} is truncated (the header promises "
                        f"{shape} {dtype}, the archive holds less)")
    if count == 0:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                     order="F" if fortran else "C")


# ---------------------------------------------------------------------- csv


def from_csv(path: Path, target_column: str | None, groups_column: str | None = None
             ) -> tuple[Experiment, str]:
    import pandas as pd

    sep = "\t" if path.suffix.lower() == ".tsv" else None
    try:
        df = pd.read_csv(path, sep=sep, engine="python" if sep is None else "c")
    except Exception as e:  # noqa: BLE001 - pandas raises many kinds
        raise DataError(f"{path}: cannot read as CSV ({type(e).__name__}: {e})") from e
    columns = [str(c) for c in df.columns]
    df.columns = columns
    if target_column is None:
        raise DataError(f"{path}: say which column holds the labels with --target COLUMN "
                        f"(columns: {', '.join(columns[:20])}{' ...' if len(columns) > 20 else ''})")
    if target_column not in columns:
        close = difflib.get_close_matches(target_column, columns, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise DataError(f"{path} has no column {target_column!r}{hint} (columns: "
                        f"{', '.join(columns[:20])}{' ...' if len(columns) > 20 else ''})")
    if len(df) == 0:
        raise DataError(f"{path} has a header but no rows")
    if groups_column is not None and (groups_column not in columns or groups_column == target_column):
        close = difflib.get_close_matches(groups_column, columns, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise DataError(f"{path} has no column {groups_column!r} for --groups{hint} (columns: "
                        f"{', '.join(columns[:20])}{' ...' if len(columns) > 20 else ''})")
    split_col = next((c for c in columns if c.lower() == "split" and c != target_column), None)
    split_of = _split_column(df[split_col], path) if split_col else np.array(["train"] * len(df))
    group_ids = df[groups_column].astype(str).to_numpy() if groups_column else None
    feature_df = df.drop(columns=[target_column] + ([split_col] if split_col else [])
                         + ([groups_column] if groups_column else []))
    if feature_df.shape[1] == 0:
        raise DataError(f"{path} has no columns besides the target {target_column!r}")
    X, names, notes, row_notes = _encode_features(feature_df)
    y, task, class_names = encode_labels(df[target_column].to_numpy(), f"column {target_column!r}")
    splits: dict[str, tuple[Any, Any]] = {}
    groups: dict[str, np.ndarray] = {}
    row_notes_by_split: dict[str, dict[int, str]] = {}
    for split in ("train", "val", "test"):
        rows = np.flatnonzero(split_of == split)
        if not len(rows):
            continue
        if group_ids is not None:
            groups[split] = group_ids[rows]
        ys = y[rows]
        ys_t = ys.astype(np.float32) if task == "regression" or np.isnan(ys).any() \
            else ys.astype(np.int64)
        splits[split] = (X[rows], ys_t)
        local = {int(i): row_notes[int(r)] for i, r in enumerate(rows) if int(r) in row_notes}
        if local:
            row_notes_by_split[split] = local
    if "train" not in splits:
        raise DataError(f"{path}: the split column {split_col!r} marks no row as train")
    notes.insert(0, f"read {len(df)} rows from {path.name}; target {target_column!r} "
                    f"({task}{', ' + str(len(class_names)) + ' classes' if class_names else ''}); "
                    f"{X.shape[1]} input features from {feature_df.shape[1]} columns"
                    + (f"; rows split by column {split_col!r}" if split_col else "")
                    + (f"; groups from column {groups_column!r}" if groups_column else ""))
    options: dict[str, Any] = {"data_feature_names": names, "data_notes": notes,
                               "data_row_notes": row_notes_by_split}
    if class_names:
        options["data_class_names"] = class_names
    return _experiment(splits, task, path.stem, options, groups), path.stem


def _split_column(col: Any, path: Path) -> np.ndarray:
    values = col.astype(str).str.strip().str.lower().to_numpy()
    mapped = np.array([SPLIT_NAMES.get(v, "?") for v in values])
    bad = sorted(set(values[mapped == "?"]))
    if bad:
        raise DataError(f"{path}: the split column holds {', '.join(map(repr, bad[:5]))}; "
                        f"valid values are {', '.join(sorted(SPLIT_NAMES))}")
    return mapped


def _encode_features(df: Any) -> tuple[np.ndarray, list[str], list[str], dict[int, str]]:
    """Numbers for every row: numeric columns as they are; text columns that are mostly
    numbers with stray strings become numbers with NaN where the strings were (reported per
    row); categorical text columns are one-hot encoded; identifier-like ones are dropped."""
    import pandas as pd

    blocks: list[np.ndarray] = []
    names: list[str] = []
    notes: list[str] = []
    row_notes: dict[int, str] = {}
    n = len(df)
    for col in df.columns:
        s = df[col]
        if pd.api.types.is_bool_dtype(s):
            blocks.append(s.to_numpy(dtype=np.float32)[:, None])
            names.append(col)
            continue
        if pd.api.types.is_numeric_dtype(s):
            blocks.append(s.to_numpy(dtype=np.float32, na_value=np.nan)[:, None])
            names.append(col)
            missing = int(s.isna().sum())
            if missing:
                notes.append(f"column {col!r}: {missing} missing value(s)")
                for r in np.flatnonzero(s.isna().to_numpy())[:10_000]:
                    row_notes[int(r)] = _join(row_notes.get(int(r)), f"{col!r} is missing")
            continue
        text = s.astype("string")
        nums = pd.to_numeric(text.str.strip(), errors="coerce")
        present = text.notna() & (text.str.strip() != "")
        stray = present & nums.isna()
        if present.sum() and (nums.notna().sum() / present.sum()) >= 0.9:
            blocks.append(nums.to_numpy(dtype=np.float32, na_value=np.nan)[:, None])
            names.append(col)
            examples = sorted(set(text[stray].tolist()))[:5]
            notes.append(f"column {col!r} holds numbers, but {int(stray.sum())} value(s) are "
                         f"not numbers ({', '.join(map(repr, examples))}): read as missing")
            for r in np.flatnonzero(stray.to_numpy())[:10_000]:
                row_notes[int(r)] = _join(row_notes.get(int(r)), f"{col!r} holds "
                                          f"{text.iloc[int(r)]!r} where a number is expected")
            for r in np.flatnonzero((~present).to_numpy())[:10_000]:
                row_notes[int(r)] = _join(row_notes.get(int(r)), f"{col!r} is missing")
            continue
        values = text.fillna("<missing>").to_numpy(dtype=object)
        counts = Counter(values)
        if len(counts) > MAX_CATEGORIES and len(counts) > ID_UNIQUE_FRACTION * n:
            notes.append(f"column {col!r} has {len(counts)} distinct text values in {n} rows: "
                         "treated as an identifier and left out")
            continue
        keep = [v for v, _ in counts.most_common(MAX_CATEGORIES)]
        other = len(counts) > len(keep)
        onehot = np.zeros((n, len(keep) + int(other)), dtype=np.float32)
        lookup = {v: i for i, v in enumerate(keep)}
        idx = np.array([lookup.get(v, len(keep)) for v in values])
        onehot[np.arange(n), idx] = 1.0
        blocks.append(onehot)
        names += [f"{col}={v}" for v in keep] + ([f"{col}=<other>"] if other else [])
        notes.append(f"column {col!r}: text with {len(counts)} distinct values, one-hot "
                     f"encoded" + (f" (the {len(counts) - len(keep)} rarest as <other>)"
                                   if other else ""))
    if not blocks:
        raise DataError("no usable input columns: every column besides the target looks like "
                        "an identifier")
    return np.concatenate(blocks, axis=1), names, notes, row_notes


def _join(a: str | None, b: str) -> str:
    return b if not a else f"{a}; {b}"


# ------------------------------------------------------------- image folder


class ImageFolderDataset(Dataset):
    """``(image, class)`` pairs from files; images as float32 (C, H, W) in [0, 1].

    Every image is converted to ``mode`` and resized to ``size`` (the most common ones), so
    a few odd files do not stop batching; a file that cannot be decoded raises in
    ``__getitem__`` and is reported by corrupt-samples with its path."""

    def __init__(self, paths: list[Path], labels: list[int], size: tuple[int, int], mode: str
                 ) -> None:
        self.paths = [str(p) for p in paths]
        self.labels = labels
        self.size = size
        self.mode = mode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        with Image.open(self.paths[i]) as im:
            im = im.convert(self.mode)
            if im.size != self.size:
                im = im.resize(self.size, Image.BILINEAR)
            arr = np.asarray(im, dtype=np.float32) / 255.0
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(arr)), self.labels[i]


def from_image_folder(root: Path) -> tuple[Experiment, str]:
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    split_dirs = {SPLIT_NAMES[p.name.lower()]: p for p in subdirs if p.name.lower() in SPLIT_NAMES}
    if split_dirs and "train" not in split_dirs:
        raise DataError(f"{root} has {', '.join(p.name for p in split_dirs.values())} folders "
                        "but no train/ folder")
    layout = split_dirs or {"train": root}
    files: dict[str, list[tuple[Path, str]]] = {}
    for split, folder in layout.items():
        classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        items = [(f, c.name) for c in classes for f in sorted(c.rglob("*"))
                 if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
        if not items:
            raise DataError(f"{folder} holds no images in class folders; expected "
                            f"{folder}/CLASS_NAME/*.png (or .jpg, .jpeg, .bmp, .gif, .webp)")
        files[split] = items
    class_names = sorted({c for items in files.values() for _, c in items})
    lookup = {c: i for i, c in enumerate(class_names)}
    sizes: Counter = Counter()
    modes: Counter = Counter()
    unreadable: set[Path] = set()
    header: dict[Path, tuple[tuple[int, int], str]] = {}
    from PIL import Image

    for items in files.values():
        for f, _ in items:
            try:
                with Image.open(f) as im:
                    header[f] = (im.size, im.mode)
            except Exception:  # noqa: BLE001 - reported per file by corrupt-samples
                unreadable.add(f)
                continue
            sizes[im.size] += 1
            modes["L" if im.mode in ("L", "1", "I", "I;16", "F") else "RGB"] += 1
    if not sizes:
        raise DataError(f"{root}: none of the {sum(len(v) for v in files.values())} image files "
                        "could be opened")
    size = sizes.most_common(1)[0][0]
    mode = modes.most_common(1)[0][0]
    datasets: dict[str, Dataset] = {}
    for split, items in files.items():
        # readable files first, so that the first sample (which validation reads) loads
        items = sorted(items, key=lambda it: it[0] in unreadable)
        datasets[split] = ImageFolderDataset([f for f, _ in items], [lookup[c] for _, c in items],
                                             size, mode)
    notes = [f"read {sum(len(v) for v in files.values())} images of {len(class_names)} classes "
             f"from {root} as {mode} {size[0]}x{size[1]}, pixel values scaled to [0, 1]"]
    resized = sum(n for s, n in sizes.items() if s != size)
    if resized:
        notes.append(f"{resized} image(s) of another size were resized to {size[0]}x{size[1]} "
                     f"(sizes seen: {', '.join(f'{w}x{h}' for (w, h), _ in sizes.most_common(5))})")
    if len(modes) > 1:
        notes.append(f"mixed colour modes ({', '.join(modes)}): all converted to {mode}")
    if unreadable:
        notes.append(f"{len(unreadable)} file(s) could not be opened (see corrupt-samples)")
    options = {"data_class_names": class_names, "data_notes": notes}
    name = root.resolve().name or "images"
    return _experiment(datasets, "classification", name, options), name
