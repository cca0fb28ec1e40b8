"""Run a topic's measurement on one seed (seeded, RNG restored), and assertions that record
their margin.

Every lab test is statistical: it takes ``TEST_SEED`` (``NNRECIPE_TEST_SEED``) and must hold on
seeds 0-9. ``expect(value, op, line, what)`` asserts like ``assert value op line`` and, with
``NNRECIPE_MARGIN_LOG=FILE``, appends the value to FILE (one JSON line per assertion and seed),
so that the worst seed's margin of every assertion can be read off a ten-seed run::

    for s in 0 1 2 3 4 5 6 7 8 9; do NNRECIPE_TEST_SEED=$s NNRECIPE_MARGIN_LOG=/tmp/m.jsonl \\
        .venv/bin/python -m pytest -q tests/lab; done
    .venv/bin/python -m tests.lab.helpers /tmp/m.jsonl

The comments next to the assertions quote that table ("worst seed": the value closest to the
line over seeds 0-9).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import defaultdict
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


def _holds(value: float, op: str, line: float) -> bool:
    return {">": value > line, "<": value < line, ">=": value >= line, "<=": value <= line,
            "==": value == line}[op]


def expect(value: float, op: str, line: float, what: str) -> None:
    """``assert value op line`` (op one of > < >= <= ==), recording the value when
    ``NNRECIPE_MARGIN_LOG`` is set."""
    value = float(value)
    path = os.environ.get("NNRECIPE_MARGIN_LOG")
    if path:
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
        with open(path, "a") as fh:
            fh.write(json.dumps({"test": test, "what": what, "value": value, "op": op,
                                 "line": float(line), "seed": SEED}) + "\n")
    assert _holds(value, op, line), f"{what}: {value!r} not {op} {line!r} (seed {SEED})"


def expect_conclusion(c: Conclusion) -> None:
    """Every criterion of one seed's conclusion holds (each recorded like ``expect``)."""
    for crit in c.criteria:
        expect(crit.value, crit.op, crit.threshold, f"criterion: {crit.name}")
    assert c.shown, c.text


def summarise(path: str) -> str:
    """The worst seed of every recorded assertion: value, line, and the margin as a ratio
    (value/line, > 1 on the good side for '>') or a difference when the line is 0."""
    rows: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    with open(path) as fh:
        for text in fh:
            r = json.loads(text)
            rows[(r["test"], r["what"])].append(r)
    out = []
    for (test, what), rs in sorted(rows.items()):
        op, line = rs[0]["op"], rs[0]["line"]
        sign = 1 if op.startswith(">") else -1
        worst = min(rs, key=lambda r: sign * r["value"])
        seeds = sorted({r["seed"] for r in rs})
        fails = [r["seed"] for r in rs if not _holds(r["value"], op, line)]
        margin = (f"{worst['value'] / line:.3g}x" if line and math.isfinite(worst["value"])
                  and worst["value"] * line > 0 else f"{worst['value'] - line:+.3g}")
        out.append(f"{test.split('::')[-1][:60]} | {what} | {op} {line:g} | worst seed "
                   f"{worst['seed']}: {worst['value']:.4g} ({margin}) | seeds {seeds[0]}-"
                   f"{seeds[-1]} ({len(seeds)}) | fails on {fails or 'none'}")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(summarise(sys.argv[1]) + "\n")
