"""Engines and sessions for the domain database: SQLite by default, PostgreSQL supported.

``DATABASE_URL`` takes ``sqlite:///relative/file.sqlite3``,
``sqlite:////absolute/file.sqlite3``, a bare file path (taken as SQLite), or
``postgresql+psycopg://user:password@host:5432/dbname`` (``postgres://`` and
``postgresql://`` are read as psycopg 3). Unset, the database is
``$PPBE_DATA_DIR/ppbe.sqlite3`` (``./ppbe-data/ppbe.sqlite3``).

SQLite files are opened in WAL mode (readers do not block the writer), with
foreign keys enforced and a 30 s busy timeout, so worker processes can share one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from jobq import ConfigurationError

from .models import Base

__all__ = [
    "DATABASE_URL_ENV",
    "DEFAULT_DATABASE_FILENAME",
    "DEFAULT_DATA_DIR",
    "Database",
    "DatabaseConfigurationError",
    "create_engine_from_url",
    "resolve_database_url",
    "sqlite_url",
]

DATABASE_URL_ENV = "DATABASE_URL"
"""The environment variable holding the database URL."""

DATA_DIR_ENV = "PPBE_DATA_DIR"
DEFAULT_DATA_DIR = Path("ppbe-data")
"""Folder of the default SQLite database (relative to the working directory)."""

DEFAULT_DATABASE_FILENAME = "ppbe.sqlite3"
"""File name of the default SQLite database."""

SQLITE_BUSY_TIMEOUT_S = 30.0

_EXAMPLES = (
    "use sqlite:///path/to/ppbe.sqlite3, a file path, or "
    "postgresql+psycopg://user:password@host:5432/dbname"
)


class DatabaseConfigurationError(ConfigurationError):
    """The database URL (``DATABASE_URL``) cannot be used; the message says why and what works."""


def sqlite_url(path: str | os.PathLike[str]) -> str:
    """The SQLAlchemy URL of the SQLite file at ``path`` (made absolute)."""
    return f"sqlite:///{Path(path).expanduser().absolute()}"


def _problem(value: object, why: str, source: str) -> DatabaseConfigurationError:
    return DatabaseConfigurationError(f"{source}={value!s}: {why}; {_EXAMPLES}")


def resolve_database_url(
    value: str | URL | os.PathLike[str], *, source: str = DATABASE_URL_ENV
) -> URL:
    """Check a database URL (or SQLite file path) and name the driver this package uses.

    ``source`` names where the value came from in error messages. Raises
    :class:`DatabaseConfigurationError` for anything but SQLite (pysqlite) and
    PostgreSQL (psycopg 3).
    """
    if isinstance(value, os.PathLike):
        value = sqlite_url(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise _problem("''", "empty", source)
        value = text if "://" in text else sqlite_url(text)
    try:
        url = make_url(value)
    except ArgumentError as exc:
        raise _problem(value, "not a database URL", source) from exc
    shown = url.render_as_string(hide_password=True)
    backend, _, driver = url.drivername.partition("+")
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise _problem(
                shown, f"SQLite driver {driver!r} is not supported (pysqlite is)", source
            )
        return url.set(drivername="sqlite+pysqlite")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise _problem(
                shown, f"PostgreSQL driver {driver!r} is not supported (psycopg 3 is)", source
            )
        if not url.database:
            raise _problem(shown, "no database name after the host", source)
        return url.set(drivername="postgresql+psycopg")
    raise _problem(shown, f"database {backend!r} is not supported", source)


def _json_default(value: object) -> Any:
    raise TypeError(
        f"{type(value).__name__} {value!r} is not JSON; store JSON-native values "
        "(write a Decimal or datetime as a string)"
    )


def _json_dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any, *, file_backed: bool) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        if file_backed:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def create_engine_from_url(
    url: str | URL | os.PathLike[str], *, echo: bool = False, source: str = DATABASE_URL_ENV
) -> Engine:
    """An engine for a checked URL (see :func:`resolve_database_url`).

    SQLite: the file's folder is created if missing; WAL, foreign keys and a
    busy timeout are set on every connection; ``sqlite://`` (in memory) shares
    one connection. PostgreSQL: psycopg 3 with connections checked before use.
    Nothing is connected until first use.
    """
    resolved = resolve_database_url(url, source=source)
    if resolved.get_backend_name() == "postgresql":
        return create_engine(resolved, echo=echo, pool_pre_ping=True, json_serializer=_json_dumps)
    database = resolved.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if in_memory:
        engine = create_engine(
            resolved,
            echo=echo,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
            json_serializer=_json_dumps,
        )
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            resolved,
            echo=echo,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S},
            json_serializer=_json_dumps,
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        _sqlite_on_connect(dbapi_connection, record, file_backed=not in_memory)

    return engine


class Database:
    """One database: its URL, engine and session factory.

    >>> db = Database("sqlite:///ppbe-data/ppbe.sqlite3")   # doctest: +SKIP
    >>> db.create_all()                                     # doctest: +SKIP
    >>> with db.session() as session:                       # doctest: +SKIP
    ...     session.add(FiscalYear(year=2026))

    Sessions do not expire objects on commit, so objects read in a
    ``with db.session()`` block stay readable after it. Close the engine's
    connections with :meth:`dispose` (or use the database as a context manager).
    """

    def __init__(
        self,
        url: str | URL | os.PathLike[str],
        *,
        echo: bool = False,
        source: str = DATABASE_URL_ENV,
    ) -> None:
        self._url = resolve_database_url(url, source=source)
        self._engine = create_engine_from_url(self._url, echo=echo, source=source)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        default_path: str | os.PathLike[str] | None = None,
        echo: bool = False,
    ) -> Database:
        """The database named by ``DATABASE_URL``.

        Unset or empty, it is the SQLite file ``default_path`` if given, else
        ``ppbe.sqlite3`` in ``PPBE_DATA_DIR`` (``./ppbe-data``). Raises
        :class:`DatabaseConfigurationError` naming ``DATABASE_URL`` when the
        value cannot be used.
        """
        env = os.environ if environ is None else environ
        value = env.get(DATABASE_URL_ENV, "").strip()
        if value:
            return cls(value, echo=echo)
        if default_path is not None:
            return cls(Path(default_path), echo=echo)
        data_dir = Path(env.get(DATA_DIR_ENV, "").strip() or DEFAULT_DATA_DIR)
        return cls(data_dir / DEFAULT_DATABASE_FILENAME, echo=echo, source=DATA_DIR_ENV)

    @property
    def url(self) -> URL:
        """The URL in use (with the driver named)."""
        return self._url

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine."""
        return self._engine

    @property
    def dialect_name(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back on error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def create_all(self) -> None:
        """Create every table and index that does not exist yet."""
        Base.metadata.create_all(self._engine)

    def drop_all(self) -> None:
        """Drop every table of the domain model (all data is lost)."""
        Base.metadata.drop_all(self._engine)

    def dispose(self) -> None:
        """Close the engine's pooled connections."""
        self._engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.dispose()

    def __repr__(self) -> str:
        return f"Database({self._url.render_as_string(hide_password=True)!r})"
