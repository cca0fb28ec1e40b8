"""What a lab topic is: measure -> decide -> draw, with the numbers saved in between.

A topic's ``measure(lab, **sizes)`` runs the seeded experiment for ONE seed and returns plain
numbers (JSON-serialisable); ``conclude(numbers)`` is a pure function that reads them and says
what was observed and whether the run shows the effect the topic is about — as a list of
:class:`Criterion` (a measured quantity against the line it must clear) — and says so when it
does not; ``draw(numbers)`` turns the same numbers into figures.

The page is decided over several seeds (``nnrecipe.lab.spread``): ``measure`` runs once per
seed, the seeds' numbers are folded into one tree of the same shape whose numbers are means
that carry their per-seed values (``Spread``, ``Band``), ``conclude`` and ``draw`` read that
tree (so the text quotes means ± spreads and the plots draw bands), and each criterion must
clear its line by more than its seed-to-seed spread. Tests call ``measure`` and ``conclude``
on one seed directly.
"""

from __future__ import annotations

import math
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
class Criterion:
    """One quantity a conclusion rests on, against the line it must clear: ``value op
    threshold`` with ``op`` ``">"`` or ``"<"``. A yes/no condition is a value of 1 or 0 against
    0.5. ``value`` may be a ``Spread`` (a mean over seeds); then the criterion holds only when
    the mean clears the line by more than one standard deviation across seeds (for a yes/no
    condition: on every seed). A ratio (``log=True``, a positive value against a positive line)
    is judged on the log scale: its geometric mean must clear the line by more than one
    standard deviation of the log values (a ratio of 10 on one seed and 100 on another is one
    effect, not a noisy one)."""

    name: str
    value: float
    op: str
    threshold: float
    log: bool = False

    def __post_init__(self) -> None:
        if self.op not in (">", "<"):
            raise ValueError(f"criterion {self.name!r}: op must be '>' or '<', not {self.op!r}")
        if self.log and not self.threshold > 0:
            raise ValueError(f"criterion {self.name!r}: a ratio needs a positive line")

    def _values(self) -> list[float]:
        vals = getattr(self.value, "values", None)
        return [float(v) for v in vals] if vals is not None else [float(self.value)]

    def _scaled(self) -> list[float]:
        if not self.log:
            return self._values()
        return [math.log(v) if v > 0 else -math.inf for v in self._values()]

    @property
    def center(self) -> float:
        """The mean (the geometric mean for a ratio) over the seeds."""
        vals = self._scaled()
        if any(math.isnan(v) for v in vals):
            return math.nan
        m = math.fsum(vals) / len(vals) if all(math.isfinite(v) for v in vals) else \
            (math.inf if all(v == math.inf for v in vals) else
             -math.inf if all(v == -math.inf for v in vals) else math.nan)
        if not self.log or math.isnan(m):
            return m
        return math.exp(m) if math.isfinite(m) else (math.inf if m > 0 else 0.0)

    @property
    def sd(self) -> float:
        """Standard deviation over the seeds (of the logs for a ratio); 0 for one value."""
        vals = self._scaled()
        if len(vals) < 2:
            return 0.0
        if not all(math.isfinite(v) for v in vals):
            return math.inf
        m = math.fsum(vals) / len(vals)
        return math.sqrt(math.fsum((v - m) ** 2 for v in vals) / (len(vals) - 1))

    @property
    def margin(self) -> float:
        """How far the value is past its line, less one spread (> 0: the criterion holds);
        in log units for a ratio."""
        vals = self._scaled()
        if any(math.isnan(v) for v in vals):
            return -math.inf
        line = math.log(self.threshold) if self.log else self.threshold
        if not all(math.isfinite(v) for v in vals):
            good = math.inf if self.op == ">" else -math.inf
            if all(v == good for v in vals):
                return math.inf
            if len(vals) == 1 or any(v == -good for v in vals):
                return -math.inf
            return -math.inf  # finite on some seeds, infinite on others: no spread to clear
        m = math.fsum(vals) / len(vals)
        past = m - line if self.op == ">" else line - m
        return past - self.sd

    @property
    def holds(self) -> bool:
        return self.margin > 0


# The constructors a topic's ``conclude`` uses take the value as a plain number (a mean, when
# ``conclude`` reads numbers folded over seeds): the spread is judged once, by
# ``spread.decide``, on the criterion's value measured on each seed.
def above(name: str, value: float, threshold: float) -> Criterion:
    return Criterion(name, float(value), ">", threshold)


def below(name: str, value: float, threshold: float) -> Criterion:
    return Criterion(name, float(value), "<", threshold)


def ratio_above(name: str, value: float, threshold: float) -> Criterion:
    """A ratio that must exceed ``threshold`` (judged on the log scale over seeds)."""
    return Criterion(name, float(value), ">", threshold, log=True)


def ratio_below(name: str, value: float, threshold: float) -> Criterion:
    return Criterion(name, float(value), "<", threshold, log=True)


def check(name: str, ok: bool | float) -> Criterion:
    """A yes/no condition (1 or 0 against 0.5; over seeds, the fraction of seeds where it held)."""
    return Criterion(name, float(ok), ">", 0.5)


@dataclass
class Conclusion:
    """What the numbers say. ``shown`` is False when the run did not reproduce the effect.
    ``criteria`` are what ``shown`` was decided on (empty for a topic that decides otherwise);
    ``seeds`` the seeds behind it (set when decided over several)."""

    shown: bool
    text: str
    observations: list[str] = field(default_factory=list)
    criteria: list[Criterion] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)


def decided(criteria: list[Criterion]) -> bool:
    return bool(criteria) and all(c.holds for c in criteria)


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
