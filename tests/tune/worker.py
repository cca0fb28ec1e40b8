"""One tuning worker, run as a separate process by the multi-process test:
``python -m tests.tune.worker STORAGE TRIALS``."""

from __future__ import annotations

import json
import sys

import torch


def main() -> None:
    torch.set_num_threads(1)
    from nnrecipe.api import run
    from tests.tune.test_search import tiny_experiment

    storage, trials = sys.argv[1], int(sys.argv[2])
    run(tiny_experiment(), ["tune"], options={
        "tune_storage": storage, "tune_trials": trials, "tune_study_name": "shared",
        "tune_sampler": "random", "tune_reproduce": False})
    sys.stdout.write(json.dumps({"ok": True}) + "\n")


if __name__ == "__main__":
    main()
