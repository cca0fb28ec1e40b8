"""Runs the requested stages, in recipe order, check by check.

Each check runs with every RNG seeded to the run's seed and restored afterwards, so the same
seed gives the same findings whatever ran before. A check that raises becomes a
``check-crashed`` finding and the run goes on. Ctrl-C stops the run; what finished is kept.
"""

from __future__ import annotations

import datetime as dt
import time
import traceback
from collections.abc import Sequence

from nnrecipe.core import budget
from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.registry import CHECK_CRASHED, Check, checks_for_stage
from nnrecipe.core.results import (
    CRASHED,
    NOT_RUN,
    SKIPPED,
    CheckResult,
    RunResult,
    StageResult,
)
from nnrecipe.core.seeding import seeded
from nnrecipe.core.stages import in_recipe_order
from nnrecipe.errors import NNRecipeError

# A stage whose errors make the later stages pointless: a broken skeleton cannot be trained,
# and a training run that diverges or goes non-finite cannot be regularised, tuned or
# ensembled (fix the learning rate first: the overfit stage's range test says where).
GATING_STAGES = ("skeleton", "train")


def load_stage_checks() -> None:
    """Import every stage package so that their checks register."""
    import nnrecipe.stages  # noqa: F401


def run_check(ctx: Context, check_cls: type[Check]) -> CheckResult:
    check = check_cls()
    result = CheckResult(name=check.name, stage=check.stage, title=check.title)
    ctx.current = result
    start = time.perf_counter()
    ctx.progress.check_started(check.stage, check.name, check.title)
    try:
        with seeded(ctx.seed):
            reason = check.applies(ctx)
            if reason:
                result.status, result.reason = SKIPPED, reason
            else:
                for f in check.run(ctx) or ():
                    _validate_finding(check, f)
                    result.findings.append(f)
                result.settle_status()
    except KeyboardInterrupt as e:
        result.status, result.reason = NOT_RUN, "interrupted"
        e.check_result = result  # type: ignore[attr-defined]  # what it recorded is kept
        raise
    except NNRecipeError as e:
        # A user-caused problem seen by a check (e.g. a sample that cannot be loaded).
        result.status, result.reason = CRASHED, str(e)
        result.findings.append(_crash_finding(check, e, user_error=True))
    except Exception as e:  # noqa: BLE001 - a crashing check must not stop the run
        result.status, result.reason = CRASHED, f"{type(e).__name__}: {e}"
        result.findings.append(_crash_finding(check, e, user_error=False))
    finally:
        result.duration_s = time.perf_counter() - start
        ctx.current = None
        ctx.progress.check_finished(check.stage, check.name, result.status)
    return result


def _validate_finding(check: Check, f: Finding) -> None:
    if not isinstance(f, Finding):
        raise TypeError(f"check {check.name} produced {type(f).__name__}, not a Finding")
    allowed = {check.code, *check.emits, CHECK_CRASHED.code}
    if f.code not in allowed:
        raise ValueError(f"check {check.name} emitted {f.code!r}, which it does not declare "
                         f"(declared: {sorted(c for c in allowed if c)})")
    if not f.check:
        f.check = check.name


def _crash_finding(check: Check, e: BaseException, *, user_error: bool) -> Finding:
    tb = traceback.format_exception(type(e), e, e.__traceback__)
    return Finding(
        code=CHECK_CRASHED.code,
        severity=Severity.WARNING,
        stage=check.stage,
        message=f"check '{check.name}' failed: {type(e).__name__}: {e}",
        evidence={"check": check.name, "error": f"{type(e).__name__}: {e}",
                  "user_error": user_error, "traceback": "".join(tb[-6:])},
        fix=CHECK_CRASHED.fix,
        check=check.name,
    )


def run_stages(ctx: Context, stages: Sequence[str], *, experiment_name: str = "experiment",
               command: str = "run", only: Sequence[str] | None = None) -> RunResult:
    """Run ``stages`` (any order given; recipe order used) and return everything recorded.

    ``only`` restricts each stage to the named checks. Never raises KeyboardInterrupt:
    an interrupted run comes back with ``interrupted=True`` and the remaining checks not run.
    """
    load_stage_checks()
    budget.start(ctx)  # `run --budget`: one deadline for all stages, from the start of the run
    ordered = in_recipe_order(list(stages))
    result = RunResult(experiment=experiment_name, command=command, seed=ctx.seed,
                       device=str(ctx.device),
                       started=dt.datetime.now().isoformat(timespec="seconds"))
    plan = [(s, [c for c in checks_for_stage(s) if only is None or c.name in only])
            for s in ordered]
    for stage, _ in plan:
        result.stages.append(StageResult(stage))
    t0 = time.perf_counter()
    stop_reason = ""
    try:
        for stage_result, (stage, checks) in zip(result.stages, plan, strict=True):
            if stop_reason:
                stage_result.note = stop_reason
                stage_result.checks = [_not_run(c, stop_reason) for c in checks]
                continue
            for i, check_cls in enumerate(checks):
                try:
                    stage_result.checks.append(run_check(ctx, check_cls))
                except KeyboardInterrupt as e:
                    result.interrupted = True
                    stage_result.checks.append(getattr(e, "check_result", None)
                                               or _not_run(check_cls, "interrupted"))
                    stage_result.checks.extend(_not_run(c, "interrupted") for c in checks[i + 1:])
                    raise
            stage_result.settle_status()
            if (stage in GATING_STAGES and stage_result.status == "error"
                    and ctx.options.get("stop_on_error", True) and stage != ordered[-1]):
                stop_reason = (f"not run: the {stage} stage found errors that make later stages "
                               "pointless; fix them first")
    except KeyboardInterrupt:
        result.interrupted = True
        for stage_result, (_, checks) in zip(result.stages, plan, strict=True):
            done = {c.name for c in stage_result.checks}
            stage_result.checks.extend(_not_run(c, "interrupted") for c in checks
                                       if c.name not in done)
            stage_result.settle_status()
            if not stage_result.note and any(c.reason == "interrupted" for c in stage_result.checks):
                stage_result.note = "interrupted (Ctrl-C)"
    result.duration_s = time.perf_counter() - t0
    return result


def _not_run(check_cls: type[Check], reason: str) -> CheckResult:
    return CheckResult(name=check_cls.name, stage=check_cls.stage, title=check_cls.title,
                       status=NOT_RUN, reason=reason)


__all__ = ["run_stages", "run_check", "CRASHED", "load_stage_checks"]
