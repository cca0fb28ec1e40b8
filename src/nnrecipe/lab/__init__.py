"""``nnrecipe lab``: the seed's training questions, answered by small seeded experiments.

Each topic (``nnrecipe.lab.topics.*``) runs a real, small, seeded experiment on CPU in a few
seconds per seed, on ``SEEDS`` seeds; its conclusion is decided over them — means with their
seed-to-seed spread, each criterion clearing its line by more than the spread
(``nnrecipe.lab.spread``), saying so when it does not — the plots draw mean ± sd bands, and
the page names the finding codes that catch the same thing in a user's run.

    list_topics() -> list[Topic]            # .name, .question, .questions, .codes
    run(topic, out_dir, progress=None, seed=0, seeds=SEEDS, jobs=None) -> Path
                                            # the page written; "all" writes index.html

Pages are self-contained HTML (inline CSS, figures as data URIs) with the PNGs in ``plots/``
and the numbers in ``<topic>.json`` beside them.
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from nnrecipe.core.progress import NullProgress, ProgressSink
from nnrecipe.core.seeding import seeded
from nnrecipe.errors import ConfigurationError
from nnrecipe.lab._base import TOPICS, Conclusion, Lab, Numbers, Plot, Topic
from nnrecipe.lab.page import Entry, render_plots, write_index, write_topic
from nnrecipe.lab.spread import SEEDS, combine, decide

__all__ = ["SEEDS", "Conclusion", "Lab", "Numbers", "Plot", "Topic", "conclude_seeds",
           "get_topic", "list_topics", "measure_seed", "run", "run_topic"]


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


def measure_seed(topic: Topic, seed: int, progress: ProgressSink | None = None,
                 **sizes: Any) -> Numbers:
    """One seed's numbers: ``topic.measure`` on one torch thread, every RNG seeded to ``seed``
    (the caller's RNG state and thread count are restored)."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # the lab's models are tiny: one thread is faster and steadier
        with seeded(seed):
            return topic.measure(Lab(seed=seed, progress=progress or NullProgress()), **sizes)
    finally:
        torch.set_num_threads(threads)


def _measure_in_worker(name: str, seed: int) -> tuple[Numbers, float]:
    _load()
    start = time.perf_counter()
    numbers = measure_seed(TOPICS[name], seed)
    return numbers, time.perf_counter() - start


def seed_list(seed: int, seeds: int = SEEDS) -> list[int]:
    """The seeds a page is decided over: ``seed`` and the ones after it."""
    if seeds < 1:
        raise ConfigurationError(f"the lab needs at least one seed, not {seeds}")
    return list(range(seed, seed + seeds))


def conclude_seeds(topic: Topic, per_seed: list[Numbers], seeds: list[int]
                   ) -> tuple[Numbers, Conclusion]:
    """Fold the seeds' numbers (``spread.combine``) and decide the conclusion over them."""
    combined = combine(per_seed)
    conclusion = topic.conclude(combined)
    if len(per_seed) > 1:
        conclusion = decide([topic.conclude(n) for n in per_seed], conclusion, seeds)
    else:
        conclusion.seeds = seeds
    return combined, conclusion


def _finish(entry: Entry, per_seed: list[Numbers]) -> None:
    topic = entry.topic
    entry.per_seed = per_seed
    entry.numbers, entry.conclusion = conclude_seeds(topic, per_seed, entry.seeds)
    entry.plots = render_plots(topic.draw(entry.numbers))
    entry.table = topic.table(entry.numbers) if topic.table is not None else None


def run_topic(topic: Topic, *, seed: int = 0, seeds: int = SEEDS,
              progress: ProgressSink | None = None, keep_going: bool = False) -> Entry:
    """Measure ``topic`` on ``seeds`` seeds (``seed`` and the next ones), decide over them and
    draw (seeded; the caller's RNG state is restored). With ``keep_going`` an exception
    becomes the entry's ``error`` instead of propagating."""
    entry = Entry(topic=topic, seed=seed, seeds=seed_list(seed, seeds))
    start = time.perf_counter()
    try:
        _finish(entry, [measure_seed(topic, s, progress) for s in entry.seeds])
    except Exception as e:
        if not keep_going:
            raise
        entry.error = _trace(e)
    finally:
        entry.seconds = time.perf_counter() - start
    return entry


def _trace(e: BaseException) -> str:
    return "".join(traceback.format_exception(type(e), e, e.__traceback__))


def default_jobs() -> int:
    """Worker processes for ``lab all``: one per core, at most 2 (each runs one torch thread;
    a third would only add start-up cost on the 2-core machines the lab is sized for)."""
    return max(1, min(2, os.cpu_count() or 1))


def run(topic: str, out_dir: Path | str, *, progress: ProgressSink | None = None,
        seed: int = 0, seeds: int = SEEDS, jobs: int | None = None) -> Path:
    """Run ``topic`` (or ``"all"``) on ``seeds`` seeds and write its page(s) under ``out_dir``;
    returns the page (``index.html`` for ``all``). ``jobs`` worker processes measure the
    (topic, seed) pairs in parallel (default: :func:`default_jobs` for ``all``, 1 for one
    topic); the numbers do not depend on it."""
    out_dir = Path(out_dir)
    sink = progress or NullProgress()
    _load()
    names = [t.name for t in list_topics()] if topic == "all" else [get_topic(topic).name]
    seed_ids = seed_list(seed, seeds)
    jobs = jobs if jobs is not None else (default_jobs() if topic == "all" else 1)
    start = time.perf_counter()
    entries: list[Entry] = []
    if jobs <= 1:
        for name in names:
            sink.check_started("lab", name, TOPICS[name].question)
            entry = run_topic(TOPICS[name], seed=seed, seeds=seeds, progress=sink,
                              keep_going=topic == "all")
            _report(sink, entry)
            write_topic(entry, out_dir, index_link=topic == "all")
            entries.append(entry)
    else:
        entries = _run_parallel(names, seed_ids, jobs, sink, out_dir, index_link=topic == "all")
    if topic != "all":
        if entries[0].error:
            raise RuntimeError(f"lab topic {names[0]} crashed:\n{entries[0].error}")
        return out_dir / entries[0].href
    return write_index(entries, out_dir, seconds=time.perf_counter() - start, seed=seed,
                       seeds=seed_ids)


def _report(sink: ProgressSink, entry: Entry) -> None:
    sink.check_finished("lab", entry.topic.name, "crashed" if entry.error else
                        "passed" if entry.conclusion and entry.conclusion.shown else "info")


def _run_parallel(names: list[str], seeds: list[int], jobs: int, sink: ProgressSink,
                  out_dir: Path, *, index_link: bool) -> list[Entry]:
    """Every (topic, seed) measurement in a pool of ``jobs`` spawned processes; each topic is
    concluded, drawn and written in this process as soon as its seeds are in."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    _load()
    entries: list[Entry] = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {name: [pool.submit(_measure_in_worker, name, s) for s in seeds]
                   for name in names}
        for name in names:
            sink.check_started("lab", name, TOPICS[name].question)
            entry = Entry(topic=TOPICS[name], seed=seeds[0], seeds=seeds)
            try:
                results = [f.result() for f in futures[name]]
                entry.seconds = sum(sec for _, sec in results)
                _finish(entry, [numbers for numbers, _ in results])
            except Exception as e:
                entry.error = _trace(e)
            _report(sink, entry)
            write_topic(entry, out_dir, index_link=index_link)
            entries.append(entry)
    return entries
