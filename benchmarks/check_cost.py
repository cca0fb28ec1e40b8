"""What `nnrecipe check` (data + skeleton) costs, in training epochs of the same experiment.

Two experiments: the bundled digits demo, and a ~5M-parameter CNN on synthetic 3x32x32
images (2048 training samples, 10 classes). For each, interleaved repeats of
  A: one training epoch (fresh model, the experiment's step, batch size and optimizer),
  B: `nnrecipe check` in-process (validation, data + skeleton stages, report written),
with one torch thread; medians; the ratio B / A is the figure quoted in the README. Wall
and CPU seconds (user + system of this process) are both printed: on a shared machine the
wall clock follows the load, the CPU time much less, and on an idle machine with one torch
thread the two agree.

Also printed: each stage's share, and one run of the real CLI on the demo (start-up,
imports, data, skeleton, report) with one torch thread.

Run: .venv/bin/python benchmarks/check_cost.py [--repeats N] [--skip-cli] [--demo-only]
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


def cli_demo() -> tuple[float, float]:
    """(wall, CPU of the child) seconds of the real CLI on the demo, one torch thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as out:
        before = os.times()
        start = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "nnrecipe"), "check",
                        str(ROOT / "src/nnrecipe/examples/digits.py"), "--out", out, "--quiet",
                        "--fail-on", "never"], check=True, capture_output=True, env=env)
        wall = time.perf_counter() - start
        after = os.times()
    return wall, (after.children_user - before.children_user
                  + after.children_system - before.children_system)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-cli", action="store_true")
    parser.add_argument("--demo-only", action="store_true", help="skip the 5M-parameter CNN")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load0 = ", ".join(f"{v:.1f}" for v in os.getloadavg())
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
        wall, cpu = cli_demo()
        print(f"\n`nnrecipe check` on the demo, the whole CLI process, one torch thread: "
              f"{wall:.1f} s wall, {cpu:.1f} s CPU")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"\n{os.cpu_count()} CPUs; load average (1, 5, 15 min) at the start: {load0}; "
          f"at the end: {load}")


if __name__ == "__main__":
    main()
