"""val-below-train, early-stopping, weights-fluctuating (runs with the train-stage monitor)."""

from __future__ import annotations

from nnrecipe.lab.topics.curves import swing
from tests.lab.helpers import measure


def test_validation_below_training_from_averaging_and_from_dropout() -> None:
    # seeds 0-4 (4 epochs): epoch-1 gap 30-32% with no dropout, averaging explains all of it;
    # with dropout 0.6 the last epoch's train-mode/eval-mode gap is 0.12-0.15.
    n, c = measure("val-below-train", epochs=4)
    plain, drop = n["runs"].values()
    assert c.shown
    assert plain["val"][0] < 0.8 * plain["train_mean"][0]
    averaging = plain["train_mean"][0] - plain["train_mode_end"][0]
    assert averaging > 0.8 * (plain["train_mean"][0] - plain["val"][0])
    assert drop["train_mode_end"][-1] - drop["train_eval_end"][-1] > 0.05
    assert drop["val"][-1] < 0.85 * drop["train_mean"][-1]


def test_early_stopping_criteria_stop_near_the_best_epoch_of_an_overfitting_run() -> None:
    # seeds 0-5 (40 epochs): validation best at epochs 11-25, 8-31% worse by the end; patience
    # 3/5 always keep the best weights (regret 0%) and save 38-65% of the epochs; PQ with
    # these alphas never fires while the noisy-label training loss keeps falling.
    n, c = measure("early-stopping", epochs=40)
    val = n["val"]
    assert c.shown
    assert val[-1] > 1.05 * min(val)
    stop = n["stops"]["patience 5"]
    assert stop is not None and stop < n["epochs"]
    assert min(val[:stop]) <= 1.02 * min(val)
    # the page also reports the monitor's overfitting finding; it is not asserted here: on
    # seed 3 the curve ends only 8% above its best at 40 epochs, under the detector's 10%


def test_fluctuating_weights_are_calmed_by_averaging_and_a_lower_rate() -> None:
    # seeds 0-3 (8 epochs): epoch-to-epoch jumps 26-59% at Adam 5e-2 vs 4-11% at 5e-3; the
    # EMA of the weights ends at 0.16-0.43 vs 0.37-0.81 for the last iterate.
    n, c = measure("weights-fluctuating", epochs=8)
    high, ema, low = n["runs"].values()
    assert swing(high["val"]) > 2 * swing(low["val"])
    assert ema["val"][-1] < high["val"][-1]
    assert low["val"][-1] < high["val"][-1]
    assert c.shown
