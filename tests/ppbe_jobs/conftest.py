"""Fixtures of the application's tests: domain databases on SQLite and on a private PostgreSQL.

* ``sqlite_db``: a SQLite file of its own, created and seeded with the small
  sample data (copied from one seeded template, so seeding runs once a session).
* ``sqlite_empty_db``: a SQLite file with the tables and no rows.
* ``pg_url``: URL of the ``postgres`` database of a PostgreSQL cluster this
  test session starts itself (``initdb`` + ``pg_ctl`` in a temporary folder, a
  free loopback port, trust authentication) and removes at the end. Never the
  machine's own server. Skipped when the binaries are missing, unless
  ``PPBE_REQUIRE_POSTGRES=1`` (set by CI) turns the skip into a failure.
* ``pg_db``: a fresh, empty database on that cluster, tables created, dropped after the test.
* ``any_db``: ``sqlite_empty_db`` and ``pg_db`` in turn (parametrized).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url

from ppbe_jobs.db import Database, seed

REQUIRE_POSTGRES_ENV = "PPBE_REQUIRE_POSTGRES"
_SYSTEM_POSTGRES_PORT = 5432


def _postgres_required() -> bool:
    return os.environ.get(REQUIRE_POSTGRES_ENV, "").strip().lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    """Skip (or, when PostgreSQL is required, fail) the tests that need it."""
    if _postgres_required():
        pytest.fail(f"{reason} ({REQUIRE_POSTGRES_ENV}=1, so this is a failure)", pytrace=False)
    pytest.skip(f"{reason}; set {REQUIRE_POSTGRES_ENV}=1 to make this a failure")


def _find_postgres_bindir() -> Path | None:
    """The folder holding both ``initdb`` and ``pg_ctl``: PATH first, then Debian's layout."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    candidates = glob.glob("/usr/lib/postgresql/*/bin")
    candidates.sort(key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    for folder in reversed(candidates):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def _free_loopback_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port != _SYSTEM_POSTGRES_PORT:
            return port


class PrivatePostgres:
    """A throw-away PostgreSQL cluster in a temporary folder, on a free loopback port.

    As root (``initdb`` refuses to run as root) the folder belongs to the
    ``postgres`` user and the binaries run through ``runuser -u postgres --``.
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = 0
        self._as_root = os.geteuid() == 0
        base = tempfile.gettempdir()
        if len(base) > 60:  # unix socket paths are limited to ~107 bytes
            base = "/tmp"
        self.folder = Path(tempfile.mkdtemp(prefix="ppbe-pg-", dir=base))
        self.datadir = self.folder / "data"
        self.logfile = self.folder / "postgres.log"
        self._running = False

    @property
    def url(self) -> str:
        """URL of the cluster's ``postgres`` database (superuser ``postgres``, no password)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(
            command, cwd=self.folder, capture_output=True, text=True, timeout=120, check=False
        )

    def _log_tail(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def start(self) -> None:
        """initdb, then pg_ctl start (retrying on another port if the first is taken)."""
        if self._as_root:
            shutil.chown(self.folder, "postgres", "postgres")
        self.folder.chmod(0o700)
        done = self._run(
            "initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        for _attempt in range(3):
            self.port = _free_loopback_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories={self.folder} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            done = self._run(
                "pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "60",
                "-o", options, "start",
            )  # fmt: skip
            if done.returncode == 0:
                self._running = True
                return
        raise RuntimeError(
            f"pg_ctl start failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n"
            f"{self._log_tail()}"
        )

    def stop(self) -> None:
        """Stop the server (immediate mode) and delete the folder."""
        try:
            if self._running:
                self._run("pg_ctl", "-D", str(self.datadir), "stop", "-m", "immediate", "-w")
                self._running = False
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a private PostgreSQL cluster started for this session (skips without binaries)."""
    bindir = _find_postgres_bindir()
    if bindir is None:
        _unavailable(
            "PostgreSQL binaries (initdb, pg_ctl) not found on PATH or /usr/lib/postgresql"
        )
    assert bindir is not None
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            _unavailable("running as root and runuser is missing, so initdb cannot run")
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no 'postgres' user for initdb to run as")
    server = PrivatePostgres(bindir)
    try:
        server.start()
        assert server.port != _SYSTEM_POSTGRES_PORT
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Database]:
    """A fresh database on the private cluster, tables created; dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        db = Database(make_url(pg_url).set(database=name))
        try:
            db.create_all()
            yield db
        finally:
            db.dispose()
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture
def sqlite_empty_db(tmp_path: Path) -> Iterator[Database]:
    """A SQLite file of this test's own, tables created, no rows."""
    db = Database(tmp_path / "empty.sqlite3")
    db.create_all()
    with db:
        yield db


@pytest.fixture(scope="session")
def _seeded_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file seeded small, checkpointed to a single file to copy from."""
    path = tmp_path_factory.mktemp("seeded") / "template.sqlite3"
    with Database(path) as db:
        seed(db, scale="small")
        with db.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture
def sqlite_db(_seeded_sqlite_template: Path, tmp_path: Path) -> Iterator[Database]:
    """A SQLite file of this test's own, created and seeded with the small sample data."""
    path = tmp_path / "ppbe.sqlite3"
    shutil.copyfile(_seeded_sqlite_template, path)
    with contextlib.suppress(FileNotFoundError):
        shutil.copyfile(_seeded_sqlite_template.with_name("template.sqlite3-wal"), f"{path}-wal")
    with Database(path) as db:
        yield db


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest) -> Database:
    """An empty database with the tables created: SQLite, then PostgreSQL."""
    name = "sqlite_empty_db" if request.param == "sqlite" else "pg_db"
    db = request.getfixturevalue(name)
    assert isinstance(db, Database)
    return db
