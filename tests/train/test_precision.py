"""Mixed precision under ``watch()``: CPU float16/bfloat16 autocast and ``GradScaler("cpu")``.

The scaler's own skips are not failures; a collapsing scale and a float16 forward overflow are
findings with the bfloat16 advice; gradient norms are read unscaled."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import nnrecipe
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.train.precision import overflow_verdict, scale_verdict
from tests.seeds import TEST_SEED
from tests.toys import blobs, regression_data
from tests.train.broken import deep_mlp

FAILURES = {"loss-nonfinite", "exploding-gradients", "loss-scale-collapse", "fp16-overflow"}


# ------------------------------------------------------------------ pure verdicts


def test_scale_verdict_on_scripted_scales() -> None:
    # the search: 5 skips at the start, then a stable scale (and a growth) -> quiet
    scales = [2.0 ** (15 - i) for i in range(5)] + [2048.0] * 95 + [4096.0] * 20
    assert not scale_verdict(scales, [0, 1, 2, 3, 4]).fires
    # halving on every step down to 2**-10: collapsed (error)
    v = scale_verdict([2.0 ** (15 - i) for i in range(26)], list(range(26)))
    assert v.fires and v.severity == Severity.ERROR and v.min_scale < 1
    # still above 1 but skipping a third of the late steps: keeps collapsing (warning)
    scales = [1024.0 if i % 3 else 512.0 for i in range(60)]
    late = [i for i in range(30, 60) if i % 3 == 0]
    v = scale_verdict(scales, late)
    assert v.fires and v.severity == Severity.WARNING


def test_overflow_verdict_on_scripted_losses() -> None:
    losses = [2.0] * 10 + [math.inf] * 3 + [2.0] * 7
    assert overflow_verdict(losses, "float16", True).fires
    assert overflow_verdict(losses, "float16", None).fires  # not traced: still float16's doing
    assert not overflow_verdict(losses, "float16", False).fires  # NaN in float32 too: a real bug
    assert not overflow_verdict(losses, "bfloat16", True).fires
    assert not overflow_verdict([2.0] * 20, "float16", True).fires


# --------------------------------------------------------------- real CPU loops


def amp_loop(*, dtype: torch.dtype = torch.float16, scaler: bool = True, steps: int = 80,
             regression: bool = False, target_scale: float = 1.0, input_scale: float = 1.0,
             lr: float = 3e-3, seed: int = TEST_SEED) -> tuple[list[Finding], nnrecipe.train.Watcher]:
    torch.manual_seed(seed)
    if regression:
        Xn, yn = regression_data(n=512, seed=seed)
    else:
        Xn, yn = blobs(n=512, seed=seed)
    X, y = torch.from_numpy(Xn), torch.from_numpy(yn)
    model = deep_mlp(X.shape[1], 1 if regression else 3, depth=2)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    amp = torch.amp.GradScaler("cpu") if scaler else None
    with nnrecipe.watch(model, opt, scaler=amp, on_finding=lambda f: None) as w:
        for i in range(steps):
            j = (i * 32) % 480
            opt.zero_grad()
            with torch.autocast("cpu", dtype=dtype):
                out = model(X[j:j + 32] * input_scale)
            out = out.float()
            loss = (nn.functional.mse_loss(out, y[j:j + 32] * target_scale) if regression
                    else nn.functional.cross_entropy(out, y[j:j + 32]))
            if amp is not None:
                amp.scale(loss).backward()
                amp.step(opt)
                amp.update()
            else:
                loss.backward()
                opt.step()
            w.step(loss)
    findings, _ = w.final_findings()
    return findings, w


def fp32_grad_norm(seed: int = TEST_SEED) -> float:
    torch.manual_seed(seed)
    Xn, yn = blobs(n=512, seed=seed)
    model = deep_mlp(10, 3, depth=2)
    loss = nn.functional.cross_entropy(model(torch.from_numpy(Xn[:32])), torch.from_numpy(yn[:32]))
    loss.backward()
    return float(torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters())))


@pytest.mark.statistical
def test_healthy_float16_with_a_scaler_is_quiet_and_reads_unscaled_gradients() -> None:
    findings, w = amp_loop()
    rec = w.recording
    assert rec.precision == "float16" and rec.loss_scale and not rec.scaler_skipped
    assert not {f.code for f in findings} & FAILURES
    # the first step's gradient, as fp32 would give it (the scale is 65536): ratio to the
    # fp32 norm within 1 +- 1e-4 on seeds 0-9 (tolerance 5%)
    assert rec.grad_total[0] == pytest.approx(fp32_grad_norm(), rel=0.05)


@pytest.mark.statistical
def test_the_scalers_search_is_not_a_failure() -> None:
    # targets x100: gradients x65536 overflow float16 at first, the scaler backs off a few
    # times and finds its scale; those skipped steps are neither loss-nonfinite nor exploding
    findings, w = amp_loop(regression=True, target_scale=100.0, lr=1e-3)
    rec = w.recording
    assert 3 <= len(rec.scaler_skipped) <= 20 and rec.loss_scale[-1] > 1  # seeds 0-9: 7-8 skips, scale 256-512
    assert rec.optimizer_steps == 80 - len(rec.scaler_skipped)
    assert not {f.code for f in findings} & FAILURES


@pytest.mark.statistical
def test_float16_forward_overflow_is_named_with_the_bfloat16_fix() -> None:
    findings, w = amp_loop(input_scale=1e5, steps=30)  # activations beyond 65504 in float16
    codes = [f.code for f in findings]
    assert codes[0] == "fp16-overflow" and "loss-nonfinite" not in codes
    f = findings[0]
    assert f.severity == Severity.ERROR and f.evidence["finite_in_float32"] is True
    assert f.evidence["forward_origin"] == "0" and "bfloat16" in f.fix
    assert "loss-scale-collapse" not in codes  # the collapse is folded into its cause


@pytest.mark.statistical
def test_a_collapsing_scale_is_a_finding() -> None:
    # targets x1e6: even unscaled gradients overflow float16; the scale halves to below 1
    findings, w = amp_loop(regression=True, target_scale=1e6, lr=1e-9, steps=40)
    f = next(f for f in findings if f.code == "loss-scale-collapse")
    assert f.severity == Severity.ERROR and f.evidence["min_scale"] < 1  # seeds 0-9: at most 0.125
    assert "loss-nonfinite" not in {g.code for g in findings}


@pytest.mark.statistical
def test_bfloat16_autocast_is_recorded_and_quiet() -> None:
    findings, w = amp_loop(dtype=torch.bfloat16, scaler=False)
    assert w.recording.precision == "bfloat16" and not w.recording.loss_scale
    assert not {f.code for f in findings} & FAILURES


# ------------------------------------------------------- the train stage's precision


def test_precision_names_and_refusals() -> None:
    from nnrecipe.errors import ConfigurationError
    from nnrecipe.train.precision import precision_dtype, training_autocast

    assert precision_dtype(None) is None and precision_dtype("fp32") is None
    assert precision_dtype("BF16") is precision_dtype("bf16-mixed") is torch.bfloat16
    assert precision_dtype(torch.float16) is torch.float16
    with pytest.raises(ConfigurationError, match="must be one of"):
        precision_dtype("int8")
    ran = False
    with pytest.raises(ConfigurationError, match="GradScaler.*'bf16'"), training_autocast("fp16"):
        ran = True  # float16 without a scaler is refused before any step runs
    assert not ran and not torch.is_autocast_enabled("cpu")
    with training_autocast("fp32") as dtype:
        assert dtype is None and not torch.is_autocast_enabled("cpu")


@pytest.mark.statistical
def test_fit_under_bfloat16_autocast_runs_its_steps_in_bfloat16_and_is_quiet() -> None:
    """What the train stage runs for options={"precision": "bf16"}: fit() inside
    training_autocast. The forward runs in bfloat16 (seen by a hook), the monitor records it,
    the weights stay float32, autocast is off afterwards, the model learns, and no failure is
    reported."""
    from nnrecipe.core.context import Context
    from nnrecipe.core.fit import fit
    from nnrecipe.train.detectors import Extras, diagnose
    from nnrecipe.train.monitor import Monitor
    from nnrecipe.train.precision import training_autocast
    from tests.toys import classification_experiment

    ctx = Context(classification_experiment(epochs=3, seed=TEST_SEED))
    model = ctx.fresh_model()
    seen: list[torch.dtype] = []
    first = next(m for m in model.modules() if isinstance(m, nn.Linear))
    handle = first.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    mon = Monitor()
    with training_autocast("bf16", ctx.device) as dtype:
        fit(ctx, model, optimizer=ctx.make_optimizer(model), callbacks=[mon])
    handle.remove()
    rec = mon.recording
    assert dtype is torch.bfloat16 and rec.precision == "bfloat16"
    assert seen and all(d == torch.bfloat16 for d in seen)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert not torch.is_autocast_enabled("cpu")
    # it learns: with autocast's weight cache on, every forward used the first step's
    # weights and the epoch losses stayed flat (1.14, 1.14, 1.14); seeds 0-9: the last
    # epoch's mean is 0.77-0.81 x the first's (limit 0.95)
    assert rec.epochs[-1]["train_loss"] < 0.95 * rec.epochs[0]["train_loss"]
    codes = {f.code for f in diagnose(rec, Extras(where="test")).findings}
    assert not codes & FAILURES
