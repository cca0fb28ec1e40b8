"""Where the study lives, so that it resumes and so that several workers can share it.

- default: a journal file in the run folder (``<run>/tune/study.journal``: Optuna's
  ``JournalStorage`` over a ``JournalFileBackend``, append-only with a file lock, so several
  local processes can share it; rerun with the same ``--out`` to resume);
- ``--storage PATH`` (no ``://``): a journal file at PATH, shared by the processes of one
  machine or a shared file system;
- ``--storage URL`` (``sqlite:///study.db``, ``postgresql://user:pw@host/db``,
  ``mysql://...``): Optuna's RDB storage. Many workers on many machines run
  ``nnrecipe tune EXP --storage postgresql://... --study-name NAME`` against one database.
  Heartbeats are on, so a worker killed mid-trial has that trial marked failed instead of
  "running" forever;
- no run folder (the Python API without ``out=``): in memory, nothing to resume.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from nnrecipe.core.context import Context
from nnrecipe.errors import ConfigurationError

JOURNAL_NAME = "study.journal"
# A worker that misses heartbeats for this long has its running trial marked failed. A trial
# is one training run; 60 s between beats costs nothing and catches a dead worker in minutes.
HEARTBEAT_S = 60
GRACE_S = 180


def run_dir(ctx: Context) -> Path | None:
    if ctx.out_dir is not None:
        return Path(ctx.out_dir)
    value = ctx.options.get("run_dir")
    return Path(value) if value else None


def study_name(ctx: Context) -> str:
    name = ctx.options.get("tune_study_name")
    if name:
        return str(name)
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", ctx.experiment.name or "experiment")
    return f"nnrecipe-{base}"


def journal(path: Path) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def open_storage(ctx: Context) -> tuple[Any, str]:
    """The storage for this run's study and a description of it for the report."""
    url = ctx.options.get("tune_storage")
    if url:
        url = str(url)
        if "://" not in url:
            return journal(Path(url)), f"journal file {url}"
        from optuna.storages import RDBStorage

        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna
                warnings.simplefilter("ignore")
                storage = RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
        except ImportError as e:
            raise ConfigurationError(
                f"--storage {_redact(url)} needs a database driver that is not installed "
                f"({e}); e.g. `pip install psycopg2-binary` for PostgreSQL, `pymysql` for "
                "MySQL") from e
        except Exception as e:  # noqa: BLE001 - SQLAlchemy raises many kinds
            raise ConfigurationError(f"cannot open the Optuna storage {_redact(url)}: "
                                     f"{type(e).__name__}: {e}") from e
        return storage, f"database {_redact(url)}"
    folder = run_dir(ctx)
    if folder is None:
        from optuna.storages import InMemoryStorage

        return InMemoryStorage(), "in memory (no run folder: pass --out or --storage to resume)"
    path = folder / "tune" / JOURNAL_NAME
    return journal(path), f"journal file {path}"


def _redact(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
