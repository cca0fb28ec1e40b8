from pathlib import Path

import pytest

from nnrecipe.api import run
from nnrecipe.errors import ExperimentError
from nnrecipe.loading import load_experiment, split_target

FIX = Path(__file__).parent.parent / "fixtures"


def test_split_target() -> None:
    assert split_target("a/b.py") == (Path("a/b.py"), "experiment")
    assert split_target("a/b.py:make") == (Path("a/b.py"), "make")


@pytest.mark.parametrize("target, match", [
    ("nope/missing.py", "no such file"),
    (str(FIX / "no_experiment.py"), r"has no function experiment\(\).*build"),
    (str(FIX / "healthy.py:raises"), "raised RuntimeError: dataset server unreachable"),
    (str(FIX / "healthy.py:not_an_experiment"), "returned int, not an nnrecipe.Experiment"),
    (str(FIX), "is a folder"),
])
def test_load_errors_name_the_cause(target: str, match: str) -> None:
    with pytest.raises(ExperimentError, match=match):
        load_experiment(target)


def test_shape_mismatch_is_an_experiment_error() -> None:
    exp, _ = load_experiment(str(FIX / "healthy.py:broken_shapes"))
    with pytest.raises(ExperimentError, match=r"model\(x\) failed on a batch of inputs of shape"):
        run(exp, ["skeleton"])


def test_experiment_rejects_a_model_instance() -> None:
    from tests.toys import classification_experiment, mlp

    with pytest.raises(ExperimentError, match="factory"):
        classification_experiment(model=mlp(10, 3))
