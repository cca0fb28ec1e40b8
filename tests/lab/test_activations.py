"""activations and dead-relu."""

from __future__ import annotations

import pytest

from tests.lab.helpers import expect, expect_conclusion, measure

pytestmark = pytest.mark.statistical


def test_activation_derivatives_come_from_autograd_and_match_the_textbook() -> None:
    # Seeds 0-9 (NNRECIPE_TEST_SEED; worst seed per assertion, from NNRECIPE_MARGIN_LOG):
    #   ReLU zero-grad - 0.5: 0.00404 (seed 7; line < 0.01)
    #   leaky slope at 0: 0 (seed 0; line < 1e-12)
    #   sigmoid formula error: 0 (seed 0; line < 1e-12)
    #   sigmoid peak - 0.25: 0 (seed 0; line < 1e-06)
    #   tanh peak - 1: 0 (seed 0; line < 1e-06)
    #   exact on every seed: Jacobian off-diagonal, ReLU subgradient at 0, leaky zero-grad
    #   this seed's conclusion criteria (3) hold on every seed
    # exact on every seed (float64 autograd vs formulas; only the random samples change)
    n, c = measure("activations")
    f = n["functions"]
    expect_conclusion(c)
    expect(n["sigmoid_formula_max_error"], "<", 1e-12, "sigmoid formula error")
    expect(n["jacobian_offdiag_max"], "==", 0.0, "Jacobian off-diagonal")
    expect(abs(f["sigmoid"]["max_derivative"] - 0.25), "<", 1e-6, "sigmoid peak - 0.25")
    expect(abs(f["tanh"]["max_derivative"] - 1.0), "<", 1e-6, "tanh peak - 1")
    expect(f["relu"]["derivative_at_0"], "==", 0.0, "ReLU subgradient at 0")
    expect(abs(f["leaky_relu"]["derivative_at_0"] - 0.01), "<", 1e-12, "leaky slope at 0")
    # 100 000 N(0, 1) samples: the fraction below 0 is 0.5 +- 0.0016 (sd)
    expect(abs(f["relu"]["zero_grad_fraction_normal"] - 0.5), "<", 0.01, "ReLU zero-grad - 0.5")
    expect(f["leaky_relu"]["zero_grad_fraction_normal"], "==", 0.0, "leaky zero-grad")


def test_a_too_large_learning_rate_kills_relus_and_not_leaky_ones() -> None:
    # Seeds 0-9 (NNRECIPE_TEST_SEED; worst seed per assertion, from NNRECIPE_MARGIN_LOG):
    #   accuracy, healthy - after lr 0.1: 0.439 (seed 0; line > 0.2)
    #   dead ReLUs after lr 0.1: 0.875 (seed 4; line > 0.6)
    #   dead ReLUs after recovery: 0.875 (seed 4; line > 0.6)
    #   dead ReLUs at a sane rate: 0.109 (seed 7; line < 0.25)
    #   zero-gradient ReLUs: 0.891 (seed 1; line > 0.6)
    #   exact on every seed: zero-gradient leaky ReLUs
    #   this seed's conclusion criteria (4) hold on every seed
    n, c = measure("dead-relu")
    relu, leaky, healthy = n["runs"]["relu"], n["runs"]["leaky_relu"], n["healthy"]
    expect_conclusion(c)
    expect(relu["worst_dead_after_big_lr"], ">", 0.6, "dead ReLUs after lr 0.1")
    expect(relu["worst_zero_grad_after_big_lr"], ">", 0.6, "zero-gradient ReLUs")
    # a lower rate does not bring them back
    expect(relu["worst_dead_after_recovery"], ">", 0.6, "dead ReLUs after recovery")
    expect(leaky["worst_zero_grad_after_big_lr"], "==", 0.0, "zero-gradient leaky ReLUs")
    expect(healthy["worst_dead"], "<", 0.25, "dead ReLUs at a sane rate")
    expect(healthy["val_accuracy"] - relu["val_accuracy"], ">", 0.2,
           "accuracy, healthy - after lr 0.1")
