"""The experiment the shared-study test runs through ``nnrecipe tune``: the tests' tiny blobs
classifier, whose training step sleeps so that a trial lasts about a second without using the
CPU (two cores are shared by the whole suite) and a worker can be killed in the middle of one.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from nnrecipe import Experiment
from nnrecipe.core.training import default_train_step
from tests.toys import classification_experiment

SLEEP_S = 0.03  # x 10 steps x 3 epochs: ~1 s per trial


def slow_step(model: torch.nn.Module, batch: Any, loss_fn: Any, optimizer: torch.optim.Optimizer
              ) -> torch.Tensor:
    time.sleep(SLEEP_S)
    return default_train_step(model, batch, loss_fn, optimizer)


def experiment() -> Experiment:
    torch.set_num_threads(1)
    # no retraining of other workers' best trials at the end: this test is about the study
    return classification_experiment(epochs=3, train_step=slow_step, name="scale",
                                     options={"tune_reproduce": False})
