"""The train stage on real tiny runs: quiet on healthy ones, each detector firing on a run
broken on purpose."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from nnrecipe import Experiment
from nnrecipe.core.context import Context
from nnrecipe.core.findings import Finding
from nnrecipe.core.runner import run_stages
from nnrecipe.examples import digits
from nnrecipe.train.curves import BLOWUP_RECOVERED, BLOWUP_START
from tests.seeds import TEST_SEED
from tests.toys import classification_experiment, regression_experiment
from tests.train import broken

# Every run here trains, so every test takes its seed from TEST_SEED and must hold on seeds
# 0-9 (``make test-seeds``); worst-seed margins are noted at the assertions.
pytestmark = pytest.mark.statistical


def train(exp: Experiment, baselines: dict[str, Any] | None = None, out: Path | None = None,
          figures: bool = False, **options: Any) -> tuple[dict[str, Finding], Context, Any]:
    """Run the train stage; figures are drawn only where a test looks at them (they cost
    more than the tiny runs)."""
    ctx = Context(exp, options={"train_figures": figures, **options}, out_dir=out)
    if baselines:
        ctx.state["baselines"] = baselines
    result = run_stages(ctx, ["train"])
    crashed = [c for c in result.stages[0].checks if c.status == "crashed"]
    assert not crashed, crashed[0].reason
    return {f.code: f for f in result.findings}, ctx, result


@pytest.mark.parametrize("make", [classification_experiment, regression_experiment])
def test_quiet_on_the_healthy_toys(make: Any) -> None:
    findings, ctx, result = train(make(seed=TEST_SEED))  # the demo test below draws the figures
    assert findings == {}
    checks = {c.name: c for c in result.stages[0].checks}
    assert [checks[n].status for n in ("training", "gradients", "activations")] == ["passed"] * 3
    state = ctx.state["train"]
    assert state["best_epoch"] == 5 and state["checkpoint"] is None
    assert set(state["grad_norm_quantiles"]) >= {"p50", "p90", "max"}
    assert all(not m._forward_hooks for m in ctx.experiment.model().modules())


def test_quiet_on_the_demo_and_saves_the_best_checkpoint(tmp_path: Path) -> None:
    findings, ctx, result = train(dataclasses.replace(digits.experiment(), seed=TEST_SEED), out=tmp_path,
                                  figures=True)
    assert findings == {}
    state = ctx.state["train"]
    assert state["val"]["accuracy"] > 0.9 and state["test"]["accuracy"] > 0.9
    saved = torch.load(state["checkpoint"], weights_only=True)
    assert saved["best_epoch"] == state["best_epoch"]
    model = ctx.fresh_model()
    model.load_state_dict(saved["state_dict"])
    assert ctx.evaluate(model, "val")["loss"] == pytest.approx(state["val"]["loss"], rel=1e-4)
    titles = [f.title for c in result.stages[0].checks for f in c.figures]
    assert titles == ["Learning curves", "Prediction dynamics", "Gradient norms per layer",
                      "Update-to-weight ratios", "Dead and saturated units"]


def test_lr_far_too_high_is_caught_before_the_nan_reaches_the_weights() -> None:
    findings, ctx, _ = train(broken.exploding_regression(lr=0.03, seed=TEST_SEED),
                             early_stopping=False)
    nf = findings["loss-nonfinite"]
    assert nf.severity.value == "error" and nf.evidence["update_skipped"]
    assert nf.evidence["where"] == "gradients" and nf.evidence["backward_origin"] == "Linear"
    assert {"loss-diverging", "exploding-gradients", "lr-too-high"} <= set(findings)
    assert "max_norm≈" in findings["exploding-gradients"].fix
    weights = ctx.state["train"]["state_dict"]["weight"]
    assert torch.isfinite(weights).all()


def test_exploding_gradients_grow_geometrically() -> None:
    findings, _, _ = train(broken.exploding_regression(lr=0.012, seed=TEST_SEED))
    assert findings["exploding-gradients"].evidence["growth"] > 1e3
    assert "loss-nonfinite" not in findings
    assert findings["loss-diverging"].severity.value == "error"


def test_lr_far_too_high_blows_the_first_steps_up() -> None:
    """Adam at 0.5 on blobs: the first updates throw the loss far above its start, then it
    falls to ~0 with a few late spikes. What must hold on any CPU is the finding, its cause
    and the tailored fix; how many late spikes clear the spike rule is not (0-2 of them on
    seeds 0-9; an exact >= 3 here failed on an AMD EPYC)."""
    f = train(broken.lr_far_too_high(seed=TEST_SEED))[0]["lr-too-high"]
    # the early peak (two consecutive steps) against BLOWUP_START x the untrained loss ln 3
    # (2.2): seeds 0-9 give 4.02 (seed 1, the worst: 1.8x the line) to 43.7
    assert f.evidence["kind"] == "blow-up"
    assert f.evidence["early_peak"] >= BLOWUP_START * math.log(3)
    assert "0.05-0.17" in f.fix  # tailored from lr=0.5
    # a warning, not the advice an early transient gets: seeds 0, 1, 3, 5, 6, 9 come back above
    # the start later (lone batches at 1.4-47x it), and seeds 2, 4, 7, 8, which recover, peaked
    # at 5.73x (seed 4, the worst) to 39x the start against the 3.5x line for a recovered run
    assert f.severity.value == "warning"
    assert f.evidence["recovered"] is False or f.evidence["early_peak_ratio"] >= BLOWUP_RECOVERED


def test_deep_sigmoid_net_vanishes_and_plateaus() -> None:
    findings, _, _ = train(broken.deep_sigmoid(seed=TEST_SEED))
    van = findings["vanishing-gradients"]
    assert van.evidence["ratio_first_last"] < 1e-4 and van.evidence["layers"][0] == "0"
    assert "sigmoid" in van.fix
    # the run goes nowhere: a plateau that names the cause (seeds 0-9 but 7), or, when the
    # training loss crept down > 5% (seed 7), underfitting at the prior (val 1.097 vs 1.098)
    if "loss-plateau" in findings:
        assert findings["loss-plateau"].evidence["likely_causes"] == ["vanishing-gradients"]
    else:
        assert findings["underfitting"].evidence["reason"] == "majority"


def test_negative_bias_init_kills_the_relus() -> None:
    findings, _, result = train(broken.negative_bias(seed=TEST_SEED))
    dead = findings["dead-relu"]
    assert dead.severity.value == "error" and dead.evidence["layers"] == ["1", "3"]
    assert "vanishing-gradients" not in findings  # the dead units are the cause
    assert dead.evidence["input_bias_mean"]["1"] < -2 and "'0' (feeding '1')" in dead.fix
    assert {c.name: c.status for c in result.stages[0].checks}["activations"] == "error"


def test_unscaled_inputs_saturate_tanh() -> None:
    findings, _, _ = train(broken.saturated_tanh(seed=TEST_SEED))
    assert findings["saturated-activations"].evidence["layers"] == ["1"]


def test_tiny_data_big_model_overfits_and_stops_early() -> None:
    findings, ctx, _ = train(broken.tiny_data_big_model(seed=TEST_SEED))
    ov = findings["overfitting"]
    state = ctx.state["train"]
    assert ov.evidence["best_epoch"] == state["best_epoch"] and ov.evidence["onset_epoch"] >= 2
    assert state["stopped_by"] == "GL" and len(state["history"].epochs) < 40


@pytest.mark.parametrize("make, cause, severity", [
    (broken.with_dropout, "dropout", "info"),
    (broken.easier_validation, "easier-or-leaked", "warning")])
def test_val_below_train_and_its_cause(make: Any, cause: str, severity: str) -> None:
    # with_dropout (p = 0.7), seeds 0-9: a gap of 0.29 (seed 3, the worst) to 0.42 against a
    # margin of 0.100-0.124 (2.9x at the worst seed), and the dropout share of the gap
    # 0.159-0.233 against 0.049 at most for the next cause (averaging)
    findings, _, _ = train(make(seed=TEST_SEED))
    f = findings["val-below-train"]
    assert f.evidence["cause"] == cause and f.severity.value == severity


def test_lr_too_low_and_tiny_updates() -> None:
    findings, _, _ = train(broken.lr_too_low(seed=TEST_SEED))
    assert set(findings) == {"lr-too-low"}
    assert findings["lr-too-low"].evidence["update_ratio"] < 3e-4
    findings, _, _ = train(broken.tiny_updates(seed=TEST_SEED))
    assert findings["update-ratio"].evidence["low"] == ["0", "2", "4"]


def test_huge_updates() -> None:
    findings, _, _ = train(broken.huge_updates(seed=TEST_SEED))
    # the largest layer median over the 0.1 line, seeds 0-9: 0.19 (seed 5, the worst) to 0.77
    assert findings["update-ratio"].evidence["high"]


def test_weights_fluctuating() -> None:
    # Adam 0.1 on a linear problem (broken.fluctuating), seeds 0-9: the validation loss
    # zig-zags by 0.179 (seed 8, the worst: 1.79x the 0.10 line) to 0.75 of its level, while
    # the weights move by 0.011 (seed 3, the worst: 3.7x the 3e-3 line) to 0.022 per step
    f = train(broken.fluctuating(seed=TEST_SEED))[0]["weights-fluctuating"]
    assert f.evidence["val_jitter"] >= 0.1 and f.evidence["update_ratio"] >= 3e-3


def test_underfitting_against_the_linear_baseline() -> None:
    exp, baselines = broken.bottleneck(seed=TEST_SEED)
    findings, _, _ = train(exp, baselines=baselines)
    assert findings["underfitting"].evidence["reason"] == "linear"
    quiet, _, _ = train(exp)  # without baselines the network still beats the prior
    assert "underfitting" not in quiet


def test_options_budget_clip_schedule_and_users_step() -> None:
    calls = []

    def step(model: torch.nn.Module, batch: Any, loss_fn: Any, opt: torch.optim.Optimizer
             ) -> torch.Tensor:
        calls.append(1)
        opt.zero_grad()
        loss = loss_fn(model(batch[0]), batch[1])
        loss.backward()
        opt.step()
        return loss

    exp = classification_experiment(train_step=step, seed=TEST_SEED)
    findings, ctx, result = train(exp, budget_s=3.0, train_epochs=10_000, grad_clip=0.5,
                                  schedule="constant", early_stopping=False)
    metrics = result.stages[0].checks[0].metrics
    assert "time budget" in metrics["stopped_reason"] and "deadline" in ctx.state
    assert metrics["grad_clip"] == 0.5 and metrics["schedule"] == "constant"
    assert len(calls) == ctx.state["train"]["history"].steps > 0
    assert findings.keys() <= {"lr-too-low", "loss-plateau"} or not findings
    assert not math.isnan(ctx.state["train"]["grad_norm_quantiles"]["p90"])


def test_the_schedule_named_in_the_options_drives_the_learning_rate() -> None:
    pytest.importorskip("nnrecipe.overfit.schedules")
    _, ctx, result = train(classification_experiment(seed=TEST_SEED), schedule="cosine")
    lrs = ctx.state["train"]["recording"].lr
    assert result.stages[0].checks[0].metrics["schedule"] == "cosine"
    assert lrs[0] > lrs[len(lrs) // 2] > lrs[-1]
