"""Training-step overhead of the nnrecipe monitor under DDP (two ranks, gloo, CPU).

The same design as ``monitor_overhead.py``, in every rank of a ``torchrun --nproc_per_node 2``
job: one DDP model, one ``DistributedWatcher`` for the whole run, attached for the monitor's
blocks and detached for the plain ones; blocks alternate A/B, B/A, ...; one torch thread per
rank; medians of the per-step wall time (DDP's all-reduce makes the ranks wait for each other
every step, so wall time is the step's cost) and of CPU time. Blocks are 100 steps, the
default gather interval, so each monitored block pays for one gather (fingerprints of every
tensor + one ``all_gather_object``). The time spent inside the monitor (hooks, live checks,
gathers) is also measured directly, and one gather is timed on its own.

Run: ``python benchmarks/ddp_overhead.py [--quick] [--out results.json]`` (it starts torchrun
itself).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from nnrecipe.examples.digits import DigitsCNN
from nnrecipe.train.distributed import GATHER_EVERY, DistributedWatcher

ROOT = Path(__file__).resolve().parents[1]


def mlp() -> nn.Module:
    """~2.9M parameters: 784 -> 1536 -> 1024 -> 10 with ReLUs."""
    return nn.Sequential(nn.Linear(784, 1536), nn.ReLU(), nn.Linear(1536, 1024), nn.ReLU(),
                         nn.Linear(1024, 10))


CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "demo CNN (38k params, batch 64 per rank)": (DigitsCNN, (1, 8, 8)),
    "MLP 2.9M params (batch 64 per rank)": (mlp, (784,)),
}


def block(net: nn.Module, opt: torch.optim.Optimizer, batches: list, w: DistributedWatcher | None
          ) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        if w is not None:
            w.step(loss)
        else:
            loss.item()
    n = len(batches)
    return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n


def bench(name: str, make: Callable[[], nn.Module], shape: tuple[int, ...], pairs: int
          ) -> dict[str, object]:
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = make()
    net = DistributedDataParallel(model)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(rank)
    batches = [(torch.randn(64, *shape, generator=g), torch.randint(0, 10, (64,), generator=g))
               for _ in range(GATHER_EVERY)]
    w = DistributedWatcher(net, opt, on_finding=lambda f: None)
    w.monitor.detach()
    block(net, opt, batches[:20], None)  # warm-up
    times: dict[str, list[tuple[float, float]]] = {"plain": [], "monitor": []}
    inside: list[float] = []
    for i in range(pairs):
        order = ("plain", "monitor") if i % 2 == 0 else ("monitor", "plain")
        for variant in order:
            if variant == "monitor":
                w.monitor.attach(model, opt)
                spent = w.monitor.seconds_spent
                wall, cpu = block(net, opt, batches, w)
                inside.append((w.monitor.seconds_spent - spent) / len(batches))
                w.monitor.detach()
            else:
                wall, cpu = block(net, opt, batches, None)
            times[variant].append((wall, cpu))
    gather_s = []
    for _ in range(5):
        t0 = time.perf_counter()
        w._gather_and_decide(final=False)
        gather_s.append(time.perf_counter() - t0)
    med = {k: (statistics.median(v[0] for v in vs), statistics.median(v[1] for v in vs))
           for k, vs in times.items()}
    return {"case": name, "params": sum(p.numel() for p in model.parameters()),
            "pairs": pairs, "steps_per_block": len(batches),
            "plain_wall_ms": med["plain"][0] * 1e3, "monitor_wall_ms": med["monitor"][0] * 1e3,
            "wall_ratio": med["monitor"][0] / med["plain"][0],
            "plain_cpu_ms": med["plain"][1] * 1e3, "monitor_cpu_ms": med["monitor"][1] * 1e3,
            "cpu_ratio": med["monitor"][1] / med["plain"][1],
            "inside_ms": statistics.median(inside) * 1e3,
            "inside_share": statistics.median(inside) / med["plain"][0],
            "gather_ms": statistics.median(gather_s) * 1e3, "gathers": w.gathers,
            "diverged": w.divergence is not None}


def worker(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=300))
    results = [bench(name, make, shape, args.pairs) for name, (make, shape) in CASES.items()]
    everyone: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, results)
    if dist.get_rank() == 0:
        out = {"platform": platform.platform(), "torch": torch.__version__,
               "world_size": dist.get_world_size(), "load_average": os.getloadavg(),
               "ranks": everyone}
        text = json.dumps(out, indent=1)
        if args.out:
            Path(args.out).write_text(text)
        for r in results:
            print(f"{r['case']}: plain {r['plain_wall_ms']:.2f} ms, monitor "
                  f"{r['monitor_wall_ms']:.2f} ms ({r['wall_ratio'] - 1:+.1%} wall, "
                  f"{r['cpu_ratio'] - 1:+.1%} CPU), inside the monitor {r['inside_ms']:.3f} ms "
                  f"({r['inside_share']:.1%}), one gather {r['gather_ms']:.2f} ms")
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 block pairs instead of 12")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pairs", type=int, default=12)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    pairs = 4 if args.quick else args.pairs
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", "29531", __file__, "--worker",
           "--pairs", str(pairs)] + (["--out", args.out] if args.out else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    raise SystemExit(subprocess.call(cmd, env=env))


if __name__ == "__main__":
    main()
