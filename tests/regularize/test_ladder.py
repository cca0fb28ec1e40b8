import numpy as np
import torch
from torch import nn

from nnrecipe import Experiment
from nnrecipe.core.context import Context
from nnrecipe.core.runner import run_check
from nnrecipe.regularize.ladder import RegularizationLadder, dropout_before_batchnorm
from tests.toys import blobs, classification_experiment

# Few, cheap rungs: the wiring is what is tested here; the demo runs the full ladder.
FAST = {"regularize_fractions": (0.5,), "regularize_weight_decays": (1e-2,),
        "regularize_dropouts": (0.5,), "regularize_batch_divisor": 2}


def overfitting_experiment(**overrides: object) -> Experiment:
    """80 noisy samples (20% labels flipped), a 128-wide MLP, 30 epochs: it memorises."""
    X, y = blobs(n=400, d=20, classes=3, sep=1.0, seed=1)
    rng = np.random.default_rng(0)
    y = np.where(rng.random(len(y)) < 0.2, rng.integers(0, 3, len(y)), y)

    def model(hidden: int = 128, dropout: float = 0.0) -> nn.Module:
        return nn.Sequential(nn.Linear(20, hidden), nn.ReLU(), nn.Dropout(dropout),
                             nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 3))

    kw: dict = dict(model=model, train=(X[:80], y[:80]), val=(X[200:], y[200:]),
                    loss=nn.CrossEntropyLoss(), optimizer=lambda p: torch.optim.Adam(p, lr=3e-3),
                    batch_size=16, epochs=30, seed=0, capacity_arg="hidden",
                    capacity_default=128, options=dict(FAST))
    kw.update(overrides)
    return Experiment(**kw)


def _ladder(exp: Experiment):  # noqa: ANN202
    ctx = Context(exp)
    return run_check(ctx, RegularizationLadder), ctx


def test_overfitting_model_is_helped_by_early_stopping_and_weight_decay() -> None:
    res, ctx = _ladder(overfitting_experiment())
    (f,) = res.findings
    assert f.code == "regularization-advice" and f.severity.value == "info"
    verdicts = {(r["rung"], r["setting"]): r["verdict"] for r in ctx.state["regularize"]["rungs"]}
    assert verdicts[("early stopping", "best epoch 3 of 30")] == "helped"
    assert verdicts[("weight decay", "0.01 (L2)")].startswith("helped")
    assert "early stopping" in f.message and "helped:" in f.message
    best = ctx.state["regularize"]["best"]
    assert best["name"] != "unregularised reference" and best["state_dict"]
    assert best["val"]["loss"] < ctx.state["regularize"]["reference"]["val"]["loss"]
    assert [t.title for t in res.tables] == ["The regularisation ladder, ranked"]
    assert len(res.figures) == 2  # gains, learning curve


def test_healthy_toy_needs_no_regularisation_and_says_so() -> None:
    exp = classification_experiment(options=dict(FAST))  # no dropout/capacity knobs declared
    res, ctx = _ladder(exp)
    (f,) = res.findings
    # 5 epochs: still improving, so the advice is to train longer, not to regularise; the
    # smaller batch "helps" by taking twice the steps, and the table says so.
    assert f.severity.value == "info" and "underfits rather than overfits" in f.message
    rows = {r["rung"]: r for r in ctx.state["regularize"]["rungs"]}
    assert "better fitting" in rows["smaller batch"]["note"]
    assert rows["dropout"]["verdict"] == "not applicable"
    assert rows["smaller model"]["verdict"] == "not applicable"
    assert rows["weight decay"]["verdict"] == "within noise"


class DropoutThenBN(nn.Module):
    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, 32), nn.Dropout(dropout), nn.BatchNorm1d(32),
                                 nn.ReLU(), nn.Linear(32, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_dropout_knob_in_front_of_batchnorm_is_warned() -> None:
    exp = classification_experiment(model=DropoutThenBN, epochs=3, options={
        **FAST, "regularize_fractions": (), "regularize_seeds": 1})
    res, _ = _ladder(exp)
    warnings = [f for f in res.findings if f.code == "dropout-with-batchnorm"]
    (w,) = warnings
    assert w.severity.value == "warning" and ["net.1", "net.2"] in [list(p) for p in w.evidence["pairs"]]


def test_dropout_after_batchnorm_is_fine() -> None:
    model = nn.Sequential(nn.Linear(10, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.5),
                          nn.Linear(32, 3))
    assert dropout_before_batchnorm(model, torch.randn(8, 10)) == []
    model = DropoutThenBN(0.5)
    assert dropout_before_batchnorm(model, torch.randn(8, 10)) == [("net.1", "net.2")]
    assert dropout_before_batchnorm(DropoutThenBN(0.0), torch.randn(8, 10)) == []  # p=0: inactive


def test_no_validation_split_is_skipped() -> None:
    res, _ = _ladder(classification_experiment(val=None))
    assert res.status == "skipped" and "validation" in res.reason


def test_budget_used_up_is_skipped() -> None:
    exp = classification_experiment()
    ctx = Context(exp, options={"budget_s": 5})
    ctx.state["deadline"] = 0.0  # long past
    res = run_check(ctx, RegularizationLadder)
    assert res.status == "skipped" and "budget" in res.reason
