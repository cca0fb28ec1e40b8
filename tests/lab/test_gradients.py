"""skip-connections, exploding-gradients, rnn-gradients."""

from __future__ import annotations

import math

import pytest

from tests.lab.helpers import expect, expect_conclusion, measure

pytestmark = pytest.mark.statistical


def test_skip_connections_keep_the_gradient_of_early_layers() -> None:
    n, c = measure("skip-connections", epochs=3)
    plain, res = n["runs"]["plain"], n["runs"]["residual"]
    expect_conclusion(c)
    expect(plain["first_last"], "<", 1e-4, "first/last gradient, plain")
    expect(res["first_last"], ">", 0.1, "first/last gradient, residual (low)")
    expect(res["first_last"], "<", 10, "first/last gradient, residual (high)")
    expect(res["val_accuracy"] - plain["val_accuracy"], ">", 0.5, "accuracy, residual - plain")


def test_raw_targets_explode_and_clipping_keeps_the_run_finite() -> None:
    n, c = measure("exploding-gradients")
    scaled, raw, clipped = n["runs"].values()
    expect_conclusion(c)
    assert raw["nonfinite"]
    assert not clipped["nonfinite"] and not scaled["nonfinite"]
    expect(max(raw["grad_norms"][:3]) / max(scaled["grad_norms"][:3]), ">", 10,
           "early gradient norm, raw / scaled")
    final = sum(clipped["relative_losses"][-10:]) / 10
    assert math.isfinite(final)
    expect(final / clipped["relative_losses"][0], "<", 0.2, "clipped: final / first loss")


def test_rnn_gradients_vanish_or_explode_geometrically() -> None:
    n, c = measure("rnn-gradients")
    runs = n["runs"]
    expect_conclusion(c)
    expect(runs["0.5"]["rate_per_step"], "<", 0.7, "factor per step, gain 0.5")
    expect(runs["3.0"]["rate_per_step"], ">", 1.15, "factor per step, gain 3")
    expect(runs["0.5"]["grad_first_input"][-1], "<", 1e-10, "gradient after 60 steps, gain 0.5")
    expect(runs["3.0"]["grad_first_input"][-1], ">", 1e4, "gradient after 60 steps, gain 3")
