"""The README's Python examples run, in order, in one namespace (so they cannot drift from
the API), in a scratch folder; and the commands it documents exist."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nnrecipe.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks()
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "readme"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # watch() warns about the random labels it is fed
        for i, block in enumerate(blocks):
            try:
                exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
            except Exception as e:  # noqa: BLE001 - say which block broke
                raise AssertionError(f"README python block {i + 1} failed: {e!r}\n{block}") from e
    assert (tmp_path / "runs" / "readme" / "report.html").exists()
    assert (tmp_path / "runs" / "readme-watch" / "findings.json").exists()
    assert any((tmp_path / "runs" / "readme-tb").iterdir())


def test_readme_commands_exist() -> None:
    text = README.read_text(encoding="utf-8")
    commands = set(re.findall(r"`nnrecipe (\w+)", text))
    assert {"inspect", "check", "compare", "codes", "train", "tune", "run"} <= commands
    for command in sorted(commands):
        res = CliRunner().invoke(app, [command, "--help"])
        assert res.exit_code == 0, f"`nnrecipe {command}` is in the README but not a command"
    for option in ("--export", "--budget", "--tensorboard", "--trials"):
        assert option in text
