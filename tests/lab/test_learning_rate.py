"""lr-high-low, warmup, lr-decay, lr-batch-scaling."""

from __future__ import annotations

import math

from tests.lab.helpers import measure

LN10 = math.log(10)


def test_too_high_fails_too_low_crawls_acceptable_converges() -> None:
    # seeds 0-3, 10 epochs: too low (0.002) ends at 2.24-2.26 and is still falling; acceptable
    # (0.1) at 0.054-0.059; too high (3.0) NaN, or ends at chance (2.33-2.34).
    n, c = measure("lr-high-low", arms={"too low": 0.002, "acceptable": 0.1, "too high": 3.0})
    low, ok, high = (n["runs"][k] for k in ("too low", "acceptable", "too high"))
    assert c.shown
    assert ok["epoch_train_loss"][-1] < 0.15
    low_ep = low["epoch_train_loss"]
    assert low_ep[-1] > 0.8 * LN10 and all(b < a for a, b in zip(low_ep, low_ep[1:], strict=False))
    high_final = high["epoch_train_loss"][-1]
    assert high["stopped"] != "completed" or high_final > 0.9 * LN10  # diverged or at chance
    assert not math.isfinite(high_final) or high_final > 10 * ok["epoch_train_loss"][-1]
    assert low["update_ratio"] < 3e-4 < ok["update_ratio"]


def test_warmup_rescues_a_rate_that_fails_cold() -> None:
    # seeds 0-3: without warmup final loss 1.15-1.89 (accuracy 27-55%), with a 50-step warmup
    # 0.30-0.53 (81-93%); first-step update ratios 0.12 vs 0.0075.
    n, c = measure("warmup")
    cold, warm = n["runs"].values()
    assert c.shown
    assert warm["final_loss"] < cold["final_loss"] - 0.4
    assert warm["val_accuracy"] > cold["val_accuracy"] + 0.15
    assert sum(cold["update_ratios"][:5]) > 5 * sum(warm["update_ratios"][:5])


def test_decay_lowers_the_noise_floor_but_slows_full_batch_descent() -> None:
    # seeds 0-3, 4 epochs: constant 0.85-1.01 vs cosine 0.73-0.82 (mini-batch); full batch
    # constant 0.0050-0.0060 vs cosine 0.015-0.019 (3x worse).
    n, c = measure("lr-decay", epochs=3, gd_steps=100)
    mb, gd = n["minibatch"], n["full_batch"]
    assert c.shown
    assert mb["cosine decay"]["final_full_loss"] < 0.95 * mb["constant"]["final_full_loss"]
    assert gd["cosine decay"]["final_full_loss"] > 1.5 * gd["constant"]["final_full_loss"]


def test_linear_scaling_makes_batch_sizes_agree_per_epoch() -> None:
    # seeds 0-3: final loss spread across batch 16-256 is x10-11 with a fixed rate, x1.01-1.02
    # with the linear rule, x5.4 with the square-root rule.
    n, c = measure("lr-batch-scaling", batches=(16, 128, 1024), epochs=3)
    assert c.shown
    finals = {rule: [r["epoch_loss"][-1] for r in runs.values()]
              for rule, runs in n["rules"].items()}
    same, linear = finals["same lr"], finals["lr x B (linear)"]
    assert max(linear[:2]) / min(linear[:2]) < 1.1
    assert same[1] > 2 * same[0]
