"""``double-softmax`` and ``target-shape-mismatch``."""

import pytest
import torch
from torch import nn

from nnrecipe.skeleton.double_softmax import double_softmax_verdict
from nnrecipe.skeleton.target_shape import broadcast_verdict
from tests.skeleton import zoo
from tests.toys import classification_experiment, mlp, regression_experiment


def test_double_softmax_verdict() -> None:
    assert double_softmax_verdict("logits", 0.01, 0.9, 1e-7, "SoftmaxBackward0").fires
    assert double_softmax_verdict("logits", 0.01, 0.9, 1e-7, "AddmmBackward0").fires
    assert not double_softmax_verdict("logits", -2.0, 3.0, 2.5, "AddmmBackward0").fires
    assert not double_softmax_verdict("logits", -5.0, -0.1, 0.9, "LogSoftmaxBackward0").fires
    assert double_softmax_verdict("binary-logits", 0.2, 0.8, 9.0, "SigmoidBackward0").fires
    # logits that happen to lie in [0, 1] are not enough without the sigmoid
    assert not double_softmax_verdict("binary-logits", 0.2, 0.8, 9.0, "AddmmBackward0").fires


def test_quiet_on_logits_and_log_softmax() -> None:
    class LogSoftmaxHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp(10, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.log_softmax(self.net(x), dim=1)

    for exp in (classification_experiment(), classification_experiment(model=LogSoftmaxHead),
                classification_experiment(model=LogSoftmaxHead, loss=nn.NLLLoss()),
                zoo.transformer_experiment()):
        findings, _, _ = zoo.run_checks(exp, "double-softmax")
        assert findings == []


def test_fires_on_softmax_before_cross_entropy_and_nll() -> None:
    for loss in (nn.CrossEntropyLoss(), nn.NLLLoss()):
        exp = classification_experiment(model=zoo.SoftmaxHead, loss=loss)
        (f,), _, _ = zoo.run_checks(exp, "double-softmax")
        assert f.code == "double-softmax" and f.severity.value == "error"
        assert f.evidence["received"][0]["row_sum_max_error"] < 1e-4


def test_fires_on_sigmoid_before_bce_with_logits() -> None:
    exp = regression_experiment(model=lambda: nn.Sequential(mlp(8, 1), nn.Sigmoid()),
                                loss=nn.BCEWithLogitsLoss(), task="classification")
    X, y = exp.train
    exp = regression_experiment(model=exp.model, loss=nn.BCEWithLogitsLoss(),
                                train=(X, (y > 0).astype("float32")), val=None)
    (f,), _, _ = zoo.run_checks(exp, "double-softmax")
    assert "sigmoid" in f.message


def test_broadcast_verdict() -> None:
    assert broadcast_verdict((32, 1), (32, 1)) is None
    assert broadcast_verdict((32, 1), (32,)) == (32, 32)
    assert broadcast_verdict((32,), (32, 1)) == (32, 32)
    assert broadcast_verdict((32, 3), (32,)) is None  # cannot broadcast: PyTorch raises


def test_target_shape_quiet_on_matching_shapes() -> None:
    findings, checks, _ = zoo.run_checks(regression_experiment(), "target-shape-mismatch")
    assert findings == [] and checks["target-shape-mismatch"].status == "passed"


@pytest.mark.filterwarnings("ignore:Using a target size")
def test_target_shape_fires_on_n1_outputs_vs_n_targets() -> None:
    exp = regression_experiment()
    X, y = exp.train
    (f,), _, _ = zoo.run_checks(regression_experiment(train=(X, y.reshape(-1)), val=None),
                                "target-shape-mismatch")
    assert f.evidence["broadcast_shape"] == [32, 32] and f.severity.value == "error"


def test_target_shape_sees_inside_the_users_step() -> None:
    exp = regression_experiment(train_step=zoo.step_squeezes_targets)
    (f,), _, _ = zoo.run_checks(exp, "target-shape-mismatch")
    assert f.evidence["target_shape"] == [32] and f.evidence["custom_train_step"] is True


def test_loss_recorder_observes_a_copy_and_keyword_calls() -> None:
    from nnrecipe.skeleton._util import LossRecorder

    user_loss = nn.MSELoss()
    rec = LossRecorder(user_loss)
    out, y = torch.zeros(4, 1), torch.ones(4, 1)
    rec.fn(out, y)
    rec.fn(input=out, target=y)
    assert len(rec.calls) == 2 and rec.calls[1][1] is y
    assert not user_loss._forward_hooks and isinstance(rec.fn, nn.MSELoss)
    rec = LossRecorder(torch.nn.functional.mse_loss)
    rec.fn(out, target=y)
    assert rec.calls[0][1] is y
