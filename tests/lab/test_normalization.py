"""weight-norm and batchnorm-layernorm."""

from __future__ import annotations

import math

import pytest

from tests.lab.helpers import expect, expect_conclusion, measure

pytestmark = pytest.mark.statistical


def test_weight_norm_trains_at_a_rate_where_the_plain_net_fails() -> None:
    # Seeds 0-9 (NNRECIPE_TEST_SEED; worst seed per assertion, from NNRECIPE_MARGIN_LOG):
    #   loss at lr 1.5, plain - weight norm: 0.762 (seed 4; line > 0.4)
    #   |cos(dL/dv, v)|: 8.57e-08 (seed 7; line < 1e-05)
    #   |loss at lr 0.3, weight norm - plain|: 0.0777 (seed 2; line < 0.15)
    #   this seed's conclusion criteria (2) hold on every seed
    n, c = measure("weight-norm", lrs=(0.3, 1.5))
    plain, wn = n["runs"]["plain"]["final_loss"], n["runs"]["weight norm"]["final_loss"]
    expect_conclusion(c)
    # a plain run that diverged counts as ln 10 (chance)
    expect(min(plain[1], math.log(10)) - wn[1], ">", 0.4, "loss at lr 1.5, plain - weight norm")
    expect(abs(wn[0] - plain[0]), "<", 0.15, "|loss at lr 0.3, weight norm - plain|")
    expect(n["max_abs_cos_grad_v"], "<", 1e-5, "|cos(dL/dv, v)|")


def test_batch_norm_fails_at_batch_2_and_layer_norm_does_not_depend_on_the_batch() -> None:
    # Seeds 0-9 (NNRECIPE_TEST_SEED; worst seed per assertion, from NNRECIPE_MARGIN_LOG):
    #   accuracy at batch 2, layer norm - batch norm: 0.376 (seed 2; line > 0.2)
    #   batch norm accuracy at batch 64: 0.959 (seed 8; line > 0.9)
    #   batch norm batch dependency: 0.237 (seed 5; line > 0.1)
    #   batch norm train/eval disagreement: 0.641 (seed 7; line > 0.3)
    #   layer norm accuracy at batch 64: 0.957 (seed 9; line > 0.9)
    #   layer norm batch dependency: 0 (seed 0; line < 1e-05)
    #   exact on every seed: layer norm train/eval disagreement
    #   this seed's conclusion criteria (3) hold on every seed
    n, c = measure("batchnorm-layernorm", batch_sizes=(2, 64), steps=150)
    bn, ln = n["runs"]["batch norm"], n["runs"]["layer norm"]
    expect_conclusion(c)
    expect(ln["val_accuracy"][0] - bn["val_accuracy"][0], ">", 0.2,
           "accuracy at batch 2, layer norm - batch norm")
    expect(bn["val_accuracy"][1], ">", 0.9, "batch norm accuracy at batch 64")
    expect(ln["val_accuracy"][1], ">", 0.9, "layer norm accuracy at batch 64")
    expect(max(ln["batch_dependency"]), "<", 1e-5, "layer norm batch dependency")
    expect(min(bn["batch_dependency"]), ">", 0.1, "batch norm batch dependency")
    expect(bn["train_eval_disagreement"][0], ">", 0.3, "batch norm train/eval disagreement")
    expect(max(ln["train_eval_disagreement"]), "==", 0.0, "layer norm train/eval disagreement")
