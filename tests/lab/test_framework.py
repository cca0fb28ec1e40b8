"""The lab's machinery: topics listed, unknown topics refused, pages self-contained."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nnrecipe import lab
from nnrecipe.cli import app
from nnrecipe.errors import ConfigurationError
from nnrecipe.lab._base import Conclusion, Lab, Plot, Topic
from nnrecipe.lab.page import Entry, render_plots, write_index, write_topic
from nnrecipe.report.plots import line_plot

RECIPE_CODES = {
    "data-duplicates", "split-leakage", "corrupt-samples", "class-imbalance",
    "conflicting-labels", "label-errors", "outliers", "unscaled-features", "constant-features",
    "distribution-shift", "shortcut-feature", "nondeterministic", "augmentation-active",
    "init-loss-mismatch", "input-independent", "cannot-overfit-batch", "batch-dependency",
    "causal-leak", "baseline-not-beaten", "inputs-not-normalized", "double-softmax",
    "target-shape-mismatch", "grads-not-zeroed", "params-not-updating", "eval-mode-training",
    "dropout-before-batchnorm", "loss-nonfinite", "loss-diverging", "exploding-gradients",
    "vanishing-gradients", "dead-relu", "saturated-activations", "update-ratio", "lr-too-high",
    "lr-too-low", "loss-plateau", "overfitting", "underfitting", "val-below-train",
    "weights-fluctuating",
}


def test_topics_are_listed_in_question_order_with_codes() -> None:
    topics = lab.list_topics()
    assert len({t.name for t in topics}) == len(topics)
    assert [min(t.questions) for t in topics] == sorted(min(t.questions) for t in topics)
    for t in topics:
        assert t.question and t.setup and t.advice
        assert all(1 <= q <= 28 for q in t.questions)
        # every code a topic names is one the spec promises (the report's vocabulary)
        assert set(t.codes) <= RECIPE_CODES, (t.name, set(t.codes) - RECIPE_CODES)


def test_unknown_topic_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="activations"):
        lab.run("no-such-topic", tmp_path)
    result = CliRunner().invoke(app, ["lab", "no-such-topic", "--out", str(tmp_path)])
    assert result.exit_code == 2


def test_cli_lists_topics() -> None:
    result = CliRunner().invoke(app, ["lab"])
    assert result.exit_code == 0
    assert "activations" in result.output


def _self_contained(html: str) -> None:
    assert "<script" not in html
    assert not re.search(r"""(src|href)=["']https?:""", html)
    assert "@import" not in html and "<link" not in html
    srcs = re.findall(r"""<img src="([^"]+)""", html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)


def test_one_topic_writes_a_self_contained_page(tmp_path: Path) -> None:
    page = lab.run("activations", tmp_path)
    assert page == tmp_path / "activations.html"
    html = page.read_text()
    _self_contained(html)
    assert "effect reproduced" in html
    assert "saturated-activations" in html
    assert list((tmp_path / "plots").glob("activations-*.png"))
    assert (tmp_path / "activations.json").exists()


def _toy_topic(name: str, fail: bool = False, shown: bool = True) -> Topic:
    def measure(lab: Lab) -> dict:
        if fail:
            raise RuntimeError("boom")
        return {"x": [1.0, 2.0, float("nan")]}

    return Topic(name=name, question="q?", questions=(1,), codes=("dead-relu",), advice="a",
                 setup="s", measure=measure,
                 conclude=lambda n: Conclusion(shown, f"computed {n['x'][1]}", ["o"]),
                 draw=lambda n: [Plot("p", line_plot({"x": n["x"]}))])


def test_index_shows_every_topic_and_a_crash_does_not_stop_the_rest(tmp_path: Path) -> None:
    entries = [lab.run_topic(_toy_topic("good"), keep_going=True),
               lab.run_topic(_toy_topic("meh", shown=False), keep_going=True),
               lab.run_topic(_toy_topic("bad", fail=True), keep_going=True)]
    assert entries[2].error and "boom" in entries[2].error
    for e in entries:
        write_topic(e, tmp_path, index_link=True)
    html = write_index(entries, tmp_path, seconds=1.0, seed=0).read_text()
    _self_contained(html)
    for name in ("good", "meh", "bad"):
        assert f'href="{name}.html"' in html
    assert "computed 2.0" in html and "not reproduced" in html and "crashed" in html
    assert '"nan"' in (tmp_path / "good.json").read_text()  # JSON has no NaN


def test_a_crash_propagates_for_a_single_topic() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        lab.run_topic(_toy_topic("bad", fail=True))


def test_render_plots_makes_pngs() -> None:
    (p,) = render_plots([Plot("t", line_plot({"a": [1, 2]}))])
    assert p.artifact.png[:4] == b"\x89PNG"
    assert Entry(topic=_toy_topic("x")).href == "x.html"
