"""permutation-symmetry and training-problems."""

from __future__ import annotations

import os

import pytest

from nnrecipe.lab.topics.diagnostics import ROW_NAMES
from tests.lab.helpers import measure


def test_permuted_hidden_units_compute_the_same_function_and_the_path_between_rises() -> None:
    # seeds 0-2: output difference <= 2e-6, weights moved >= 127% of their norm, loss at the
    # ends 0.097-0.101 and 0.44-0.72 halfway.
    n, c = measure("permutation-symmetry", permutations=2, points=11)
    assert c.shown
    for r in n["runs"]:
        assert r["max_output_difference"] < 1e-4
        assert r["weight_distance"] > 0.5
        path = r["path_loss"]
        assert abs(path[0] - path[-1]) < 1e-4
        assert max(path) > 2 * path[0]  # convexity would forbid any rise above the ends


QUICK_ROWS = ("healthy (control)", "exploding gradients", "learning rate far too low",
              "saturated activations")


def test_broken_runs_are_named_by_the_train_stage_detectors() -> None:
    # the quick rows; seeds 0-2 diagnosed all of them (the full table: every row, seeds 0-2)
    n, c = measure("training-problems", rows=QUICK_ROWS)
    rows = {r["name"]: r for r in n["rows"]}
    assert rows["healthy (control)"]["raised"] == []
    for name in QUICK_ROWS[1:]:
        assert rows[name]["diagnosed"], (name, rows[name]["raised"])
    assert c.shown


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("NNRECIPE_LAB_FULL"),
                    reason="the full table trains 12 runs (~15 s); set NNRECIPE_LAB_FULL=1")
def test_every_row_of_the_table_is_diagnosed() -> None:
    n, c = measure("training-problems", rows=ROW_NAMES)
    missed = [(r["name"], r["raised"]) for r in n["rows"] if not r["diagnosed"]]
    assert not missed
    assert c.shown
