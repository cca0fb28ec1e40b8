import math

import numpy as np
import pytest
import torch
from torch import nn

from nnrecipe.api import run
from nnrecipe.skeleton.init_bias import init_output_bias
from nnrecipe.skeleton.init_loss import init_loss_verdict, offset_only
from tests.toys import BiasedOutput, blobs, classification_experiment, mlp, regression_experiment


def _findings(exp, code):  # noqa: ANN001
    res = run(exp, ["skeleton"], only=["init-loss-mismatch"])
    return [f for f in res.findings if f.code == code], res


# --- the decision, on scripted numbers ---------------------------------------------------

@pytest.mark.parametrize("measured, expected, kind, fires, direction", [
    (2.35, math.log(10), "nats", False, ""),      # a healthy softmax init
    (2.30 + 0.74, math.log(10), "nats", True, "high"),
    (0.69, 0.69, "nats", False, ""),
    (1.10, 1.0, "regression", False, ""),
    (2600.0, 100.0, "regression", True, "high"),  # uncentred targets, zero-mean outputs
    (0.2, 1.0, "regression", True, "low"),        # better than the mean at init: a leak
])
def test_verdict(measured: float, expected: float, kind: str, fires: bool, direction: str) -> None:
    v = init_loss_verdict(measured, expected, kind)
    assert (v.fires, v.direction) == (fires, direction)


@pytest.mark.parametrize("kind, measured, zero, var, tol, offset", [
    ("regression", 30.65, 32.0, 1e-5, 7.18, True),   # d2l linear regression: outputs ~0
    ("regression", 30.65, 32.0, 9.0, 7.18, False),   # outputs spread wider than the band
    ("nats", 0.70, 0.69, 0.0, 0.51, True),           # 99:1 prior, uniform outputs
    ("nats", 3.04, 2.30, 0.0, 0.73, False),          # confidently wrong logits
    ("nats", 0.70, None, 0.0, 0.51, False),          # no zero-output reference
])
def test_offset_only(kind: str, measured: float, zero: float | None, var: float, tol: float,
                     offset: bool) -> None:
    assert offset_only(kind, measured, zero, var, tol) is offset


# --- wired on real models ------------------------------------------------------------------

def test_quiet_on_healthy_classification_and_regression() -> None:
    for exp in (classification_experiment(), regression_experiment()):
        found, res = _findings(exp, "init-loss-mismatch")
        assert found == [], found
        check = res.stages[0].checks[0]
        assert check.status == "passed"
        # quiet: the numbers in a table, no figure (drawing it cost ~40% of the check)
        assert check.tables and not check.figures


def test_a_finding_comes_with_its_figure() -> None:
    exp = classification_experiment(model=lambda: BiasedOutput(mlp(10, 3), bias=8.0))
    (_,), res = _findings(exp, "init-loss-mismatch")
    assert [fig.title for fig in res.stages[0].checks[0].figures] == ["Loss at initialisation"]


def test_fires_on_a_wrong_output_bias() -> None:
    exp = classification_experiment(model=lambda: BiasedOutput(mlp(10, 3), bias=8.0))
    (f,), _ = _findings(exp, "init-loss-mismatch")
    assert f.evidence["measured"] > f.evidence["expected"] + f.evidence["tolerance"]
    assert f.severity.value == "warning"  # confidently wrong outputs: a fault of the init
    assert "init_output_bias" in f.fix
    assert len(f.evidence["suggested_output_bias"]) == 3


def test_fires_on_uncentred_regression_targets() -> None:
    exp = regression_experiment()
    X, y = exp.train
    exp = regression_experiment(train=(X, y * 10 + 50))
    (f,), _ = _findings(exp, "init-loss-mismatch")
    assert f.evidence["measured"] > 10 * f.evidence["expected"]
    # outputs near zero, the excess is the targets' mean: advice (info), as on d2l's
    # canonical linear regression, not a fault of the init
    assert f.severity.value == "info" and "first steps learn that offset" in f.message


def test_imbalanced_prior_fires_then_init_output_bias_fixes_it() -> None:
    X, y = blobs(n=1000, classes=2)
    keep = (y == 0) | (torch.rand(len(y), generator=torch.Generator().manual_seed(0)).numpy() < 0.01)
    X, y = X[keep], y[keep]  # ~99:1 imbalance: ln 2 vs prior entropy ~0.06
    exp = classification_experiment(model=lambda: mlp(10, 2), train=(X, y), val=None)
    (f,), _ = _findings(exp, "init-loss-mismatch")
    assert f.evidence["zero_output_loss"] > f.evidence["expected"] + f.evidence["tolerance"]
    assert f.severity.value == "info"  # default init, outputs near uniform: the prior's excess

    def fixed() -> nn.Module:
        net = mlp(10, 2)
        init_output_bias(net, (X, y), nn.CrossEntropyLoss())
        return net

    found, _ = _findings(classification_experiment(model=fixed, train=(X, y), val=None),
                         "init-loss-mismatch")
    assert found == []


def test_a_class_weighted_loss_expects_the_best_constant_not_the_prior() -> None:
    """95/5 labels under CrossEntropyLoss(weight=inverse frequency): uniform outputs (the
    default init) are the best constant, the prior scores far worse; quiet. Without the
    weights the prior's loss is the reference and the default init is above it (info)."""
    X, y = blobs(n=2000, classes=2)
    keep = (y == 0) | (np.arange(len(y)) % 19 == 0)  # ~95:5
    X, y = X[keep], y[keep]
    counts = np.bincount(y, minlength=2)
    weights = torch.tensor(len(y) / (2 * counts), dtype=torch.float32)
    exp = classification_experiment(model=lambda: mlp(10, 2), train=(X, y), val=None,
                                    loss=nn.CrossEntropyLoss(weight=weights))
    found, _ = _findings(exp, "init-loss-mismatch")
    assert found == []
