"""``nnrecipe lab``: the seed's training questions, answered by small seeded experiments.

Each topic (``nnrecipe.lab.topics.*``) runs a real, small, seeded experiment on CPU in a few
seconds, computes its conclusion from the numbers (saying so when the run does not show the
effect), draws the plots and names the finding codes that catch the same thing in a user's run.

    list_topics() -> list[Topic]            # .name, .question, .questions, .codes
    run(topic, out_dir, progress=None) -> Path   # the page written; "all" writes index.html

Pages are self-contained HTML (inline CSS, figures as data URIs) with the PNGs in ``plots/``
and the numbers in ``<topic>.json`` beside them.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

import torch

from nnrecipe.core.progress import NullProgress, ProgressSink
from nnrecipe.core.seeding import seeded
from nnrecipe.errors import ConfigurationError
from nnrecipe.lab._base import TOPICS, Conclusion, Lab, Numbers, Plot, Topic
from nnrecipe.lab.page import Entry, render_plots, write_index, write_topic

__all__ = ["Conclusion", "Lab", "Numbers", "Plot", "Topic", "get_topic", "list_topics",
           "run", "run_topic"]


def _load() -> None:
    import nnrecipe.lab.topics  # noqa: F401  (registers every topic)


def list_topics() -> list[Topic]:
    """Every topic, in the order of the seed's questions."""
    _load()
    return sorted(TOPICS.values(), key=lambda t: min(t.questions))


def get_topic(name: str) -> Topic:
    _load()
    if name not in TOPICS:
        valid = ", ".join(["all", *(t.name for t in list_topics())])
        raise ConfigurationError(f"unknown lab topic {name!r}; valid topics: {valid}")
    return TOPICS[name]


def run_topic(topic: Topic, *, seed: int = 0, progress: ProgressSink | None = None,
              keep_going: bool = False) -> Entry:
    """Measure, conclude and draw one topic (seeded; the caller's RNG state is restored).
    With ``keep_going`` an exception becomes the entry's ``error`` instead of propagating."""
    lab = Lab(seed=seed, progress=progress or NullProgress())
    entry = Entry(topic=topic, seed=seed)
    threads = torch.get_num_threads()
    start = time.perf_counter()
    try:
        torch.set_num_threads(1)  # the lab's models are tiny: one thread is faster and steadier
        with seeded(seed):
            entry.numbers = topic.measure(lab)
        entry.conclusion = topic.conclude(entry.numbers)
        entry.plots = render_plots(topic.draw(entry.numbers))
        entry.table = topic.table(entry.numbers) if topic.table is not None else None
    except Exception as e:
        if not keep_going:
            raise
        entry.error = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    finally:
        torch.set_num_threads(threads)
        entry.seconds = time.perf_counter() - start
    return entry


def run(topic: str, out_dir: Path | str, *, progress: ProgressSink | None = None,
        seed: int = 0) -> Path:
    """Run ``topic`` (or ``"all"``) and write its page(s) under ``out_dir``; returns the page
    (``index.html`` for ``all``)."""
    out_dir = Path(out_dir)
    sink = progress or NullProgress()
    _load()
    names = [t.name for t in list_topics()] if topic == "all" else [get_topic(topic).name]
    entries: list[Entry] = []
    start = time.perf_counter()
    for name in names:
        sink.check_started("lab", name, TOPICS[name].question)
        entry = run_topic(TOPICS[name], seed=seed, progress=sink, keep_going=topic == "all")
        sink.check_finished("lab", name, "crashed" if entry.error else
                            "passed" if entry.conclusion and entry.conclusion.shown else "info")
        write_topic(entry, out_dir, index_link=topic == "all")
        entries.append(entry)
    if topic != "all":
        return out_dir / entries[0].href
    return write_index(entries, out_dir, seconds=time.perf_counter() - start, seed=seed)
