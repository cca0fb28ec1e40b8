"""``nondeterministic`` and ``augmentation-active``."""

import pytest

from nnrecipe.skeleton.augmentation import augmentation_verdict
from nnrecipe.skeleton.determinism import determinism_verdict
from tests.skeleton import zoo
from tests.toys import blobs, classification_experiment


@pytest.mark.parametrize("b, params, fires", [
    ([2.0, 1.5, 1.2], [0.0], False),                      # bit-identical
    ([2.0 * (1 + 1e-7), 1.5, 1.2], [1e-6], False),        # GPU-style float noise
    ([2.0, 1.52, 1.3], [0.0], True),                      # a different batch or mask
    ([2.0, 1.5, 1.2], [3e-3], True),                      # weights diverged
])
def test_verdict(b: list[float], params: list[float], fires: bool) -> None:
    assert determinism_verdict([2.0, 1.5, 1.2], b, params).fires is fires


def test_quiet_on_healthy_runs_and_a_custom_step() -> None:
    for exp in (classification_experiment(),
                classification_experiment(train_step=zoo.step_zero_grad_after)):
        findings, checks, _ = zoo.run_checks(exp, "nondeterministic")
        assert findings == [] and checks["nondeterministic"].status == "passed"
        assert checks["nondeterministic"].metrics["max_rel_loss_diff"] == 0.0


def test_fires_on_an_unseeded_model_factory() -> None:
    findings, _, _ = zoo.run_checks(classification_experiment(model=zoo.UnseededInit),
                                    "nondeterministic")
    (f,) = findings
    assert f.code == "nondeterministic" and "net.0.weight" in f.evidence["init_differs"]
    assert "model factory" in f.message


def test_fires_on_unseeded_noise_in_the_users_step() -> None:
    exp = classification_experiment(train_step=zoo.step_with_unseeded_noise)
    (f,), _, _ = zoo.run_checks(exp, "nondeterministic")
    assert f.evidence["init_differs"] == [] and f.evidence["first_differing_batch"] == 0
    assert f.evidence["custom_train_step"] is True


def test_augmentation_verdict() -> None:
    assert augmentation_verdict([0.0, 0.0]) == []
    assert augmentation_verdict([0.0, 0.3, 1e-9]) == [1]


def test_augmentation_is_info_and_explains_nondeterminism() -> None:
    X, y = blobs()
    exp = classification_experiment(train=zoo.NoisyDataset(X[:300], y[:300]))
    findings, _, _ = zoo.run_checks(exp, "augmentation-active", "nondeterministic")
    by_code = {f.code: f for f in findings}
    assert by_code["augmentation-active"].severity.value == "info"
    assert len(by_code["augmentation-active"].evidence["indices_changed"]) == 8
    assert "__getitem__" in by_code["nondeterministic"].message


def test_augmented_validation_is_a_warning() -> None:
    # gpleiss/efficient_densenet_pytorch#51: the training transform reached the validation split
    X, y = blobs()
    exp = classification_experiment(train=zoo.NoisyDataset(X[:300], y[:300]),
                                    val=zoo.NoisyDataset(X[300:], y[300:]))
    findings, _, _ = zoo.run_checks(exp, "augmentation-active")
    by_split = {f.evidence["split"]: f for f in findings}
    assert by_split["train"].severity.value == "info"
    assert by_split["val"].severity.value == "warning"
    assert len(by_split["val"].evidence["indices_changed"]) == 8


def test_deterministic_validation_beside_augmented_training_stays_info() -> None:
    X, y = blobs()
    exp = classification_experiment(train=zoo.NoisyDataset(X[:300], y[:300]),
                                    val=zoo.PlainDataset(X[300:], y[300:]))
    findings, _, _ = zoo.run_checks(exp, "augmentation-active")
    assert [(f.evidence["split"], f.severity.value) for f in findings] == [("train", "info")]


def test_no_augmentation_is_quiet() -> None:
    X, y = blobs()
    exp = classification_experiment(train=zoo.PlainDataset(X[:300], y[:300]))
    findings, checks, _ = zoo.run_checks(exp, "augmentation-active")
    assert findings == [] and checks["augmentation-active"].status == "passed"
    _, checks, _ = zoo.run_checks(classification_experiment(), "augmentation-active")
    assert checks["augmentation-active"].status == "skipped"
