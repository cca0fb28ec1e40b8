"""The part-B real-world cases (``benchmarks/realworld/cases_b.py``) stay runnable: each
declares a source, a symptom and cause codes from the catalogue, builds its experiment, and
one forward + loss on a few training samples gives a finite number. Scoring them is the
benchmark's job (``benchmarks/realworld.py``), not the test suite's."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from realworld import CASES  # noqa: E402

PART_B = [c for c in CASES.values() if c.build.__module__.endswith("cases_b")]
CODES = {e["code"] for e in json.loads(
    (ROOT / "src/nnrecipe/report/catalogue.json").read_text())}


def test_part_b_cases_are_sourced_and_use_catalogue_codes() -> None:
    assert len(PART_B) >= 16
    for case in PART_B:
        assert case.kind == "bug" and case.cause and case.cause <= CODES, case.name
        assert "#" in case.source or case.source.startswith("https://"), case.name
        assert len(case.symptom) > 40 and case.note, case.name


def test_part_b_cases_build_and_take_one_step() -> None:
    for case in PART_B:
        if case.mode == "watch":  # a whole hand-written loop: the benchmark runs it
            continue
        exp = case.build(0)
        x, y = exp.train[0], exp.train[1]
        if not isinstance(exp.train, tuple):  # a Dataset
            pairs = [exp.train[i] for i in range(4)]
            x = torch.stack([torch.as_tensor(p[0]) for p in pairs])
            y = torch.stack([torch.as_tensor(p[1]) for p in pairs])
        torch.manual_seed(0)
        model = exp.model()
        model.eval()  # BatchNorm on 4 samples, dropout off: only the plumbing is tested
        loss = exp.loss(model(torch.as_tensor(x[:4])), torch.as_tensor(y[:4]))
        assert math.isfinite(float(loss)), case.name
