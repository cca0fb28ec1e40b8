"""Live progress: on a terminal, rich shows the current loss, steps/s and time left; in a log
(not a TTY), plain lines at most every few seconds; both driven by the real trainer."""

from __future__ import annotations

import io

from rich.console import Console

from nnrecipe.api import run
from nnrecipe.core.progress import Task
from nnrecipe.terminal import PlainProgress, RichProgress, make_progress
from tests.toys import classification_experiment


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_plain_lines_are_periodic_and_carry_loss_rate_and_eta() -> None:
    out, clock = io.StringIO(), FakeClock()
    sink = PlainProgress(out, interval_s=5.0, clock=clock)
    sink.check_started("train", "training", "t")
    with Task(sink, "training", 100) as task:
        for step in range(100):
            clock.t += 0.5  # 2 steps/s: 50 s in all, a line every 5 s at most
            task.advance(loss=2.0 - step * 0.01)
    sink.check_finished("train", "training", "passed")
    lines = out.getvalue().splitlines()
    progress = [line for line in lines if "training:" in line]
    assert 8 <= len(progress) <= 10  # 50 s / 5 s
    first = progress[0]
    assert "10/100 (10%)" in first and "loss 1.955" in first and "2.0 steps/s" in first
    assert "eta 0:00:45" in first
    assert lines[-1].strip() == "passed train/training"


def test_plain_progress_from_a_real_training_run() -> None:
    out = io.StringIO()
    sink = PlainProgress(out, interval_s=0.0)  # every step: the test must not wait
    run(classification_experiment(epochs=2), ["train"], only=["training"], progress=sink)
    lines = out.getvalue().splitlines()
    steps = [line for line in lines if line.strip().startswith("[train/training] training")]
    assert len(steps) >= 10 and all("loss " in line and "steps/s" in line for line in steps)
    assert any(line.strip().endswith("train/training") for line in lines)


def test_rich_shows_loss_rate_and_eta_on_a_terminal() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=160, color_system=None)
    sink = make_progress(console)
    assert isinstance(sink, RichProgress)
    with sink:
        sink.check_started("train", "training", "t")
        with Task(sink, "training", 50) as task:
            for step in range(50):
                task.advance(loss=1.0 / (step + 1))
            sink.progress.refresh()
            text = buf.getvalue()
        sink.check_finished("train", "training", "passed")
    assert "loss " in text and "steps/s" in text and "eta" in text and "50/50" in text
    assert "passed train/training" in buf.getvalue()


def test_not_a_tty_gets_plain_lines() -> None:
    console = Console(file=io.StringIO(), force_terminal=False)
    assert isinstance(make_progress(console), PlainProgress)
