"""Output you can trust (core/output.py, report/write.py): atomic files, the run-folder lock."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nnrecipe.core.output import LOCK_NAME, RunFolder, atomic_write_all, atomic_write_bytes
from nnrecipe.errors import OutputBusyError, OutputError


def _lock(folder: Path, pid: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": os.uname()[1],
                                                "command": "train", "started": "now"}))


def test_a_live_holder_is_respected_and_a_dead_one_replaced(tmp_path: Path) -> None:
    _lock(tmp_path / "busy", os.getppid())  # the test runner's parent: alive
    with pytest.raises(OutputBusyError, match=rf"pid {os.getppid()}, `nnrecipe train`"):
        RunFolder(tmp_path / "busy").prepare()
    _lock(tmp_path / "stale", 2**22 + 4321)  # above the kernel's pid limit: no such process
    folder = RunFolder(tmp_path / "stale", "check").prepare()
    assert json.loads((tmp_path / "stale" / LOCK_NAME).read_text())["pid"] == os.getpid()
    folder.release()
    assert not (tmp_path / "stale" / LOCK_NAME).exists()


def test_a_busy_default_folder_gets_the_next_free_name(tmp_path: Path) -> None:
    from nnrecipe.cli import _claim_default

    _lock(tmp_path / "run-1200", os.getppid())
    folder = _claim_default(tmp_path / "run-1200", "tune", debug=False)
    try:
        assert folder.path == tmp_path / "run-1200-2"
    finally:
        folder.release()


def test_an_unusable_out_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        RunFolder(tmp_path / "file").prepare()
    with pytest.raises(OutputError, match="cannot create the output folder"):
        RunFolder(tmp_path / "file" / "sub").prepare()


def test_a_failed_group_write_leaves_every_file_as_it_was(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.html"
    a.write_text("old a")
    b.write_text("old b")
    calls = []

    def full_disk_on_second_file(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr("nnrecipe.core.output.os.fsync", full_disk_on_second_file)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_all({a: b"new a", b: b"new b"})
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.html"]
    monkeypatch.undo()
    atomic_write_bytes(a, b"new a")
    assert a.read_text() == "new a"
