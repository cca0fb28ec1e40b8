"""Runs the requested stages, in recipe order, check by check.

Each check runs with every RNG seeded to the run's seed and restored afterwards, so the same
seed gives the same findings whatever ran before.

A check that raises becomes a ``check-crashed`` finding and the run goes on: a *warning*
for a secondary check, an *error* for a primary one (the check a command exists for, e.g.
``training`` in ``nnrecipe train``: its crash is never a pass). User code that breaks the
contract (:class:`~nnrecipe.errors.ContractError`, ``sys.exit``) ends the run instead.

Ctrl-C / SIGTERM stops the run; what finished is kept. A check that trains keeps its partial
run (``fit(keep_on_interrupt=True)``) and finishes its diagnosis; the checks after it are
marked "interrupted".
"""

from __future__ import annotations

import datetime as dt
import time
import traceback
from collections.abc import Collection, Sequence
from importlib import import_module

from nnrecipe.core import budget
from nnrecipe.core import data as data_mod
from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.interrupts import Interruption, signum_of
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
from nnrecipe.errors import ContractError, NNRecipeError

# A stage whose errors make the later stages pointless: a broken skeleton cannot be trained,
# and a training run that diverges or goes non-finite cannot be regularised, tuned or
# ensembled (fix the learning rate first: the overfit stage's range test says where).
GATING_STAGES = ("skeleton", "train")


def load_stage_checks(stages: Sequence[str] | None = None) -> None:
    """Import the packages of ``stages`` (default: every stage) so that their checks register
    (and the set-up codes of validation). `nnrecipe check` needs only ``data`` and
    ``skeleton``: importing the others too (optuna, the train/tune/ensemble machinery) cost
    ~0.5 s of CPU, 8% of the imports of the demo's check (measured, load ~17)."""
    import nnrecipe.core.validate  # noqa: F401

    if stages is None:
        import nnrecipe.stages  # noqa: F401
        return
    for stage in stages:
        import_module(f"nnrecipe.{stage}")
    from nnrecipe.core.registry import CATALOGUE, CHECKS

    if any(code not in CATALOGUE for c in CHECKS.values() if c.stage in stages
           for code in c.emits if code):  # declared by another stage (the report's glossary)
        import nnrecipe.stages  # noqa: F401


def run_check(ctx: Context, check_cls: type[Check], *, primary: bool = False) -> CheckResult:
    """Run one check. A crash becomes a ``check-crashed`` finding (an error when the check is
    ``primary``); a crash after the run was interrupted is recorded as "interrupted"."""
    check = check_cls()
    result = CheckResult(name=check.name, stage=check.stage, title=check.title)
    ctx.current = result
    start = time.perf_counter()
    ctx.progress.check_started(check.stage, check.name, check.title)
    try:
        with seeded(ctx.seed):
            reason = _too_few_samples(ctx, check) or check.applies(ctx)
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
    except ContractError:
        raise
    except SystemExit as e:
        raise ContractError(f"user code called sys.exit({e.code!r}) during the "
                            f"'{check.name}' check; nnrecipe needs it to return or raise") from e
    except Exception as e:  # noqa: BLE001 - a crashing check must not stop the run
        _record_crash(ctx, check, result, e, primary)
    finally:
        result.duration_s = time.perf_counter() - start
        ctx.current = None
        ctx.progress.check_finished(check.stage, check.name, result.status)
    return result


def _record_crash(ctx: Context, check: Check, result: CheckResult, e: Exception,
                  primary: bool) -> None:
    error = str(e) if isinstance(e, NNRecipeError) else f"{type(e).__name__}: {e}"
    if ctx.interruption is not None:
        # Stopped mid-way, the check could not finish on what it had: not its fault.
        result.status = NOT_RUN
        result.reason = f"{ctx.interruption.describe()}; the partial results failed ({error})"
        return
    result.status, result.reason = CRASHED, error
    result.findings.append(_crash_finding(check, e, user_error=isinstance(e, NNRecipeError),
                                          primary=primary))


def _too_few_samples(ctx: Context, check: Check) -> str | None:
    need = int(getattr(check, "min_train_samples", 1) or 1)
    if need <= 1:
        return None
    n = data_mod.dataset_len(ctx.dataset("train"), "train")
    if n >= need:
        return None
    return (f"needs at least {need} training samples; the training set has {n}")


def _validate_finding(check: Check, f: Finding) -> None:
    if not isinstance(f, Finding):
        raise TypeError(f"check {check.name} produced {type(f).__name__}, not a Finding")
    allowed = {check.code, *check.emits, CHECK_CRASHED.code}
    if f.code not in allowed:
        raise ValueError(f"check {check.name} emitted {f.code!r}, which it does not declare "
                         f"(declared: {sorted(c for c in allowed if c)})")
    if not f.check:
        f.check = check.name


def _crash_finding(check: Check, e: BaseException, *, user_error: bool, primary: bool = False
                   ) -> Finding:
    tb = traceback.format_exception(type(e), e, e.__traceback__)
    error = f"{type(e).__name__}: {e}"
    message = f"check '{check.name}' failed: {error}"
    if primary:
        message = (f"check '{check.name}', the one this command runs for, failed, so nothing it "
                   f"checks was checked: {error}")
    return Finding(
        code=CHECK_CRASHED.code,
        severity=Severity.ERROR if primary else Severity.WARNING,
        stage=check.stage,
        message=message,
        evidence={"check": check.name, "error": error, "user_error": user_error,
                  "primary": primary, "traceback": "".join(tb[-6:])},
        fix=CHECK_CRASHED.fix,
        check=check.name,
    )


def run_stages(ctx: Context, stages: Sequence[str], *, experiment_name: str = "experiment",
               command: str = "run", only: Sequence[str] | None = None,
               primary: Collection[str] = (), setup: Sequence[Finding] = ()) -> RunResult:
    """Run ``stages`` (any order given; recipe order used) and return everything recorded.

    ``only`` restricts each stage to the named checks. ``primary`` names the checks whose
    crash is an error. ``setup`` findings (from validating the experiment) open the first
    stage as a "setup" check. Never raises KeyboardInterrupt: an interrupted run comes back
    with ``interrupted=True`` and the remaining checks not run. Raises
    :class:`~nnrecipe.errors.ContractError` when user code breaks the contract.
    """
    load_stage_checks(in_recipe_order(list(stages)))
    budget.start(ctx)  # `run --budget`: one deadline for all stages, from the start of the run
    ordered = in_recipe_order(list(stages))
    result = RunResult(experiment=experiment_name, command=command, seed=ctx.seed,
                       device=str(ctx.device),
                       started=dt.datetime.now().isoformat(timespec="seconds"))
    plan = [(s, [c for c in checks_for_stage(s) if only is None or c.name in only])
            for s in ordered]
    for stage, _ in plan:
        result.stages.append(StageResult(stage))
    if setup and result.stages:
        result.stages[0].checks.append(_setup_result(result.stages[0].name, setup))
    t0 = time.perf_counter()
    stop_reason = ""
    try:
        for stage_result, (stage, checks) in zip(result.stages, plan, strict=True):
            if stop_reason:
                stage_result.note = stop_reason
                stage_result.checks.extend(_not_run(c, stop_reason) for c in checks)
                continue
            for i, check_cls in enumerate(checks):
                try:
                    stage_result.checks.append(
                        run_check(ctx, check_cls, primary=check_cls.name in primary))
                except KeyboardInterrupt as e:
                    stage_result.checks.append(getattr(e, "check_result", None)
                                               or _not_run(check_cls, "interrupted"))
                    stage_result.checks.extend(_not_run(c, "interrupted") for c in checks[i + 1:])
                    raise
                if ctx.interruption is not None:  # the check kept its partial run: stop here
                    stage_result.note = _interrupted_note(ctx.interruption, check_cls.name)
                    stage_result.checks.extend(_not_run(c, "interrupted") for c in checks[i + 1:])
                    raise KeyboardInterrupt
            stage_result.settle_status()
            if (stage in GATING_STAGES and stage_result.status == "error"
                    and ctx.options.get("stop_on_error", True) and stage != ordered[-1]):
                stop_reason = (f"not run: the {stage} stage found errors that make later stages "
                               "pointless; fix them first")
    except KeyboardInterrupt as e:
        if ctx.interruption is None:
            ctx.interruption = Interruption(signum_of(e))
        result.interrupted = True
        result.interruption = {"signal": ctx.interruption.signal,
                               "where": ctx.interruption.where,
                               "message": ctx.interruption.describe()}
        for stage_result, (_, checks) in zip(result.stages, plan, strict=True):
            done = {c.name for c in stage_result.checks}
            stage_result.checks.extend(_not_run(c, "interrupted") for c in checks
                                       if c.name not in done)
            stage_result.settle_status()
            if not stage_result.note and any(c.reason == "interrupted" for c in stage_result.checks):
                stage_result.note = f"{ctx.interruption.describe()}: not run"
    result.duration_s = time.perf_counter() - t0
    return result


def _interrupted_note(interruption: Interruption, check: str) -> str:
    return (f"{interruption.describe()}: the '{check}' check kept what was done and diagnosed "
            "it; the checks after it were not run")


def _setup_result(stage: str, findings: Sequence[Finding]) -> CheckResult:
    res = CheckResult(name="setup", stage=stage, title="The experiment's set-up, as validated")
    for f in findings:
        f.stage, f.check = stage, "setup"
        res.findings.append(f)
    res.settle_status()
    return res


def _not_run(check_cls: type[Check], reason: str) -> CheckResult:
    return CheckResult(name=check_cls.name, stage=check_cls.stage, title=check_cls.title,
                       status=NOT_RUN, reason=reason)


__all__ = ["run_stages", "run_check", "CRASHED", "load_stage_checks"]
