"""activations and dead-relu."""

from __future__ import annotations

from tests.lab.helpers import measure


def test_activation_derivatives_come_from_autograd_and_match_the_textbook() -> None:
    n, c = measure("activations")
    f = n["functions"]
    assert c.shown
    assert n["sigmoid_formula_max_error"] < 1e-12
    assert n["jacobian_offdiag_max"] == 0.0
    assert abs(f["sigmoid"]["max_derivative"] - 0.25) < 1e-6
    assert abs(f["tanh"]["max_derivative"] - 1.0) < 1e-6
    assert f["relu"]["derivative_at_0"] == 0.0  # PyTorch's subgradient at 0
    assert abs(f["leaky_relu"]["derivative_at_0"] - 0.01) < 1e-12
    assert abs(f["relu"]["zero_grad_fraction_normal"] - 0.5) < 0.01
    assert f["leaky_relu"]["zero_grad_fraction_normal"] == 0.0


def test_a_too_large_learning_rate_kills_relus_and_not_leaky_ones() -> None:
    # seeds 0-4: worst-layer dead ReLUs 88-97% after lr 0.1, 88-97% still dead after the lower
    # rate; leaky ReLU 0% zero-gradient units in every seed; the healthy net 5-8% dead.
    n, c = measure("dead-relu")
    relu, leaky, healthy = n["runs"]["relu"], n["runs"]["leaky_relu"], n["healthy"]
    assert c.shown
    assert max(relu["dead_after_big_lr"]) > 0.6
    assert max(relu["zero_grad_after_big_lr"]) > 0.6
    assert max(relu["dead_after_recovery"]) > 0.6  # a lower rate does not bring them back
    assert max(leaky["zero_grad_after_big_lr"]) == 0.0
    assert max(healthy["dead"]) < 0.25
    assert healthy["val_accuracy"] > relu["val_accuracy"] + 0.2
