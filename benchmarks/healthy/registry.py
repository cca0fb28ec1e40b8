"""The registry of healthy setups: a name, a factory ``(seed) -> Experiment`` and flags."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nnrecipe import Experiment

Factory = Callable[[int], Experiment]


@dataclass(frozen=True)
class Setup:
    name: str
    build: Factory
    note: str  # what the setup covers (its docstring's first paragraph)
    watch: bool = False  # also run in a plain hand-written loop under nnrecipe.watch()
    quick: bool = False  # in the --quick subset


SETUPS: dict[str, Setup] = {}


def healthy(*, watch: bool = False, quick: bool = False) -> Callable[[Factory], Factory]:
    """Register a setup under its function's name (underscores become dashes)."""
    def register(fn: Factory) -> Factory:
        name = fn.__name__.replace("_", "-")
        if name in SETUPS:
            raise ValueError(f"duplicate healthy setup {name!r}")
        note = " ".join((fn.__doc__ or "").strip().split("\n\n")[0].split())
        SETUPS[name] = Setup(name, fn, note, watch, quick)
        return fn
    return register
