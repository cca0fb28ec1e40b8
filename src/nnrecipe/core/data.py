"""Turning what users pass as data into torch datasets and tensors.

Users pass torch ``Dataset``s of ``(input, target)`` pairs or ``(X, y)`` arrays. Everything
downstream sees a ``Dataset``; checks that need the whole split as tensors call
:func:`stack_split`, which names the failing index instead of raising a bare error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from nnrecipe.errors import DataError


def to_tensor(value: Any, *, what: str) -> torch.Tensor:
    """Convert an array-like to a tensor: floats become float32, integers int64."""
    if isinstance(value, torch.Tensor):
        t = value
    else:
        arr = np.asarray(value)
        if arr.dtype == object or arr.dtype.kind in "USO":
            raise DataError(f"{what} holds non-numeric values (dtype {arr.dtype}); "
                            "encode strings/categories as numbers first")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_floating_point():
        return t.float()
    if t.dtype == torch.bool:
        return t.long()
    if t.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64):
        return t.long()
    return t


def as_dataset(data: Any, split: str) -> Dataset:
    """A ``Dataset`` for what the user passed as ``split``."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        X = to_tensor(data[0], what=f"{split} X")
        y = to_tensor(data[1], what=f"{split} y")
        if len(X) != len(y):
            raise DataError(f"{split}: X has {len(X)} samples but y has {len(y)}")
        if len(X) == 0:
            raise DataError(f"{split} is empty")
        if X.dtype == torch.long:
            pass  # token ids: leave as integers
        return TensorDataset(X, y)
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        return data  # a map-style dataset that does not subclass Dataset
    raise DataError(f"{split} must be a torch Dataset or an (X, y) pair of arrays, "
                    f"got {type(data).__name__}")


def dataset_len(ds: Any, split: str) -> int:
    try:
        return len(ds)
    except TypeError as e:
        raise DataError(f"{split} has no length; nnrecipe needs a map-style Dataset") from e


def get_sample(ds: Any, index: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``index`` as an ``(input, target)`` pair of tensors, or a clear DataError."""
    try:
        item = ds[index]
    except Exception as e:  # the user's __getitem__ may raise anything
        raise DataError(f"{split}[{index}] could not be loaded: {type(e).__name__}: {e}") from e
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise DataError(f"{split}[{index}] is a {type(item).__name__}; nnrecipe expects "
                        "(input, target) pairs")
    x, y = item[0], item[1]
    return (to_tensor(x, what=f"{split}[{index}] input"), to_tensor(y, what=f"{split}[{index}] target"))


def stack_split(ds: Any, split: str, indices: Sequence[int] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (a subset of) a dataset into ``X, y`` tensors, naming the sample that breaks it."""
    if isinstance(ds, TensorDataset) and len(ds.tensors) >= 2:
        X, y = ds.tensors[0], ds.tensors[1]
        if indices is None:
            return X, y
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return X[idx], y[idx]
    n = dataset_len(ds, split)
    if n == 0:
        raise DataError(f"{split} is empty")
    idxs = range(n) if indices is None else indices
    xs, ys = [], []
    first_shape: tuple[int, ...] | None = None
    for i in idxs:
        x, y = get_sample(ds, int(i), split)
        if first_shape is None:
            first_shape = tuple(x.shape)
        elif tuple(x.shape) != first_shape:
            raise DataError(f"{split}[{i}] has input shape {tuple(x.shape)}, but earlier samples "
                            f"have {first_shape}; pad or resize samples to one shape")
        xs.append(x)
        ys.append(y)
    return torch.stack(xs), torch.stack(ys)
