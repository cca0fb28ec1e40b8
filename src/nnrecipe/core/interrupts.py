"""Stopping on request without losing work: Ctrl-C (SIGINT) and SIGTERM (what SLURM,
Kubernetes and docker send) both become :class:`Interrupted`, a ``KeyboardInterrupt``.

The trainer catches it where it can keep the partial run (``fit(keep_on_interrupt=True)``):
the history so far comes back with ``stopped_reason`` saying where it stopped, the check
finishes its diagnosis, and the runner then stops the remaining checks as "interrupted";
the CLI writes the findings, the report and the best checkpoint so far, and exits with
128 + the signal number (130 for SIGINT, 143 for SIGTERM). A *second* signal means "now":
:func:`graceful_signals` then exits at once with the same status, writing nothing more.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

_CLEANUPS: list[Callable[[], None]] = []  # run before a hard exit (e.g. release the lock)
_SHIELD: dict[str, list[int] | None] = {"pending": None}  # inside shield(): signals held back


class Interrupted(KeyboardInterrupt):
    """A stop asked from outside the process, carrying the signal that asked."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal_name(signum))
        self.signum = int(signum)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def signum_of(exc: BaseException) -> int:
    """The signal behind a KeyboardInterrupt (a plain one is Ctrl-C)."""
    return int(getattr(exc, "signum", signal.SIGINT))


def exit_status(signum: int) -> int:
    """The shell's convention for a process ended by a signal: 128 + its number."""
    return 128 + int(signum)


@dataclass
class Interruption:
    """Recorded on the Context when a run was asked to stop (``ctx.interruption``)."""

    signum: int
    where: str = ""  # e.g. "at epoch 3 of 50 (step 141)"

    @property
    def signal(self) -> str:
        return signal_name(self.signum)

    def describe(self) -> str:
        what = "Ctrl-C (SIGINT)" if self.signum == signal.SIGINT else self.signal
        return f"interrupted by {what}" + (f" {self.where}" if self.where else "")


def on_hard_exit(cleanup: Callable[[], None]) -> Callable[[], None]:
    """Register ``cleanup`` to run if a second signal ends the process at once; returns a
    function that unregisters it."""
    _CLEANUPS.append(cleanup)

    def remove() -> None:
        with contextlib.suppress(ValueError):
            _CLEANUPS.remove(cleanup)

    return remove


@contextlib.contextmanager
def graceful_signals(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
                     ) -> Iterator[None]:
    """Within the block, the first SIGINT/SIGTERM raises :class:`Interrupted` (a clean stop
    that keeps what was done); a second one ends the process immediately with 128 + signum.
    Outside the main thread (where handlers cannot be installed) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) > 1:
            _hard_exit(signum, exit_status(received[0]))
        pending = _SHIELD["pending"]
        if pending is not None:  # finishing what must not be cut (the outputs): later
            pending.append(signum)
            return
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _hard_exit(signum: int, status: int) -> None:
    for cleanup in list(_CLEANUPS):
        with contextlib.suppress(Exception):
            cleanup()
    with contextlib.suppress(OSError):
        if os.isatty(2):
            os.write(2, b"\x1b[?25h")  # a progress display may have hidden the cursor
        os.write(2, f"\nnnrecipe: {signal_name(signum)} again: stopped at once, nothing "
                    "more written\n".encode())
    os._exit(status)


@contextlib.contextmanager
def shield() -> Iterator[list[int]]:
    """Hold a first SIGINT/SIGTERM back until the block is done (writing the outputs: they
    are what the interrupt is meant to keep); the list it yields collects the signals held
    back. A second signal still ends the process at once."""
    previous = _SHIELD["pending"]
    held: list[int] = []
    _SHIELD["pending"] = held
    try:
        yield held
    finally:
        _SHIELD["pending"] = previous
