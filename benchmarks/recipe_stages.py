"""What the last three stages (regularize, tune, ensemble) cost, in training runs of the demo.

Interleaved repeats of
  A: one full training run of the digits demo (fresh model, 15 epochs, its optimizer),
  B: the regularize + tune + ensemble stages in-process (default options: the ladder, 8 trials,
     up to 5 members), fed nothing by earlier stages (the worst case: they train their own
     reference),
with one torch thread; medians; B / A is the figure quoted in the README, with each stage's
share. CPU time is reported next to wall time (on a shared machine the wall time is noise).

Run: .venv/bin/python benchmarks/recipe_stages.py [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from nnrecipe.api import run
from nnrecipe.core.context import Context
from nnrecipe.core.fit import fit
from nnrecipe.examples import digits


def one_training_run() -> tuple[float, float]:
    ctx = Context(digits.experiment())
    model = ctx.fresh_model()
    w, c = time.perf_counter(), time.process_time()
    fit(ctx, model)
    return time.perf_counter() - w, time.process_time() - c


def stages() -> tuple[float, float, dict[str, float]]:
    w, c = time.perf_counter(), time.process_time()
    res = run(digits.experiment(), ["regularize", "tune", "ensemble"])
    per = {f"{s.name}/{ch.name}": ch.duration_s for s in res.stages for ch in s.checks}
    return time.perf_counter() - w, time.process_time() - c, per


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    one_training_run()  # warm-up: first optimizer import, allocator
    a_wall, a_cpu, b_wall, b_cpu, shares = [], [], [], [], []
    for _ in range(args.repeats):
        w, c = one_training_run()
        a_wall.append(w)
        a_cpu.append(c)
        w, c, per = stages()
        b_wall.append(w)
        b_cpu.append(c)
        shares.append(per)
    w, c = one_training_run()
    a_wall.append(w)
    a_cpu.append(c)
    med = statistics.median
    print(f"one training run (15 epochs): wall {med(a_wall):.2f}s cpu {med(a_cpu):.2f}s")
    print(f"regularize+tune+ensemble:     wall {med(b_wall):.1f}s cpu {med(b_cpu):.1f}s")
    print(f"ratio (cpu): {med(b_cpu) / med(a_cpu):.1f} training runs; "
          f"(wall): {med(b_wall) / med(a_wall):.1f}")
    for name in shares[0]:
        print(f"  {name:40s} {med(s[name] for s in shares):7.1f}s wall")


if __name__ == "__main__":
    main()
