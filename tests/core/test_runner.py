"""The runner: crash isolation, interruption, seeding, outputs."""

import json
from pathlib import Path

import torch

from nnrecipe.api import run
from nnrecipe.core.context import Context
from nnrecipe.core.registry import CHECKS, Check
from nnrecipe.core.runner import run_check
from tests.toys import classification_experiment


class _Boom(Check):
    name = "test-boom"
    stage = "skeleton"
    title = "always crashes"
    order = 999

    def run(self, ctx):  # type: ignore[override]
        raise ZeroDivisionError("boom")


CHECKS.pop("test-boom")  # registered only for explicit use below


def test_crashing_check_becomes_a_finding_and_the_run_goes_on() -> None:
    ctx = Context(classification_experiment())
    res = run_check(ctx, _Boom)
    assert res.status == "crashed"
    (f,) = res.findings
    assert f.code == "check-crashed" and "ZeroDivisionError: boom" in f.message


def test_interrupt_keeps_finished_work(tmp_path: Path, monkeypatch) -> None:
    from nnrecipe.skeleton.overfit_batch import CannotOverfitBatch

    def interrupted(self, ctx):  # noqa: ANN001
        raise KeyboardInterrupt

    monkeypatch.setattr(CannotOverfitBatch, "run", interrupted)
    result = run(classification_experiment(), ["skeleton"], out=tmp_path)
    assert result.interrupted
    statuses = {c.name: c.status for c in result.stages[0].checks}
    assert statuses["init-loss-mismatch"] == "passed"
    assert statuses["cannot-overfit-batch"] == "not run"
    saved = json.loads((tmp_path / "findings.json").read_text())
    assert saved["interrupted"] is True


def test_same_seed_same_numbers_and_user_rng_untouched() -> None:
    exp = classification_experiment()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = run(exp, ["skeleton"])
    assert torch.equal(before, torch.get_rng_state())
    b = run(exp, ["skeleton"])
    ma = {c.name: c.metrics for s in a.stages for c in s.checks}
    mb = {c.name: c.metrics for s in b.stages for c in s.checks}
    assert ma == mb


def test_report_is_self_contained(tmp_path: Path) -> None:
    run(classification_experiment(), ["skeleton"], out=tmp_path)
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html
    for external in ("http://", "https://", "<script src", "<link"):
        assert external not in html
    assert "init-loss-mismatch" in html and "The recipe, checked" in html
    data = json.loads((tmp_path / "findings.json").read_text())
    assert set(data) >= {"findings", "stages", "version"}
