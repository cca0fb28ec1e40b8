import math
from typing import Any

import torch
from torch import nn

from nnrecipe.api import run
from nnrecipe.core.context import Context
from nnrecipe.core.runner import run_check
from nnrecipe.ensemble.average import average_outputs
from nnrecipe.ensemble.journey import Journey, journey_points
from nnrecipe.ensemble.squeeze import Ensemble
from nnrecipe.regularize.outcomes import Metric
from tests.toys import classification_experiment, regression_experiment


def test_averaging_is_done_on_probabilities() -> None:
    a, b = torch.tensor([[4.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    ce = average_outputs(nn.CrossEntropyLoss(), [a, b])
    expected = (torch.softmax(a, 1) + torch.softmax(b, 1)) / 2
    assert torch.allclose(ce.exp(), expected, atol=1e-6)
    bce = average_outputs(nn.BCEWithLogitsLoss(), [torch.tensor([2.0]), torch.tensor([-2.0])])
    assert torch.allclose(torch.sigmoid(bce), torch.tensor([0.5]), atol=1e-6)
    mse = average_outputs(nn.MSELoss(), [torch.tensor([1.0]), torch.tensor([3.0])])
    assert mse.item() == 2.0


def test_ensemble_of_tuned_models_and_the_journey() -> None:
    exp = classification_experiment(epochs=3, test=classification_experiment().val)
    res = run(exp, ["regularize", "tune", "ensemble"], only=[
        "regularization-advice", "tuning-advice", "ensemble-advice", "journey"],
        options={"tune_trials": 4, "regularize_fractions": (0.5,), "regularize_seeds": 1,
                 "regularize_weight_decays": (1e-3,)})
    ens = res.stages[2].checks[0]
    (f,) = ens.findings
    assert f.code == "ensemble-advice" and f.severity.value == "info"
    assert ens.tables[0].rows[0][0] == 1 and 2 <= len(ens.tables[0].rows) <= 5
    assert "tune trial" in ens.tables[0].rows[-1][1]
    journey = res.stages[2].checks[1]
    assert journey.status == "passed" and journey.figures
    steps = [r[0] for r in journey.tables[0].rows]
    assert steps == ["baseline", "first model", "overfit", "regularised", "tuned", "ensemble"]
    by_step = {r[0]: r for r in journey.tables[0].rows}
    assert "not run" in by_step["baseline"][1] and "not run" in by_step["first model"][1]
    for step in ("overfit", "regularised", "tuned", "ensemble"):
        assert isinstance(by_step[step][2], float) and isinstance(by_step[step][3], float)
    assert res.extra["journey"]["metric"] == "accuracy"


def test_ensemble_alone_trains_its_members() -> None:
    ctx = Context(regression_experiment(epochs=2), options={"ensemble_size": 3})
    res = run_check(ctx, Ensemble)
    assert res.metrics["members_trained_here"] == 3 and len(res.tables[0].rows) == 3
    assert ctx.state["ensemble"]["metric"] == "loss"
    assert ctx.state["ensemble"]["val"]["loss"] <= ctx.state["ensemble"]["single"]["val"]["loss"]


def test_journey_from_scripted_state() -> None:
    state: dict[str, Any] = {
        "baselines": {"split": "val", "majority": {"loss": 2.3, "accuracy": 0.1},
                      "linear": {"loss": 0.2, "accuracy": 0.95}},
        "train": {"val": {"loss": 0.1, "accuracy": 0.97}, "test": {"accuracy": 0.96}},
        "tune": {"best": {"number": 3, "params": {"lr": 0.001}, "val": {"accuracy": 0.99},
                          "test": {}}},
    }
    points = journey_points(state, Metric("accuracy", True))
    assert [p["ran"] for p in points] == [True, True, False, False, True, False]
    assert "linear" in points[0]["what"] and points[0]["val"]["accuracy"] == 0.95
    assert points[4]["test"] == {} and "lr=0.001" in points[4]["what"]


def test_journey_with_nothing_run_is_all_not_run() -> None:
    ctx = Context(classification_experiment())
    res = run_check(ctx, Journey)
    assert res.status == "passed" and not res.figures
    assert all("not run" in r[1] for r in res.tables[0].rows)
    assert all(math.isnan(p["val"].get("accuracy", math.nan))
               for p in ctx.state["report_extra"]["journey"]["points"])
