"""permutation-symmetry and training-problems."""

from __future__ import annotations

import os

import pytest

from nnrecipe.lab.topics.diagnostics import ROW_NAMES
from tests.lab.helpers import expect, expect_conclusion, measure

pytestmark = pytest.mark.statistical


def test_permuted_hidden_units_compute_the_same_function_and_the_path_between_rises() -> None:
    # Seeds 0-9 (NNRECIPE_TEST_SEED; worst seed per assertion, from NNRECIPE_MARGIN_LOG):
    #   highest point / ends: 4.09 (seed 4; line > 2)
    #   output change: 1.91e-06 (seed 1; line < 0.0001)
    #   weight distance / norm: 1.27 (seed 4; line > 0.5)
    #   |loss at the two ends|: 7.45e-09 (seed 0; line < 0.0001)
    #   this seed's conclusion criteria (3) hold on every seed
    n, c = measure("permutation-symmetry", permutations=2, points=11)
    expect_conclusion(c)
    for r in n["runs"]:
        expect(r["max_output_difference"], "<", 1e-4, "output change")
        expect(r["weight_distance"], ">", 0.5, "weight distance / norm")
        path = r["path_loss"]
        expect(abs(path[0] - path[-1]), "<", 1e-4, "|loss at the two ends|")
        # convexity would forbid any rise above the ends
        expect(max(path) / path[0], ">", 2, "highest point / ends")


QUICK_ROWS = ("healthy (control)", "exploding gradients", "learning rate far too low",
              "saturated activations")


def test_broken_runs_are_named_by_the_train_stage_detectors() -> None:
    # Seeds 0-9 (NNRECIPE_TEST_SEED; worst seed per assertion, from NNRECIPE_MARGIN_LOG):
    #   this seed's conclusion criteria (4) hold on every seed
    n, c = measure("training-problems", rows=QUICK_ROWS)
    rows = {r["name"]: r for r in n["rows"]}
    assert rows["healthy (control)"]["raised"] == []
    for name in QUICK_ROWS[1:]:
        assert rows[name]["diagnosed"], (name, rows[name]["raised"])
    expect_conclusion(c)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("NNRECIPE_LAB_FULL"),
                    reason="the full table trains 12 runs (~15 s); set NNRECIPE_LAB_FULL=1")
def test_every_row_of_the_table_is_diagnosed() -> None:
    # Seeds 0-9 (NNRECIPE_TEST_SEED; worst seed per assertion, from NNRECIPE_MARGIN_LOG):
    #   this seed's conclusion criteria (12) hold on every seed
    n, c = measure("training-problems", rows=ROW_NAMES)
    missed = [(r["name"], r["raised"]) for r in n["rows"] if not r["diagnosed"]]
    assert not missed
    expect_conclusion(c)
