"""The programmatic entry point: ``nnrecipe.run(experiment, stages=[...])``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nnrecipe.core.context import Context
from nnrecipe.core.output import RunFolder
from nnrecipe.core.progress import ProgressSink
from nnrecipe.core.results import RunResult
from nnrecipe.core.runner import run_stages
from nnrecipe.core.stages import STAGE_NAMES
from nnrecipe.core.threads import thread_policy
from nnrecipe.core.validate import validate_experiment
from nnrecipe.errors import ContractError
from nnrecipe.experiment import Experiment

# Which stages each command runs (RECIPE.md section 3).
COMMAND_STAGES: dict[str, tuple[str, ...]] = {
    "inspect": ("data",),
    "check": ("data", "skeleton"),
    "lr": ("overfit",),
    "train": ("train",),
    "tune": ("tune",),
    "run": STAGE_NAMES,
}

# The checks each command exists for. If one crashes the command did not do its job, so the
# crash is an error-level `check-crashed` (exit 1 under the default --fail-on), never a pass;
# other checks that crash stay warnings. (`check`: the first check that runs the skeleton's
# step probe, skeleton/probe.py, which the step-fault checks share; `inspect`: the loading
# pass, data/view.py, runs in the first two.)
PRIMARY_CHECKS: dict[str, tuple[str, ...]] = {
    "inspect": ("data-overview", "corrupt-samples"),
    "check": ("nondeterministic",),
    "lr": ("lr-suggestion",),
    "train": ("training",),
    "tune": ("tuning-advice",),
}
PRIMARY_CHECKS["run"] = tuple(c for cmd in ("inspect", "check", "lr", "train", "tune")
                              for c in PRIMARY_CHECKS[cmd])


def run(experiment: Experiment, stages: Sequence[str] = ("data", "skeleton"), *,
        out: str | Path | None = None, device: str = "cpu", seed: int | None = None,
        options: dict[str, Any] | None = None, progress: ProgressSink | None = None,
        name: str | None = None, command: str = "run", only: Sequence[str] | None = None,
        write: bool = True, threads: int | None = None, lock: bool = True) -> RunResult:
    """Validate ``experiment``, run ``stages`` and, when ``out`` is given, write the report
    there (unless ``write=False``: the CLI writes it itself). Stages keep their files
    (checkpoints, the tune study) in ``out`` too.

    Raises :class:`nnrecipe.ExperimentError` when the experiment cannot run at all (user code
    calling ``sys.exit`` included); every other problem comes back as findings. With ``out``,
    the folder is checked and locked before any compute (``lock=False``: the caller holds
    it); a folder another live run holds raises :class:`nnrecipe.errors.OutputError`.

    torch's intra-op threads follow the CLI's policy during the call (``threads=``, else
    ``NNRECIPE_THREADS=N|keep``, else kept when ``OMP_NUM_THREADS`` is set, else half the cores,
    at most 8: :mod:`nnrecipe.core.threads`) and are restored when it returns.
    """
    if not isinstance(experiment, Experiment):
        from nnrecipe.errors import ExperimentError

        hint = (f" (call it: nnrecipe.run({getattr(experiment, '__name__', 'experiment')}(), ...))"
                if callable(experiment) else "")
        raise ExperimentError(f"nnrecipe.run() needs an nnrecipe.Experiment, got "
                              f"{type(experiment).__name__}{hint}")
    folder = RunFolder(out, command).prepare() if out is not None and lock else None
    try:
        result = _run(experiment, stages, out=out, device=device, seed=seed, options=options,
                      progress=progress, name=name, command=command, only=only, threads=threads)
        if out is not None and write:
            from nnrecipe.report import write_outputs

            write_outputs(result, Path(out))
    finally:
        if folder is not None:
            folder.release()
    return result


def _run(experiment: Experiment, stages: Sequence[str], *, out: str | Path | None, device: str,
         seed: int | None, options: dict[str, Any] | None, progress: ProgressSink | None,
         name: str | None, command: str, only: Sequence[str] | None, threads: int | None
         ) -> RunResult:
    options = dict(options or {})
    if out is not None:
        options.setdefault("run_dir", str(out))
    ctx = Context(experiment, device=device, seed=seed, out_dir=Path(out) if out else None,
                  options=options, progress=progress)
    try:
        setup = validate_experiment(ctx, need_model=any(s != "data" for s in stages))
        with thread_policy(threads):
            result = run_stages(ctx, stages,
                                experiment_name=name or experiment.name or "experiment",
                                command=command, only=only,
                                primary=PRIMARY_CHECKS.get(command, ()), setup=setup)
    except SystemExit as e:  # user code outside any check (the factory, a dataset, the loss)
        raise ContractError(f"the experiment's code called sys.exit({e.code!r}); nnrecipe "
                            "needs it to return or raise") from e
    result.extra.update(ctx.state.get("report_extra", {}))
    result.flagged = list(ctx.state.get("flagged", []))  # flagged.csv (report/export.py)
    if ctx.options.get("tensorboard") and "train" in ctx.state:  # nnrecipe train --tensorboard
        from nnrecipe.report.tensorboard import export_train_stage

        export_train_stage(ctx.options["tensorboard"], ctx.state["train"],
                           [f for f in result.findings if f.stage == "train"])
    return result
