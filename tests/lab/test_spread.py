"""Lab conclusions over several seeds: folding the seeds' numbers, and deciding each criterion
on its mean and its seed-to-seed spread (pure functions on scripted numbers), then a topic
run end to end over seeds (a toy topic, and real ones in worker processes)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from nnrecipe import lab
from nnrecipe.lab import measure_seed
from nnrecipe.lab._base import (
    Conclusion,
    Criterion,
    Lab,
    Plot,
    Topic,
    above,
    below,
    check,
    decided,
    ratio_above,
)
from nnrecipe.lab.common import fired, fmt, line
from nnrecipe.lab.page import write_topic
from nnrecipe.lab.spread import Band, PerSeed, Spread, combine, decide, with_sd
from nnrecipe.report.plots import new_figure


def test_numbers_fold_into_means_that_keep_their_seeds() -> None:
    per_seed = [
        {"loss": 1.0, "epochs": 5, "curve": [3.0, 2.0, 1.0], "stopped": "completed",
         "diverged": False, "best": None, "raised": ["a"]},
        {"loss": 2.0, "epochs": 5, "curve": [3.0, 2.0], "stopped": "NaN", "diverged": True,
         "best": None, "raised": []},
        {"loss": 3.0, "epochs": 5, "curve": [3.0, 4.0, 3.0], "stopped": "completed",
         "diverged": False, "best": 4, "raised": ["a", "b"]},
    ]
    c = combine(per_seed)
    assert isinstance(c["loss"], Spread) and c["loss"] == 2.0 and c["loss"].sd == 1.0
    assert c["loss"].values == (1.0, 2.0, 3.0)
    assert c["epochs"] == 5 and isinstance(c["epochs"], int)  # agreeing ints stay ints
    band = c["curve"]
    assert isinstance(band, Band) and [float(v) for v in band] == [3.0, 8 / 3, 2.0]
    assert band[2].values == (1.0, 3.0)  # the seed whose curve ended early leaves the rest
    assert band.lo[0] == band.hi[0] == 3.0 and band.lo[2] < 2.0 < band.hi[2]
    assert c["stopped"] == "completed" and c["diverged"] is False  # what most seeds had
    assert c["best"] is None  # most seeds had nothing
    assert isinstance(c["raised"], PerSeed) and list(c["raised"]) == [["a"], [], ["a", "b"]]
    assert combine([{"x": 1.5}]) == {"x": 1.5}  # one seed: untouched


def test_a_non_finite_seed_is_left_out_of_the_mean_and_makes_the_spread_infinite() -> None:
    s = Spread([1.0, math.nan, 3.0])
    assert s == 2.0 and s.nonfinite == 1 and s.sd == math.inf
    assert "1 of 3 seeds not finite" in fmt(s)
    assert fmt(Spread([1.0, 2.0, 3.0])) == "2 ± 1"
    assert fmt(0.12345) == "0.123"
    w = with_sd(5.0, 0.5)
    assert w == pytest.approx(5.0) and w.sd == pytest.approx(0.5)


def test_findings_count_the_seeds_they_fired_on() -> None:
    rows = combine([{"findings": [{"code": "a", "severity": "warning", "message": "m"}]},
                    {"findings": [{"code": "a", "severity": "warning", "message": "m2"},
                                  {"code": "b", "severity": "info", "message": "x"}]},
                    {"findings": []}])["findings"]
    assert fired(rows) == "a (2 of 3 seeds), b (1 of 3 seeds)"
    assert fired([{"code": "a", "seeds": 3, "of": 3}]) == "a"
    assert fired([]) == "no finding"


def test_a_criterion_holds_only_when_its_mean_clears_the_line_by_more_than_the_spread() -> None:
    assert above("x", 2.0, 1.0).holds and not above("x", 0.5, 1.0).holds  # one seed
    assert below("x", 0.5, 1.0).holds
    assert Criterion("x", Spread([2.0, 2.2, 1.8]), ">", 1.0).holds  # 2 - 0.2 > 1
    noisy = Criterion("x", Spread([0.5, 3.5, 2.0]), ">", 1.0)  # mean 2, sd 1.5
    assert not noisy.holds and noisy.margin == pytest.approx(-0.5)
    # a yes/no criterion: on every one of three seeds
    assert Criterion("ok", Spread([1.0, 1.0, 1.0]), ">", 0.5).holds
    assert not Criterion("ok", Spread([1.0, 1.0, 0.0]), ">", 0.5).holds
    assert check("ok", True).holds and not check("ok", False).holds
    # a non-finite value on one seed: no spread to clear
    assert not Criterion("x", Spread([2.0, math.inf, 2.0]), ">", 1.0).holds
    assert Criterion("x", Spread([math.inf] * 3), ">", 1.0).holds
    assert not Criterion("x", Spread([math.nan, 2.0, 2.0]), ">", 1.0).holds
    with pytest.raises(ValueError, match="op"):
        Criterion("x", 1.0, ">=", 0.0)


def test_a_ratio_is_judged_on_the_log_scale() -> None:
    # 10x, 100x and 1000x are one effect, far past 3x: the linear mean - sd would not say so
    values = Spread([10.0, 100.0, 1000.0])
    assert not Criterion("r", values, ">", 3.0).holds
    r = Criterion("r", values, ">", 3.0, log=True)
    assert r.holds and r.center == pytest.approx(100.0)
    assert not Criterion("r", Spread([1.5, 6.0, 24.0]), ">", 3.0, log=True).holds  # at 6 ×/÷ 4
    # what a topic's conclude builds is a plain number (the spread is decide's job)
    assert ratio_above("r", Spread([1.5, 6.0, 24.0]), 3.0).value == 10.5
    assert not ratio_above("r", 0.0, 3.0).holds
    with pytest.raises(ValueError, match="positive"):
        ratio_above("r", 1.0, 0.0)


def _toy_conclude(n: dict) -> Conclusion:
    crit = [above("effect", n["effect"], 1.0)]
    shown = decided(crit)
    return Conclusion(shown, f"effect {fmt(n['effect'])}" + ("" if shown else ": not shown"),
                      [f"seen {fmt(n['effect'])}"], crit)


def test_decide_keeps_an_effect_only_when_it_clears_the_spread_and_says_why_not() -> None:
    seeds = [0, 1, 2]
    steady = [{"effect": v} for v in (2.0, 2.1, 1.9)]
    c = decide([_toy_conclude(n) for n in steady], _toy_conclude(combine(steady)), seeds)
    assert c.shown and c.seeds == seeds and c.criteria[0].value.values == (2.0, 2.1, 1.9)
    assert c.text.startswith("effect 2 ± 0.1")
    noisy = [{"effect": v} for v in (0.2, 3.8, 2.0)]  # mean 2 > 1, but sd 1.8
    c = decide([_toy_conclude(n) for n in noisy], _toy_conclude(combine(noisy)), seeds)
    assert not c.shown
    assert c.text.startswith("Not shown over seeds 0–2") and "effect 2 ± 1.8" in c.text
    absent = [{"effect": v} for v in (0.2, 0.3, 0.1)]
    c = decide([_toy_conclude(n) for n in absent], _toy_conclude(combine(absent)), seeds)
    assert not c.shown and c.text.startswith("effect 0.2 ± 0.1: not shown (Over seeds 0–2")


def _seeded_topic(name: str, base: float, spread: float) -> Topic:
    def measure(lab: Lab) -> dict:
        return {"effect": base + spread * (lab.seed % 3 - 1), "curve": [1.0, base, lab.seed]}

    def draw(n: dict) -> list[Plot]:
        fig, (ax,) = new_figure()
        line(ax, None, n["curve"], label="curve")
        return [Plot("p", fig)]

    return Topic(name=name, question="q?", questions=(1,), codes=(), advice="a", setup="s",
                 measure=measure, conclude=_toy_conclude, draw=draw)


def test_a_topic_page_is_decided_over_three_seeds_and_shows_them(tmp_path: Path) -> None:
    entry = lab.run_topic(_seeded_topic("steady", 3.0, 0.2), seed=4)
    assert entry.seeds == [4, 5, 6] and len(entry.per_seed) == 3
    assert entry.conclusion is not None and entry.conclusion.shown
    assert isinstance(entry.numbers["curve"], Band)
    html = write_topic(entry, tmp_path).read_text()
    assert "seeds 4, 5, 6" in html and "What the conclusion rests on" in html
    assert "effect reproduced over 3 seeds" in html and "3 ± 0.2" in html
    assert '"per_seed"' in (tmp_path / "steady.json").read_text()
    noisy = lab.run_topic(_seeded_topic("noisy", 1.5, 1.0), seed=0)
    assert noisy.conclusion is not None and not noisy.conclusion.shown  # 1.5 - 1 < 1
    assert "NO" in write_topic(noisy, tmp_path).read_text()
    single = lab.run_topic(_seeded_topic("one", 3.0, 0.2), seeds=1)
    assert single.seeds == [0] and single.conclusion.shown  # type: ignore[union-attr]


def test_worker_processes_measure_what_one_process_measures(tmp_path: Path) -> None:
    # the parallel path of `lab all`: the same numbers as measuring in this process, seed by
    # seed (deterministic on one machine, whatever the order the workers finish in)
    from nnrecipe.core.progress import NullProgress
    from nnrecipe.lab import _run_parallel, get_topic

    (entry,) = _run_parallel(["permutation-symmetry"], [0, 1], 2, NullProgress(), tmp_path,
                             index_link=False)
    assert not entry.error, entry.error
    topic = get_topic("permutation-symmetry")
    assert entry.per_seed[1]["violation"] == measure_seed(topic, 1)["violation"]
    assert (tmp_path / "permutation-symmetry.html").exists()


def test_the_training_problems_table_draws_bands_and_keeps_its_panels_apart() -> None:
    # the table's figure over seeds: a band around each mean curve, and the codes raised
    # (long once seeds disagree) under each panel instead of across its neighbours
    from matplotlib.collections import PolyCollection

    from nnrecipe.lab.topics.diagnostics import draw_diagnostics

    def row(seed: int, name: str) -> dict:
        codes = ["lr-too-high", "dead-relu", "vanishing-gradients", "update-ratio"][:seed + 2]
        return {"name": name, "expected": ["lr-too-high"], "raised": codes, "hit": 1.0,
                "findings": [{"code": c, "severity": "warning"} for c in codes],
                "losses": [2.3 - 0.01 * i + 0.05 * seed for i in range(100)],
                "val": [2.0 - 0.1 * i + 0.02 * seed for i in range(5)],
                "epoch_steps": [20, 40, 60, 80, 100]}

    n = combine([{"rows": [row(s, "a"), row(s, "b")]} for s in range(3)])
    (plot,) = draw_diagnostics(n)
    axes = [ax for ax in plot.figure.axes if ax.has_data()]
    assert len(axes) == 2
    for ax in axes:
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 2  # train, val
        label = ax.get_xlabel().replace("\n", " ")
        assert "update-ratio (1 of 3 seeds)" in label and not ax.texts
    (one,) = draw_diagnostics({"rows": [row(0, "a")]})
    assert not [c for ax in one.figure.axes for c in ax.collections]  # one seed: no band
