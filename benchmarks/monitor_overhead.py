"""Training-step overhead of the nnrecipe monitor at its default settings.

Same process, same model, same data: blocks of training steps are timed alternately (A/B,
B/A, ...) for the plain loop and a variant, one torch thread, and the median step times are
compared:

* ``plain``   — zero_grad, forward, loss, backward, step, ``loss.item()``
* ``monitor`` — the same with one ``nnrecipe.watch`` (default ``MonitorConfig``, overhead
  governor included) attached for these blocks, one ``w.step(loss)`` per step (live
  detectors included); the time spent inside the monitor is also measured directly
* ``anomaly`` — the plain loop under ``torch.autograd.detect_anomaly()``, the reference point
  for "catch the first NaN"

Blocks hold a multiple of the monitor's longest period (20 steps) so each block pays its share
of the scheduled work. Both CPU time (``time.process_time``: with one torch thread, the work
of the step, unaffected by other processes on a shared machine) and wall time are reported.
Run: ``python benchmarks/monitor_overhead.py [--quick] [--out results.json]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import nnrecipe
from nnrecipe.examples.digits import DigitsCNN


def big_mlp() -> nn.Module:
    """~10M parameters: 784 -> 2048 -> 2048 -> 2048 -> 10 with ReLUs."""
    return nn.Sequential(nn.Linear(784, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(),
                         nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10))


CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "demo CNN (digits, batch 64)": (DigitsCNN, (1, 8, 8)),
    "MLP ~10M params (batch 64)": (big_mlp, (784,)),
}


def run_block(model: nn.Module, opt: torch.optim.Optimizer, batches: list,
              watcher: object | None = None, anomaly: bool = False) -> tuple[float, float]:
    """(wall, CPU) seconds per step over one block. With one torch thread all the work runs
    in this process, so CPU time is the step's cost even on a busy machine."""
    ctx = torch.autograd.detect_anomaly() if anomaly else None
    if ctx is not None:
        ctx.__enter__()
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            value = loss.item()
            if watcher is not None:
                watcher.step(value)  # type: ignore[attr-defined]
        n = len(batches)
        return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n
    finally:
        if ctx is not None:
            ctx.__exit__(None, None, None)


def bench(name: str, make: Callable[[], nn.Module], shape: tuple[int, ...], rounds: int,
          steps: int) -> dict:
    """One model, one watcher for the whole run: it is attached for the monitor's blocks and
    detached for the plain ones (its recording and overhead governor carry over)."""
    torch.manual_seed(0)
    model = make()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    watcher = nnrecipe.watch(model, opt, on_finding=lambda f: None)
    watcher.close()
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(64, *shape, generator=g), torch.randint(0, 10, (64,), generator=g))
               for _ in range(steps)]
    inside = {"seconds": 0.0, "steps": 0}

    def watched() -> tuple[float, float]:
        watcher.monitor.attach(model, opt)
        before = watcher.monitor.seconds_spent
        try:
            w, c = run_block(model, opt, batches, watcher)
        finally:
            watcher.close()
        inside["seconds"] += watcher.monitor.seconds_spent - before
        inside["steps"] += len(batches)
        return w, c

    runs = {"plain": lambda: run_block(model, opt, batches), "monitor": watched,
            "plain*": lambda: run_block(model, opt, batches),
            "anomaly": lambda: run_block(model, opt, batches, anomaly=True)}
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for k in ("plain", "monitor", "anomaly"):  # warm-up
        runs[k]()
    # Two A/B comparisons, each interleaved A B B A ...: the monitor against the plain loop,
    # then detect_anomaly against its own plain blocks (so that neither variant's after-effects
    # on the allocator or caches fall more often on one side).
    for other, base in (("monitor", "plain"), ("anomaly", "plain*")):
        for r in range(rounds):
            for v in ((base, other) if r % 2 == 0 else (other, base)):
                w, c = runs[v]()
                wall[v].append(w)
                cpu[v].append(c)
    out: dict = {"case": name, "params": sum(p.numel() for p in model.parameters()),
                 "rounds": rounds, "steps_per_block": steps,
                 "schedule_stretch": watcher.recording.schedule_stretch,
                 # time measured inside the monitor's hooks and live checks, per step, over
                 # the plain step: the overhead without the noise of a difference of medians
                 "inside_monitor_ms": round(1e3 * inside["seconds"] / inside["steps"], 3)}
    out["inside_monitor_share"] = out["inside_monitor_ms"] / 1e3 / statistics.median(wall["plain"])
    for label, times in (("cpu", cpu), ("wall", wall)):
        med = {v: statistics.median(ts) for v, ts in times.items()}
        out[f"{label}_median_step_ms"] = {v: round(1e3 * t, 3) for v, t in med.items()}
        out[f"{label}_monitor_overhead"] = med["monitor"] / med["plain"] - 1
        out[f"{label}_anomaly_overhead"] = med["anomaly"] / med["plain*"] - 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds (a smoke test)")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Anomaly Detection has been enabled")
    results = []
    for name, (make, shape) in CASES.items():
        small = "CNN" in name
        rounds = (6 if args.quick else 40) if small else (2 if args.quick else 16)
        steps = 80 if small else 40
        res = bench(name, make, shape, rounds, steps)
        results.append(res)
        for label in ("cpu", "wall"):
            ms = res[f"{label}_median_step_ms"]
            print(f"{name} [{label} time]: {res['params'] / 1e6:.2f}M params, plain "
                  f"{ms['plain']:.2f} ms/step, monitor {ms['monitor']:.2f} ms "
                  f"({res[f'{label}_monitor_overhead']:+.1%}), detect_anomaly {ms['anomaly']:.2f} ms "
                  f"({res[f'{label}_anomaly_overhead']:+.1%})", flush=True)
        print(f"{name}: inside the monitor {res['inside_monitor_ms']:.3f} ms/step "
              f"({res['inside_monitor_share']:.1%} of the plain step), schedule x"
              f"{res['schedule_stretch']}", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"torch": torch.__version__, "machine": platform.machine(),
                                        "threads": 1, "results": results}, indent=2))


if __name__ == "__main__":
    main()
