"""Fixtures for the scale-out tests: a real PostgreSQL server started for the session.

The server is the Debian ``postgresql`` package's binaries (``scripts/system-deps.sh``
installs it when ``make test`` runs as root). ``initdb`` makes a throw-away cluster in a
temporary folder; the server listens on a free local port (and a unix socket in that folder)
with ``trust`` authentication and no fsync, and is stopped and deleted at the end. PostgreSQL
refuses to run as root, so under root (CI) it runs as the ``postgres`` user (or ``nobody``).
A missing PostgreSQL FAILS the tests that need it: CI must not pass by skipping them.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

INSTALL_HINT = ("PostgreSQL is not installed: `apt-get install postgresql` (scripts/system-deps.sh "
                "does it when `make test` runs as root)")


def postgres_bin() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` (or the folder of ``initdb`` on PATH)."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if found:
        def version(p: str) -> tuple[int, ...]:
            return tuple(int(x) for x in re.findall(r"\d+", Path(p).parent.parent.name))
        return Path(max(found, key=version)).parent
    which = shutil.which("initdb")
    if which:
        return Path(which).resolve().parent
    pytest.fail(INSTALL_HINT)


def _run_as() -> str | None:
    """The user to run the server as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    pytest.fail("running as root and there is no 'postgres' or 'nobody' user to run PostgreSQL")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self, folder: Path, port: int, user: str | None, bindir: Path) -> None:
        self.folder, self.port, self.user, self.bindir = folder, port, user, bindir

    def url(self, database: str = "nnrecipe", password: str = "secret") -> str:
        # trust authentication accepts any password; one is given so that tests see it hidden
        return f"postgresql://nnrecipe:{password}@127.0.0.1:{self.port}/{database}"

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bindir / "pg_ctl"), "-D", str(self.folder / "data"), *args],
                              user=self.user, capture_output=True, text=True, timeout=120,
                              check=check)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    bindir = postgres_bin()
    user = _run_as()
    folder = Path(tempfile.mkdtemp(prefix="nnrecipe-pg-"))  # short: unix socket paths are <108
    if user is not None:
        shutil.chown(folder, user=user)
    server = None
    try:
        init = subprocess.run([str(bindir / "initdb"), "-D", str(folder / "data"), "-U", "nnrecipe",
                               "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"],
                              user=user, capture_output=True, text=True, timeout=180)
        if init.returncode != 0:
            pytest.fail(f"initdb failed: {init.stderr[-2000:]}")
        for _attempt in range(3):  # a free port can be taken between the check and the start
            server = PostgresServer(folder, _free_port(), user, bindir)
            opts = (f"-p {server.port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60")
            started = server.pg_ctl("-w", "-t", "60", "-l", str(folder / "server.log"), "-o", opts,
                                    "start", check=False)
            if started.returncode == 0:
                break
        else:
            log = (folder / "server.log").read_text(errors="replace")[-2000:]
            pytest.fail(f"PostgreSQL did not start: {started.stderr[-1000:]} {log}")
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=server.port, user="nnrecipe",
                             dbname="postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE nnrecipe")
        yield server
    finally:
        if server is not None:
            server.pg_ctl("-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(folder, ignore_errors=True)
