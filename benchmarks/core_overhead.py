"""What the core's safety nets cost, as ratios to one training epoch of the same experiment.

- validation: ``validate_experiment`` (two factory calls to prove they are independent, the
  model built, a forward, the loss, a one-sample training-mode forward, one ``train_step``
  when the experiment has one);
- the best checkpoint written atomically (temporary file, fsync, rename) on every improvement
  of the validation loss: ``fit(checkpoint=...)`` against ``fit()`` for the same epochs, and
  the time measured inside the writes (free of the noise of a difference of medians).

On the demo (digits CNN, 38k parameters) and a 10M-parameter MLP on random data. One torch
thread; blocks alternate A/B/B/A; medians.

Run: .venv/bin/python benchmarks/core_overhead.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nnrecipe import Experiment  # noqa: E402
from nnrecipe.core.context import Context  # noqa: E402
from nnrecipe.core.fit import fit  # noqa: E402
from nnrecipe.core.validate import validate_experiment  # noqa: E402
from nnrecipe.examples import digits  # noqa: E402


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(784, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(),
                         nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 10))


def big_mlp() -> Experiment:
    g = torch.Generator().manual_seed(0)
    X = torch.randn(2048, 784, generator=g)
    y = torch.randint(0, 10, (2048,), generator=g)
    return Experiment(model=_mlp, train=(X[:1536], y[:1536]), val=(X[1536:], y[1536:]),
                      loss=nn.CrossEntropyLoss(), batch_size=64, epochs=1, name="mlp-10M")


def timed(fn) -> float:  # noqa: ANN001
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(exp: Experiment, repeats: int, epochs: int) -> dict[str, float]:
    ctx = Context(exp)
    validate_experiment(ctx)
    tmp = Path(tempfile.mkdtemp())

    def plain() -> None:
        fit(ctx, ctx.fresh_model(seed=0), epochs=epochs)

    inside: list[float] = []

    def with_checkpoint() -> None:
        h = fit(ctx, ctx.fresh_model(seed=0), epochs=epochs, checkpoint=tmp / "best.pt")
        inside.append(h.checkpoint_seconds / h.seconds)

    a, b, v = [], [], []
    for i in range(repeats):
        order = (plain, with_checkpoint) if i % 2 == 0 else (with_checkpoint, plain)
        for f in order:
            (a if f is plain else b).append(timed(f))
        v.append(timed(lambda: validate_experiment(Context(exp))))
    epoch = statistics.median(a) / epochs
    return {"epoch_s": epoch, "validate_s": statistics.median(v),
            "validate_epochs": statistics.median(v) / epoch,
            "checkpoint_overhead": statistics.median(b) / statistics.median(a) - 1,
            "checkpoint_inside": statistics.median(inside),
            "checkpoint_mb": (tmp / "best.pt").stat().st_size / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, exp, epochs in (("digits CNN (demo)", digits.experiment(), 5),
                              ("MLP 784-2048x3-10 (10.0M)", big_mlp(), 2)):
        r = measure(exp, args.repeats, epochs)
        print(f"{name}: epoch {r['epoch_s']:.3f}s | validation {r['validate_s']:.3f}s = "
              f"{r['validate_epochs']:.2f} epochs | checkpoint on each improvement "
              f"({r['checkpoint_mb']:.2f} MB): {100 * r['checkpoint_overhead']:+.1f}% of "
              f"{epochs} epochs (A/B), {100 * r['checkpoint_inside']:.1f}% spent writing it",
              flush=True)


if __name__ == "__main__":
    main()
