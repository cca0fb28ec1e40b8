import math

import pytest
import torch

from nnrecipe.core.context import Context
from nnrecipe.core.fit import fit
from nnrecipe.errors import ConfigurationError
from nnrecipe.overfit.schedules import (
    SCHEDULES,
    make_scheduler,
    schedule_factor,
    schedule_name,
    scheduler_from_options,
)
from tests.toys import classification_experiment


def factors(name: str, total: int = 100, **kw: object) -> list[float]:
    return [schedule_factor(name, t, total, **kw) for t in range(total)]


def test_constant_is_one() -> None:
    assert set(factors("constant")) == {1.0}


def test_linear_warmup_then_constant() -> None:
    f = factors("warmup", warmup_steps=10)
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(f[:9], f[1:10], strict=True))
    assert set(f[10:]) == {1.0}
    assert factors("warmup", total=1000)[49] == pytest.approx(1.0)  # default: 5% of steps


def test_cosine_decays_to_min_factor_after_warmup() -> None:
    f = factors("cosine", warmup_steps=10, min_factor=0.1)
    assert f[9] == pytest.approx(1.0) and f[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))
    assert f[55] == pytest.approx(0.55, abs=0.02)  # halfway down
    assert schedule_factor("cosine", 100, 100, min_factor=0.1) == pytest.approx(0.1)


def test_step_decay() -> None:
    f = factors("step", total=90)
    assert f[0] == 1.0 and f[30] == pytest.approx(0.1) and f[60] == pytest.approx(0.01)
    assert factors("step-decay", milestones=[10, 50], gamma=0.5)[50] == pytest.approx(0.25)


def test_one_cycle_rises_then_anneals() -> None:
    f = factors("one-cycle")
    assert f[0] == pytest.approx(1 / 25)
    peak = max(range(100), key=f.__getitem__)
    assert peak == 30 and f[peak] == pytest.approx(1.0)
    assert f[-1] < 1e-3


def test_make_scheduler_drives_an_optimizer_and_fit() -> None:
    for name in SCHEDULES:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
        sched = make_scheduler(name)(opt, 20)
        lrs = []
        for _ in range(20):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert lrs == pytest.approx([0.5 * schedule_factor(name, t, 20) for t in range(20)])
    ctx = Context(classification_experiment(epochs=2))
    h = fit(ctx, ctx.fresh_model(), scheduler=make_scheduler("cosine", warmup_steps=3),
            val_split=None)
    assert h.step_lrs[0] < h.step_lrs[3] and h.step_lrs[-1] < 0.1 * h.step_lrs[3]
    assert all(math.isfinite(v) for v in h.step_losses)


def test_bad_names_and_options_are_clear_errors() -> None:
    with pytest.raises(ConfigurationError, match="valid: constant"):
        make_scheduler("exponential")
    with pytest.raises(ConfigurationError, match="does not take"):
        make_scheduler("cosine", gamma=0.5)
    with pytest.raises(ConfigurationError, match="pct_start"):
        make_scheduler("one-cycle", pct_start=1.5)


def test_from_options() -> None:
    assert scheduler_from_options({}) is None
    assert scheduler_from_options({"schedule": "constant"}) is None
    assert scheduler_from_options({"schedule": "onecycle"}).schedule_name == "one-cycle"
    f = scheduler_from_options({"schedule": {"name": "warmup", "warmup_steps": 5}})
    assert f.schedule_name == "warmup"


def test_schedule_name_reads_every_way_options_name_a_schedule() -> None:
    assert schedule_name({}) is None and schedule_name({"schedule": None}) is None
    assert schedule_name({"schedule": "constant"}) is None
    assert schedule_name({"schedule": "Cosine_Annealing"}) == "cosine"
    assert schedule_name({"schedule": {"name": "onecycle", "pct_start": 0.2}}) == "one-cycle"
    assert schedule_name({"schedule": make_scheduler("step")}) == "step"
    assert schedule_name({"schedule": lambda opt, n: None}) is None  # shape unknown
    assert schedule_name({"schedule": "bogus"}) is None  # the train stage reports it
