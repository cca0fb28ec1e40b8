import time

from nnrecipe.core import budget
from nnrecipe.core.context import Context
from nnrecipe.core.runner import run_stages
from tests.toys import classification_experiment


def test_budget_clock() -> None:
    ctx = Context(classification_experiment())
    assert budget.time_left(ctx) is None and budget.allowance(ctx, 0.5) is None
    assert budget.skip_reason(ctx) is None
    ctx = Context(classification_experiment(), options={"budget_s": 100})
    budget.start(ctx)
    first = ctx.state["deadline"]
    budget.start(ctx)  # idempotent: one deadline per run
    assert ctx.state["deadline"] == first
    assert 99 < budget.time_left(ctx) <= 100  # type: ignore[operator]
    assert 49 < budget.allowance(ctx, 0.5) <= 50  # type: ignore[operator]
    ctx.state["deadline"] = time.monotonic() - 1
    assert budget.time_left(ctx) == 0 and "budget" in budget.skip_reason(ctx)  # type: ignore[operator]


def test_spent_budget_skips_the_training_stages_and_keeps_the_journey() -> None:
    ctx = Context(classification_experiment(), options={"budget_s": 1})
    ctx.state["deadline"] = time.monotonic() - 1  # spent by earlier stages
    res = run_stages(ctx, ["regularize", "tune", "ensemble"])
    checks = {c.name: c for s in res.stages for c in s.checks}
    assert checks["regularization-advice"].status == "skipped"
    assert "budget" in checks["regularization-advice"].reason
    assert checks["tuning-advice"].status == "skipped"
    assert checks["ensemble-advice"].metrics["members_trained_here"] == 0
    assert checks["journey"].status == "passed"
    assert res.findings == []
