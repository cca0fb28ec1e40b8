"""Where the study lives, so that it resumes and so that several workers can share it.

- default: a journal file in the run folder (``<run>/tune/study.journal``: Optuna's
  ``JournalStorage`` over a ``JournalFileBackend``, append-only with a file lock, so several
  local processes can share it; rerun with the same ``--out`` to resume);
- ``--storage PATH`` (no ``://``): a journal file at PATH, shared by the processes of one
  machine or a shared file system;
- ``--storage URL`` (``sqlite:///study.db``, ``postgresql://user:pw@host/db``,
  ``mysql://...``): Optuna's RDB storage. Many workers on many machines run
  ``nnrecipe tune EXP --storage postgresql://... --study-name NAME`` against one database
  (``pip install 'nnrecipe[postgres]'`` for the driver). Heartbeats are on: a worker killed
  mid-trial stops beating, and once ``grace`` seconds have passed the next worker to start a
  trial (or to open the study) marks that trial failed and queues it again, once, with the same
  parameters (Optuna's ``RetryHeartbeatStaleTrialCallback``). Failed trials do not count
  towards ``--trials``, so the study still reaches its total;
- no run folder (the Python API without ``out=``): in memory, nothing to resume.

Options: ``tune_heartbeat_s`` (default :data:`HEARTBEAT_S`; the grace period is
:data:`GRACE_BEATS` beats).
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
# is one training run; 60 s between beats costs nothing (one UPDATE per beat) and catches a
# dead worker in minutes. Grace: three missed beats, so a worker stalled by a long garbage
# collection or a slow database round trip is not declared dead (reasoning, not measured).
HEARTBEAT_S = 60
GRACE_BEATS = 3
GRACE_S = HEARTBEAT_S * GRACE_BEATS
MAX_RETRY = 1  # a trial whose worker died is run once more; a second death is its own failure


def run_dir(ctx: Context) -> Path | None:
    if ctx.out_dir is not None:
        return Path(ctx.out_dir)
    value = ctx.options.get("run_dir")
    return Path(value) if value else None


def study_name(ctx: Context) -> str:
    name = ctx.options.get("tune_study_name")
    if name:
        return str(name)
    return default_study_name(ctx.experiment.name)


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
        from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

        beat = max(1, int(ctx.options.get("tune_heartbeat_s") or HEARTBEAT_S))
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna
                warnings.simplefilter("ignore")
                storage = RDBStorage(
                    url, heartbeat_interval=beat, grace_period=beat * GRACE_BEATS,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(MAX_RETRY))
        except ImportError as e:
            raise ConfigurationError(
                f"--storage {_redact(url)} needs a database driver that is not installed "
                f"({e}); `pip install 'nnrecipe[postgres]'` for PostgreSQL (psycopg), "
                "`pip install pymysql` for MySQL") from e
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


def default_study_name(experiment_name: str | None) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", experiment_name or "experiment")
    return f"nnrecipe-{base}"


def workers_hint(target: str, options: dict[str, Any], out_dir: Path,
                 experiment_name: str | None) -> str:
    """How to start more workers on this study: the same command, the same storage and study
    name (printed by ``nnrecipe tune``; the password of a database URL is not shown)."""
    name = str(options.get("tune_study_name") or default_study_name(experiment_name))
    url = options.get("tune_storage")
    where = str(url) if url else str(Path(out_dir) / "tune" / JOURNAL_NAME)
    command = (f"nnrecipe tune {target} --storage {_redact(where)} --study-name {name}"
               + (f" --trials {options['tune_trials']}" if options.get("tune_trials") else ""))
    if url and "://" in str(url) and not str(url).startswith("sqlite"):
        return (f"more workers, on this machine or others: {command}"
                + (" (your password in place of ***)" if _redact(where) != where else "")
                + "; each runs trials until the study has them all")
    return (f"more workers on this machine (or a shared file system): {command}; on other "
            "machines, use a database: --storage postgresql://USER:PASSWORD@HOST/DB")


def _redact(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
