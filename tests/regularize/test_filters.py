import numpy as np
import torch
from torch import nn

from nnrecipe import Experiment
from nnrecipe.core.context import Context
from nnrecipe.core.runner import run_check
from nnrecipe.examples.digits import digits_splits
from nnrecipe.examples.digits import experiment as digits_experiment
from nnrecipe.regularize.filters import (
    NOISE_SCORE,
    FirstLayerFilters,
    filters_verdict,
    smoothness_score,
)


class DigitsMLP(nn.Module):
    """A dense first layer on the 8x8 images: each unit's weights are an 8x8 image."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def mlp_experiment(noise_inputs: bool = False) -> Experiment:
    s = digits_splits()
    train = s["train"]
    if noise_inputs:  # nothing to learn: the first layer has no structure to pick up
        rng = np.random.default_rng(0)
        train = (rng.normal(size=train[0].shape).astype(np.float32), train[1])
    return Experiment(model=DigitsMLP, train=train, val=s["val"], loss=nn.CrossEntropyLoss(),
                      optimizer=lambda p: torch.optim.Adam(p, lr=1e-3), epochs=15, seed=0)


def _check(exp: Experiment, state_dict: dict | None = None):  # noqa: ANN202
    ctx = Context(exp)
    if state_dict is not None:
        ctx.state["train"] = {"state_dict": state_dict}
    return run_check(ctx, FirstLayerFilters)


def test_score_separates_smooth_from_noise() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[-2:3, -2:3]
    smooth = np.stack([np.exp(-((xx - rng.uniform(-1, 1)) ** 2 + (yy - rng.uniform(-1, 1)) ** 2) / 2)
                       * rng.choice([-1, 1]) for _ in range(16)])
    edges = np.stack([np.cos(a) * xx + np.sin(a) * yy for a in rng.uniform(0, np.pi, 16)])
    noise = rng.normal(size=(16, 5, 5))
    assert smoothness_score(smooth) < 0.5 and smoothness_score(edges) < 0.5
    assert 0.9 < smoothness_score(noise) < 1.1
    assert filters_verdict(noise).noise_like and not filters_verdict(edges).noise_like


def test_small_kernels_and_few_filters_get_no_verdict() -> None:
    rng = np.random.default_rng(0)
    v3 = filters_verdict(rng.normal(size=(16, 3, 3)))
    assert not v3.applicable and not v3.noise_like and "too small" in v3.reason
    few = filters_verdict(rng.normal(size=(4, 5, 5)))  # random ones pass 0.9 only ~90% of the time
    assert not few.applicable and few.power < 0.95


def test_quiet_on_trained_dense_filters() -> None:
    res = _check(mlp_experiment())
    assert res.status == "passed", res.findings
    assert res.metrics["kind"] == "dense" and res.metrics["score"] < 0.8  # measured 0.70-0.72
    assert res.figures and res.tables


def test_fires_on_untrained_filters() -> None:
    exp = mlp_experiment()
    untrained = Context(exp).fresh_model(seed=3).state_dict()
    res = _check(exp, untrained)
    (f,) = res.findings
    assert f.code == "first-layer-noise" and f.severity.value == "warning"
    assert f.evidence["score"] > NOISE_SCORE


def test_fires_on_filters_trained_on_noise() -> None:
    (f,) = _check(mlp_experiment(noise_inputs=True)).findings
    assert f.code == "first-layer-noise"


def test_demo_3x3_filters_are_shown_without_a_verdict() -> None:
    exp = digits_experiment()
    res = _check(exp, Context(exp).fresh_model(seed=1).state_dict())  # even untrained ones
    assert res.findings == [] and res.metrics["kernel_shape"] == [3, 3]
    assert "too small" in res.metrics["verdict"] and res.figures
