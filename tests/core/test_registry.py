import pytest

from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import CATALOGUE, CHECKS, Check, DuplicateCodeError, declare_code
from nnrecipe.core.runner import load_stage_checks


def test_duplicate_code_fails_at_declaration() -> None:
    load_stage_checks()  # the first declaration must exist for the second to clash
    with pytest.raises(DuplicateCodeError, match="init-loss-mismatch"):
        class Again(Check):  # noqa: F841 - declaring is the act under test
            code = "init-loss-mismatch"
            stage = "skeleton"
            title = "again"
            fix = "none"


def test_bad_slug_and_stage_are_rejected() -> None:
    with pytest.raises(ValueError, match="slug"):
        declare_code("Bad_Code", "data", Severity.INFO, "t", "f")
    with pytest.raises(ValueError, match="unknown stage"):
        declare_code("fine-code-x", "nowhere", Severity.INFO, "t", "f")


def test_every_check_declares_title_and_fix() -> None:
    load_stage_checks()
    for name, cls in CHECKS.items():
        assert cls.title and (cls.code is None or cls.fix), name
        for code in cls.emits:
            assert code in CATALOGUE, f"{name} emits undeclared {code}"


def test_finding_serialises_non_finite_and_numpy() -> None:
    import numpy as np

    f = Finding("loss-nonfinite", Severity.ERROR, "train", "m",
                evidence={"v": float("nan"), "a": np.arange(3), "s": np.float32(1.5)})
    d = f.to_dict()
    assert d["evidence"] == {"v": "nan", "a": [0, 1, 2], "s": 1.5}
    assert d["severity"] == "error"
    assert Finding.from_dict(d).severity is Severity.ERROR


def test_severity_order() -> None:
    assert Severity.ERROR > Severity.WARNING > Severity.INFO
    assert Severity.WARNING >= Severity.WARNING
