"""overfit-first."""

from __future__ import annotations

import pytest

from tests.lab.helpers import expect, expect_conclusion, measure

pytestmark = pytest.mark.statistical


def test_small_underfits_big_overfits_regularised_big_generalises_best() -> None:
    # Seeds 0-9 (NNRECIPE_TEST_SEED; worst seed per assertion, from NNRECIPE_MARGIN_LOG):
    #   accuracy, regularised - big: 0.0426 (seed 0; line > 0.02)
    #   big: final / best validation: 1.22 (seed 0; line > 1.15)
    #   big: training loss: 0.0162 (seed 1; line < 0.03)
    #   regularised: epochs run: 33 (seed 3; line < 40)
    #   small: training loss: 1.38 (seed 0; line > 1)
    #   small: validation / training: 1.17 (seed 0; line < 1.3)
    #   validation, regularised / big: 0.745 (seed 0; line < 0.85)
    #   validation, regularised / small: 0.317 (seed 7; line < 0.5)
    #   big: 'overfitting' fires on every seed; since session 4 it is judged by the
    #   validation curve's own scatter (no per-sample losses here): worst 5.29 units
    #   (seed 2; line 3)
    #   this seed's conclusion criteria (6) hold on every seed
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
