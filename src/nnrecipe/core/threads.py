"""How many intra-op threads torch uses while nnrecipe works: one policy for the CLI and the
Python API (``nnrecipe.run``, ``nnrecipe.lr_find``).

nnrecipe's work is many small training runs, where torch's intra-op threads cost more than they
give on a busy machine: `tune --trials 4` on the digits demo took 7 min wall with torch's
default 2 threads on 2 loaded cores and 24 s with one; ``lr_find`` on the demo CNN 95 s against
10 s, with the same answer (measured). So nnrecipe uses half the cores, at most 8, unless told
otherwise:

- ``NNRECIPE_THREADS=N`` uses N threads; ``NNRECIPE_THREADS=keep`` leaves torch's setting alone;
- ``OMP_NUM_THREADS`` set (and no ``NNRECIPE_THREADS``) is taken as the user's choice: kept;
- ``threads=`` given to the API call wins over both.

The API restores the previous thread count when the call returns (the user's process is the
user's); the CLI sets it once for its own process. Importing this module does not import torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

MAX_THREADS = 8  # beyond 8, intra-op threads did not speed up the demo's small models (reasoning:
# per-op work of a 40k-parameter CNN is far below what 8 threads can split)


def policy_threads(threads: int | None = None) -> int | None:
    """The thread count the policy asks for, or None to leave torch's setting as it is."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads}")
        return threads
    wanted = os.environ.get("NNRECIPE_THREADS", "").strip().lower()
    if wanted == "keep":
        return None
    if wanted:
        if not wanted.isdigit() or int(wanted) < 1:
            from nnrecipe.errors import ConfigurationError

            raise ConfigurationError(f"NNRECIPE_THREADS must be a positive integer or 'keep', "
                                     f"got {wanted!r}")
        return int(wanted)
    if "OMP_NUM_THREADS" in os.environ:
        return None
    return min(MAX_THREADS, max(1, (os.cpu_count() or 2) // 2))


def apply_thread_policy(threads: int | None = None) -> int | None:
    """Set torch's intra-op threads by the policy (for the CLI's own process); returns the
    number set, or None when left alone."""
    n = policy_threads(threads)
    if n is not None:
        import torch

        torch.set_num_threads(n)
    return n


@contextmanager
def thread_policy(threads: int | None = None) -> Iterator[int | None]:
    """The policy for the length of a ``with`` block; the previous count is restored after."""
    n = policy_threads(threads)
    if n is None:
        yield None
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)
