"""What `nnrecipe check` (data + skeleton) costs, in training epochs of the same experiment.

Two experiments: the bundled digits demo, and a ~5M-parameter CNN on synthetic 3x32x32
images (2048 training samples, 10 classes). For each, interleaved repeats of
  A: one training epoch (fresh model, the experiment's step, batch size and optimizer),
  B: `nnrecipe check` in-process (validation, data + skeleton stages, report written),
with one torch thread; medians; the ratio B / A is the figure quoted in the README. Wall
and CPU seconds (user + system of this process) are both printed: on a shared machine the
wall clock follows the load, the CPU time much less, and on an idle machine with one torch
thread the two agree.

Also printed: each stage's share, and the real CLI on the demo as whole processes (start-up,
imports, data, skeleton, report) with one torch thread, interleaved with the *floor*: a
process that does what the user's own training script must do anyway (import the experiment
file, which imports torch and scikit-learn; build the model and the optimizer, whose first
construction imports torch._dynamo; train one epoch). `check` minus the floor is what
nnrecipe adds. With ``--before SRC`` the CLI also runs from another source tree (e.g. an
older commit: ``git archive COMMIT src | tar -x -C /tmp/before``, then
``--before /tmp/before/src``), interleaved with the current one: the before/after table.

Bytecode: an installed package runs from compiled bytecode (pip compiles it on install), but
a shell with ``PYTHONDONTWRITEBYTECODE=1`` (this machine's) makes every child process compile
nnrecipe's ~85 modules from source again (0.25 s of CPU at load ~9). The child processes
therefore keep their bytecode under ``PYTHONPYCACHEPREFIX`` (``--pycache``, default
``$TMPDIR/nnrecipe-check-cost-pycache``, kept between runs: the source trees are not touched;
the first, uncounted round fills it, which the first time compiles torch's modules too). ``--compile-each-run`` measures the
old way; ``--bytecode-pair`` adds a row for the current tree compiled each run, interleaved,
with its CPU ratio pair by pair.

``--phases N``: where one CLI process spends its CPU (importing the experiment file,
validating, importing the stages, the checks and, within them, rendering figures, writing the
report), medians of N processes; the first two phases are mostly the floor.

Run: .venv/bin/python benchmarks/check_cost.py [--repeats N] [--cli-repeats N] [--skip-cli]
     [--demo-only] [--before SRC] [--cli-only] [--compile-each-run] [--bytecode-pair]
     [--phases N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nnrecipe import Experiment
from nnrecipe.api import run
from nnrecipe.core.context import Context
from nnrecipe.examples import digits

ROOT = Path(__file__).resolve().parents[1]


class CNN5M(nn.Module):
    """Four 3x3 convolutions and a wide hidden layer: 5.2M parameters, most in the head."""

    def __init__(self, hidden: int = 2400) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(128 * 16, hidden), nn.ReLU(),
                                  nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def synthetic_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten smooth random class templates plus noise: learnable, not trivial."""
    rng = np.random.default_rng(0)
    coarse = rng.normal(size=(10, 3, 4, 4))
    templates = coarse.repeat(8, axis=2).repeat(8, axis=3)
    r = np.random.default_rng(seed)
    y = r.integers(0, 10, size=n)
    X = templates[y] + r.normal(0, 2.0, size=(n, 3, 32, 32))
    return X.astype(np.float32), y.astype(np.int64)


def cnn5m_experiment() -> Experiment:
    X, y = synthetic_images(2048, seed=1)
    Xv, yv = synthetic_images(512, seed=2)
    mean = X.mean(axis=(0, 2, 3), keepdims=True)
    std = X.std(axis=(0, 2, 3), keepdims=True)
    return Experiment(model=CNN5M, train=((X - mean) / std, y), val=((Xv - mean) / std, yv),
                      loss=nn.CrossEntropyLoss(),
                      optimizer=lambda p: torch.optim.Adam(p, lr=3e-4),
                      batch_size=64, epochs=5, seed=0, name="cnn-5m")


def one_epoch(exp: Experiment) -> tuple[float, float]:
    """(wall, CPU) seconds of one training epoch."""
    ctx = Context(exp)
    torch.manual_seed(exp.seed)
    model = ctx.fresh_model()
    optimizer = ctx.make_optimizer(model)
    start, cpu = time.perf_counter(), time.process_time()
    for batch in ctx.loader("train"):
        ctx.step(model, batch, optimizer)
    return time.perf_counter() - start, time.process_time() - cpu


def check(exp: Experiment) -> tuple[float, float, dict[str, float], list[str]]:
    """(wall, CPU, seconds per stage, loud findings) of `nnrecipe check` in-process."""
    with tempfile.TemporaryDirectory() as out:
        start, cpu = time.perf_counter(), time.process_time()
        result = run(exp, ["data", "skeleton"], out=out, command="check")
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    stages = {s.name: sum(c.duration_s for c in s.checks) for s in result.stages}
    loud = [f"{f.severity.value} {f.code}" for f in result.findings
            if f.severity.value != "info"]
    return wall, cpu, stages, loud


def measure(name: str, make: callable, repeats: int) -> dict:
    exp = make()
    n_params = sum(p.numel() for p in exp.model().parameters())
    one_epoch(exp)  # warm-up: imports, allocator, first-touch of the data
    epochs, checks, stage_times, loud = [], [], [], []
    for _ in range(repeats):  # interleaved A/B
        epochs.append(one_epoch(exp))
        wall, cpu, stages, loud = check(exp)
        checks.append((wall, cpu))
        stage_times.append(stages)
    steps = len(Context(exp).loader("train"))
    med = {k: statistics.median(s[k] for s in stage_times) for k in stage_times[0]}
    return {"name": name, "params": n_params, "steps_per_epoch": steps,
            "epoch_s": statistics.median(e[0] for e in epochs),
            "epoch_cpu": statistics.median(e[1] for e in epochs),
            "check_s": statistics.median(c[0] for c in checks),
            "check_cpu": statistics.median(c[1] for c in checks),
            "stages": med, "findings": loud}


# What the user's own script does anyway: import the experiment file (torch, scikit-learn),
# build the model and the optimizer (the first optimizer imports torch._dynamo), one epoch.
FLOOR = """
import importlib.util, sys, torch
spec = importlib.util.spec_from_file_location("exp", sys.argv[1])
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
exp = mod.experiment()
torch.manual_seed(exp.seed)
model = exp.model()
opt = exp.optimizer(model.parameters())
X, y = (torch.as_tensor(a) for a in exp.train)
for i in range(0, len(X), exp.batch_size):
    opt.zero_grad()
    loss = exp.loss(model(X[i:i + exp.batch_size]), y[i:i + exp.batch_size])
    loss.backward()
    opt.step()
"""


# Where one CLI process spends its CPU: the CLI's own entry point, with the phases wrapped.
PHASES = """
import sys, time
T0 = time.process_time()
spent = {}
def wrap(mod, attr, name):
    f = getattr(mod, attr)
    def timed(*a, **k):
        t = time.process_time()
        try:
            return f(*a, **k)
        finally:
            spent[name] = spent.get(name, 0.0) + time.process_time() - t
    setattr(mod, attr, timed)
import nnrecipe.cli as cli
spent["start-up (the CLI, typer)"] = time.process_time() - T0
import nnrecipe.api, nnrecipe.core.context, nnrecipe.core.runner, nnrecipe.loading
import nnrecipe.report, nnrecipe.report.figures
wrap(nnrecipe.loading, "load_experiment", "import the experiment file (floor)")
wrap(nnrecipe.api, "validate_experiment", "validate: model, optimizer (floor)")
wrap(nnrecipe.core.runner, "load_stage_checks", "import the stages (matplotlib...)")
wrap(nnrecipe.core.runner, "run_check", "the checks")
wrap(nnrecipe.core.context, "figure_to_png", "  of which rendering figures")
wrap(nnrecipe.report, "write_outputs", "write the report")
wrap(nnrecipe.report.figures, "compact_png", "  of which compacting figures")
sys.argv = ["nnrecipe", "check", sys.argv[1], "--out", sys.argv[2], "--quiet",
            "--fail-on", "never"]
try:
    cli.main()
except SystemExit:
    pass
spent["the whole process"] = time.process_time() - T0
print(repr(spent))
"""


def _child_env(bytecode: str | None) -> dict[str, str]:
    """One torch thread; bytecode kept under ``bytecode`` (a folder) or, with None,
    nnrecipe compiled from source in every process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = bytecode
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU of the child) seconds of one process."""
    before, start = os.times(), time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    wall, after = time.perf_counter() - start, os.times()
    return wall, (after.children_user - before.children_user
                  + after.children_system - before.children_system)


def cli_demo(bytecode: str | None, src: str | None = None) -> tuple[float, float]:
    """(wall, CPU of the child) seconds of the real CLI on the demo, one torch thread; from
    the source tree ``src`` when given (put first on PYTHONPATH)."""
    env = _child_env(bytecode)
    if src:
        env["PYTHONPATH"] = src
    with tempfile.TemporaryDirectory() as out:
        return _timed([sys.executable, "-c", "from nnrecipe.cli import main; main()", "check",
                       str(ROOT / "src/nnrecipe/examples/digits.py"), "--out", out, "--quiet",
                       "--fail-on", "never"], env)


def floor_demo(bytecode: str | None) -> tuple[float, float]:
    """(wall, CPU) seconds of the user's own script (FLOOR) on the demo."""
    return _timed([sys.executable, "-c", FLOOR, str(ROOT / "src/nnrecipe/examples/digits.py")],
                  _child_env(bytecode))


def _pair_ratio(runs: dict[str, list[tuple[float, float]]], a: str, b: str, what: str) -> None:
    ratios = [x[1] / y[1] for x, y in zip(runs[a], runs[b], strict=True)]
    print(f"\nCPU {what}, pair by pair: median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f})")


def cli_table(repeats: int, before: str | None, bytecode: str | None,
              pair: bool = False) -> None:
    """The whole processes, interleaved (floor, [before,] now, [now compiling], ...);
    medians."""
    variants = {"floor": lambda: floor_demo(bytecode),
                **({"before": lambda: cli_demo(bytecode, before)} if before else {}),
                "now": lambda: cli_demo(bytecode),
                **({"compiled": lambda: cli_demo(None)} if pair and bytecode else {})}
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    for i in range(repeats + 1):  # the first round warms the file and bytecode caches
        got = {k: run_one() for k, run_one in variants.items()}
        if i:
            for k, v in got.items():
                runs[k].append(v)
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
           for k, v in runs.items()}
    how = ("bytecode cached, as installed" if bytecode
           else "nnrecipe compiled from source in every process")
    print(f"\nWhole processes on the demo, one torch thread ({how}), medians of {repeats} "
          "interleaved rounds:\n")
    print("| process | wall | CPU | CPU above the floor |")
    print("|---|---|---|---|")
    labels = {"floor": "the user's own script (imports, model, optimizer, 1 epoch)",
              "before": f"`nnrecipe check`, before ({before})", "now": "`nnrecipe check`",
              "compiled": "`nnrecipe check`, its sources compiled in every process"}
    for k, (wall, cpu) in med.items():
        extra = "" if k == "floor" else f"{cpu - med['floor'][1]:.1f} s"
        print(f"| {labels[k]} | {wall:.1f} s | {cpu:.1f} s | {extra} |")
    if before:
        _pair_ratio(runs, "now", "before", "now / before")
    if "compiled" in runs:
        _pair_ratio(runs, "now", "compiled", "bytecode cached / compiled each run")


def phases(repeats: int, bytecode: str | None) -> None:
    """Medians over ``repeats`` CLI processes of the CPU seconds in each phase (PHASES)."""
    import ast

    got: list[dict[str, float]] = []
    for i in range(repeats + 1):  # the first fills the bytecode cache: not counted
        with tempfile.TemporaryDirectory() as out:
            proc = subprocess.run([sys.executable, "-c", PHASES,
                                   str(ROOT / "src/nnrecipe/examples/digits.py"), out],
                                  check=True, capture_output=True, text=True,
                                  env=_child_env(bytecode))
        if i:
            got.append(ast.literal_eval(proc.stdout.strip().splitlines()[-1]))
    print(f"\nCPU seconds per phase of one `nnrecipe check` process on the demo, medians of "
          f"{repeats}:\n")
    print("| phase | CPU |")
    print("|---|---|")
    order = ["start-up", "import the experiment", "validate", "import the stages",
             "the checks", "  of which rendering", "write the report", "  of which compacting",
             "the whole process"]  # the checks hold the figures, the report the compacting
    for k in sorted(got[0], key=lambda k: [k.startswith(o) for o in order].index(True)):
        print(f"| {k} | {statistics.median(g.get(k, 0.0) for g in got):.2f} s |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-cli", action="store_true")
    parser.add_argument("--demo-only", action="store_true", help="skip the 5M-parameter CNN")
    parser.add_argument("--cli-repeats", type=int, default=3)
    parser.add_argument("--before", help="a source tree (its src/) to time the CLI from too")
    parser.add_argument("--cli-only", action="store_true", help="only the whole processes")
    parser.add_argument("--compile-each-run", action="store_true",
                        help="no bytecode cache: nnrecipe compiled from source in every process")
    parser.add_argument("--bytecode-pair", action="store_true",
                        help="also the current tree compiled in every process, interleaved")
    parser.add_argument("--pycache", default=str(Path(tempfile.gettempdir())
                                                  / "nnrecipe-check-cost-pycache"),
                        help="where the child processes keep their bytecode")
    parser.add_argument("--phases", type=int, default=0, metavar="N",
                        help="only the CPU per phase of N CLI processes")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load0 = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    bytecode = None if args.compile_each_run else args.pycache
    if args.phases:
        phases(args.phases, bytecode)
    elif args.cli_only:
        cli_table(args.cli_repeats, args.before, bytecode, args.bytecode_pair)
    else:
        in_process(args, bytecode)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"\n{os.cpu_count()} CPUs; load average (1, 5, 15 min) at the start: {load0}; "
          f"at the end: {load}")


def in_process(args: argparse.Namespace, bytecode: str | None) -> None:
    """The in-process table (and the whole processes unless --skip-cli)."""
    rows = [measure("digits demo (CNN)", digits.experiment, args.repeats)]
    if not args.demo_only:
        rows.append(measure("5M-parameter CNN, 3x32x32", cnn5m_experiment,
                            max(1, args.repeats - 1)))
    print("| experiment | params | steps/epoch | 1 epoch (CPU) | `check` (CPU) | ratio (CPU) "
          "| data | skeleton | skeleton in epochs | warnings/errors |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        sk = r["stages"].get("skeleton", 0.0)
        print(f"| {r['name']} | {r['params'] / 1e6:.2f}M | {r['steps_per_epoch']} | "
              f"{r['epoch_s']:.2f} s ({r['epoch_cpu']:.2f} s) | {r['check_s']:.1f} s "
              f"({r['check_cpu']:.1f} s) | {r['check_s'] / r['epoch_s']:.1f}x "
              f"({r['check_cpu'] / r['epoch_cpu']:.1f}x) | "
              f"{r['stages'].get('data', 0.0):.1f} s | {sk:.1f} s | "
              f"{sk / r['epoch_s']:.1f} | {', '.join(r['findings']) or 'none'} |")
    if not args.skip_cli:
        cli_table(args.cli_repeats, args.before, bytecode, args.bytecode_pair)


if __name__ == "__main__":
    main()
