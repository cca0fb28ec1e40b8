"""The TensorBoard export: the monitor's signals and the findings, read back from the event
files (watch(tensorboard=...) with a folder or the user's SummaryWriter, and `nnrecipe train
--tensorboard DIR`)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from typer.testing import CliRunner

import nnrecipe
from nnrecipe.cli import app


def _events(logdir: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def _train(w: Any, model: nn.Module, opt: torch.optim.Optimizer, epochs: int = 3) -> None:
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(256, 10, generator=g), torch.randint(0, 3, (256,), generator=g)
    for _ in range(epochs):
        for i in range(0, 256, 32):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(X[i:i + 32]), y[i:i + 32])
            loss.backward()
            opt.step()
            w.step(loss)
        w.epoch(val={"loss": float(loss)})


def test_watch_writes_signals_and_findings_to_a_logdir(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))
    opt = torch.optim.SGD(model.parameters(), lr=3.0)  # far too high: findings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with nnrecipe.watch(model, opt, tensorboard=tmp_path / "tb") as w:
            _train(w, model, opt)
        w.report(tmp_path / "report")
    acc = _events(tmp_path / "tb")
    scalars = set(acc.Tags()["scalars"])
    assert {"nnrecipe/loss", "nnrecipe/grad_norm/0", "nnrecipe/grad_norm/2",
            "nnrecipe/grad_norm/total", "nnrecipe/epoch/val_loss"} <= scalars, scalars
    assert any(t.startswith("nnrecipe/update_ratio/") for t in scalars)
    assert any(t.startswith("nnrecipe/dead_fraction/") for t in scalars)
    losses = acc.Scalars("nnrecipe/loss")
    assert len(losses) == 24 and [e.step for e in losses] == list(range(24))
    assert abs(losses[0].value - w.recording.loss[0]) < 1e-6
    texts = [t for t in acc.Tags()["tensors"] if t.startswith("nnrecipe/findings/")]
    codes = {f.code for f in w.findings}
    assert codes and all(any(f"/{c}/" in t for t in texts) for c in codes), (codes, texts)
    body = acc.Tensors(texts[0])[0].tensor_proto.string_val[0].decode()
    assert "**Fix:**" in body


def test_watch_uses_the_users_writer_and_leaves_it_open(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tmp_path))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with nnrecipe.watch(model, opt, tensorboard=writer) as w:
        _train(w, model, opt, epochs=2)
    writer.add_scalar("mine/accuracy", 0.5, 1)  # still open: the user's own curves go on
    writer.close()
    scalars = set(_events(tmp_path).Tags()["scalars"])
    assert "mine/accuracy" in scalars and "nnrecipe/loss" in scalars
    assert any(t.startswith("nnrecipe/saturated_fraction/") for t in scalars)


def test_watch_rejects_something_that_is_not_a_writer() -> None:
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    try:
        nnrecipe.watch(model, opt, tensorboard=42)
    except nnrecipe.ConfigurationError as e:
        assert "SummaryWriter" in str(e)
    else:
        raise AssertionError("tensorboard=42 was accepted")


def test_cli_train_writes_event_files(tmp_path: Path) -> None:
    exp_file = tmp_path / "exp.py"
    exp_file.write_text("from tests.toys import classification_experiment\n\n"
                        "def experiment():\n    return classification_experiment(epochs=2)\n")
    res = CliRunner().invoke(app, ["train", str(exp_file), "--out", str(tmp_path / "run"),
                                   "--tensorboard", str(tmp_path / "tb"), "--quiet"])
    assert res.exit_code in (0, 1), res.output
    scalars = set(_events(tmp_path / "tb").Tags()["scalars"])
    assert {"nnrecipe/loss", "nnrecipe/grad_norm/total"} <= scalars
    assert any(t.startswith("nnrecipe/epoch/val") for t in scalars)
