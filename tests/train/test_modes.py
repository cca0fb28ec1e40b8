"""``eval-mode-training`` in the train stage: a training step that leaves the model in eval
mode (an evaluation inside the loop that never switches back)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from nnrecipe.core.context import Context
from nnrecipe.core.runner import run_stages
from nnrecipe.train.modes import MIN_STEPS, eval_switch_verdict
from tests.toys import classification_experiment


def test_verdict_needs_a_switch_from_train_to_eval() -> None:
    assert eval_switch_verdict(set(range(20)), set(range(20, 100)), 100, ["drop"]).fires
    # eval from the first step: a deliberate choice, the skeleton's probe reports it
    assert not eval_switch_verdict(set(), set(range(100)), 100, ["drop"]).fires
    # a few steps in eval mode change nothing measurable
    few = set(range(50, 50 + MIN_STEPS - 1))
    assert not eval_switch_verdict(set(range(50)), few, 100, ["drop"]).fires
    assert not eval_switch_verdict(set(range(100)), set(), 100, []).fires


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 3))


def _step(restore: bool, every: int = 5) -> Any:
    """simpletransformers#941's loop: an evaluation every ``every`` steps (model.eval() under
    no_grad), then model.train() only when ``restore``."""
    count = {"n": 0}

    def step(model: nn.Module, batch: Any, loss_fn: Any, opt: torch.optim.Optimizer
             ) -> torch.Tensor:
        x, y = batch
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        count["n"] += 1
        if count["n"] % every == 0:
            model.eval()
            with torch.no_grad():
                model(x)
            if restore:
                model.train()
        return loss

    return step


def _train(restore: bool) -> tuple[dict[str, Any], Any]:
    exp = classification_experiment(model=_net, train_step=_step(restore), epochs=4)
    ctx = Context(exp, options={"train_figures": False})
    result = run_stages(ctx, ["train"])
    return {f.code: f for f in result.findings}, ctx


def test_fires_when_the_loop_never_switches_back() -> None:
    findings, _ = _train(restore=False)
    f = findings["eval-mode-training"]
    assert f.severity.value == "warning" and f.evidence["first_eval_step"] == 5
    assert f.evidence["share"] > 0.8 and "model.train()" in f.fix


@pytest.mark.parametrize("restore", [True])
def test_quiet_when_the_evaluation_switches_back(restore: bool) -> None:
    findings, ctx = _train(restore=restore)
    assert "eval-mode-training" not in findings
    model = ctx.fresh_model()
    assert all(not m._forward_pre_hooks for m in model.modules())


def test_the_train_stage_runs_bf16_under_autocast_and_refuses_fp16() -> None:
    """options={"precision": "bf16"}: the stage's steps run under CPU autocast (the monitor
    records the precision) and the run still learns; "fp16" is refused before training (the
    stage's steps apply no GradScaler)."""
    exp = classification_experiment(epochs=3)
    ctx = Context(exp, options={"train_figures": False, "precision": "bf16"})
    result = run_stages(ctx, ["train"])
    state = ctx.state["train"]
    assert state["recording"].precision is not None
    assert state["history"].epochs[-1].train_loss < state["history"].epochs[0].train_loss
    assert not [f for f in result.findings if f.severity.value != "info"]
    ctx16 = Context(classification_experiment(epochs=1),
                    options={"train_figures": False, "precision": "fp16"})
    checks = run_stages(ctx16, ["train"]).stages[0].checks
    (training,) = [c for c in checks if c.name == "training"]
    assert training.status != "passed"
