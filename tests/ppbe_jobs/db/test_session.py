"""Engines, URLs and sessions."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from jobq import ConfigurationError
from ppbe_jobs.db import (
    Database,
    DatabaseConfigurationError,
    FiscalYear,
    OutboxMessage,
    Report,
    ReportFormat,
    create_engine_from_url,
)
from ppbe_jobs.db.session import resolve_database_url


def test_sqlite_files_use_wal_and_enforce_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "folder" / "x.sqlite3"
    engine = create_engine_from_url(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    finally:
        engine.dispose()
    assert path.exists()


def test_in_memory_sqlite_shares_one_database() -> None:
    with Database("sqlite://") as db:
        db.create_all()
        with db.session() as session:
            session.add(FiscalYear(year=2026))
        with db.session() as session:
            assert session.scalar(select(func.count()).select_from(FiscalYear)) == 1


def test_a_bare_path_is_a_sqlite_file(tmp_path: Path) -> None:
    url = resolve_database_url(str(tmp_path / "a.sqlite3"))
    assert url.drivername == "sqlite+pysqlite"
    assert url.database == str(tmp_path / "a.sqlite3")


@pytest.mark.parametrize(
    "given",
    [
        "postgres://ppbe:secret@db.example:5432/ppbe",
        "postgresql://ppbe:secret@db.example:5432/ppbe",
        "postgresql+psycopg://ppbe:secret@db.example:5432/ppbe",
    ],
)
def test_postgresql_urls_use_psycopg_3(given: str) -> None:
    url = resolve_database_url(given)
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.database) == ("db.example", 5432, "ppbe")
    db = Database(given)  # nothing connects until first use
    assert db.dialect_name == "postgresql"
    assert "secret" not in repr(db)


def test_from_env_defaults_to_a_file_in_the_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with Database.from_env({}) as db:
        assert db.url.database == str(tmp_path / "ppbe-data" / "ppbe.sqlite3")
        db.create_all()
    assert (tmp_path / "ppbe-data" / "ppbe.sqlite3").exists()


def test_from_env_honours_the_data_folder_and_a_given_path(tmp_path: Path) -> None:
    with Database.from_env({"PPBE_DATA_DIR": str(tmp_path / "data")}) as db:
        assert db.url.database == str(tmp_path / "data" / "ppbe.sqlite3")
    with Database.from_env({}, default_path=tmp_path / "given.sqlite3") as db:
        assert db.url.database == str(tmp_path / "given.sqlite3")


def test_from_env_reads_database_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'from-env.sqlite3'}"
    with Database.from_env({"DATABASE_URL": url}, default_path=tmp_path / "no.sqlite3") as db:
        assert db.url.database == str(tmp_path / "from-env.sqlite3")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("mysql://ppbe:secret@db/ppbe", "'mysql' is not supported"),
        ("postgresql+asyncpg://ppbe:secret@db/ppbe", "psycopg 3 is"),
        ("postgresql://ppbe:secret@db", "no database name"),
        ("sqlite+aiosqlite:///x.sqlite3", "pysqlite is"),
        ("://nowhere", "not a database URL"),
    ],
)
def test_unusable_urls_name_database_url(value: str, why: str) -> None:
    with pytest.raises(DatabaseConfigurationError) as caught:
        Database.from_env({"DATABASE_URL": value})
    message = str(caught.value)
    assert message.startswith("DATABASE_URL=")
    assert why in message
    assert "postgresql+psycopg://" in message  # says what would work
    assert "secret" not in message
    assert isinstance(caught.value, ConfigurationError)


def test_empty_url_is_refused() -> None:
    with pytest.raises(DatabaseConfigurationError, match="empty"):
        resolve_database_url("  ")


def test_blank_database_url_means_the_default(tmp_path: Path) -> None:
    with Database.from_env({"DATABASE_URL": "  ", "PPBE_DATA_DIR": str(tmp_path)}) as db:
        assert db.url.database == str(tmp_path / "ppbe.sqlite3")


def test_session_commits_at_the_end_of_the_block(sqlite_empty_db: Database) -> None:
    with sqlite_empty_db.session() as session:
        session.add(FiscalYear(year=2032))
    with sqlite_empty_db.session() as session:
        year = session.get(FiscalYear, 2032)
    assert year is not None
    assert year.label == "FY2032"  # still readable after the session closed


def test_domain_row_and_outbox_row_roll_back_together(any_db: Database) -> None:
    """The transactional-enqueue guarantee: no job for a transaction that rolled back."""

    def request_report_then_fail() -> None:
        with any_db.session() as session:
            session.add(Report(id="report-9", report_type="fydp", format=ReportFormat.PDF))
            session.add(
                OutboxMessage(queue="reports", job_name="generate", data={"reportId": "report-9"})
            )
            session.flush()
            raise RuntimeError("validation failed")

    with pytest.raises(RuntimeError, match="validation failed"):
        request_report_then_fail()
    with any_db.session() as session:
        assert session.scalar(select(func.count()).select_from(Report)) == 0
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    with any_db.session() as session:
        session.add(Report(id="report-9", report_type="fydp", format=ReportFormat.PDF))
        session.add(
            OutboxMessage(queue="reports", job_name="generate", data={"reportId": "report-9"})
        )
    with any_db.session() as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 1


def test_private_postgresql_is_not_the_system_server(pg_url: str) -> None:
    with Database(pg_url) as db, db.engine.connect() as connection:
        port = int(connection.execute(text("SHOW port")).scalar_one())
        listen = connection.execute(text("SHOW listen_addresses")).scalar_one()
    assert port != 5432
    assert listen == "127.0.0.1"
