"""What `nnrecipe check` (data + skeleton) costs, in training epochs of the same experiment.

Two experiments: the bundled digits demo, and a ~5M-parameter CNN on synthetic 3x32x32
images (2048 training samples, 10 classes). For each, interleaved repeats of
  A: one training epoch (fresh model, the experiment's step, batch size and optimizer),
  B: `nnrecipe check` in-process (validation, data + skeleton stages, report written),
with one torch thread; medians; the ratio B / A is the figure quoted in the README.

Also printed: each stage's share, and one wall-clock run of the real CLI on the demo with
torch's default threads (the "well under a minute on 2 cores" target).

Run: .venv/bin/python benchmarks/check_cost.py [--repeats N] [--skip-cli]
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


def one_epoch(exp: Experiment) -> float:
    ctx = Context(exp)
    torch.manual_seed(exp.seed)
    model = ctx.fresh_model()
    optimizer = ctx.make_optimizer(model)
    start = time.perf_counter()
    for batch in ctx.loader("train"):
        ctx.step(model, batch, optimizer)
    return time.perf_counter() - start


def check(exp: Experiment) -> tuple[float, dict[str, float], list[str]]:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = run(exp, ["data", "skeleton"], out=out, command="check")
        wall = time.perf_counter() - start
    stages = {s.name: sum(c.duration_s for c in s.checks) for s in result.stages}
    loud = [f"{f.severity.value} {f.code}" for f in result.findings]
    return wall, stages, loud


def measure(name: str, make: callable, repeats: int) -> dict:
    exp = make()
    n_params = sum(p.numel() for p in exp.model().parameters())
    one_epoch(exp)  # warm-up: imports, allocator, first-touch of the data
    epochs, checks, stage_times, loud = [], [], [], []
    for _ in range(repeats):  # interleaved A/B
        epochs.append(one_epoch(exp))
        wall, stages, loud = check(exp)
        checks.append(wall)
        stage_times.append(stages)
    steps = len(Context(exp).loader("train"))
    med = {k: statistics.median(s[k] for s in stage_times) for k in stage_times[0]}
    return {"name": name, "params": n_params, "steps_per_epoch": steps,
            "epoch_s": statistics.median(epochs), "check_s": statistics.median(checks),
            "stages": med, "findings": loud}


def cli_demo_wall() -> float:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "nnrecipe"), "check",
                        str(ROOT / "src/nnrecipe/examples/digits.py"), "--out", out, "--quiet",
                        "--fail-on", "never"], check=True, capture_output=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-cli", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [measure("digits demo (CNN)", digits.experiment, args.repeats),
            measure("5M-parameter CNN, 3x32x32", cnn5m_experiment, max(1, args.repeats - 1))]
    print("| experiment | params | steps/epoch | 1 epoch | `check` | ratio | data | skeleton "
          "| skeleton in epochs | findings |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        sk = r["stages"].get("skeleton", 0.0)
        print(f"| {r['name']} | {r['params'] / 1e6:.2f}M | {r['steps_per_epoch']} | "
              f"{r['epoch_s']:.2f} s | {r['check_s']:.1f} s | {r['check_s'] / r['epoch_s']:.1f}x | "
              f"{r['stages'].get('data', 0.0):.1f} s | {sk:.1f} s | "
              f"{sk / r['epoch_s']:.1f} | {', '.join(r['findings']) or 'none'} |")
    if not args.skip_cli:
        print(f"\n`nnrecipe check` on the demo, CLI wall clock, default torch threads: "
              f"{cli_demo_wall():.1f} s")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"\n{os.cpu_count()} CPUs; load average at the end (1, 5, 15 min): {load}")


if __name__ == "__main__":
    main()
