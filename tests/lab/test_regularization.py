"""l2-vs-squared-l2 and weight-decay."""

from __future__ import annotations

import math

from tests.lab.helpers import measure


def test_plain_norm_chatters_and_has_no_gradient_at_zero_squared_norm_settles() -> None:
    # seeds 0-2 (identical up to init): at λ=3 the norm penalty's ||w|| ranges 0.32 over the
    # last 50 steps, the squared one 1e-5; autograd of sqrt(sum w²) at 0 is NaN.
    n, c = measure("l2-vs-squared-l2", steps=120, lambdas=(3.0,))
    sq, nm = n["runs"]["squared 3"], n["runs"]["norm 3"]
    assert c.shown
    assert all(math.isnan(v) for v in n["grad_sqrt_at_0"])
    assert n["grad_squared_at_0"] == [0.0] * 4
    assert nm["chatter"] > 0.1 > 1e-3 > sq["chatter"]
    assert n["grad_magnitude_norm"][0] == n["grad_magnitude_norm"][-1]  # constant pull


def test_decoupled_decay_is_exactly_geometric_and_both_decays_regularise() -> None:
    # seeds 0-3 (20 epochs): unused weights keep (1 - lr*wd)^steps with AdamW (44.9%), 0% with
    # Adam + L2, 100% with Adam; validation accuracy +3.6..+7 points for both decays.
    n, c = measure("weight-decay", epochs=20)
    none, coupled, decoupled = n["runs"].values()
    steps = decoupled["unused_steps"][-1]
    kept = decoupled["unused_norms"][-1] / decoupled["unused_norms"][0]
    assert abs(kept - (1 - n["lr"] * n["wd_decoupled"]) ** steps) < 0.005
    assert coupled["unused_norms"][-1] < 0.01 * coupled["unused_norms"][0]
    assert none["unused_norms"][-1] == none["unused_norms"][0]
    assert decoupled["weight_norm"] < 0.8 * none["weight_norm"]
    assert decoupled["val_accuracy"] > none["val_accuracy"] + 0.01
    assert coupled["val_accuracy"] > none["val_accuracy"] + 0.01
    assert c.shown
