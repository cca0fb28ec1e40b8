import torch

from nnrecipe.api import run
from tests.toys import classification_experiment


def test_a_diverging_training_run_stops_the_recipe_and_says_why() -> None:
    exp = classification_experiment(optimizer=lambda p: torch.optim.SGD(p, lr=1e6), epochs=2)
    res = run(exp, ["train", "regularize", "tune", "ensemble"])
    train, *later = res.stages
    assert train.status == "error"
    for stage in later:
        assert "train stage found errors" in stage.note
        assert all(c.status == "not run" for c in stage.checks)
    assert all(f.stage == "train" for f in res.findings)
