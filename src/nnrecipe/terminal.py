"""What the CLI draws while a run goes on: the runner's progress events (see
:mod:`nnrecipe.core.progress`) on a terminal, or as plain periodic lines in a CI log.

- On a terminal (stderr is a TTY): a rich progress display, the running check and its long
  tasks, each with its count, the current training loss (the mean of the last
  :data:`LOSS_WINDOW` steps), steps/s and the time left; one line per finished check stays.
- Piped (a CI log, ``2> file``): rich draws nothing until the end there, so one plain line per
  finished check and, during long tasks, one progress line at most every
  :data:`PLAIN_INTERVAL_S` seconds.

Only the CLI uses this module (library code never writes to the terminal).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

LOSS_WINDOW = 20  # steps in the shown loss: one step's loss is too noisy to read (Lightning's
# progress bar also showed a running mean of the last 20 steps)
PLAIN_INTERVAL_S = 5.0  # a CI log gets a progress line at most this often: a few lines per
# minute of training is enough to see it moving without drowning the check results
STATUS_STYLE = {"passed": "green", "info": "blue", "warning": "yellow", "error": "red",
                "crashed": "magenta"}


def _fmt_loss(loss: float | None) -> str:
    if loss is None:
        return ""
    return f"{loss:.4g}" if loss == loss else "nan"


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class _RateColumn(ProgressColumn):
    """steps/s (blank until rich has measured a speed)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.1f} steps/s", style="progress.data.speed")


class _EtaColumn(ProgressColumn):
    """Time left, for tasks with a known total (blank for the running check)."""

    def render(self, task: Task) -> Text:
        left = task.time_remaining
        if task.total is None or left is None:
            return Text("")
        return Text(f"eta {_fmt_eta(left)}", style="progress.remaining")


class _LossColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        loss = task.fields.get("loss")
        return Text(f"loss {_fmt_loss(loss)}" if loss is not None else "", style="cyan")


class RichProgress:
    """The runner's progress on a terminal, drawn by rich on ``console`` (stderr)."""

    def __init__(self, console: Console, quiet: bool = False) -> None:
        self.quiet = quiet
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=24),
                                 MofNCompleteColumn(), _LossColumn(), _RateColumn(),
                                 TimeElapsedColumn(), _EtaColumn(),
                                 console=console, transient=True, disable=quiet)
        self._check: Any = None
        self._tasks: list[tuple[Any, deque[float]]] = []

    def __enter__(self) -> RichProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def check_started(self, stage: str, check: str, title: str) -> None:
        self._check = self.progress.add_task(f"[{stage}] {check}", total=None)

    def check_finished(self, stage: str, check: str, status: str) -> None:
        if self._check is not None:
            self.progress.remove_task(self._check)
            self._check = None
        if not self.quiet:
            style = STATUS_STYLE.get(status, "dim")
            self.progress.console.print(f"  [{style}]{status:>8}[/] {stage}/{check}")

    def task_started(self, description: str, total: int | None) -> None:
        tid = self.progress.add_task(f"    {description}", total=total, loss=None)
        self._tasks.append((tid, deque(maxlen=LOSS_WINDOW)))

    def task_advanced(self, advance: int = 1, description: str | None = None) -> None:
        if self._tasks:
            kwargs = {"description": f"    {description}"} if description else {}
            self.progress.update(self._tasks[-1][0], advance=advance, **kwargs)

    def task_loss(self, loss: float) -> None:
        if self._tasks:
            tid, window = self._tasks[-1]
            window.append(float(loss))
            self.progress.update(tid, loss=sum(window) / len(window))

    def task_finished(self) -> None:
        if self._tasks:
            self.progress.remove_task(self._tasks.pop()[0])


@dataclass
class _PlainTask:
    description: str
    total: int | None
    started: float
    completed: int = 0
    losses: deque[float] = field(default_factory=lambda: deque(maxlen=LOSS_WINDOW))


class PlainProgress:
    """The runner's progress as plain lines, for a log: each finished check, and a line per
    long task at most every ``interval_s`` seconds (``clock`` is injectable for tests)."""

    def __init__(self, stream: IO[str], quiet: bool = False, interval_s: float = PLAIN_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream, self.quiet, self.interval_s, self.clock = stream, quiet, interval_s, clock
        self._stage_check = ""
        self._tasks: list[_PlainTask] = []
        self._last_line = -float("inf")

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.flush()

    def _write(self, line: str) -> None:
        if not self.quiet:
            self.stream.write(line + "\n")
            self.stream.flush()

    def check_started(self, stage: str, check: str, title: str) -> None:
        self._stage_check = f"{stage}/{check}"

    def check_finished(self, stage: str, check: str, status: str) -> None:
        self._write(f"  {status:>8} {stage}/{check}")

    def task_started(self, description: str, total: int | None) -> None:
        self._tasks.append(_PlainTask(description, total, self.clock()))

    def task_advanced(self, advance: int = 1, description: str | None = None) -> None:
        if not self._tasks:
            return
        task = self._tasks[-1]
        task.completed += advance
        if description:
            task.description = description
        now = self.clock()
        if now - self._last_line >= self.interval_s and now - task.started >= self.interval_s:
            self._last_line = now
            self._write(self.line(task, now))

    def task_loss(self, loss: float) -> None:
        if self._tasks:
            self._tasks[-1].losses.append(float(loss))

    def task_finished(self) -> None:
        if self._tasks:
            self._tasks.pop()

    def line(self, task: _PlainTask, now: float) -> str:
        elapsed = max(now - task.started, 1e-9)
        rate = task.completed / elapsed
        parts = [f"    [{self._stage_check}] {task.description}:"]
        if task.total:
            parts.append(f"{task.completed}/{task.total} ({100 * task.completed / task.total:.0f}%)")
        else:
            parts.append(f"{task.completed}")
        if task.losses:
            parts.append(f"loss {_fmt_loss(sum(task.losses) / len(task.losses))}")
        parts.append(f"{rate:.1f} steps/s")
        if task.total and rate > 0:
            parts.append(f"eta {_fmt_eta((task.total - task.completed) / rate)}")
        return " ".join(parts[:1]) + " " + ", ".join(parts[1:])


def make_progress(console: Console, quiet: bool = False) -> RichProgress | PlainProgress:
    """Rich on a terminal, plain periodic lines otherwise."""
    if console.is_terminal:
        return RichProgress(console, quiet)
    return PlainProgress(console.file, quiet)
