"""Multi-label classification (multi-hot float targets, BCEWithLogitsLoss): every check of
`check` and `train` runs without crashing (the predictions tables of the overfit-batch check
and of the monitor indexed the probabilities by the targets, as if they were class ids)."""

from __future__ import annotations

import numpy as np
from torch import nn

from nnrecipe import Experiment
from nnrecipe.core.context import Context
from nnrecipe.core.runner import run_stages
from tests.seeds import TEST_SEED


def _multilabel() -> Experiment:
    rng = np.random.default_rng(TEST_SEED)
    X = rng.normal(size=(400, 12)).astype(np.float32)
    W = rng.normal(size=(12, 5))
    Y = (X @ W + rng.normal(0, 1.0, (400, 5)) > 0).astype(np.float32)
    return Experiment(model=lambda: nn.Sequential(nn.Linear(12, 32), nn.ReLU(),
                                                  nn.Linear(32, 5)),
                      train=(X[:300], Y[:300]), val=(X[300:], Y[300:]),
                      loss=nn.BCEWithLogitsLoss(), batch_size=32, epochs=3,
                      seed=TEST_SEED, task="classification", name="multilabel")


def test_multi_hot_targets_never_crash_a_check() -> None:
    ctx = Context(_multilabel(), options={"train_figures": False})
    result = run_stages(ctx, ["skeleton", "train"])
    crashed = [(c.name, c.reason) for s in result.stages for c in s.checks
               if c.status == "crashed"]
    assert crashed == []
    assert "check-crashed" not in {f.code for f in result.findings}
    preds = ctx.state["train"]["recording"].predictions
    assert preds and "output" in preds[-1]  # the first output, not a class-id lookup
