"""The ``nnrecipe`` command line. The only module that writes to the terminal.

Start-up stays under a second for ``--help``, ``codes`` and argument errors: torch and the
stages are imported only by the commands that run checks (``codes`` reads the generated
catalogue table, :mod:`nnrecipe.report.catalogue`).
"""

from __future__ import annotations

import datetime as dt
import re
import sys
import traceback
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from nnrecipe.errors import NNRecipeError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="A recipe for training neural networks, as software: catches the bugs "
                       "that make training fail silently.")
console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)

EXIT_OK, EXIT_FINDINGS, EXIT_BROKEN = 0, 1, 2
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # 128 + SIGINT, 128 + SIGTERM


class FailOn(str, Enum):
    error = "error"
    warning = "warning"
    never = "never"


class DeviceChoice(str, Enum):
    cpu = "cpu"
    cuda = "cuda"
    auto = "auto"


Target = Annotated[str, typer.Argument(help="FILE.py or FILE.py:function returning an Experiment")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="output folder [default: runs/<name>-<timestamp>]")]
FailOpt = Annotated[FailOn, typer.Option("--fail-on", help="exit 1 when a finding is at or above this")]
DeviceOpt = Annotated[DeviceChoice, typer.Option("--device", help="where checks run")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="override the experiment's seed")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="only the summary line")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="show tracebacks")]


def _default_out(name: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}-{stamp}"


def _fail(message: str, debug: bool, exc: BaseException | None = None) -> typer.Exit:
    if debug and exc is not None:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    err_console.print(f"[red]nnrecipe: error:[/] {message}", soft_wrap=True)
    return typer.Exit(EXIT_BROKEN)


def _summary(result: Any, paths: dict[str, Path], quiet: bool) -> None:
    from nnrecipe.core.findings import Severity

    findings = sorted(result.findings, key=lambda f: -f.severity.rank)
    if not quiet and findings:
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        table.add_column("severity")
        table.add_column("code")
        table.add_column("stage")
        table.add_column("message", overflow="fold")
        style = {"error": "red", "warning": "yellow", "info": "blue"}
        for f in findings:
            table.add_row(f"[{style[f.severity.value]}]{f.severity.value}[/]", f.code, f.stage,
                          f.message if len(f.message) < 400 else f.message[:397] + "...")
        console.print(table)
    counts = {s: result.count(s) for s in Severity}
    line = (f"{counts[Severity.ERROR]} error(s), {counts[Severity.WARNING]} warning(s), "
            f"{counts[Severity.INFO]} info in {result.duration_s:.1f}s")
    if result.crashed:
        line += f", [magenta]{result.crashed} check(s) crashed[/]"
    if result.interrupted:
        line += (f" [magenta]({(result.interruption or {}).get('message', 'interrupted')}: "
                 "partial results)[/]")
    console.print(line, soft_wrap=True)  # one line, however narrow the terminal
    console.print(f"report: {paths['report']}", soft_wrap=True)
    console.print(f"findings: {paths['findings']}", soft_wrap=True)
    if "flagged" in paths:
        console.print(f"flagged samples: {paths['flagged']}", soft_wrap=True)


def _exit_code(result: Any, fail_on: FailOn) -> int:
    from nnrecipe.core.findings import Severity

    if result.interrupted:  # 128 + the signal: 130 for Ctrl-C, 143 for SIGTERM
        signal_name = (result.interruption or {}).get("signal", "SIGINT")
        return {"SIGTERM": EXIT_TERMINATED}.get(signal_name, EXIT_INTERRUPTED)
    worst = result.worst()
    if fail_on == FailOn.never or worst is None:
        return EXIT_OK
    return EXIT_FINDINGS if worst >= Severity(fail_on.value) else EXIT_OK


def execute(command: str, target: str, *, out: Path | None, fail_on: FailOn,
            device: DeviceChoice, seed: int | None, quiet: bool, debug: bool,
            options: dict[str, Any] | None = None, data_target: str | None = None) -> None:
    """Check --out, load, validate, run the command's stages, write outputs, exit with the
    right code. SIGINT/SIGTERM stop cleanly (what finished is written; exit 128 + signal);
    a second one ends the process at once (nnrecipe.core.interrupts)."""
    from nnrecipe.core.interrupts import graceful_signals

    with graceful_signals():
        _execute(command, target, out=out, fail_on=fail_on, device=device, seed=seed,
                 quiet=quiet, debug=debug, options=options, data_target=data_target)


def _claim(out_dir: Path, command: str, debug: bool, raise_busy: bool = False) -> Any:
    """The output folder, checked writable and locked (nnrecipe.core.output.RunFolder)."""
    from nnrecipe.core.interrupts import on_hard_exit
    from nnrecipe.core.output import RunFolder
    from nnrecipe.errors import OutputBusyError

    try:
        folder = RunFolder(out_dir, command).prepare()
    except OutputBusyError as e:
        if raise_busy:
            raise
        raise _fail(str(e), debug, e) from None
    except NNRecipeError as e:
        raise _fail(str(e), debug, e) from None
    folder.forget_on_hard_exit = on_hard_exit(folder.release)
    return folder


def _execute(command: str, target: str, *, out: Path | None, fail_on: FailOn,
             device: DeviceChoice, seed: int | None, quiet: bool, debug: bool,
             options: dict[str, Any] | None, data_target: str | None) -> None:
    from nnrecipe.core.interrupts import exit_status, signum_of
    from nnrecipe.loading import load_experiment  # no torch yet: a missing file fails fast

    folder = _claim(out, command, debug) if out is not None else None  # before any compute
    try:
        if out is None:
            _check_default_parent(debug)
        try:
            if command == "inspect" and not target.split(":")[0].endswith(".py"):
                if not Path(target).exists():
                    raise _fail(f"no such file or folder: {target}", debug)
                from nnrecipe.data.sources import experiment_from_data

                exp, name = experiment_from_data(
                    target, target_column=data_target,
                    groups_column=(options or {}).get("data_groups_column"))
            else:
                exp, name = load_experiment(target)
            _apply_threads()
        except NNRecipeError as e:
            raise _fail(str(e), debug, e) from None
        except KeyboardInterrupt as e:
            err_console.print("[magenta]interrupted before any check started[/]")
            raise typer.Exit(exit_status(signum_of(e))) from None
        out_dir = out or _default_out(name)
        folder = folder or _claim_default(out_dir, command, debug)
        out_dir = folder.path
        _run_and_report(command, target, exp, name, out_dir, fail_on=fail_on, device=device,
                        seed=seed, quiet=quiet, debug=debug, options=options)
    finally:
        if folder is not None:
            folder.release()
            folder.forget_on_hard_exit()


def _claim_default(out_dir: Path, command: str, debug: bool) -> Any:
    """The default run folder; if another run started in the same second holds it (workers
    of one study, say), the next free ``-2``, ``-3``... beside it."""
    from nnrecipe.errors import OutputBusyError

    for k in range(1, 100):
        candidate = out_dir if k == 1 else out_dir.with_name(f"{out_dir.name}-{k}")
        try:
            return _claim(candidate, command, debug=False, raise_busy=True)
        except OutputBusyError:
            continue
    return _claim(out_dir, command, debug)


def _check_default_parent(debug: bool) -> None:
    """Without --out the run folder goes under ./runs: make sure it can, before loading."""
    from nnrecipe.core.output import check_writable_parent

    try:
        check_writable_parent(Path("runs"))
    except NNRecipeError as e:
        raise _fail(f"{e} (choose a folder with --out)", debug, e) from None


def _run_and_report(command: str, target: str, exp: Any, name: str, out_dir: Path, *,
                    fail_on: FailOn, device: DeviceChoice, seed: int | None, quiet: bool,
                    debug: bool, options: dict[str, Any] | None) -> None:
    from nnrecipe.api import COMMAND_STAGES, run
    from nnrecipe.core.interrupts import exit_status, shield, signum_of
    from nnrecipe.report import write_outputs
    from nnrecipe.terminal import make_progress

    if not quiet:
        err_console.print(f"nnrecipe {command}: [bold]{name}[/] -> {out_dir}")
    if command == "tune" and not quiet:  # the command line that adds workers to this study
        from nnrecipe.tune.storage import workers_hint

        err_console.print(workers_hint(target, options or {}, out_dir, exp.name),
                          soft_wrap=True, markup=False, highlight=False)
    try:
        with make_progress(err_console, quiet) as progress:
            # out_dir: where stages keep files that outlive the run (checkpoints, the study)
            result = run(exp, COMMAND_STAGES[command], out=out_dir, write=False,
                         device=device.value, seed=seed, options=options, progress=progress,
                         name=name, command=command, lock=False)
    except NNRecipeError as e:
        raise _fail(str(e), debug, e) from None
    except KeyboardInterrupt as e:
        err_console.print("[magenta]interrupted before any check started[/]")
        raise typer.Exit(exit_status(signum_of(e))) from None
    try:
        with shield() as held:  # a Ctrl-C now waits until the outputs are written
            paths = write_outputs(result, out_dir)
    except OSError as e:
        raise _fail(f"cannot write outputs to {out_dir}: {e.strerror or e} (nothing "
                    "half-written was left)", debug, e) from None
    export = (options or {}).get("flagged_export")
    if export:  # inspect --export FILE: the flagged samples, also there
        from nnrecipe.report.export import export_flagged

        try:
            paths["flagged"] = export_flagged(result.flagged, export)
        except (OSError, NNRecipeError) as e:
            raise _fail(f"cannot export the flagged samples to {export}: {e}", debug, e) from None
    _summary(result, paths, quiet)
    raise typer.Exit(exit_status(held[0]) if held else _exit_code(result, fail_on))


def _stage_command(command: str, help_text: str) -> None:
    def cmd(target: Target, out: OutOpt = None, fail_on: FailOpt = FailOn.error,
            device: DeviceOpt = DeviceChoice.cpu, seed: SeedOpt = None, quiet: QuietOpt = False,
            debug: DebugOpt = False) -> None:
        execute(command, target, out=out, fail_on=fail_on, device=device, seed=seed,
                quiet=quiet, debug=debug)

    cmd.__doc__ = help_text
    app.command(command, help=help_text)(cmd)


@app.command("inspect")
def inspect_cmd(target: Annotated[str, typer.Argument(
                    help="FILE.py[:function], or data: FILE.npz, FILE.csv (with --target) or an "
                         "image folder laid out as class_name/*.png")],
                target_column: Annotated[str | None, typer.Option(
                    "--target", help="the label column of a CSV file")] = None,
                groups_column: Annotated[str | None, typer.Option(
                    "--groups", help="a CSV column of group ids (patient, user, session): "
                                     "groups present in two splits are reported")] = None,
                export: Annotated[Path | None, typer.Option(
                    "--export", help="also write the flagged samples (split, index, code, score, "
                                     "partner) to this file: .csv, or .parquet with pyarrow "
                                     "[always: DIR/flagged.csv when something is flagged]")] = None,
                out: OutOpt = None, fail_on: FailOpt = FailOn.error,
                device: DeviceOpt = DeviceChoice.cpu, seed: SeedOpt = None,
                quiet: QuietOpt = False, debug: DebugOpt = False) -> None:
    """The data stage: become one with the data."""
    if groups_column is not None and target.split(":")[0].endswith(".py"):
        raise _fail("--groups names a column of a CSV file; in an experiment file pass "
                    "Experiment(groups={'train': ids, 'val': ids})", debug)
    execute("inspect", target, out=out, fail_on=fail_on, device=device, seed=seed, quiet=quiet,
            debug=debug, data_target=target_column,
            options={k: v for k, v in (("flagged_export", str(export) if export else None),
                                       ("data_groups_column", groups_column)) if v} or None)


_stage_command("check", "data + skeleton: the fast sanity checks, meant for CI.")
_stage_command("lr", "The learning-rate range test (the overfit stage).")


@app.command("train")
def train_cmd(target: Target,
              tensorboard: Annotated[Path | None, typer.Option(
                  "--tensorboard", help="also write the monitor's signals (per-layer gradient "
                                        "norms, update ratios, dead/saturated units) and the "
                                        "findings to TensorBoard event files in this folder")] = None,
              out: OutOpt = None, fail_on: FailOpt = FailOn.error,
              device: DeviceOpt = DeviceChoice.cpu, seed: SeedOpt = None, quiet: QuietOpt = False,
              debug: DebugOpt = False) -> None:
    """Train with the monitor, diagnosis and early stopping."""
    import importlib.util

    if tensorboard is not None and importlib.util.find_spec("tensorboard") is None:
        raise _fail("--tensorboard needs the tensorboard package: pip install "
                    "'nnrecipe[tensorboard]'", debug)
    execute("train", target, out=out, fail_on=fail_on, device=device, seed=seed, quiet=quiet,
            debug=debug, options={"tensorboard": str(tensorboard)} if tensorboard else None)


@app.command("tune")
def tune_cmd(target: Target, trials: Annotated[int, typer.Option(help="number of trials")] = 20,
             sampler: Annotated[str, typer.Option(help="tpe or random")] = "tpe",
             storage: Annotated[str | None, typer.Option(
                 help="Optuna storage URL shared by workers [default: a file in the run folder]")] = None,
             study_name: Annotated[str | None, typer.Option(help="study name to create or resume")] = None,
             heartbeat: Annotated[int | None, typer.Option(
                 help="database studies: seconds between a worker's heartbeats; the trial of a "
                      "worker silent for 3 beats is failed and run again [default: 60]")] = None,
             out: OutOpt = None, fail_on: FailOpt = FailOn.error,
             device: DeviceOpt = DeviceChoice.cpu, seed: SeedOpt = None, quiet: QuietOpt = False,
             debug: DebugOpt = False) -> None:
    """Hyper-parameter search (random or Bayesian, with pruning)."""
    options = {"tune_trials": trials, "tune_sampler": sampler, "tune_storage": storage,
               "tune_study_name": study_name, "tune_heartbeat_s": heartbeat}
    execute("tune", target, out=out, fail_on=fail_on, device=device, seed=seed, quiet=quiet,
            debug=debug, options=options)


@app.command("run")
def run_cmd(target: Target,
            budget: Annotated[float | None, typer.Option(
                help="bound on total training time in seconds, shared by the stages")] = None,
            out: OutOpt = None, fail_on: FailOpt = FailOn.error,
            device: DeviceOpt = DeviceChoice.cpu, seed: SeedOpt = None, quiet: QuietOpt = False,
            debug: DebugOpt = False) -> None:
    """The whole recipe, in order."""
    execute("run", target, out=out, fail_on=fail_on, device=device, seed=seed, quiet=quiet,
            debug=debug, options={"budget_s": budget} if budget else None)


@app.command("demo")
def demo_cmd(out: OutOpt = None, fail_on: FailOpt = FailOn.error,
             device: DeviceOpt = DeviceChoice.cpu, seed: SeedOpt = None, quiet: QuietOpt = False,
             debug: DebugOpt = False) -> None:
    """`run` on the bundled example: handwritten digits from scikit-learn, a small CNN, Adam."""
    from nnrecipe.examples import digits

    execute("run", f"{digits.__file__}:experiment", out=out, fail_on=fail_on, device=device,
            seed=seed, quiet=quiet, debug=debug)


@app.command("lab")
def lab_cmd(topic: Annotated[str | None, typer.Argument(help="a topic, or 'all'; none lists them")] = None,
            out: OutOpt = None, quiet: QuietOpt = False, debug: DebugOpt = False,
            seed: Annotated[int, typer.Option("--seed", help="the first seed")] = 0,
            seeds: Annotated[int, typer.Option("--seeds", min=1, help="seeds each conclusion is decided over")] = 3,
            jobs: Annotated[int | None, typer.Option("--jobs", min=1, help="worker processes [default: 2 for 'all', else 1]")] = None) -> None:
    """The training questions, answered by experiment."""
    try:
        from nnrecipe import lab
    except ImportError as e:
        raise _fail(f"the lab is not available: {e}", debug, e) from None
    if topic is None:
        table = Table(show_header=True, header_style="bold", box=None)
        table.add_column("topic")
        table.add_column("question")
        for t in lab.list_topics():
            table.add_row(t.name, t.question)
        console.print(table)
        return
    out_dir = out or Path("runs") / f"lab-{topic}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    from nnrecipe.terminal import make_progress

    try:
        _apply_threads()
        with make_progress(err_console, quiet) as progress:
            page = lab.run(topic, out_dir, progress=progress, seed=seed, seeds=seeds, jobs=jobs)
    except NNRecipeError as e:
        raise _fail(str(e), debug, e) from None
    except KeyboardInterrupt:  # not click's "Aborted!" and exit 1, which reads as findings
        err_console.print(f"[magenta]interrupted[/]: the lab pages finished so far are in {out_dir}")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    console.print(f"lab page: {page}")


@app.command("compare")
def compare_cmd(run_a: Annotated[Path, typer.Argument(help="the earlier run's folder (its --out)")],
                run_b: Annotated[Path, typer.Argument(help="the later run's folder, e.g. after a fix")],
                out: OutOpt = None,
                fail_on: Annotated[FailOn, typer.Option(
                    "--fail-on", help="exit 1 when B has a new finding at or above this")] = FailOn.never,
                quiet: QuietOpt = False, debug: DebugOpt = False) -> None:
    """What changed between two runs: findings fixed/new/unchanged, learning curves overlaid,
    the journey side by side (writes compare.html and compare.json)."""
    from nnrecipe.report.compare import write_comparison

    out_dir = out or Path("runs") / f"compare-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    try:
        cmp, paths = write_comparison(run_a, run_b, out_dir)
    except NNRecipeError as e:
        raise _fail(str(e), debug, e) from None
    except OSError as e:
        raise _fail(f"cannot write the comparison to {out_dir}: {e}", debug, e) from None
    c = cmp.counts()
    if not quiet:
        for label, items in (("fixed", cmp.fixed), ("new", cmp.new)):
            for f in items:
                console.print(f"  {label:>5} {f['severity']:<7} {f['code']} ({f['stage']})",
                              markup=False, highlight=False)
    console.print(f"{c['fixed']} fixed, {c['new']} new, {c['unchanged']} unchanged, "
                  f"{c['severity changed']} with a changed severity"
                  + (f", {c['not compared']} not compared (a stage only one run ran)"
                     if c["not compared"] else ""))
    console.print(f"comparison: {paths['report']}")
    worst = cmp.worst_new()
    rank = {"info": 0, "warning": 1, "error": 2}
    if fail_on != FailOn.never and worst is not None and rank[worst] >= rank[fail_on.value]:
        raise typer.Exit(EXIT_FINDINGS)


@app.command("codes")
def codes_cmd(as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False) -> None:
    """The finding catalogue: every code, its stage, default severity, what it means and the fix."""
    import json

    from nnrecipe.report.catalogue import load_table

    rows = load_table()
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table(show_header=True, header_style="bold", box=None)
    for col in ("code", "stage", "severity", "what it means"):
        table.add_column(col, overflow="fold")
    for c in rows:
        table.add_row(c["code"], c["stage"], c["severity"], c["means"])
    console.print(table)


def _apply_threads() -> None:
    """The thread policy of :mod:`nnrecipe.core.threads` (NNRECIPE_THREADS / OMP_NUM_THREADS),
    set once for the CLI's process, when a command is about to train."""
    from nnrecipe.core.threads import apply_thread_policy

    apply_thread_policy()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
