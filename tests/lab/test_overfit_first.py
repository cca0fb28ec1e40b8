"""overfit-first."""

from __future__ import annotations

import pytest

from tests.lab.helpers import expect, expect_conclusion, measure

pytestmark = pytest.mark.statistical


def test_small_underfits_big_overfits_regularised_big_generalises_best() -> None:
    n, c = measure("overfit-first")
    small, big, reg = n["runs"].values()
    expect_conclusion(c)
    expect(small["train_loss"], ">", 1.0, "small: training loss")
    expect(small["val_loss"] / small["train_loss"], "<", 1.3, "small: validation / training")
    expect(big["train_loss"], "<", 0.03, "big: training loss")
    expect(big["final_val"] / big["best_val"], ">", 1.15, "big: final / best validation")
    assert "overfitting" in [f["code"] for f in big["findings"]]
    expect(reg["val_loss"] / big["val_loss"], "<", 0.85, "validation, regularised / big")
    expect(reg["val_loss"] / small["val_loss"], "<", 0.5, "validation, regularised / small")
    expect(reg["val_accuracy"] - big["val_accuracy"], ">", 0.02, "accuracy, regularised - big")
    assert reg["early_stopping"]
    expect(reg["epochs_run"], "<", n["epochs"], "regularised: epochs run")
