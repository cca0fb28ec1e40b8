"""Progress reporting without printing: the library calls a sink, the CLI draws it."""

from __future__ import annotations

from typing import Protocol


class ProgressSink(Protocol):
    def check_started(self, stage: str, check: str, title: str) -> None: ...
    def check_finished(self, stage: str, check: str, status: str) -> None: ...
    def task_started(self, description: str, total: int | None) -> None: ...
    def task_advanced(self, advance: int = 1, description: str | None = None) -> None: ...
    def task_finished(self) -> None: ...


class NullProgress:
    """The default sink: nothing is shown."""

    def check_started(self, stage: str, check: str, title: str) -> None:
        pass

    def check_finished(self, stage: str, check: str, status: str) -> None:
        pass

    def task_started(self, description: str, total: int | None) -> None:
        pass

    def task_advanced(self, advance: int = 1, description: str | None = None) -> None:
        pass

    def task_finished(self) -> None:
        pass


class Task:
    """A long piece of work inside a check: ``with ctx.task("LR sweep", 100) as t: t.advance()``."""

    def __init__(self, sink: ProgressSink, description: str, total: int | None) -> None:
        self._sink, self._description, self._total = sink, description, total

    def __enter__(self) -> Task:
        self._sink.task_started(self._description, self._total)
        return self

    def advance(self, n: int = 1, description: str | None = None, *,
                loss: float | None = None) -> None:
        """``loss``: the step's training loss, shown by sinks that have ``task_loss(loss)``
        (an optional method, so sinks written for the five methods above keep working)."""
        if loss is not None:  # first, so the progress line drawn on advancing includes it
            show = getattr(self._sink, "task_loss", None)
            if show is not None:
                show(loss)
        self._sink.task_advanced(n, description)

    def __exit__(self, *exc: object) -> None:
        self._sink.task_finished()
