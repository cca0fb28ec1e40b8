"""Training-step faults seen by the probe: ``grads-not-zeroed``, ``params-not-updating``,
``eval-mode-training``."""

import torch
from torch import nn

from nnrecipe.skeleton.eval_mode import mode_verdict
from nnrecipe.skeleton.grads_zeroed import stale_verdict
from nnrecipe.skeleton.params_updating import update_verdict
from tests.skeleton import zoo
from tests.toys import classification_experiment, mlp, step_without_optimizer_step

STEP_CODES = ("grads-not-zeroed", "params-not-updating", "eval-mode-training")


def dropout_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 3))


def test_verdicts_on_scripted_records() -> None:
    stale = [{"w": (0.0, 1.0)}, {"w": (0.0, 1.2), "b": (0.9, 1.0)}]
    assert stale_verdict(stale) == {"b": 0.9}
    assert stale_verdict([{"w": (0.0, 1.0)}, {"w": (0.0, 1.0)}]) == {}
    v = update_verdict(["a", "b", "c"], {"a"}, {"a", "b"}, {"a": 1.0, "b": 0.0}, 3, [1e-3])
    assert v.reasons == {"gradient exactly zero": ["b"], "not in the optimizer": ["c"]}
    assert not v.all_stuck
    v = update_verdict(["a"], set(), {"a"}, {"a": 1.0}, 0, [])
    assert v.all_stuck and v.no_optimizer_step
    m = mode_verdict([[{"model_training": True, "eval_layers": []}],
                      [{"model_training": False, "eval_layers": ["2"]}]])
    assert m.model_eval_steps == [1] and m.eval_layers == ["2"]


def test_quiet_on_healthy_custom_steps() -> None:
    """The built-in step on every model family is covered by test_healthy."""
    for exp in (classification_experiment(model=dropout_mlp, train_step=zoo.step_zero_grad_after),
                classification_experiment(model=dropout_mlp,
                                          train_step=zoo.step_with_eval_logging)):
        findings, checks, _ = zoo.run_checks(exp, *STEP_CODES)
        assert findings == [], findings
        assert all(checks[c].status == "passed" for c in STEP_CODES)


def test_grads_not_zeroed() -> None:
    exp = classification_experiment(train_step=zoo.step_without_zero_grad)
    findings, _, _ = zoo.run_checks(exp, *STEP_CODES)
    (f,) = findings
    assert f.code == "grads-not-zeroed" and f.severity.value == "error"
    assert f.evidence["n_parameters"] == f.evidence["n_trainable"] == 6


def test_params_not_updating_without_optimizer_step() -> None:
    exp = classification_experiment(train_step=step_without_optimizer_step)
    findings, _, _ = zoo.run_checks(exp, "params-not-updating")
    (f,) = findings
    assert f.severity.value == "error" and "never called optimizer.step()" in f.message
    assert f.evidence["n_unchanged"] == 6


def test_params_not_updating_with_zero_learning_rate() -> None:
    exp = classification_experiment(optimizer=lambda p: torch.optim.SGD(p, lr=0.0))
    (f,), _, _ = zoo.run_checks(exp, "params-not-updating")
    assert f.severity.value == "error" and "learning rate is 0" in f.message


def test_params_not_updating_names_a_detached_branch_and_frozen_layers() -> None:
    (f,), checks, _ = zoo.run_checks(classification_experiment(model=zoo.DetachedBranch),
                                     "params-not-updating")
    assert f.severity.value == "warning"
    assert sorted(f.evidence["unchanged"]) == ["side.bias", "side.weight"]
    assert "no gradient" in next(iter(f.evidence["reasons"]))
    assert checks["params-not-updating"].figures

    def frozen_first() -> nn.Module:
        net = mlp(10, 3)
        net[0].requires_grad_(False)
        return net

    (f,), _, _ = zoo.run_checks(classification_experiment(model=frozen_first),
                                "params-not-updating")
    assert f.severity.value == "info" and f.evidence["frozen"] == ["0.weight", "0.bias"]


def test_eval_mode_left_behind_by_the_step() -> None:
    exp = classification_experiment(model=dropout_mlp, train_step=zoo.step_leaves_eval_mode)
    findings, _, _ = zoo.run_checks(exp, *STEP_CODES)
    (f,) = findings
    assert f.code == "eval-mode-training" and f.severity.value == "warning"
    assert f.evidence["model_eval_steps"] == [1, 2] and f.evidence["eval_layers"] == ["2"]
    # without dropout/batch norm the mode changes nothing yet: info
    exp = classification_experiment(train_step=zoo.step_leaves_eval_mode)
    (f,), _, _ = zoo.run_checks(exp, "eval-mode-training")
    assert f.severity.value == "info"
