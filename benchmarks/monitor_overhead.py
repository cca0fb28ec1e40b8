"""What an uninterrupted training loop pays for the nnrecipe monitor, and what it gets for it.

Same process, same data, one torch thread. Each variant trains its own copy of the model
(same initial weights) with its own optimizer; blocks of steps of the variants are timed in
rotating order (A B C D, B C D A, ...), and the median step times are compared:

* ``plain``     — zero_grad, forward, loss, backward, step, ``loss.item()``
* ``plain-again`` — the same plain loop on a second copy: its "overhead" is the noise floor
  of the measurement on this machine (an A/A comparison), printed beside the others
* ``monitor``   — the same with ``nnrecipe.watch`` attached for the **whole run** (never
  detached between blocks: what a user's loop sees), ``overhead_budget=None`` (nothing
  governed), one ``w.step(loss)`` per step with the live checks
* ``governed``  — the same with the default ``MonitorConfig`` (the overhead governor may
  stretch the update-ratio and activation schedules; the NaN guard and the gradient norms
  always run on every step)
* ``anomaly``   — the plain loop under ``torch.autograd.detect_anomaly()``, the reference point
  for "catch the first NaN"

Both CPU time (``time.process_time``: with one torch thread, the work of the step, barely
affected by other processes on a shared machine) and wall time are reported, with the load
average during the run. For the monitored variants: the time measured inside the monitor
(hooks and live checks) per step, and how many steps each signal covered (``coverage``).
* ``baseline``  — only with ``--baseline FILE``: the ``monitor`` variant with the ``Monitor``
  class of another version of ``nnrecipe/train/monitor.py`` (e.g. ``git show
  HEAD~1:src/nnrecipe/train/monitor.py > /tmp/old.py``): a before/after comparison in one run,
  at one load, which figures from runs at different loads cannot give

Run: ``python benchmarks/monitor_overhead.py [--quick] [--out results.json] [--baseline FILE]
[--skip anomaly,governed]``.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

import nnrecipe
from nnrecipe.examples.digits import DigitsCNN
from nnrecipe.train.monitor import MonitorConfig


def big_mlp() -> nn.Module:
    """~10M parameters: 784 -> 2048 -> 2048 -> 2048 -> 10 with ReLUs."""
    return nn.Sequential(nn.Linear(784, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(),
                         nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10))


CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "demo CNN (digits, batch 64)": (DigitsCNN, (1, 8, 8)),
    "MLP ~10M params (batch 64)": (big_mlp, (784,)),
}
VARIANTS = ("plain", "plain-again", "monitor", "governed", "anomaly")
MONITORED = ("monitor", "governed", "baseline")


def load_monitor_module(path: Path) -> Any:
    """Another version of ``nnrecipe/train/monitor.py``, imported under its own name."""
    spec = importlib.util.spec_from_file_location("baseline_monitor", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_monitor"] = module
    spec.loader.exec_module(module)
    return module


class Variant:
    def __init__(self, name: str, base: nn.Module, baseline: Any = None) -> None:
        self.name = name
        self.model = copy.deepcopy(base)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.watcher: Any = None
        if name in ("monitor", "governed"):
            config = MonitorConfig(overhead_budget=None) if name == "monitor" else MonitorConfig()
            self.watcher = nnrecipe.watch(self.model, self.opt, config=config,
                                          on_finding=lambda f: None)
        elif name == "baseline":  # the same watcher around the other version's Monitor
            watch_module = sys.modules["nnrecipe.train.watch"]
            current = watch_module.Monitor
            watch_module.Monitor = baseline.Monitor
            try:
                self.watcher = nnrecipe.watch(
                    self.model, self.opt, config=baseline.MonitorConfig(overhead_budget=None),
                    on_finding=lambda f: None)
            finally:
                watch_module.Monitor = current
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.inside: list[float] = []  # per block: seconds inside the monitor per step
        self.checks: list[float] = []  # per block: of which live checks, per step
        self.steps = 0

    def block(self, batches: list[tuple[torch.Tensor, torch.Tensor]], record: bool = True) -> None:
        model, opt, w = self.model, self.opt, self.watcher
        ctx = torch.autograd.detect_anomaly() if self.name == "anomaly" else None
        if ctx is not None:
            ctx.__enter__()
        before = w.monitor.seconds_spent if w is not None else 0.0
        checks = getattr(w.monitor, "check_seconds", 0.0) if w is not None else 0.0
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            for x, y in batches:
                opt.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                value = loss.item()
                if w is not None:
                    w.step(value)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        finally:
            if ctx is not None:
                ctx.__exit__(None, None, None)
        if record:
            n = len(batches)
            self.wall.append(wall / n)
            self.cpu.append(cpu / n)
            if w is not None:
                self.inside.append((w.monitor.seconds_spent - before) / n)
                self.checks.append((getattr(w.monitor, "check_seconds", 0.0) - checks) / n)
                self.steps += n


def bench(name: str, make: Callable[[], nn.Module], shape: tuple[int, ...], rounds: int,
          steps: int, names: tuple[str, ...] = VARIANTS, baseline: Any = None) -> dict[str, Any]:
    torch.manual_seed(0)
    base = make()
    variants = [Variant(v, base, baseline) for v in names]
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(64, *shape, generator=g), torch.randint(0, 10, (64,), generator=g))
               for _ in range(steps)]
    for v in variants:  # warm-up, not timed
        v.block(batches, record=False)
    load0 = os.getloadavg()[0]
    for r in range(rounds):
        for k in range(len(variants)):
            variants[(r + k) % len(variants)].block(batches)
    load1 = os.getloadavg()[0]
    by = {v.name: v for v in variants}
    out: dict[str, Any] = {"case": name, "params": sum(p.numel() for p in base.parameters()),
                           "rounds": rounds, "steps_per_block": steps,
                           "load_average": [round(load0, 2), round(load1, 2)]}
    for label in ("cpu", "wall"):
        med = {k: statistics.median(getattr(v, label)) for k, v in by.items()}
        out[f"{label}_median_step_ms"] = {k: round(1e3 * t, 3) for k, t in med.items()}
        out[f"{label}_overhead"] = {k: med[k] / med["plain"] - 1 for k in names[1:]}
    for k in MONITORED:
        if k not in by:
            continue
        v = by[k]
        rec = v.watcher.recording
        total = rec.optimizer_steps
        # medians over blocks (a block whose hooks were preempted on a busy machine does not
        # carry the figure), and the mean beside it (what the whole run spent)
        inside = statistics.median(v.inside)
        out[k] = {"inside_monitor_ms": round(1e3 * inside, 3),
                  "inside_monitor_mean_ms": round(1e3 * statistics.mean(v.inside), 3),
                  # live checks (every rule over the run so far, scheduled by their own time
                  # share) are rare: their mean per step, not a median
                  "live_checks_ms": round(1e3 * statistics.mean(v.checks), 3),
                  "inside_share_of_plain_step": inside / statistics.median(by["plain"].wall),
                  "schedule_stretch": rec.schedule_stretch,
                  "coverage": {s: f"{n}/{total}" for s, n in rec.coverage.items() if s != "steps"}}
        v.watcher.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds (a smoke test)")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--case", choices=("all", "cnn", "mlp"), default="all",
                    help="run one model only")
    ap.add_argument("--rounds", type=int, default=None,
                    help="rounds for the CNN (the MLP gets 2/5 of them); default 30, --quick 4")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="another version of nnrecipe/train/monitor.py, run as variant 'baseline'")
    ap.add_argument("--skip", default="", help="variants to leave out, comma-separated "
                    "(governed, anomaly, plain-again)")
    args = ap.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if skip & {"plain", "monitor"}:
        raise SystemExit("--skip: plain and monitor are what the others are compared with")
    names = tuple(v for v in VARIANTS if v not in skip) + (("baseline",) if args.baseline else ())
    baseline = load_monitor_module(args.baseline) if args.baseline else None
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Anomaly Detection has been enabled")
    results = []
    for name, (make, shape) in CASES.items():
        small = "CNN" in name
        if args.case != "all" and small != (args.case == "cnn"):
            continue
        cnn_rounds = args.rounds or (4 if args.quick else 30)
        rounds = cnn_rounds if small else max(2, round(cnn_rounds * 2 / 5))
        steps = 80 if small else 40
        res = bench(name, make, shape, rounds, steps, names, baseline)
        results.append(res)
        labels = {"monitor": "monitor", "governed": "governed", "anomaly": "detect_anomaly",
                  "baseline": "baseline monitor", "plain-again": "A/A noise floor"}
        for label in ("cpu", "wall"):
            ms, ov = res[f"{label}_median_step_ms"], res[f"{label}_overhead"]
            parts = ", ".join(f"{labels[k]} {ov[k]:+.1%}" for k in names[1:])
            print(f"{name} [{label}]: {res['params'] / 1e6:.2f}M params, plain {ms['plain']:.2f} "
                  f"ms/step; {parts}", flush=True)
        for k in MONITORED:
            if k not in res:
                continue
            m = res[k]
            print(f"{name} [{k}]: inside the monitor {m['inside_monitor_ms']:.3f} ms/step median "
                  f"over blocks ({m['inside_share_of_plain_step']:.1%} of the plain step; mean "
                  f"{m['inside_monitor_mean_ms']:.3f}, of which live checks "
                  f"{m['live_checks_ms']:.3f}), schedule "
                  f"x{m['schedule_stretch']}, coverage {m['coverage']}", flush=True)
        print(f"{name}: load average {res['load_average'][0]} -> {res['load_average'][1]} "
              f"on {os.cpu_count()} cores", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"torch": torch.__version__, "machine": platform.machine(),
                                        "threads": 1, "results": results}, indent=2))


if __name__ == "__main__":
    main()
