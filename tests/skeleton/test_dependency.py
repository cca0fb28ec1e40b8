"""``batch-dependency`` and ``causal-leak``: dependencies charted by backprop."""

import numpy as np
import pytest

from nnrecipe.skeleton.batch_dependency import batch_dependency_verdict
from nnrecipe.skeleton.causal import causal_verdict
from tests.skeleton import zoo
from tests.toys import classification_experiment


def test_verdicts_on_scripted_matrices() -> None:
    clean = np.diag([1.0, 0.5, 2.0])
    assert batch_dependency_verdict(clean).pairs == []
    mixed = clean.copy()
    mixed[0, 2] = 0.2
    assert [(i, j) for i, j, _ in batch_dependency_verdict(mixed).pairs] == [(0, 2)]
    lower = np.tril(np.ones((4, 4)))
    assert causal_verdict(lower, [0, 1, 2, 3]).leaks == []
    shifted = np.tril(np.ones((4, 4)), k=1)
    v = causal_verdict(shifted, [0, 1, 2, 3])
    assert v.max_lookahead == 1 and len(v.leaks) == 3


def test_batch_norm_is_put_in_eval_mode_not_reported() -> None:
    """Other healthy families are covered by test_healthy."""
    findings, checks, _ = zoo.run_checks(zoo.cnn_experiment(), "batch-dependency")
    assert findings == []
    assert checks["batch-dependency"].metrics["max_cross_dependency"] == 0.0
    assert checks["batch-dependency"].metrics["batchnorm_in_eval"] == ["net.1", "net.4"]


def test_batch_dependency_locates_a_view_in_forward() -> None:
    exp = classification_experiment(model=zoo.ViewInsteadOfTranspose)
    (f,), checks, _ = zoo.run_checks(exp, "batch-dependency")
    assert f.severity.value == "error" and f.evidence["n_pairs"] > 0
    assert f.evidence["location"]["before"] == "net"  # mixed in forward(), before `net`
    assert "permute" in f.message and checks["batch-dependency"].figures


@pytest.mark.parametrize("bug, where", [("view", "lstm"), ("not-batch-first", "lstm")])
def test_batch_dependency_in_rnns(bug: str, where: str) -> None:
    exp = zoo.lstm_experiment(model=lambda: zoo.LSTMClassifier(bug=bug))
    (f,), _, _ = zoo.run_checks(exp, "batch-dependency")
    loc = f.evidence["location"]
    assert where in (loc.get("module"), loc.get("before"), loc.get("after"))


def test_causal_quiet_on_masked_transformer_and_unidirectional_lstm() -> None:
    per_step = zoo.lstm_experiment(model=lambda: zoo.LSTMClassifier(per_step=True),
                                   causal=True, train=(zoo.sequences()[0], _per_step_labels()),
                                   val=None)
    for exp in (zoo.transformer_experiment(), per_step):
        findings, checks, _ = zoo.run_checks(exp, "causal-leak")
        assert findings == [] and checks["causal-leak"].status == "passed"
        assert checks["causal-leak"].figures


def _per_step_labels() -> np.ndarray:
    X, _ = zoo.sequences()
    return (np.cumsum(X[:, :, 0], axis=1) > 0).astype(np.int64)


@pytest.mark.parametrize("mask, off_by_one", [("none", False), ("shifted", True)])
def test_causal_leak_in_attention_masks(mask: str, off_by_one: bool) -> None:
    exp = zoo.transformer_experiment(model=lambda: zoo.TinyCausalTransformer(mask=mask))
    (f,), _, _ = zoo.run_checks(exp, "causal-leak")
    assert f.severity.value == "error"
    assert ("shifted by one" in f.message) is off_by_one
    assert (f.evidence["lookaheads"] == [1]) is off_by_one


def test_causal_leak_in_a_bidirectional_lstm() -> None:
    exp = zoo.lstm_experiment(model=lambda: zoo.LSTMClassifier(bidirectional=True,
                                                               per_step=True),
                              causal=True, train=(zoo.sequences()[0], _per_step_labels()),
                              val=None)
    (f,), _, _ = zoo.run_checks(exp, "causal-leak")
    assert f.evidence["n_leaks"] == 12 * 11 // 2  # every future position


def test_causal_skipped_unless_marked() -> None:
    _, checks, _ = zoo.run_checks(zoo.transformer_experiment(causal=False), "causal-leak")
    assert checks["causal-leak"].status == "skipped"
