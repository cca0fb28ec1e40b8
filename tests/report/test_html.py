"""The report's structure without a browser: figures follow the findings that claim them
(also in a watch() report), findings.json names their files, empty columns are left out, and
no finding's text is repeated in the stage sections."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import torch
from torch import nn

import nnrecipe
from nnrecipe.core.findings import Finding, Severity
from nnrecipe.core.results import CheckResult, FigureArtifact, RunResult, StageResult, TableArtifact
from nnrecipe.report import render_html, write_outputs
from nnrecipe.report.html import table_view, verdict


def _png() -> bytes:
    from nnrecipe.core.results import figure_to_png
    from nnrecipe.report.plots import line_plot

    return figure_to_png(line_plot({"a": [1.0, 2.0, 3.0]}))


def _result() -> RunResult:
    f1 = Finding("overfitting", Severity.WARNING, "train", "val rises: MESSAGE-ONE", {"k": 1},
                 "regularise", check="training", figures=["Learning curves"])
    f2 = Finding("dead-relu", Severity.INFO, "train", "some dead: MESSAGE-TWO", {}, "init",
                 check="activations")
    training = CheckResult("training", "train", "t", findings=[f1], figures=[
        FigureArtifact("Learning curves", _png()), FigureArtifact("Prediction dynamics", _png())])
    acts = CheckResult("activations", "train", "a", findings=[f2],
                       figures=[FigureArtifact("Dead units", _png())],
                       tables=[TableArtifact("epochs", ["epoch", "val loss", "val accuracy"],
                                             [[1, 0.5, None], [2, 0.4, None]])])
    for c in (training, acts):
        c.settle_status()
    return RunResult("x", "train", stages=[StageResult("train", [training, acts], "warning")])


def test_figures_follow_their_findings_and_files_are_listed(tmp_path: Path) -> None:
    res = _result()
    write_outputs(res, tmp_path)
    data = json.loads((tmp_path / "findings.json").read_text())
    files = {f["code"]: f["figure_files"] for f in data["findings"]}
    assert files["overfitting"] == ["plots/train-training-0-learning-curves.png"]
    assert files["dead-relu"] == ["plots/train-activations-0-dead-units.png"]
    for fs in files.values():
        assert all((tmp_path / f).exists() for f in fs)
    html = (tmp_path / "report.html").read_text()
    # the claimed figure sits in the finding's card; the unclaimed one stays with its check
    card = html[html.index('id="finding-1"'):html.index('id="finding-2"')]
    assert "train-training-0-learning-curves.png" in card and "<img" in card
    check = html[html.index('id="check-train-training"'):]
    assert "train-training-1-prediction-dynamics.png" in check
    assert "train-training-0-learning-curves.png" not in check
    # the message is in the finding, not repeated in the stage section
    assert html.count("MESSAGE-ONE") == 1 and html.count("MESSAGE-TWO") == 1
    assert '<meta name="viewport"' in html and "<script src" not in html


def test_every_anchor_link_resolves() -> None:
    html = render_html(_result())
    ids = set(re.findall(r'id="([^"]+)"', html))
    links = set(re.findall(r'href="#([^"]+)"', html))
    assert links and links <= ids, links - ids


def test_empty_columns_are_left_out() -> None:
    t = table_view(TableArtifact("e", ["epoch", "val loss", "val accuracy"],
                                 [[1, 0.5, None], [2, 0.4, float("nan")]]))
    assert t["columns"] == ["epoch", "val loss"] and t["dropped"] == ["val accuracy"]
    assert t["rows"] == [[1, 0.5], [2, 0.4]]
    html = render_html(_result())
    assert "None" not in re.sub(r"<[^>]+>", " ", html)


def test_verdict_line() -> None:
    assert verdict(_result())[0] == "warning"
    assert verdict(RunResult("x", "check"))[1] == "no errors or warnings"


def test_watch_report_embeds_the_figures_of_its_findings(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))
    opt = torch.optim.SGD(model.parameters(), lr=3.0)  # far too high: the loss blows up
    X, y = torch.randn(256, 10), torch.randint(0, 3, (256,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with nnrecipe.watch(model, opt) as w:
            for _ in range(3):
                for i in range(0, 256, 32):
                    opt.zero_grad()
                    loss = nn.functional.cross_entropy(model(X[i:i + 32]), y[i:i + 32])
                    loss.backward()
                    opt.step()
                    w.step(loss)
            w.report(tmp_path)
    data = json.loads((tmp_path / "findings.json").read_text())
    assert data["findings"], "the broken run must produce findings"
    with_figs = [f for f in data["findings"] if f["figure_files"]]
    assert with_figs, [f["code"] for f in data["findings"]]
    html = (tmp_path / "report.html").read_text()
    for f in with_figs:
        for name in f["figure_files"]:
            assert (tmp_path / name).exists() and name in html
    assert 'href="#check-train-watch"' not in html  # links go to real check sections


def test_a_real_regression_run_shows_no_none_or_accuracy_column() -> None:
    # issue 15: a regression run's epoch table had a "val accuracy" column full of None
    from nnrecipe.api import run
    from tests.toys import regression_experiment

    res = run(regression_experiment(epochs=2), ["train"], write=False, name="regression")
    html = render_html(res)
    headers = [h.strip().lower() for h in re.findall(r"<th[^>]*>(.*?)</th>", html, re.S)]
    assert headers, "the train stage's tables must be in the report"
    assert not [h for h in headers if "accuracy" in h], headers
    assert "None" not in re.sub(r"<[^>]+>", " ", html)
