"""Set-ups that used to crash checks or pass silently, run in-process through
``nnrecipe.run``: other output layouts, a 1-sample last batch under BatchNorm, a batch larger
than the data, a 1-sample training set, NaN rows; and the promise that no user object
changes."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from nnrecipe import run
from nnrecipe.core.context import Context
from nnrecipe.core.results import RunResult
from nnrecipe.core.validate import validate_experiment
from tests.core import never_silent_exp as exps
from tests.seeds import TEST_SEED
from tests.toys import classification_experiment


def _crashes(result: RunResult) -> list[str]:
    return [f"{c.name}: {c.reason}" for s in result.stages for c in s.checks
            if c.status == "crashed"]


def _check(result: RunResult, name: str):  # noqa: ANN202
    (c,) = [c for s in result.stages for c in s.checks if c.name == name]
    return c


@pytest.mark.statistical
def test_sequence_logits_b_t_v_run_check_lr_and_train_without_a_crash() -> None:
    # nanoGPT / Hugging Face layout: (B, T, V) logits, (B, T) targets, a loss that flattens.
    exp = exps.sequence(seed=TEST_SEED)
    # (`check` without its data stage, which computes no accuracy: 2/3 of its cost.)
    for command, stages in (("check", ["skeleton"]), ("lr", ["overfit"]),
                            ("train", ["train"])):
        result = run(exp, stages, command=command)
        assert _crashes(result) == [], command
        assert all(f.severity.value != "error" for f in result.findings), (
            command, [(f.code, f.message) for f in result.findings])
    val = _check(result, "training").metrics["val"]
    # Accuracy over all 64 x 12 positions; the task (sum of two tokens mod 8) is learnable by
    # the causal convolution: chance is 1/8. Seeds 0-9: 0.436 (seed 5) to 0.561, so the worst
    # seed clears 0.3 by 0.136; no warning or error on any seed.
    assert val["accuracy"] > 0.3


def test_batchnorm_with_a_one_sample_last_batch_trains_and_says_so() -> None:
    exp = exps.batchnorm_singleton()
    result = run(exp, ["skeleton", "overfit", "train"],
                 only=["baseline-not-beaten", "input-independent", "lr-suggestion", "training"])
    assert _crashes(result) == []
    (f,) = [f for f in result.findings if f.code == "singleton-last-batch"]
    assert "65 training samples at batch_size=64" in f.message and "drop_last" in f.fix
    ctx = Context(exp)
    validate_experiment(ctx)
    assert ctx.loader("train").drop_last and not ctx.loader("train", batch_size=30).drop_last
    assert ctx.loader("train", batch_size=16).drop_last  # 65 = 4 x 16 + 1: any batch size
    assert _check(result, "training").metrics["epochs_run"] == 3


@pytest.mark.parametrize(("n", "batch_size", "norm"), [(64, 64, nn.BatchNorm1d),
                                                       (65, 64, nn.LayerNorm),
                                                       (66, 64, nn.BatchNorm1d)])
def test_no_singleton_finding_when_the_model_can_train_on_the_last_batch(
        n: int, batch_size: int, norm: type[nn.Module]) -> None:
    X, y = exps.blobs(n=n)
    exp = classification_experiment(
        model=lambda: nn.Sequential(nn.Linear(10, 16), norm(16), nn.ReLU(), nn.Linear(16, 3)),
        train=(X, y), batch_size=batch_size)
    ctx = Context(exp)
    assert [f.code for f in validate_experiment(ctx)] == []
    assert ctx.loader("train").drop_last is False  # every sample is trained on


def test_a_batch_larger_than_the_training_set_is_a_finding() -> None:
    result = run(exps.huge_batch(), ["train"])
    (f,) = [f for f in result.findings if f.code == "batch-larger-than-data"]
    assert "batch_size=1000000000000" in f.message and "only 2 optimizer steps" in f.message
    assert _crashes(result) == []
    ctx = Context(classification_experiment(batch_size=300))  # exactly the set: intended
    assert validate_experiment(ctx) == []


def test_a_one_sample_training_set_skips_what_cannot_run_with_reasons() -> None:
    result = run(exps.one_sample(), ["skeleton", "overfit", "train"])
    assert _crashes(result) == []
    for name in ("baseline-not-beaten", "input-independent", "lr-suggestion"):
        c = _check(result, name)
        assert c.status == "skipped" and "needs at least 2 training samples" in c.reason


def test_nan_rows_do_not_crash_the_linear_baseline() -> None:
    result = run(exps.nan_rows(), ["skeleton"], only=["baseline-not-beaten"])
    c = _check(result, "baseline-not-beaten")
    assert c.status != "crashed", c.reason
    assert c.metrics["linear_nonfinite_rows_dropped"] >= 1


def _rng_states() -> tuple:
    return (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())


def test_no_user_object_changes_through_any_stage() -> None:
    template = exps.mlp(10, 3)
    template.eval()
    X, y = exps.blobs(n=400)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    loss = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 1.0]))
    import copy

    exp = classification_experiment(model=lambda: copy.deepcopy(template).train(),
                                    train=(Xt[:300], yt[:300]), val=(Xt[300:], yt[300:]),
                                    loss=loss, epochs=2,
                                    options={"tune_trials": 2, "short_run_steps": 20})
    before_model = {k: v.clone() for k, v in template.state_dict().items()}
    before_data = (Xt.clone(), yt.clone())
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    rng = _rng_states()
    result = run(exp, ["data", "skeleton", "overfit", "train", "regularize", "tune", "ensemble"])
    assert _crashes(result) == []
    after = _rng_states()
    assert torch.equal(rng[0], after[0]) and np.array_equal(rng[1], after[1])
    assert rng[2] == after[2]
    assert all(torch.equal(before_model[k], v) for k, v in template.state_dict().items())
    assert not template.training
    assert torch.equal(before_data[0], Xt) and torch.equal(before_data[1], yt)
    assert torch.equal(loss.weight, torch.tensor([1.0, 2.0, 1.0])) and loss.reduction == "mean"


@pytest.mark.parametrize(("n", "batch_size", "cause"), [(1, 64, "the training set holds one sample"),
                                                        (40, 1, "batch_size=1")])
def test_batchnorm_that_can_never_train_is_a_clear_error(n: int, batch_size: int, cause: str
                                                         ) -> None:
    from nnrecipe import ExperimentError

    X, y = exps.blobs(n=max(n, 3))
    exp = classification_experiment(model=exps._bn_net, train=(X[:n], y[:n]),
                                    batch_size=batch_size)
    with pytest.raises(ExperimentError, match=f"{cause}, and the model cannot take a training"):
        validate_experiment(Context(exp))
