"""The monitor's measurements against plain torch references, and its hooks' hygiene."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from nnrecipe.core.context import Context
from nnrecipe.core.fit import fit
from nnrecipe.train.monitor import Monitor, MonitorConfig
from tests.toys import classification_experiment

EXACT = MonitorConfig(update_every=1, activation_every=1, samples_per_tensor=10_000,
                      overhead_budget=None)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(25, 4), nn.ReLU(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 3))


def batch(n: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 25, generator=g), torch.randint(0, 3, (n,), generator=g)


def layer_norms(model: nn.Module, what: str) -> list[float]:
    out = []
    for m in (model[0], model[2], model[4]):
        ts = [p.grad if what == "grad" else p.detach() for p in m.parameters()]
        out.append(float(torch.sqrt(sum((t.double() ** 2).sum() for t in ts))))
    return out


def no_hooks(model: nn.Module, opt: torch.optim.Optimizer) -> bool:
    return (all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
            and not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks)


def test_norms_and_update_ratios_match_a_plain_reference() -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    mon = Monitor(EXACT).attach(model, opt)
    x, y = batch()
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        ref_grad = layer_norms(model, "grad")
        before = [p.detach().clone() for p in model.parameters()]
        opt.step()
        mon.record_loss(0.0)
        deltas = [p.detach() - b for p, b in zip(model.parameters(), before, strict=True)]
        ref_update = [float(torch.sqrt((deltas[2 * i] ** 2).sum() + (deltas[2 * i + 1] ** 2).sum()))
                      / n for i, n in enumerate(layer_norms(model, "param"))]
        rec = mon.recording
        assert rec.grad.values[-1] == pytest.approx(ref_grad, rel=1e-5)
        assert rec.param.values[-1] == pytest.approx(layer_norms(model, "param"), rel=1e-5)
        assert rec.update.values[-1] == pytest.approx(ref_update, rel=1e-4)
        assert rec.grad_total[-1] == pytest.approx(math.sqrt(sum(v * v for v in ref_grad)), rel=1e-5)
    assert rec.layers == ["0", "2", "4"] and rec.optimizer_steps == 5
    mon.detach()
    assert no_hooks(model, opt)


def test_dead_and_saturated_fractions_match_the_reference() -> None:
    model = mlp()
    with torch.no_grad():
        model[0].bias[:2] = -100.0  # units 0 and 1 of the first ReLU can never fire
        model[2].weight.mul_(50)  # tanh inputs far out: most outputs saturated
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    x, y = batch()
    with Monitor(EXACT).attach(model, opt) as mon:
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    rec = mon.recording
    assert rec.activations == [("1", "relu"), ("3", "tanh")]
    h = torch.relu(model[0](x))
    ref_dead = float((h.amax(0) <= 0).float().mean())
    ref_sat = float((torch.tanh(model[2](h)).abs() > 0.99).float().mean())
    assert ref_dead >= 0.5
    assert rec.dead.values[-1][0] == pytest.approx(ref_dead)
    assert rec.saturated.values[-1][1] == pytest.approx(ref_sat)
    assert no_hooks(model, opt)


def test_activation_hooks_run_only_on_schedule() -> None:
    model, x, y = mlp(), *batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Monitor(MonitorConfig(activation_every=4, overhead_budget=None)).attach(model, opt) as mon:
        for _ in range(9):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            armed = bool(model[1]._forward_hooks)
            assert armed == (mon.recording.optimizer_steps % 4 == 0)
    assert mon.recording.dead.steps == [0, 4, 8]


class Log(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)


class Sqrt(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(x - x.detach()) + x.detach()  # forward: x; backward: sqrt'(0) = inf


@pytest.mark.parametrize("bad, forward_origin, backward_origin", [
    (Log(), "1", "2"), (Sqrt(), None, "0")])  # NaN loss: every layer's gradient is NaN
def test_first_nonfinite_is_caught_before_the_update(bad: nn.Module, forward_origin: str | None,
                                                     backward_origin: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(25, 8), bad, nn.Linear(8, 3))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = batch()
    with Monitor().attach(model, opt) as mon:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        mon.record_loss(loss)
    ev = mon.recording.nonfinite
    assert ev is not None and ev["step"] == 0 and ev["update_skipped"]
    assert ev["forward_origin"] == forward_origin
    assert ev["backward_origin"] == backward_origin
    assert mon.recording.skipped_updates == 1
    for p, b in zip(model.parameters(), before, strict=True):  # the bad update never landed
        assert torch.equal(p.detach(), b)


def test_closure_optimizers_are_measured_after_the_closure() -> None:
    model, (x, y) = mlp(), batch()
    opt = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=3)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    with Monitor().attach(model, opt) as mon:
        for _ in range(3):
            mon.record_loss(opt.step(closure))
    g = mon.recording.grad.array()
    assert g.shape == (3, 3) and np.all(np.isfinite(g)) and np.all(g > 0)
    assert no_hooks(model, opt)


def test_in_fit_with_clipping_the_monitor_sees_the_raw_gradients() -> None:
    ctx = Context(classification_experiment(epochs=2))
    model = ctx.fresh_model()
    mon = Monitor()
    opt = ctx.make_optimizer(model)
    fit(ctx, model, optimizer=opt, grad_clip=1e-3, callbacks=[mon])
    assert max(mon.recording.grad_total) > 1e-2  # measured before fit's clipping hook
    assert len(mon.recording.loss) == 20 and len(mon.recording.epochs) == 2
    assert no_hooks(model, opt)


def test_series_are_thinned_on_long_runs() -> None:
    model, (x, y) = mlp(), batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Monitor(MonitorConfig(max_points=16, overhead_budget=None)).attach(model, opt) as mon:
        for _ in range(100):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    rec = mon.recording
    assert len(rec.grad.steps) <= 16 and rec.grad.stride >= 4
    assert len(rec.grad_total) == len(rec.grad.steps)
    assert rec.grad.steps == sorted(rec.grad.steps) and rec.grad.steps[-1] >= 80


def test_recording_is_json_ready() -> None:
    import json

    model, (x, y) = mlp(), batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Monitor(EXACT, fixed_batch=(x[:4], y[:4])).attach(model, opt) as mon:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        mon.record_loss(1.0)
        mon.record_epoch(val={"loss": 0.9, "accuracy": 0.5})
    d = mon.recording.to_dict()
    json.dumps(d)
    assert d["epochs"][0]["val_accuracy"] == 0.5 and len(d["predictions"][0]["p_true"]) == 4


def test_the_governor_stretches_the_optional_schedules_never_the_guard() -> None:
    model, (x, y) = mlp(), batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Monitor(MonitorConfig(overhead_budget=1e-6)).attach(model, opt) as mon:
        for _ in range(200):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    rec = mon.recording
    assert rec.schedule_stretch >= 4
    # the NaN guard and the gradient norms ran on every step (issue 16: they are not governed)
    assert rec.coverage["nonfinite_guard"] == 200 and len(rec.grad.steps) == 200
    # update ratios every 10 steps unstretched (20 measurements); stretched: 64/10 + 64/20 + ...
    assert rec.coverage["update_ratios"] < 15 and rec.update.steps == sorted(rec.update.steps)


@pytest.mark.parametrize("bad", [False, True])
def test_half_precision_norms_do_not_overflow(bad: bool) -> None:
    """Quiet: a float16 gradient whose elements are all finite (1000 each) but whose L2 norm
    (1000 * sqrt(10_000) = 1e5) is past float16's largest value, 65504. A norm taken in
    float16 read inf, and the guard dropped a healthy update as non-finite. Fires: one inf
    element is still caught (and the update dropped)."""
    model = nn.Linear(10_000, 1, bias=False).half()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with Monitor(EXACT).attach(model, opt) as mon:
        grad = torch.full_like(model.weight, 1000.0)
        if bad:
            grad[0, 7] = math.inf
        model.weight.grad = grad
        opt.step()
        mon.record_loss(1.0)
    rec = mon.recording
    if bad:
        assert rec.nonfinite is not None and rec.nonfinite["where"] == "gradients"
        assert rec.skipped_updates == 1
    else:
        assert rec.nonfinite is None and rec.skipped_updates == 0
        assert rec.grad_total[-1] == pytest.approx(1e5, rel=1e-3)


def test_the_first_layer_autocast_hook_leaves_once_it_has_looked() -> None:
    """Wiring: the first layer's autocast hook (it takes that module off PyTorch's fast call
    path) removes itself after PRECISION_LOOKS plain training forwards; under autocast from the
    first step, where only the layers run under it, the dtype is noted and the hook leaves."""
    from nnrecipe.train.monitor import PRECISION_LOOKS

    model, (x, y) = mlp(), batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Monitor(MonitorConfig(overhead_budget=None)).attach(model, opt) as mon:
        for i in range(PRECISION_LOOKS + 2):
            assert bool(model[0]._forward_pre_hooks) == (i < PRECISION_LOOKS)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    assert mon.recording.precision is None
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with Monitor(MonitorConfig(overhead_budget=None)).attach(model, opt) as mon:
        for _ in range(2):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model[4](model[3](model[2](model[1](model[0](x)))))  # layers, not the model
            nn.functional.cross_entropy(out.float(), y).backward()
            opt.step()
        assert not model[0]._forward_pre_hooks
    assert mon.recording.precision == "bfloat16"
