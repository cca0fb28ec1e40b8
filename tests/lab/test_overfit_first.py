"""overfit-first."""

from __future__ import annotations

from tests.lab.helpers import measure


def test_small_underfits_big_overfits_regularised_big_generalises_best() -> None:
    # seeds 0-4 (40 epochs, 300 digits, 20% wrong labels):
    #   64-2-10: training loss 1.38-1.46, validation 1.50-1.61 (val/train 1.03-1.17), acc 40-44%
    #   64-256-256-10: training loss 0.012-0.016; validation best 0.41-0.51, final 0.54-0.72
    #     (+22..+40% over its best), acc 81-85%; the overfitting detector fires on 5/5
    #   the same, regularised + early stopping: validation 0.40-0.47 (0.65-0.75x the big
    #     model's final), acc 89-92% (+4..+9 points over the big model)
    n, c = measure("overfit-first")
    small, big, reg = n["runs"].values()
    assert c.shown
    assert small["train_loss"] > 1.0 and small["val_loss"] < 1.3 * small["train_loss"]
    assert big["train_loss"] < 0.03
    assert big["final_val"] > 1.15 * big["best_val"]
    assert "overfitting" in [f["code"] for f in big["findings"]]
    assert reg["val_loss"] < 0.85 * big["val_loss"]
    assert reg["val_loss"] < 0.5 * small["val_loss"]
    assert reg["val_accuracy"] > big["val_accuracy"] + 0.02
    assert reg["early_stopping"] and reg["epochs_run"] < n["epochs"]
