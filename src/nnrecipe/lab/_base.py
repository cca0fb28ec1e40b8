"""What a lab topic is: measure -> decide -> draw, with the numbers saved in between.

A topic's ``measure(lab, **sizes)`` runs the seeded experiment and returns plain numbers
(JSON-serialisable); ``conclude(numbers)`` is a pure function that reads them and says what
was observed and whether the run shows the effect the topic is about (it says so when it does
not); ``draw(numbers)`` turns the same numbers into figures. Tests call ``measure`` and
``conclude`` directly; the page is written from the same three calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure

from nnrecipe.core.progress import NullProgress, ProgressSink, Task

Numbers = dict[str, Any]


@dataclass
class Lab:
    """What a topic's experiment may use: its seed and a progress sink."""

    seed: int = 0
    progress: ProgressSink = field(default_factory=NullProgress)

    def task(self, description: str, total: int | None = None) -> Task:
        return Task(self.progress, description, total)


@dataclass
class Conclusion:
    """What the numbers say. ``shown`` is False when the run did not reproduce the effect."""

    shown: bool
    text: str
    observations: list[str] = field(default_factory=list)


@dataclass
class Plot:
    title: str
    figure: Figure
    caption: str = ""


@dataclass(frozen=True)
class Topic:
    name: str
    question: str  # the question the topic answers, in one line
    questions: tuple[int, ...]  # the seed's question numbers
    codes: tuple[str, ...]  # finding codes that catch the same thing in a user's run
    advice: str  # what nnrecipe does about it in a user's run (detector / computed advice)
    setup: str  # what is run, in a sentence or two
    measure: Callable[..., Numbers]
    conclude: Callable[[Numbers], Conclusion]
    draw: Callable[[Numbers], list[Plot]]
    table: Callable[[Numbers], tuple[list[str], list[list[Any]]] | None] | None = None


TOPICS: dict[str, Topic] = {}


def register(topic: Topic) -> Topic:
    if topic.name in TOPICS:
        raise ValueError(f"lab topic {topic.name!r} registered twice")
    TOPICS[topic.name] = topic
    return topic


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start
