"""What every data check shares: the stage, the cached view, and how samples are named."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from nnrecipe.core.context import Context
from nnrecipe.core.registry import Check
from nnrecipe.data.view import DataView, SplitView, ViewUnavailable, get_view, require_train

MAX_LISTED = 50  # sample references kept in a finding's evidence (the tables hold more)


_LIBC: Any = None


def release_memory() -> None:
    """Hand memory the last step freed back to the operating system. glibc keeps freed blocks
    below its adaptive mmap threshold (up to 32 MB) in its heap, and the data stage's chunked
    temporaries are just that size: measured on float32 1.6M x 64, RSS stayed at 3.2x the data
    after data-duplicates although the live arrays came to ~1.4x; on 200k x 64, malloc_trim
    took RSS from 4.5x to 2.3x. Elsewhere (other C libraries, other systems) a no-op."""
    global _LIBC
    if _LIBC is None:
        _LIBC = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                libc = ctypes.CDLL("libc.so.6")
                _LIBC = libc if hasattr(libc, "malloc_trim") else False
            except OSError:
                pass
    if _LIBC:
        _LIBC.malloc_trim(0)


class DataCheck(Check):
    """Base of the data checks: skips when the training split has nothing usable."""

    stage = "data"

    def applies(self, ctx: Context) -> str | None:
        release_memory()  # what the previous check freed, before this one allocates
        try:
            view = get_view(ctx)
        except ViewUnavailable as e:
            return f"the data could not be read ({e}); see data-overview"
        return require_train(view) or self.applies_to(view)

    def applies_to(self, view: DataView) -> str | None:
        return None

    def view(self, ctx: Context) -> DataView:
        return get_view(ctx)


def too_few(n: int, minimum: int, what: str) -> str | None:
    """The reason to skip when only ``n`` usable samples exist and ``minimum`` are needed."""
    if n >= minimum:
        return None
    return (f"only {n} usable {what} sample{'s' if n != 1 else ''}; this check needs at least "
            f"{minimum}")


class CrossSplitCheck(DataCheck):
    """Base of the data checks that compare val/test with train: skips without a second split."""

    def applies_to(self, view: DataView) -> str | None:
        if len(view.splits) < 2:
            return "there is only a training split"
        return None


def ref(sv: SplitView, pos: int) -> str:
    """How a row is named to the user: ``train[123]`` with the dataset's own index."""
    return f"{sv.name}[{int(sv.index[pos])}]"


def refs(sv: SplitView, positions: Any, limit: int = MAX_LISTED) -> list[str]:
    return [ref(sv, int(p)) for p in list(positions)[:limit]]


def fmt_list(items: list[str], limit: int = 5) -> str:
    head = ", ".join(items[:limit])
    return head + (f" and {len(items) - limit} more" if len(items) > limit else "")


def pct(x: float) -> str:
    return f"{100 * x:.2g}%" if x < 0.1 else f"{100 * x:.0f}%"


def subsample(positions: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """At most ``limit`` of ``positions``, a seeded random sorted subset."""
    if len(positions) <= limit:
        return positions
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(positions, limit, replace=False))


def one_blas_thread() -> Any:
    """Run BLAS single-threaded inside the block. The data stage's matrices are small enough
    that threads gain little, and on a busy machine OpenBLAS's spinning threads make a
    1,800-sample logistic regression 70x slower (14.7 s vs 0.21 s measured with the test
    suite running alongside)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")
