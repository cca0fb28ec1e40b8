"""The whole skeleton stage on healthy setups of every model family: no warning, no error.

A false alarm is as serious a bug as a missed one (RECIPE.md); this is the test that holds
every skeleton check to it at once, with default settings.
"""

import pytest

from nnrecipe.examples.digits import experiment as digits
from tests.skeleton import zoo
from tests.toys import classification_experiment, regression_experiment

HEALTHY = {
    "blobs-mlp": classification_experiment,
    "regression-mlp": regression_experiment,
    "digits-cnn-demo": digits,
    "cnn-batchnorm-dropout": zoo.cnn_experiment,
    "lstm": zoo.lstm_experiment,
    "causal-transformer": zoo.transformer_experiment,
    "digits-mlp-default-optimizer": zoo.digits_mlp_experiment,  # issue 11
}


@pytest.mark.parametrize("name", list(HEALTHY))
def test_no_warning_or_error(name: str) -> None:
    findings, checks, ctx = zoo.run_checks(HEALTHY[name]())
    loud = [(f.code, f.message) for f in findings if f.severity.value in ("warning", "error")]
    assert loud == []
    assert not [c for c in checks.values() if c.status == "crashed"]
    baselines = ctx.state["baselines"]
    assert {"majority", "model"} <= set(baselines)
    metric = "mse" if ctx.task_type == "regression" else "accuracy"
    assert metric in baselines["model"] and metric in baselines["majority"]
