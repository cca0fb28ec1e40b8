"""lr-high-low, warmup, lr-decay, lr-batch-scaling."""

from __future__ import annotations

import math

import pytest

from tests.lab.helpers import expect, expect_conclusion, measure

pytestmark = pytest.mark.statistical

LN10 = math.log(10)


def test_too_high_fails_too_low_crawls_acceptable_converges() -> None:
    # Seeds 0-9 (NNRECIPE_TEST_SEED; worst seed per assertion, from NNRECIPE_MARGIN_LOG):
    #   acceptable: final epoch loss: 0.0624 (seed 9; line < 0.15)
    #   acceptable: median update ratio: 0.00632 (seed 7; line > 0.0003)
    #   too low: final epoch loss / ln 10: 0.971 (seed 0; line > 0.8)
    #   too low: median update ratio: 0.000153 (seed 6; line < 0.0003)
    #   too low: smallest epoch-to-epoch fall: 0.00369 (seed 2; line > 0)
    #   this seed's conclusion criteria (4) hold on every seed
    n, c = measure("lr-high-low", arms={"too low": 0.002, "acceptable": 0.1, "too high": 3.0})
    low, ok, high = (n["runs"][k] for k in ("too low", "acceptable", "too high"))
    expect_conclusion(c)
    expect(ok["epoch_train_loss"][-1], "<", 0.15, "acceptable: final epoch loss")
    low_ep = low["epoch_train_loss"]
    expect(low_ep[-1] / LN10, ">", 0.8, "too low: final epoch loss / ln 10")
    expect(min(a - b for a, b in zip(low_ep, low_ep[1:], strict=False)), ">", 0,
           "too low: smallest epoch-to-epoch fall")
    high_final = high["epoch_train_loss"][-1]
    # diverged, or at chance
    assert high["stopped"] != "completed" or high_final > 0.9 * LN10, high_final
    assert not math.isfinite(high_final) or high_final > 10 * ok["epoch_train_loss"][-1]
    expect(low["update_ratio"], "<", 3e-4, "too low: median update ratio")
    expect(ok["update_ratio"], ">", 3e-4, "acceptable: median update ratio")


def test_warmup_rescues_a_rate_that_fails_cold() -> None:
    # Seeds 0-9 (NNRECIPE_TEST_SEED; worst seed per assertion, from NNRECIPE_MARGIN_LOG):
    #   accuracy, warm - cold: 0.293 (seed 8; line > 0.15)
    #   final loss, cold - warm: 0.641 (seed 8; line > 0.4)
    #   first 5 update ratios, cold / warm: 15.9 (seed 3; line > 5)
    #   this seed's conclusion criteria (2) hold on every seed
    n, c = measure("warmup")
    cold, warm = n["runs"].values()
    expect_conclusion(c)
    expect(cold["final_loss"] - warm["final_loss"], ">", 0.4, "final loss, cold - warm")
    expect(warm["val_accuracy"] - cold["val_accuracy"], ">", 0.15, "accuracy, warm - cold")
    expect(sum(cold["update_ratios"][:5]) / sum(warm["update_ratios"][:5]), ">", 5,
           "first 5 update ratios, cold / warm")


def test_decay_lowers_the_noise_floor_but_slows_full_batch_descent() -> None:
    # Seeds 0-9 (NNRECIPE_TEST_SEED; worst seed per assertion, from NNRECIPE_MARGIN_LOG):
    #   full batch, cosine / constant: 3.38 (seed 9; line > 1.5)
    #   mini-batch, cosine / constant: 0.87 (seed 6; line < 0.95)
    #   this seed's conclusion criteria (2) hold on every seed
    n, c = measure("lr-decay", epochs=3, gd_steps=100)
    mb, gd = n["minibatch"], n["full_batch"]
    expect_conclusion(c)
    expect(mb["cosine decay"]["final_full_loss"] / mb["constant"]["final_full_loss"], "<", 0.95,
           "mini-batch, cosine / constant")
    expect(gd["cosine decay"]["final_full_loss"] / gd["constant"]["final_full_loss"], ">", 1.5,
           "full batch, cosine / constant")


def test_linear_scaling_makes_batch_sizes_agree_per_epoch() -> None:
    # Seeds 0-9 (NNRECIPE_TEST_SEED; worst seed per assertion, from NNRECIPE_MARGIN_LOG):
    #   fixed rate: final loss, batch 128 / batch 16: 4.75 (seed 2; line > 2)
    #   linear rule: final-loss spread: 1.01 (seed 9; line < 1.1)
    #   this seed's conclusion criteria (2) hold on every seed
    n, c = measure("lr-batch-scaling", batches=(16, 128, 1024), epochs=3)
    expect_conclusion(c)
    finals = {rule: [r["epoch_loss"][-1] for r in runs.values()]
              for rule, runs in n["rules"].items()}
    same, linear = finals["same lr"], finals["lr x B (linear)"]
    expect(max(linear[:2]) / min(linear[:2]), "<", 1.1, "linear rule: final-loss spread")
    expect(same[1] / same[0], ">", 2, "fixed rate: final loss, batch 128 / batch 16")
