"""val-below-train, early-stopping, weights-fluctuating (runs with the train-stage monitor)."""

from __future__ import annotations

import pytest

from tests.lab.helpers import expect, expect_conclusion, measure

pytestmark = pytest.mark.statistical


def test_validation_below_training_from_averaging_and_from_dropout() -> None:
    # Seeds 0-9 (NNRECIPE_TEST_SEED; worst seed per assertion, from NNRECIPE_MARGIN_LOG):
    #   dropout, last epoch: validation / training loss: 0.752 (seed 7; line < 0.85)
    #   dropout: train-mode - eval-mode loss: 0.111 (seed 8; line > 0.05)
    #   epoch 1, validation / epoch-mean training loss: 0.704 (seed 1; line < 0.8)
    #   share of the epoch-1 gap from averaging: 0.999 (seed 5; line > 0.8)
    #   this seed's conclusion criteria (4) hold on every seed
    n, c = measure("val-below-train", epochs=4)
    plain, drop = n["runs"].values()
    expect_conclusion(c)
    expect(plain["val"][0] / plain["train_mean"][0], "<", 0.8,
           "epoch 1, validation / epoch-mean training loss")
    averaging = plain["train_mean"][0] - plain["train_mode_end"][0]
    expect(averaging / (plain["train_mean"][0] - plain["val"][0]), ">", 0.8,
           "share of the epoch-1 gap from averaging")
    expect(drop["train_mode_end"][-1] - drop["train_eval_end"][-1], ">", 0.05,
           "dropout: train-mode - eval-mode loss")
    expect(drop["val"][-1] / drop["train_mean"][-1], "<", 0.85,
           "dropout, last epoch: validation / training loss")


def test_early_stopping_criteria_stop_near_the_best_epoch_of_an_overfitting_run() -> None:
    # Seeds 0-9 (NNRECIPE_TEST_SEED; worst seed per assertion, from NNRECIPE_MARGIN_LOG):
    #   final validation loss / best - 1: 0.079 (seed 3; line > 0.05)
    #   patience 5 regret: 0 (seed 0; line < 0.02)
    #   patience 5 stop epoch: 31 (seed 3; line < 40)
    #   this seed's conclusion criteria (2) hold on every seed
    n, c = measure("early-stopping", epochs=40)
    expect_conclusion(c)
    expect(n["rise"], ">", 0.05, "final validation loss / best - 1")
    stop = n["stops"]["patience 5"]
    assert stop is not None
    expect(stop, "<", n["epochs"], "patience 5 stop epoch")
    expect(n["rows"]["patience 5"]["regret"], "<", 0.02, "patience 5 regret")
    # the page also reports the monitor's overfitting finding; it is not asserted here (the
    # curve can end under the detector's line at 40 epochs)


def test_fluctuating_weights_are_calmed_by_averaging_and_a_lower_rate() -> None:
    # Seeds 0-9 (NNRECIPE_TEST_SEED; worst seed per assertion, from NNRECIPE_MARGIN_LOG):
    #   final loss, high rate - its EMA: 0.205 (seed 8; line > 0)
    #   final loss, high rate - low rate: 0.351 (seed 8; line > 0)
    #   jump, high rate / low rate: 9.28 (seed 2; line > 3)
    #   this seed's conclusion criteria (3) hold on every seed
    # The page's 12 epochs: the jump is a median over the second half, 6 epoch-to-epoch steps
    # (8 epochs left 4, and on another CPU the ratio came out at 2.6-2.8).
    n, c = measure("weights-fluctuating", epochs=12)
    high, ema, low = n["runs"].values()
    expect(high["swing"] / low["swing"], ">", 3, "jump, high rate / low rate")
    expect(high["val"][-1] - ema["val"][-1], ">", 0, "final loss, high rate - its EMA")
    expect(high["val"][-1] - low["val"][-1], ">", 0, "final loss, high rate - low rate")
    expect_conclusion(c)
