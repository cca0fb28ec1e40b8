"""Training steps that run in eval mode because the training step switched the model there.

The recipe's ``eval-mode-training`` bug in its commonest real form: an evaluation inside the
training loop calls ``model.eval()`` and never ``model.train()`` (simpletransformers#941,
lerobot#3668), so dropout is off and batch norm stops learning its statistics for the rest of
training. The skeleton's probe sees only its first three steps; this callback watches every
step of the train stage. A forward *with gradients* through a dropout or batch-norm layer in
eval mode is a training forward in eval mode (an evaluation runs under ``no_grad``); the
verdict needs training forwards in train mode first and then in eval mode, so a model frozen
in eval mode on purpose from the start is left to the skeleton's check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nnrecipe.core.fit import Callback
from nnrecipe.skeleton._util import mode_dependent_layers

# Fires when at least this share of the steps (and MIN_STEPS of them) trained in eval mode
# after training had started in train mode. By reasoning: a step or two in eval mode changes
# nothing measurable; the reported bugs leave the rest of the run (>= 80% of the steps) there.
MIN_SHARE, MIN_STEPS = 0.05, 5


@dataclass
class ModeVerdict:
    fires: bool
    first_eval_step: int | None
    eval_steps: int
    steps: int
    layers: list[str] = field(default_factory=list)


def eval_switch_verdict(train_steps: set[int], eval_steps: set[int], steps: int,
                        layers: list[str]) -> ModeVerdict:
    """Pure: steps whose gradient-carrying forwards ran mode-dependent layers in train mode
    (``train_steps``) and in eval mode (``eval_steps``), out of ``steps``."""
    if not eval_steps or not train_steps:
        return ModeVerdict(False, min(eval_steps, default=None), len(eval_steps), steps, layers)
    first = min(eval_steps)
    switched = min(train_steps) < first
    n = len(eval_steps)
    fires = switched and n >= MIN_STEPS and n >= MIN_SHARE * max(steps, 1)
    return ModeVerdict(fires, first, n, steps, layers)


class ModeWatch(Callback):
    """Records, per training step, whether mode-dependent layers ran a gradient-carrying
    forward in train or eval mode (forward pre-hooks, removed at the end of fit)."""

    def __init__(self) -> None:
        self.step = 0
        self.train_steps: set[int] = set()
        self.eval_steps: set[int] = set()
        self.eval_layers: dict[str, None] = {}
        self._handles: list[Any] = []

    def on_fit_start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        for name, module in mode_dependent_layers(model):
            self._handles.append(module.register_forward_pre_hook(self._hook(name)))

    def _hook(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any) -> None:
            if not torch.is_grad_enabled():
                return  # an evaluation, or a probe
            if module.training:
                self.train_steps.add(self.step)
            else:
                self.eval_steps.add(self.step)
                if len(self.eval_layers) < 20:
                    self.eval_layers[name] = None
        return hook

    def on_step_end(self, step: int, loss: float, model: nn.Module,
                    optimizer: torch.optim.Optimizer) -> str | None:
        self.step = step + 1
        return None

    def on_fit_end(self, history: Any, model: nn.Module) -> None:
        self.remove()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def verdict(self) -> ModeVerdict:
        return eval_switch_verdict(self.train_steps, self.eval_steps, self.step,
                                   list(self.eval_layers))
