"""skip-connections, exploding-gradients, rnn-gradients."""

from __future__ import annotations

import math

from tests.lab.helpers import measure


def test_skip_connections_keep_the_gradient_of_early_layers() -> None:
    # seeds 0-4: first/last gradient ratio 1.7e-7..8.7e-7 (plain) vs 0.73..1.18 (residual);
    # validation accuracy 10.0-10.2% (plain) vs 93.0-95.2% (residual).
    n, c = measure("skip-connections", epochs=3)
    plain, res = n["runs"]["plain"], n["runs"]["residual"]
    assert c.shown
    assert plain["grad_norms_init"][0] / plain["grad_norms_init"][-1] < 1e-4
    assert 0.1 < res["grad_norms_init"][0] / res["grad_norms_init"][-1] < 10
    assert res["val_accuracy"] > plain["val_accuracy"] + 0.5


def test_raw_targets_explode_and_clipping_keeps_the_run_finite() -> None:
    # seeds 0-4: the raw run always reaches NaN/inf (max finite grad norm 3e8..1e16); the
    # clipped run ends at 1.1-2.1% of its initial loss, the scaled one at 4.8-9.0%.
    n, c = measure("exploding-gradients")
    scaled, raw, clipped = n["runs"].values()
    assert c.shown
    assert raw["nonfinite"]
    assert not clipped["nonfinite"] and not scaled["nonfinite"]
    assert max(raw["grad_norms"][:3]) > 10 * max(scaled["grad_norms"][:3])
    final = sum(clipped["relative_losses"][-10:]) / 10
    assert math.isfinite(final) and final < 0.2 * clipped["relative_losses"][0]


def test_rnn_gradients_vanish_or_explode_geometrically() -> None:
    # seeds 0-4: factor per step 0.468-0.474 (gain 0.5), 0.867-0.885 (gain 1), 1.29-1.36 (gain 3)
    n, c = measure("rnn-gradients")
    runs = n["runs"]
    assert c.shown
    assert runs["0.5"]["rate_per_step"] < 0.7
    assert runs["3.0"]["rate_per_step"] > 1.15
    assert runs["0.5"]["grad_first_input"][-1] < 1e-10
    assert runs["3.0"]["grad_first_input"][-1] > 1e4
