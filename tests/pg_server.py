"""A real PostgreSQL server for the store tests: Debian's binaries, ``initdb`` into a temp dir, Unix socket only.

``pg_server`` (session-scoped, one server per xdist worker) runs ``initdb`` and ``pg_ctl start``
with ``listen_addresses=''`` (no TCP port is opened: the socket lives in the server's own temp
dir), and stops the server when the session ends. initdb refuses to run as root, so as root the
server runs as the ``postgres`` system user (``runuser``), and its socket dir is made reachable.

Authentication: ``trust`` for every role on the socket except ``alice``, who must give the
password ``wonderland`` (scram-sha-256), so the wrong-password message is tested for real.

Without the binaries the PostgreSQL tests skip, saying why; ``MITOSIS_REQUIRE_POSTGRES=1`` (set
by ``.ci/run``) turns that skip into a failure.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PASSWORD = "wonderland"


def binaries() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` holding initdb and pg_ctl (or those on PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def missing(reason: str) -> None:
    if os.environ.get("MITOSIS_REQUIRE_POSTGRES"):
        pytest.fail(f"MITOSIS_REQUIRE_POSTGRES is set, but {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass
class PgServer:
    socket_dir: Path
    log: Path
    #: what ``stop`` and ``start`` need (tests/test_store_faults.py stops its own server while sessions run)
    data: Path | None = None
    bin_dir: Path | None = None
    as_postgres: bool = False

    def pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert self.data is not None and self.bin_dir is not None
        return _run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), *args], self.as_postgres)

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m MODE -w``: every connection is closed, the socket goes away."""
        done = self.pg_ctl("-m", mode, "-w", "stop")
        assert done.returncode == 0, done.stderr

    def start(self) -> None:
        """``pg_ctl start -w`` with the options of the first start."""
        done = self.pg_ctl("-l", str(self.log), "-o", _options(self.socket_dir), "-w", "start")
        assert done.returncode == 0, done.stderr

    def url(self, database: str, user: str = "postgres", password: str | None = None) -> str:
        who = user + (f":{password}" if password is not None else "")
        return f"postgresql://{who}@/{database}?host={self.socket_dir}"

    def execute(self, sql: str, database: str = "postgres", args: Any = None) -> list[tuple[Any, ...]]:
        """Run ``sql`` as the superuser (autocommit); the rows it returns, if any."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as db:
            cursor = db.execute(sql, args)
            return list(cursor.fetchall()) if cursor.description else []

    def createdb(self, prefix: str = "mitosis", owner: str = "postgres") -> str:
        """A new, empty database (owned by ``owner``); its URL (as the superuser)."""
        name = f"{prefix}_{secrets.token_hex(4)}".lower()
        self.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        return self.url(name)


def _run(argv: list[str], as_postgres: bool) -> subprocess.CompletedProcess[str]:
    if as_postgres:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd="/")


def _options(base: Path) -> str:
    return f"-c listen_addresses='' -k {base} -c fsync=off -c max_connections=200"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    yield from own_server()


def own_server() -> Iterator[PgServer]:
    """A new server in a temp dir, stopped and removed when the generator ends (or skipped, saying why)."""
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install -e '.[test]'")
    bin_dir = binaries()
    if bin_dir is None:
        missing("PostgreSQL's server binaries are not installed (apt-get install postgresql)")
        raise AssertionError("unreachable")
    as_postgres = os.geteuid() == 0
    if as_postgres and shutil.which("runuser") is None:
        missing("running as root, and runuser (to start PostgreSQL as the postgres user) is missing")
    base = Path(tempfile.mkdtemp(prefix="mitosis-pg-"))
    data, log = base / "data", base / "server.log"
    if as_postgres:
        shutil.chown(base, "postgres", "postgres")
    os.chmod(base, 0o755)  # the socket's folder: every local user may connect, as on a real server
    init = _run(
        [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        as_postgres,
    )
    if init.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        missing(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
    hba = data / "pg_hba.conf"
    hba.write_text("local all alice scram-sha-256\nlocal all all trust\n", encoding="utf-8")
    options = _options(base)
    start = _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start"], as_postgres)
    if start.returncode != 0:
        text = log.read_text(errors="replace") if log.exists() else start.stderr
        shutil.rmtree(base, ignore_errors=True)
        missing(f"pg_ctl start failed: {text.strip()[-500:]}")
    server = PgServer(base, log, data, bin_dir, as_postgres)
    try:
        server.execute(f"CREATE ROLE alice LOGIN PASSWORD '{PASSWORD}' CREATEDB")
        yield server
    finally:
        _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], as_postgres)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_database(pg_server: PgServer, request: pytest.FixtureRequest) -> str:
    """A database of its own for the test module: its URL."""
    return pg_server.createdb(request.module.__name__.rsplit(".", 1)[-1])
