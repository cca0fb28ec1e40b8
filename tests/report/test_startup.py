"""Start-up: the CLI's --help, `codes` and argument errors answer without importing torch, and
the Python API follows the CLI's thread policy (restored after the call)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from nnrecipe.core.threads import policy_threads, thread_policy
from nnrecipe.errors import ConfigurationError


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True, env={**os.environ})
    return set(out.stdout.split())


def test_import_nnrecipe_does_not_import_torch() -> None:
    mods = _modules_after("import nnrecipe, nnrecipe.loading, nnrecipe.cli")
    assert "torch" not in mods
    assert "nnrecipe.experiment" not in mods


def _cli_modules(*args: str) -> tuple[int, str, set[str]]:
    code = (f"import sys, nnrecipe.cli as c\nsys.argv = ['nnrecipe', *{list(args)!r}]\nrc = 0\n"
            "try:\n    c.main()\nexcept SystemExit as e:\n    rc = e.code\n"
            "print('RC', rc)\nprint('MODS', ' '.join(sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "120"})
    rc_line = next(line for line in out.stdout.splitlines() if line.startswith("RC "))
    mods_line = next(line for line in out.stdout.splitlines() if line.startswith("MODS "))
    rc = rc_line.split()[1]
    return (0 if rc == "None" else int(rc)), out.stdout + out.stderr, set(mods_line.split()[1:])


@pytest.mark.parametrize("args", [("--help",), ("codes",), ("check", "no/such/file.py"),
                                  ("inspect", "no/such/data.npz"), ("run", "--help")])
def test_cli_answers_without_torch(args: tuple[str, ...]) -> None:
    rc, text, mods = _cli_modules(*args)
    assert "torch" not in mods, f"{args} imported torch"
    if args[-1] == "--help" or args == ("codes",):
        assert rc == 0, text
    else:
        assert rc == 2 and "no such file" in text, text


def test_thread_policy_sets_and_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("NNRECIPE_THREADS", "3")
    with thread_policy() as n:
        assert n == 3 and torch.get_num_threads() == 3
    assert torch.get_num_threads() == before
    with thread_policy(threads=2):  # the argument wins over the environment
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before


def test_thread_policy_respects_the_users_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NNRECIPE_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert policy_threads() is None  # OMP_NUM_THREADS is the user's choice: kept
    monkeypatch.setenv("NNRECIPE_THREADS", "keep")
    assert policy_threads() is None
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delenv("NNRECIPE_THREADS")
    assert 1 <= policy_threads() <= 8  # type: ignore[operator]
    monkeypatch.setenv("NNRECIPE_THREADS", "many")
    with pytest.raises(ConfigurationError, match="NNRECIPE_THREADS"):
        policy_threads()


def test_api_run_restores_threads_and_rejects_a_function(monkeypatch: pytest.MonkeyPatch) -> None:
    import nnrecipe
    from tests.toys import classification_experiment

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    seen: list[int] = []

    class Sink:
        def check_started(self, stage: str, check: str, title: str) -> None:
            seen.append(torch.get_num_threads())

        def check_finished(self, stage: str, check: str, status: str) -> None: ...
        def task_started(self, description: str, total: int | None) -> None: ...
        def task_advanced(self, advance: int = 1, description: str | None = None) -> None: ...
        def task_finished(self) -> None: ...

    target = 2 if before != 2 else 3
    nnrecipe.run(classification_experiment(), ["data"], only=["class-imbalance"], threads=target,
                 progress=Sink())
    assert seen == [target]
    assert torch.get_num_threads() == before
    with pytest.raises(nnrecipe.ExperimentError, match=r"call it: nnrecipe.run\(classification_experiment"):
        nnrecipe.run(classification_experiment)  # type: ignore[arg-type]
