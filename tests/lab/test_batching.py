"""gd-sgd-minibatch, epochs-vs-replacement, batch-size-extremes."""

from __future__ import annotations

import math

from tests.lab.helpers import measure


def test_gd_wins_per_update_and_sgd_wins_per_epoch() -> None:
    # seeds 0-2: after 120 updates GD 0.0082-0.0085, batch 32 0.079-0.086, batch 1 1.49-1.52;
    # after one epoch batch 1 0.26-0.35, batch 32 1.15-1.20, GD 1.71-1.79. No timing asserted.
    n, c = measure("gd-sgd-minibatch", samples=256, scale=0.5)
    gd, mb, sgd = n["runs"].values()
    assert c.shown

    def at(r: dict, axis: str, x: float) -> float:
        return next(v for xi, v in zip(r[axis], r["loss"], strict=True) if xi >= x)

    k = min(r["updates"][-1] for r in (gd, mb, sgd))
    assert at(gd, "updates", k) < at(mb, "updates", k) < at(sgd, "updates", k)
    assert at(sgd, "epochs", 1) < at(mb, "epochs", 1) < at(gd, "epochs", 1)


def test_epochs_see_every_sample_and_end_lower_than_sampling_with_replacement() -> None:
    # seeds 0-2 (3 orders each): coverage after one epoch with replacement 63.2-63.7%; final
    # loss 0.095-0.097 (epochs) vs 0.105-0.106 (with replacement), 8-10% lower.
    n, c = measure("epochs-vs-replacement", epochs=3, orders=2)
    perm, repl = n["runs"].values()
    assert c.shown
    assert abs(repl["coverage"][0] - (1 - math.exp(-1))) < 0.03
    assert perm["coverage"][0] == 1.0
    assert perm["count_histogram"][n["epochs"]] == n["n"]  # every sample exactly `epochs` times
    assert sum(perm["final_losses"]) < sum(repl["final_losses"])


def test_batch_noise_falls_like_one_over_b_and_the_extremes_cost_what_they_should() -> None:
    # seeds 0-2: cosine to the full gradient 0.14-0.20 at B=1, 1.0 at full; noise slope
    # -0.97..-1.11; full batch after 2 epochs 1.75-1.80 vs batch 32 0.19-0.21.
    n, c = measure("batch-size-extremes", draws=20, epochs=1)
    assert c.shown
    assert n["cosine_to_full"][0] < 0.4 and n["cosine_to_full"][-1] > 0.999
    assert n["train"]["full batch"]["final_loss"] > 2 * n["train"]["batch 32"]["final_loss"]
    assert n["train"]["batch 1"]["step_loss_std"] > n["train"]["batch 32"]["step_loss_std"]
    assert "more than 1 value" in n["batchnorm_error"]
