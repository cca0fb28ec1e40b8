"""The registry of the real-world corpus: real bugs and real healthy programs, each ported to
offline data and citing where it was reported.

A case is one function ``(seed) -> Experiment`` (run through ``nnrecipe.run`` with the
stages it names) or ``(seed, watch_kwargs) -> None`` for a hand-written loop that attaches
``nnrecipe.watch(model, optimizer, **watch_kwargs)`` itself (``mode="watch"``). Decorate it
with :func:`bug` or :func:`healthy`; the docstring's first paragraph says what was ported.

Scoring (``benchmarks/realworld.py``):
- a bug is *detected* when any finding at warning or error fires;
- its cause is *right* when one of ``cause`` (the codes a perfect tool would name, decided
  from the bug before running nnrecipe) fires at warning or error;
- a healthy program is a *false alarm* when anything fires at warning or error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["bug", "healthy"]
Mode = Literal["run", "watch"]
# nnrecipe.run stages for mode="run": the check command's stages plus training by default
DEFAULT_STAGES = ("data", "skeleton", "train")


@dataclass(frozen=True)
class Case:
    name: str
    kind: Kind
    build: Callable[..., Any]
    source: str  # where it was reported: "owner/repo#123", a PR, or the thread's address
    symptom: str  # what the user reported, in our words
    cause: frozenset[str]  # bug: the codes naming the right cause; healthy: empty
    note: str  # what was ported (the docstring's first paragraph)
    mode: Mode = "run"
    stages: tuple[str, ...] = DEFAULT_STAGES


CASES: dict[str, Case] = {}


def _register(kind: Kind, source: str, symptom: str, cause: tuple[str, ...], mode: Mode,
              stages: tuple[str, ...]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        name = fn.__name__.replace("_", "-")
        if name in CASES:
            raise ValueError(f"duplicate real-world case {name!r}")
        if kind == "bug" and not cause:
            raise ValueError(f"bug {name!r} declares no cause codes")
        if not source.strip() or not symptom.strip():
            raise ValueError(f"case {name!r} needs its source and the reported symptom")
        note = " ".join((fn.__doc__ or "").strip().split("\n\n")[0].split())
        CASES[name] = Case(name, kind, fn, source, symptom, frozenset(cause), note, mode,
                           stages)
        return fn
    return register


def bug(*, source: str, symptom: str, cause: tuple[str, ...], mode: Mode = "run",
        stages: tuple[str, ...] = DEFAULT_STAGES
        ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a real bug: ``cause`` lists the finding codes that name it."""
    return _register("bug", source, symptom, cause, mode, stages)


def healthy(*, source: str, symptom: str = "canonical example, trains as published",
            mode: Mode = "run", stages: tuple[str, ...] = DEFAULT_STAGES
            ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a real healthy program (a canonical example ported offline)."""
    return _register("healthy", source, symptom, (), mode, stages)
