"""weight-norm and batchnorm-layernorm."""

from __future__ import annotations

from tests.lab.helpers import measure


def test_weight_norm_trains_at_a_rate_where_the_plain_net_fails() -> None:
    # seeds 0-7 at lr 1.5: plain 1.54-2.21 or NaN, weight norm 0.27-1.27 (gap >= 0.77);
    # at lr 0.3 the two differ by 0.01-0.05.
    n, c = measure("weight-norm", lrs=(0.3, 1.5))
    plain, wn = n["runs"]["plain"]["final_loss"], n["runs"]["weight norm"]["final_loss"]
    assert c.shown
    assert wn[1] < plain[1] - 0.4
    assert abs(wn[0] - plain[0]) < 0.15
    assert n["max_abs_cos_grad_v"] < 1e-5


def test_batch_norm_fails_at_batch_2_and_layer_norm_does_not_depend_on_the_batch() -> None:
    # seeds 0-4, 150 updates: batch 2 gives 27-45% (batch norm) vs 82-88% (layer norm); at
    # batch 64 both 96-98%. Layer norm's batch dependency is exactly 0, batch norm's 0.4-1.0.
    n, c = measure("batchnorm-layernorm", batch_sizes=(2, 64), steps=150)
    bn, ln = n["runs"]["batch norm"], n["runs"]["layer norm"]
    assert c.shown
    assert bn["val_accuracy"][0] < ln["val_accuracy"][0] - 0.2
    assert bn["val_accuracy"][1] > 0.9 and ln["val_accuracy"][1] > 0.9
    assert max(ln["batch_dependency"]) < 1e-5 < 0.1 < min(bn["batch_dependency"])
    assert bn["train_eval_disagreement"][0] > 0.3
    assert max(ln["train_eval_disagreement"]) == 0.0
