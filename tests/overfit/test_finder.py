"""``nnrecipe.lr_find`` on a user's own model and optimizer: a suggestion, and nothing changed."""

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import nnrecipe
from nnrecipe.core.context import Context
from nnrecipe.core.runner import run_check
from nnrecipe.errors import ConfigurationError
from nnrecipe.overfit.lr_test import LRRangeTest
from tests.toys import blobs, classification_experiment


def _setup() -> tuple[nn.Module, torch.optim.Optimizer, tuple, tuple]:
    X, y = blobs(n=400)
    model = nn.Sequential(nn.Linear(10, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    # Some history: Adam moments, BN running stats, eval mode - all must come back as they were.
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(torch.from_numpy(X[:64])), torch.from_numpy(y[:64])).backward()
        opt.step()
    model.eval()
    return model, opt, (X[:300], y[:300]), (X[300:], y[300:])


def _opt_state(opt: torch.optim.Optimizer) -> tuple:
    st = opt.state_dict()
    return ([g["lr"] for g in st["param_groups"]],
            {k: {n: t.clone() if isinstance(t, torch.Tensor) else t for n, t in v.items()}
             for k, v in st["state"].items()})


def test_lr_find_restores_weights_optimizer_mode_and_rng() -> None:
    model, opt, train, val = _setup()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    lrs, state = _opt_state(opt)
    torch.manual_seed(123)
    rng = torch.get_rng_state()

    res = nnrecipe.lr_find(model, opt, train, nn.CrossEntropyLoss(), val_data=val,
                           batch_size=32, repeats=2, num_steps=60, run_steps=30)

    assert res.method == "validated" and math.isfinite(res.suggested)
    assert res.low <= res.suggested <= res.high and res.confidence in ("high", "medium", "low")
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert not model.training
    lrs_after, state_after = _opt_state(opt)
    assert lrs_after == lrs
    for k, v in state.items():
        for n, t in v.items():
            assert torch.equal(torch.as_tensor(t), torch.as_tensor(state_after[k][n]))
    assert torch.equal(torch.get_rng_state(), rng)


def test_lr_find_without_validation_data_and_restores_on_error() -> None:
    model, opt, train, _ = _setup()
    # (X, y) without val_data: 20% is held out, the candidates are still validated.
    res = nnrecipe.lr_find(model, opt, train, nn.CrossEntropyLoss(), repeats=1, num_steps=60,
                           run_steps=20)
    assert res.method == "validated" and res.tried
    # A DataLoader cannot be split: the sweeps alone.
    loader = DataLoader(TensorDataset(*(torch.as_tensor(a) for a in train)), batch_size=32,
                        shuffle=True)
    res = nnrecipe.lr_find(model, opt, loader, nn.CrossEntropyLoss(), repeats=2, num_steps=60)
    assert res.method == "sweep" and res.tried == {}
    assert 1e-5 < res.suggested < 1.0 and len(res.edge_lrs) == 2

    weights = {k: v.clone() for k, v in model.state_dict().items()}
    calls = []

    def broken_step(m, batch, loss, o):  # noqa: ANN001, ANN202
        calls.append(1)
        o.zero_grad()
        loss(m(batch[0]), batch[1]).backward()
        o.step()
        if len(calls) == 5:
            raise RuntimeError("boom")
        return 1.0

    with pytest.raises(RuntimeError, match="boom"):
        nnrecipe.lr_find(model, opt, train, nn.CrossEntropyLoss(), train_step=broken_step)
    assert len(calls) == 5  # the user's step is the one used
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_lr_find_rejects_non_optimizers() -> None:
    model, _, train, _ = _setup()
    with pytest.raises(ConfigurationError, match="torch.optim.Optimizer"):
        nnrecipe.lr_find(model, "adam", train, nn.CrossEntropyLoss())


def test_a_decaying_schedule_is_wired_from_lr_find_and_the_stage() -> None:
    # lr_find(schedule=...): the suggestion is the schedule's peak, the reasons say so
    model, opt, train, val = _setup()
    res = nnrecipe.lr_find(model, opt, train, nn.CrossEntropyLoss(), val_data=val,
                           batch_size=32, repeats=1, num_steps=60, run_steps=30, epochs=10,
                           schedule="cosine")
    assert res.horizon is not None and res.horizon.steps == 100
    assert res.horizon.regime == "decaying schedule" and "cosine decay" in res.reasons[0]
    with pytest.raises(ConfigurationError, match="unknown learning-rate schedule"):
        nnrecipe.lr_find(model, opt, train, nn.CrossEntropyLoss(), schedule="bogus")
    # the stage reads the experiment's options["schedule"], which the train stage trains with
    exp = classification_experiment(epochs=20, options={"schedule": "cosine",
                                                        "lr_sweeps": 1})
    ctx = Context(exp)
    run_check(ctx, LRRangeTest)
    assert ctx.state["lr"]["horizon_regime"] == "decaying schedule"
    ctx = Context(classification_experiment(epochs=20, options={"lr_sweeps": 1}))
    run_check(ctx, LRRangeTest)
    assert ctx.state["lr"]["horizon_regime"] in ("still falling", "bottomed out")
