"""Output you can trust: every file written whole or not at all, and one run per folder.

* :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_torch_save` write
  to a temporary name in the target's folder, flush it to disk and ``os.replace`` it over
  the target, so a full disk or a kill leaves the old file (or none), never half of one.
* :class:`RunFolder` checks that ``--out`` can be created and written *before* any compute,
  and holds a lock file there while the run lasts: a second run on a busy folder is refused
  with one line; a lock left by a process that no longer exists (killed, power cut) is taken
  over.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nnrecipe.errors import OutputBusyError, OutputError

LOCK_NAME = ".nnrecipe.lock"
_TMP_PREFIX = ".nnrecipe-tmp-"


def _temp_path(path: Path) -> Path:
    return path.with_name(f"{_TMP_PREFIX}{os.getpid()}-{path.name}")


def atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``.
    On any failure the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    tmp = _temp_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_all(files: dict[Path, bytes]) -> None:
    """Write several files as one: all temporaries first, then the renames, so a failure
    (a full disk) leaves every target as it was rather than a mix of old and new."""
    written: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            tmp = _temp_path(Path(path))
            written.append((tmp, Path(path)))
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
    except BaseException:
        for tmp, _ in written:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    for tmp, path in written:
        os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` that never leaves a truncated checkpoint behind."""
    import torch

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(obj, f))


def remove_stale_temporaries(folder: Path) -> None:
    """Temporary files a killed run left in ``folder`` (not its subfolders' contents)."""
    with contextlib.suppress(OSError):
        for p in folder.glob(f"{_TMP_PREFIX}*"):
            with contextlib.suppress(OSError):
                if p.is_dir():
                    import shutil

                    shutil.rmtree(p)
                else:
                    p.unlink()


def check_writable_parent(folder: Path) -> None:
    """Could ``folder`` (or a subfolder of it) be created and written? Checked without
    creating anything: the nearest existing ancestor must be a writable folder."""
    folder = Path(folder).absolute()
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"cannot create {folder}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"cannot create or write {folder}: {probe} is not writable")


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:
        return False
    return True


class RunFolder:
    """The output folder of one run: created and checked for writing up front, locked for
    the run's duration (``with RunFolder(path, command): ...``)."""

    def __init__(self, path: Path | str, command: str = "run") -> None:
        self.path = Path(path)
        self.command = command
        self.lock_path = self.path / LOCK_NAME
        self._held = False
        self.created = False  # prepare() made the folder (removed again if left empty)
        self.forget_on_hard_exit: Callable[[], None] = lambda: None

    # -------------------------------------------------------------- checks
    def prepare(self) -> RunFolder:
        """Create the folder, prove it writable, take the lock. Raises :class:`OutputError`
        with one line naming the cause."""
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"--out {self.path} exists and is not a folder")
        try:
            self.created = not self.path.exists()
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create the output folder {self.path}: "
                              f"{e.strerror or e}") from e
        try:
            with tempfile.TemporaryFile(dir=self.path, prefix=_TMP_PREFIX) as f:
                f.write(b"nnrecipe")
                f.flush()
        except OSError as e:
            raise OutputError(f"cannot write to the output folder {self.path}: "
                              f"{e.strerror or e}") from e
        self.acquire()
        remove_stale_temporaries(self.path)
        return self

    # ---------------------------------------------------------------- lock
    def _lock_info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                "started": dt.datetime.now().isoformat(timespec="seconds")}

    def acquire(self) -> None:
        info = json.dumps(self._lock_info()).encode()
        for _ in range(3):
            try:
                fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._read_lock()
                if holder is not None and self._is_live(holder):
                    raise OutputBusyError(self._busy_message(holder)) from None
                with contextlib.suppress(FileNotFoundError):
                    self.lock_path.unlink()  # stale: its process is gone
                continue
            except OSError as e:
                raise OutputError(f"cannot create the lock file {self.lock_path}: "
                                  f"{e.strerror or e}") from e
            try:
                os.write(fd, info)
            finally:
                os.close(fd)
            self._held = True
            return
        raise OutputBusyError(f"{self.path} is being claimed by another nnrecipe run right "
                              "now; use another --out")

    def _read_lock(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.lock_path.read_text() or "null")
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict):
            return data
        # Unreadable or empty: a writer may be between create and write; a lock that stays
        # like this for seconds is debris.
        try:
            age = dt.datetime.now().timestamp() - self.lock_path.stat().st_mtime
        except OSError:
            return None
        return {"pid": -1, "host": "", "unreadable": True} if age < 5 else None

    @staticmethod
    def _is_live(holder: dict[str, Any]) -> bool:
        if holder.get("unreadable"):
            return True
        host = holder.get("host")
        if host and host != socket.gethostname():
            return True  # another machine's process: cannot be checked, so respected
        try:
            pid = int(holder.get("pid", -1))
        except (TypeError, ValueError):
            return False
        return pid != os.getpid() and _pid_alive(pid)

    def _busy_message(self, holder: dict[str, Any]) -> str:
        if holder.get("unreadable"):
            who = "another nnrecipe run (starting now)"
        else:
            who = (f"another nnrecipe run (pid {holder.get('pid')}"
                   + (f" on {holder['host']}" if holder.get("host") != socket.gethostname() else "")
                   + f", `nnrecipe {holder.get('command', '?')}` started {holder.get('started', '?')})")
        return (f"the output folder {self.path} is in use by {who}; wait for it to finish or "
                f"choose another --out (if no such run exists, delete {self.lock_path})")

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        holder = self._read_lock()
        if holder is not None and holder.get("pid") == os.getpid():
            with contextlib.suppress(OSError):
                self.lock_path.unlink()
        if self.created:  # a run that failed before writing anything leaves no empty folder
            with contextlib.suppress(OSError):
                self.path.rmdir()

    def __enter__(self) -> RunFolder:
        if not self._held:
            self.prepare()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
