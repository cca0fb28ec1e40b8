"""Run a topic's measurement (seeded, RNG restored).

The margins in these tests were chosen from repeated runs: ``NNRECIPE_LAB_SEED=3 pytest
tests/lab`` runs the whole suite on another seed (each test notes the spread it was tuned on).
"""

from __future__ import annotations

from typing import Any

from nnrecipe.core.seeding import seeded
from nnrecipe.lab import Conclusion, Lab, Numbers, get_topic
from tests.seeds import TEST_SEED

SEED = TEST_SEED


def measure(name: str, seed: int | None = None, **sizes: Any) -> tuple[Numbers, Conclusion]:
    seed = SEED if seed is None else seed
    topic = get_topic(name)
    with seeded(seed):
        numbers = topic.measure(Lab(seed=seed), **sizes)
    return numbers, topic.conclude(numbers)
