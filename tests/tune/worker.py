"""One tuning worker, run as a separate process by the multi-process test:
``python -m tests.tune.worker STORAGE TRIALS``. Workers wait for each other before searching
(a file per worker next to the storage), so a slow start-up cannot leave one of them idle."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

N_WORKERS = 2


def barrier(folder: Path, timeout_s: float = 120.0) -> None:
    (folder / f"ready-{os.getpid()}").touch()
    deadline = time.monotonic() + timeout_s
    while len(list(folder.glob("ready-*"))) < N_WORKERS and time.monotonic() < deadline:
        time.sleep(0.05)


def main() -> None:
    torch.set_num_threads(1)
    from nnrecipe.api import run
    from tests.tune.test_search import tiny_experiment

    storage, trials = sys.argv[1], int(sys.argv[2])
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])  # first optimizer: slow imports
    barrier(Path(storage).parent)
    run(tiny_experiment(), ["tune"], options={
        "tune_storage": storage, "tune_trials": trials, "tune_study_name": "shared",
        "tune_sampler": "random", "tune_reproduce": False})
    sys.stdout.write(json.dumps({"ok": True}) + "\n")


if __name__ == "__main__":
    main()
