"""Run a topic's measurement once per test module (seeded, RNG restored)."""

from __future__ import annotations

from typing import Any

from nnrecipe.core.seeding import seeded
from nnrecipe.lab import Conclusion, Lab, Numbers, get_topic


def measure(name: str, seed: int = 0, **sizes: Any) -> tuple[Numbers, Conclusion]:
    topic = get_topic(name)
    with seeded(seed):
        numbers = topic.measure(Lab(seed=seed), **sizes)
    return numbers, topic.conclude(numbers)
