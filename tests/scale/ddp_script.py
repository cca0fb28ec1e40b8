"""Run by ``torchrun --nproc_per_node 2 tests/scale/ddp_script.py SCENARIOS OUT SEED`` (gloo,
CPU; SEED seeds the initialisation and the batch order, tests.seeds.TEST_SEED in the tests).

Each scenario trains a tiny model on every rank with ``nnrecipe.watch`` (or the
``DistributedWatcher`` directly, for a shorter gather interval), writes the report into
``OUT/<scenario>`` (rank 0 only) and what each rank saw into ``OUT/<scenario>/rank<r>.json``.
Scenarios run one after the other in the same two processes (one start-up for all):

- ``healthy``: DDP, an MLP with BatchNorm (DDP's default ``broadcast_buffers``): quiet;
- ``bnsync``: the ``bn`` scenario below with DDP's buffer sync on: quiet (SyncBatchNorm
  itself needs GPUs);
- ``lr``: rank 1's optimizer has a learning rate 10x rank 0's (say, a scheduler stepped on
  one rank only): the replicas drift apart, ``ranks-diverged`` names rank 1;
- ``seed``: no DDP wrapper, gradients averaged by hand, and each rank initialises the model
  from its own seed: every tensor differs from the start;
- ``bn``: plain BatchNorm with ``broadcast_buffers=False`` and 8-sample batches per rank: the
  running statistics drift apart (a warning about BatchNorm only);
- ``nan``: rank 1 gets a NaN input at step 25: every rank stops at that step, and the report
  says rank 1 saw it first.
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import nnrecipe
from nnrecipe.core.findings import Finding
from nnrecipe.train.distributed import DistributedWatcher
from tests.toys import blobs

STEPS = 120  # the healthy run: past watch()'s default gather interval (100), then the end
SHORT = 40  # the others gather every 10 steps
NAN_AT = 25


def shard(rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    X, y = blobs(n=512, seed=0)
    return torch.from_numpy(X[rank::world]), torch.from_numpy(y[rank::world])


def mlp(bn: bool = False) -> nn.Module:
    norm: list[nn.Module] = [nn.BatchNorm1d(32)] if bn else []
    return nn.Sequential(nn.Linear(10, 32), *norm, nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 3))


def loop(model: nn.Module, opt: torch.optim.Optimizer, w: Any, rank: int, world: int, *,
         steps: int, seed: int, batch: int = 32, nan_rank: int | None = None,
         average_by_hand: bool = False) -> int:
    X, y = shard(rank, world)
    g = torch.Generator().manual_seed(1000 * seed + rank)
    step = 0
    while step < steps:
        order = torch.randperm(len(X), generator=g)
        for i in range(0, len(X) - batch + 1, batch):
            idx = order[i:i + batch]
            x = X[idx].clone()
            if nan_rank == rank and step == NAN_AT:
                x[0, 0] = float("nan")
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y[idx])
            loss.backward()
            if average_by_hand:
                for p in model.parameters():
                    dist.all_reduce(p.grad)
                    p.grad /= world
            opt.step()
            w.step(loss)
            step += 1
            if w.should_stop or step >= steps:
                return step
    return step


def run(name: str, out: Path, rank: int, world: int, seed: int, *,
        make: Callable[[], nn.Module], wrap: dict[str, Any] | None, lr: float = 3e-3,
        direct: bool = False, **loop_kw: Any) -> dict[str, Any]:
    model = make()
    net: nn.Module = DistributedDataParallel(model, **wrap) if wrap is not None else model
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    live: list[Finding] = []
    if direct:
        w = DistributedWatcher(net, opt, on_finding=live.append, gather_every=10, name=name)
    else:
        w = nnrecipe.watch(net, opt, on_finding=live.append, name=name)
    with w:
        steps = loop(net, opt, w, rank, world, steps=SHORT if direct else STEPS, seed=seed,
                     **loop_kw)
    paths = w.report(out)
    done = w.finish()
    return {"rank": rank, "steps": steps, "should_stop": w.should_stop, "gathers": w.gathers,
            "type": type(w).__name__, "paths": {k: str(v) for k, v in paths.items()},
            "live": [f.to_dict() for f in live],
            "findings": [f.to_dict() for f in done["findings"]]}


def scenarios(rank: int, world: int, seed: int
              ) -> dict[str, Callable[[Path], dict[str, Any]]]:
    def seeded(seed: int, **kw: Any) -> Callable[[], nn.Module]:
        def make() -> nn.Module:
            torch.manual_seed(seed)
            return mlp(**kw)
        return make

    return {
        "healthy": lambda out: run("healthy", out, rank, world, seed, make=seeded(seed, bn=True), wrap={}),
        "bnsync": lambda out: run("bnsync", out, rank, world, seed, make=seeded(seed, bn=True), lr=1e-3,
                                  wrap={"forward_sync_buffers": True}, direct=True, batch=8),
        "lr": lambda out: run("lr", out, rank, world, seed, make=seeded(seed), wrap={}, direct=True,
                              lr=3e-3 * (10 if rank == 1 else 1)),
        "seed": lambda out: run("seed", out, rank, world, seed, make=seeded(seed + 1 + rank), wrap=None,
                                direct=True, average_by_hand=True),
        # rank-local buffers (broadcast_buffers=False keeps them unsynced at init too)
        "bn": lambda out: run("bn", out, rank, world, seed, make=seeded(seed, bn=True), lr=1e-3,
                              wrap={"broadcast_buffers": False}, direct=True, batch=8),
        "nan": lambda out: run("nan", out, rank, world, seed, make=seeded(seed), wrap={}, direct=True,
                               nan_rank=1),
    }


def main() -> None:
    names, out = sys.argv[1].split(","), Path(sys.argv[2])
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    torch.set_num_threads(1)
    # a collective that waits longer than this raises instead of hanging the test run
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    table = scenarios(rank, world, seed)
    for name in names:
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        result = table[name](folder)
        (folder / f"rank{rank}.json").write_text(json.dumps(result, indent=1))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
