"""The programmatic entry point: ``nnrecipe.run(experiment, stages=[...])``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nnrecipe.core.context import Context
from nnrecipe.core.progress import ProgressSink
from nnrecipe.core.results import RunResult
from nnrecipe.core.runner import run_stages
from nnrecipe.core.stages import STAGE_NAMES
from nnrecipe.core.threads import thread_policy
from nnrecipe.core.validate import validate_experiment
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


def run(experiment: Experiment, stages: Sequence[str] = ("data", "skeleton"), *,
        out: str | Path | None = None, device: str = "cpu", seed: int | None = None,
        options: dict[str, Any] | None = None, progress: ProgressSink | None = None,
        name: str | None = None, command: str = "run", only: Sequence[str] | None = None,
        write: bool = True, threads: int | None = None) -> RunResult:
    """Validate ``experiment``, run ``stages`` and, when ``out`` is given, write the report
    there (unless ``write=False``: the CLI writes it itself). Stages keep their files
    (checkpoints, the tune study) in ``out`` too.

    Raises :class:`nnrecipe.ExperimentError` when the experiment cannot run at all; every
    other problem comes back as findings.

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
    options = dict(options or {})
    if out is not None:
        options.setdefault("run_dir", str(out))
    ctx = Context(experiment, device=device, seed=seed, out_dir=Path(out) if out else None,
                  options=options, progress=progress)
    validate_experiment(ctx, need_model=any(s != "data" for s in stages))
    with thread_policy(threads):
        result = run_stages(ctx, stages, experiment_name=name or experiment.name or "experiment",
                            command=command, only=only)
    result.extra.update(ctx.state.get("report_extra", {}))
    result.flagged = list(ctx.state.get("flagged", []))  # flagged.csv (report/export.py)
    if out is not None and write:
        from nnrecipe.report import write_outputs

        write_outputs(result, Path(out))
    return result
