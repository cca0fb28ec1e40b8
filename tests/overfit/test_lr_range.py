"""The range test's decisions, on scripted numbers (no training)."""

import math

import numpy as np
import pytest

from nnrecipe.overfit.lr_range import (
    DECAYING_EXPONENT,
    MAX_HORIZON_DECADES,
    STILL_FALLING_EXPONENT,
    ShortRun,
    Sweep,
    best_step,
    bottomed_out,
    checkpoint_steps,
    decide_confidence,
    diverged,
    extension,
    find_lr,
    horizon_rate,
    plausible_range,
    refinement,
    robust_choice,
    smooth_centered,
    sweep_lr,
    sweep_stats,
)


def scripted_sweep(edge: float, seed: int = 0, n: int = 100, noise: float = 0.02) -> Sweep:
    """Loss falls from 2 to 0.5 over the 3 decades below ``edge``, then climbs steeply."""
    rng = np.random.default_rng(seed)
    sw = Sweep(seed=seed)
    for i in range(n):
        lr = sweep_lr(i, n, 1e-7, 10)
        x = math.log10(lr / edge)
        loss = 2.0 if x < -3 else (2.0 - 0.5 * (x + 3) if x < 0 else 0.5 + 10 * x)
        loss *= 1 + noise * rng.normal()
        sw.lrs.append(lr)
        sw.losses.append(loss)
        sw.grad_norms.append(1.0)
        if x > 0 and loss > 4 * 0.5:
            sw.stopped = "diverged"
            break
    return sw


class FakeProbe:
    """Sweeps with scripted edges; short runs whose held-out loss is a parabola in log-rate
    around ``optimum`` with a cliff (diverging) above ``cliff``."""

    def __init__(self, edges: list[float], optimum: float, cliff: float = math.inf,
                 noise: float = 0.0, flaky_cliff: float = math.inf) -> None:
        self.edges, self.optimum, self.cliff, self.noise = edges, optimum, cliff, noise
        self.flaky_cliff = flaky_cliff  # odd seeds diverge above this rate
        self.calls: list[float] = []

    def sweep(self, seed: int, start_lr: float, end_lr: float, num_steps: int) -> Sweep:
        return scripted_sweep(self.edges[seed % len(self.edges)], seed, num_steps)

    def short_run(self, lr: float, seed: int) -> ShortRun:
        self.calls.append(lr)
        if lr > self.cliff or (seed % 2 and lr > self.flaky_cliff):
            return ShortRun(lr, math.nan, [1.0, math.nan], [], seed, "non-finite")
        val = 0.1 + 0.05 * math.log10(lr / self.optimum) ** 2
        val *= 1 + self.noise * (1 if seed % 2 else -1)
        return ShortRun(lr, val, [1.0] * 20, [1.0 + 0.1 * i for i in range(20)], seed)


def test_sweep_rate_and_divergence_rule() -> None:
    assert sweep_lr(0, 100, 1e-7, 10) == pytest.approx(1e-7)
    assert sweep_lr(99, 100, 1e-7, 10) == pytest.approx(10)
    assert sweep_lr(50, 101, 1e-6, 1e-2) == pytest.approx(1e-4)
    assert diverged(2.1, 0.5) and not diverged(1.9, 0.5)
    assert diverged(math.nan, 0.5) and diverged(math.inf, 0.5)
    assert diverged(2.5, -1.0) and not diverged(1.5, -1.0)  # losses that can be negative


def test_centred_smoothing_has_no_lag() -> None:
    ramp = np.arange(50, dtype=float)
    s = smooth_centered(ramp, window=7)
    assert np.allclose(s[3:-3], ramp[3:-3])  # an EMA would lag behind by ~(1/(1-beta)) steps
    assert len(smooth_centered([1.0, 2.0, math.nan, 4.0])) == 2  # stops at the first NaN


def test_sweep_stats_find_the_edge() -> None:
    st = sweep_stats(scripted_sweep(1e-2))
    assert abs(math.log10(st.edge_lr / 1e-2)) < 0.25
    assert st.steepest_lr < st.edge_lr and st.fell
    assert st.initial_loss == pytest.approx(2.0, rel=0.05)


def test_robust_choice_keeps_away_from_a_cliff() -> None:
    cliff = {1e-3: 0.30, 3e-3: 0.20, 1e-2: 0.15, 3e-2: 2.0}
    assert min(cliff, key=cliff.__getitem__) == 1e-2
    choice = robust_choice(cliff)
    assert 2e-3 < choice < 1e-2  # pulled below the rate next to the cliff
    flat = {1e-3: 0.2, 3e-3: 0.1, 1e-2: 0.2}
    assert robust_choice(flat) == pytest.approx(3e-3, rel=0.1)  # symmetric: unchanged


def test_extension_refinement_and_range() -> None:
    assert extension({1e-3: 0.5, 3e-3: 0.4, 1e-2: 0.3}) == pytest.approx(1e-2 * 10 ** 0.5)
    assert extension({1e-3: 0.3, 3e-3: 0.4, 1e-2: 0.5}) == pytest.approx(1e-3 * 10 ** -0.5)
    assert extension({1e-3: 0.5, 3e-3: 0.3, 1e-2: 0.5}) is None
    mid = refinement({1e-3: 0.5, 1e-2: 0.2, 1e-1: 0.2})  # best region between tried rates
    assert mid is not None and 1e-2 < mid < 1e-1
    assert refinement({1e-3: 0.5, 1e-2: 0.2, 1e-1: 0.5}) is None  # the best was tried
    low, high = plausible_range({1e-3: 0.2, 3e-3: 0.1, 1e-2: 0.2}, tolerance=0.05)
    assert 1e-3 < low < 3e-3 < high < 1e-2
    assert plausible_range({1e-3: 0.1}, 0.05) == (1e-3, 1e-3)


def test_confidence_rule() -> None:
    assert decide_confidence(0.2, False, 0.3, 0.05, True)[0] == "high"
    assert decide_confidence(0.7, False, 0.3, 0.05, True)[0] == "medium"
    assert decide_confidence(0.2, False, 0.01, 0.05, True)[0] == "medium"  # flat optimum
    assert decide_confidence(1.5, True, 0.3, 0.05, True)[0] == "low"
    level, reasons = decide_confidence(0.2, False, 0.3, 0.05, False)
    assert level == "low" and "never fell" in reasons[0]


def test_find_lr_on_a_scripted_probe() -> None:
    probe = FakeProbe(edges=[3e-2, 4e-2, 2.5e-2], optimum=3e-3, noise=0.002)
    res = find_lr(probe)
    assert res.method == "validated"
    assert abs(math.log10(res.suggested / 3e-3)) < 0.3
    assert res.low <= res.suggested <= res.high
    assert res.confidence == "high" and res.spread_decades < 0.5
    assert len(probe.calls) <= 9  # 3 candidates, extensions, refinements, two re-runs


def test_find_lr_moves_down_from_a_cliff_and_reports_disagreement() -> None:
    probe = FakeProbe(edges=[1e-1, 1e-3, 3e-2], optimum=1e-2, cliff=1.2e-2)
    res = find_lr(probe)
    assert res.suggested <= 1.2e-2 and res.suggested > 1e-3
    assert res.spread_decades == pytest.approx(2.0, abs=0.3)
    assert res.confidence == "low"
    sweep_only = find_lr(probe, validate=False)
    assert sweep_only.method == "sweep" and sweep_only.tried == {}


def test_find_lr_out_of_time_falls_back_to_the_sweeps() -> None:
    probe = FakeProbe(edges=[3e-2], optimum=3e-3)
    res = find_lr(probe, repeats=1, out_of_time=lambda: True)
    assert res.method == "sweep" and probe.calls == [] and res.confidence == "low"
    assert res.suggested == pytest.approx(res.edge_lrs[0] / 10)
    calls = iter([False, False, True])
    res = find_lr(FakeProbe(edges=[3e-2], optimum=3e-3), repeats=1,
                  out_of_time=lambda: next(calls, True))
    assert res.method == "validated" and len(res.tried) == 2 and math.isnan(res.noise)


def test_a_best_rate_that_diverges_with_another_seed_is_dropped() -> None:
    probe = FakeProbe(edges=[3e-2], optimum=3e-3, flaky_cliff=1e-3)
    res = find_lr(probe, repeats=1)
    assert res.suggested < 2.5e-3 and math.isinf(res.noise) and res.confidence == "low"
    assert any("diverged when re-run" in r for r in res.reasons)


def test_checkpoints_and_the_step_where_a_rate_does_best() -> None:
    assert checkpoint_steps(100) == [12, 25, 38, 50, 75, 100]
    assert checkpoint_steps(4) == [1, 2, 3, 4]
    runs = [ShortRun(1e-2, 0.2, checkpoints=[(25, 0.5), (50, 0.2), (100, 0.3)]),
            ShortRun(1e-2, 0.25, seed=1, checkpoints=[(25, 0.4), (50, 0.25), (100, 0.26)]),
            ShortRun(1e-3, 0.6, checkpoints=[(25, 0.9), (50, 0.7), (100, 0.6)]),
            ShortRun(1e-1, math.nan, checkpoints=[(25, 0.1)])]  # diverged: ignored
    assert best_step(runs, 1e-2) == 50  # mean over both seeds
    assert best_step(runs, 1e-3) == 100  # still falling at the end
    assert best_step(runs, 1e-1) is None and best_step(runs, 5e-2) is None


def test_the_rate_is_carried_to_the_horizon_by_its_regime() -> None:
    # bottomed out: the short runs' best point is 1e-2 for 50 steps, a run of 500 steps
    # reaches it at 1e-3 (progress matching)
    h = horizon_rate(1e-2, 50, 100, 500, bottomed=True)
    assert h is not None and h.rate == pytest.approx(1e-3) and not h.capped
    assert h.regime == "bottomed out" and "500 steps" in h.reason() and "step 50" in h.reason()
    # still falling at the end: only the extra steps' noise, (100 / 400) ** 0.5
    still = horizon_rate(1e-2, 100, 100, 400, bottomed=False)
    assert still is not None and still.rate == pytest.approx(5e-3) and "still" in still.reason()
    assert horizon_rate(1e-2, 50, 100, 400, bottomed=False).rate == pytest.approx(5e-3)
    no_checkpoints = horizon_rate(1e-2, None, 100, 400)  # the runs' length: still falling
    assert no_checkpoints is not None and no_checkpoints.rate == pytest.approx(5e-3)
    at_horizon = horizon_rate(1e-2, 50, 100, 80)  # runs as long as the experiment's
    assert at_horizon is not None and at_horizon.rate == 1e-2 and "as long as" in \
        at_horizon.reason()
    far = horizon_rate(1e-2, 10, 100, 10**6)  # never more than the cap below the short rate
    assert far is not None and far.capped
    assert far.rate == pytest.approx(1e-2 * 10 ** -MAX_HORIZON_DECADES)
    assert horizon_rate(1e-2, 50, 100, None) is None  # the horizon unknown


def test_bottomed_out_needs_a_rise_above_the_margin_and_the_noise() -> None:
    assert bottomed_out({25: 0.5, 50: 0.3, 100: 0.4})  # 33% above its minimum
    assert not bottomed_out({25: 0.5, 50: 0.3, 100: 0.301})  # within BOTTOM_MARGIN
    assert not bottomed_out({25: 0.5, 50: 0.3, 100: 0.33}, noise=0.2)  # within the noise
    assert not bottomed_out({25: 0.5, 100: 0.3})  # still falling
    assert not bottomed_out({}) and not bottomed_out({100: 0.3})


class HorizonProbe(FakeProbe):
    """A FakeProbe that knows its runs' length and the experiment's, with checkpoints."""

    run_steps = 100
    horizon_steps = 1000

    def short_run(self, lr: float, seed: int) -> ShortRun:
        r = super().short_run(lr, seed)
        r.checkpoints = [(50, r.val_loss * 1.5), (100, r.val_loss)]
        return r


def test_find_lr_suggests_the_rate_for_the_experiments_horizon() -> None:
    probe = HorizonProbe(edges=[3e-2, 4e-2, 2.5e-2], optimum=3e-3, noise=0.002)
    res = find_lr(probe)
    assert res.horizon is not None and res.horizon.steps == 1000
    assert res.short_rate == pytest.approx(find_lr(FakeProbe([3e-2, 4e-2, 2.5e-2], 3e-3,
                                                             noise=0.002)).suggested)
    # still falling at step 100 of 100: (100 / 1000) ** 0.5
    assert res.suggested == pytest.approx(res.short_rate * 0.1 ** STILL_FALLING_EXPONENT)
    assert res.horizon.regime == "still falling"
    assert res.low <= res.suggested <= res.high < res.short_rate
    assert "the experiment trains 1000 steps" in res.reasons[0]
    state = res.to_state()
    assert state["short_rate"] == res.short_rate and state["horizon_steps"] == 1000
    assert state["horizon_best_step"] == 100


def test_a_decaying_schedule_is_suggested_at_its_peak() -> None:
    # fires: the experiment decays its rate (cosine), so the constant-rate rules do not apply
    # (the same curve that bottomed out would have been carried by progress matching)
    for name in ("cosine", "one-cycle", "step"):
        h = horizon_rate(1e-2, 50, 100, 1000, bottomed=True, schedule=name)
        assert h is not None and h.regime == "decaying schedule" and h.schedule == name
        assert h.rate == pytest.approx(1e-2 * 0.1 ** DECAYING_EXPONENT)
        assert f"{name} decay" in h.reason() and "peak" in h.reason()
    # quiet: warmup-then-constant and no schedule keep the constant-rate regimes
    for name in (None, "warmup", "constant"):
        h = horizon_rate(1e-2, 50, 100, 1000, bottomed=True, schedule=name)
        assert h is not None and h.regime == "bottomed out" and h.schedule is None
        assert h.rate == pytest.approx(5e-4)
    # runs as long as the experiment's: the short runs' rate, whatever the schedule
    same = horizon_rate(1e-2, 50, 100, 80, schedule="cosine")
    assert same is not None and same.rate == 1e-2 and same.regime == "same length"


def test_find_lr_reads_the_probes_schedule() -> None:
    probe = HorizonProbe(edges=[3e-2, 4e-2, 2.5e-2], optimum=3e-3, noise=0.002)
    probe.schedule = "cosine"
    res = find_lr(probe)
    assert res.horizon is not None and res.horizon.regime == "decaying schedule"
    assert res.suggested == pytest.approx(res.short_rate * 0.1 ** DECAYING_EXPONENT)
    assert "cosine decay" in res.reasons[0]
    assert res.to_state()["horizon_regime"] == "decaying schedule"
