"""The report job on the seeded sample database: files, figures, the row, the follow-up.

Expected figures are summed by the database itself, in whole dollars
(``SUM(CAST(ROUND(amount_k * 1000) AS BIGINT))``), so they are exact on SQLite
too, and compared with what the report files hold.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from jobq import Job, JobFailedError, QueueEvents, UnrecoverableError
from ppbe_jobs.config import load_settings
from ppbe_jobs.db import (
    Database,
    Notification,
    NotificationStatus,
    Report,
    ReportFormat,
    ReportStatus,
    seed,
)
from ppbe_jobs.manager import QueueManager
from ppbe_jobs.processors import notifications, reports
from ppbe_jobs.processors.services import Services
from ppbe_jobs.render._format import format_money
from ppbe_jobs.tiers import Tier, TierConfig
from tests.ppbe_jobs.render.data import read_pdf

FY = 2026
FYDP = range(FY, FY + 5)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
async def manager(redis_url: str) -> AsyncIterator[QueueManager]:
    """A manager whose queues are this test's own: one tier with a unique name."""
    uid = uuid.uuid4().hex[:10]
    tiers = TierConfig(tiers=(Tier(name=f"t{uid}", low=1, high=100, concurrency=2, attempts=3),))
    settings = load_settings({"QUEUE_BACKOFF_DELAY": "10"})
    async with QueueManager(
        settings, connection=redis_url, tiers=tiers, dead_letter_queue=f"dead-letter-{uid}"
    ) as m:
        yield m


@pytest.fixture
def services(sqlite_db: Database, tmp_path: Path, manager: QueueManager) -> Services:
    return Services(database=sqlite_db, output_dir=tmp_path / "output", smtp=None, manager=manager)


def report_data(
    report_type: str = "budget-summary", fmt: str = "csv", **extra: Any
) -> dict[str, Any]:
    return {
        "reportId": f"report-{uuid.uuid4().hex[:8]}",
        "reportType": report_type,
        "format": fmt,
        "fiscalYear": f"FY{FY}",
        "requestedBy": "user-456",
        **extra,
    }


async def queued(manager: QueueManager, data: dict[str, Any], name: str = "generate-report") -> Job:
    """A real job in the reports queue (no worker), for calling the processor directly."""
    return await manager.add_job(reports.QUEUE, name, data)


def notification_queue(manager: QueueManager) -> str:
    [physical] = manager.physical_queues(reports.NOTIFICATION_QUEUE)
    return physical


# --------------------------------------------------------------------------- expected figures


def k(dollars: int) -> Decimal:
    """Whole dollars as thousands, three places (as amounts are stored)."""
    return Decimal(dollars).scaleb(-3)


def sql_sums(db: Database, sql: str, **params: Any) -> dict[Any, Decimal]:
    """``key, dollars`` rows of ``sql`` as key -> Decimal thousands."""
    with db.engine.connect() as connection:
        rows = connection.execute(text(sql), params).all()
    return {key: k(int(dollars)) for key, dollars in rows}


DOLLARS = "SUM(CAST(ROUND(b.amount_k * 1000) AS BIGINT))"


def budget_by_year(db: Database, where: str = "1 = 1", **params: Any) -> dict[int, Decimal]:
    return sql_sums(
        db,
        f"SELECT b.fiscal_year, {DOLLARS} FROM budget_lines b "
        "JOIN appropriation_accounts a ON a.id = b.appropriation_id "
        f"WHERE b.budget_year = :by AND b.kind = 'request' AND {where} GROUP BY b.fiscal_year",
        by=FY,
        **params,
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def stored_report(db: Database, report_id: str) -> Report:
    with db.session() as session:
        row = session.get(Report, report_id)
    assert row is not None
    return row


# --------------------------------------------------------------------------- through a worker


async def test_budget_summary_xlsx_through_a_worker_holds_the_database_totals(
    manager: QueueManager, services: Services, sqlite_db: Database, redis_url: str
) -> None:
    manager.register_processor(reports.QUEUE, functools.partial(reports.process, services=services))
    await manager.start_workers()
    data = report_data(fmt="xlsx")
    job = await manager.add_job(reports.QUEUE, "generate-budget-report", data)
    result = await job.wait_until_finished(60)

    path = services.output_dir / "reports" / f"{data['reportId']}.xlsx"
    assert result["reportId"] == data["reportId"]
    assert result["filePath"] == str(path)
    assert result["format"] == "xlsx"
    content = path.read_bytes()
    assert result["checksum"] == hashlib.sha256(content).hexdigest()
    assert result["bytes"] == len(content)
    assert result["notificationKey"] == f"report-ready:{data['reportId']}"

    sheet = openpyxl.load_workbook(path, data_only=True).active
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    header = next(r for r in rows if r[0] == "Color of Money")
    column = {name: i for i, name in enumerate(header)}

    def figures(label: str) -> dict[str, Decimal]:
        row = next(r for r in rows if r[0] == label)
        # xlsx cells are binary floats; three places make them exact again.
        return {
            name: Decimal(repr(row[i])).quantize(Decimal("0.001"))
            for name, i in column.items()
            if name and name.startswith("FY")
        }

    expected = budget_by_year(sqlite_db)
    assert figures("Grand Total") == {
        **{f"FY{y}": expected[y] for y in FYDP},
        "FYDP Total": sum(expected.values(), Decimal(0)),
    }
    rdte = budget_by_year(sqlite_db, "a.color = 'RDT&E'")
    assert {n: v for n, v in figures("Total RDT&E").items() if n != "FYDP Total"} == {
        f"FY{y}": rdte[y] for y in FYDP
    }

    row = stored_report(sqlite_db, data["reportId"])
    assert row.status is ReportStatus.COMPLETED
    assert (row.file_path, row.checksum) == (str(path), result["checksum"])
    assert row.finished_at is not None
    assert row.requested_by == "user-456"
    assert row.report_type == "budget-summary"
    assert row.format is ReportFormat.XLSX
    assert row.parameters["fiscalYear"] == FY

    # Progress went up in steps to 100, as the events of the queue show.
    seen: list[int] = []
    async with QueueEvents(job.queue_name, connection=redis_url, last_id="0-0", block_ms=200) as ev:
        async for event in ev:
            if event.job_id == job.id and event.event == "progress":
                seen.append(json.loads(event.fields["pg"]))
            if event.job_id == job.id and event.event == "completed":
                break
    assert seen == sorted(set(seen))
    assert seen[0] > 0
    assert seen[-1] == 100
    assert len(seen) >= 3


async def test_report_then_in_app_notification_end_to_end(
    manager: QueueManager, services: Services, sqlite_db: Database
) -> None:
    manager.register_processor(reports.QUEUE, functools.partial(reports.process, services=services))
    manager.register_processor(
        notifications.QUEUE, functools.partial(notifications.process, services=services)
    )
    await manager.start_workers()
    data = report_data("fydp", "pdf")
    result = await (
        await manager.add_job(reports.QUEUE, "generate-report", data)
    ).wait_until_finished(60)

    follow_up = await (await manager.queue(notification_queue(manager))).get_job(
        result["notificationKey"]
    )
    assert follow_up is not None
    sent = await follow_up.wait_until_finished(30)
    assert sent["status"] == "sent"
    with sqlite_db.session() as session:
        note = (
            session.query(Notification).filter_by(notification_key=result["notificationKey"]).one()
        )
    assert note.status is NotificationStatus.SENT
    assert note.sent_at is not None
    assert (note.channel, note.recipient, note.template) == ("in-app", "user-456", "report-ready")
    assert (
        note.subject == "[PPBE] Report ready: Future Years Defense Program by Program Element (PDF)"
    )
    assert result["filePath"] in note.body


async def test_invalid_request_fails_at_once_and_marks_the_requested_report_failed(
    manager: QueueManager, services: Services, sqlite_db: Database
) -> None:
    data = report_data(fmt="docx")
    # A report requested through the application has its row before the job runs.
    with sqlite_db.session() as session:
        session.add(
            Report(id=data["reportId"], report_type="budget-summary", format=ReportFormat.PDF)
        )
    manager.register_processor(reports.QUEUE, functools.partial(reports.process, services=services))
    await manager.start_workers()
    job = await manager.add_job(reports.QUEUE, "generate-report", data, {"attempts": 3})
    with pytest.raises(JobFailedError, match="format"):
        await job.wait_until_finished(30)
    row = stored_report(sqlite_db, data["reportId"])
    assert row.status is ReportStatus.FAILED
    assert row.error is not None
    assert "format: expected one of pdf, xlsx, csv" in row.error
    assert not (services.output_dir / "reports").exists()


async def test_disk_error_is_retried_and_the_last_attempt_marks_the_row_failed(
    manager: QueueManager, sqlite_db: Database, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the output folder should be")
    services = Services(database=sqlite_db, output_dir=blocked, smtp=None, manager=manager)
    data = report_data()

    # Called directly, the OSError comes out as it is: retryable, not permanent.
    first = await queued(manager, data)
    with pytest.raises(OSError, match="not-a-folder") as raised:
        await reports.process(first, services)
    assert not isinstance(raised.value, UnrecoverableError)
    assert stored_report(sqlite_db, data["reportId"]).status is ReportStatus.RUNNING
    # That job must not also run in a worker: it would race the one below on the row.
    await (await manager.queue(first.queue_name)).remove(first.id)

    manager.register_processor(reports.QUEUE, functools.partial(reports.process, services=services))
    await manager.start_workers()
    job = await manager.add_job(
        reports.QUEUE,
        "generate-report",
        data,
        {"attempts": 2, "jobId": "retry-" + data["reportId"]},
    )
    with pytest.raises(JobFailedError):
        await job.wait_until_finished(30)
    row = stored_report(sqlite_db, data["reportId"])
    assert row.status is ReportStatus.FAILED
    assert row.error is not None
    assert "NotADirectoryError" in row.error or "FileExistsError" in row.error


# --------------------------------------------------------------------------- called directly


async def test_csv_is_exact_and_a_rerun_replaces_it_with_one_follow_up(
    manager: QueueManager, services: Services, sqlite_db: Database
) -> None:
    data = report_data(fmt="csv")
    first = await reports.process(await queued(manager, data), services)
    second = await reports.process(await queued(manager, data), services)

    path = Path(first["filePath"])
    assert second == first  # same figures, same stamp: the same bytes
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left

    expected = budget_by_year(sqlite_db)
    total = next(r for r in read_csv(path) if r["Color of Money"] == "Grand Total")
    for year in FYDP:
        assert total[f"FY{year}"] == format(expected[year], "f")
    assert total["FYDP Total"] == format(sum(expected.values(), Decimal(0)), "f")

    # The follow-up notification was queued once, under its key, with the file's place.
    queue = await manager.queue(notification_queue(manager))
    counts = await queue.get_job_counts()
    assert counts.waiting == 1
    follow_up = await queue.get_job(f"report-ready:{data['reportId']}")
    assert follow_up is not None
    assert follow_up.name == "send-notification"
    assert follow_up.data["notificationKey"] == f"report-ready:{data['reportId']}"
    assert follow_up.data["channel"] == "in-app"
    assert follow_up.data["recipient"] == "user-456"
    assert follow_up.data["template"] == "report-ready"
    assert follow_up.data["context"] == {
        "reportTitle": "Budget Summary by Appropriation",
        "format": "csv",
        "location": str(path),
    }

    # Changed figures: the rerun replaces the file and the row's checksum.
    with sqlite_db.session() as session:
        session.execute(
            text(
                "UPDATE budget_lines SET amount_k = amount_k + 1 WHERE id = "
                "(SELECT MIN(id) FROM budget_lines WHERE budget_year = :by AND kind = 'request' "
                "AND fiscal_year = :by)"
            ),
            {"by": FY},
        )
    third = await reports.process(await queued(manager, data), services)
    assert third["checksum"] != first["checksum"]
    total = next(r for r in read_csv(path) if r["Color of Money"] == "Grand Total")
    assert total[f"FY{FY}"] == format(expected[FY] + 1, "f")
    assert stored_report(sqlite_db, data["reportId"]).checksum == third["checksum"]
    assert (await queue.get_job_counts()).waiting == 1


async def test_r1_pdf_prints_the_rdte_totals(
    manager: QueueManager, services: Services, sqlite_db: Database
) -> None:
    data = report_data("r1", "pdf")
    job = await queued(manager, data, "generate-budget-report")
    result = await reports.process(job, services)

    enacted = sql_sums(
        sqlite_db,
        f"SELECT b.fiscal_year, {DOLLARS} FROM budget_lines b JOIN appropriation_accounts a "
        "ON a.id = b.appropriation_id WHERE a.color = 'RDT&E' AND b.kind = 'enacted' "
        "AND b.budget_year = b.fiscal_year GROUP BY b.fiscal_year",
    )
    requested = budget_by_year(sqlite_db, "a.color = 'RDT&E'")
    pdf = read_pdf(Path(result["filePath"]))
    assert "Exhibit R-1, RDT&E Programs" in pdf.text
    assert "Total Research, Development, Test and Evaluation" in pdf.text
    for figure in (enacted[FY - 2], enacted[FY - 1], *requested.values()):
        assert format_money(figure) in pdf.text, figure
    assert "Basic Research" in pdf.text
    assert (await job.refresh()).progress == 100


async def test_execution_report_rates_and_benchmarks(
    manager: QueueManager, services: Services, sqlite_db: Database
) -> None:
    data = report_data("execution", "csv", parameters={"asOf": "2026-03"})
    result = await reports.process(await queued(manager, data), services)
    rows = read_csv(Path(result["filePath"]))

    toa = sql_sums(
        sqlite_db,
        f"SELECT 1, {DOLLARS} FROM budget_lines b WHERE b.kind = 'enacted' "
        "AND b.budget_year = :fy AND b.fiscal_year = :fy",
        fy=FY,
    )[1]
    executed = sql_sums(
        sqlite_db,
        "SELECT 'obligations', SUM(CAST(ROUND(cumulative_obligations_k * 1000) AS BIGINT)) "
        "FROM monthly_execution WHERE fiscal_year = :fy AND month = '2026-03-01' "
        "UNION ALL SELECT 'expenditures', "
        "SUM(CAST(ROUND(cumulative_expenditures_k * 1000) AS BIGINT)) "
        "FROM monthly_execution WHERE fiscal_year = :fy AND month = '2026-03-01'",
        fy=FY,
    )
    total = rows[-1]
    assert total["Appropriation"] == "Total"
    assert total["TOA"] == format(toa, "f")
    assert total["Obligations"] == format(executed["obligations"], "f")
    assert total["Expenditures"] == format(executed["expenditures"], "f")
    rate = (executed["obligations"] / toa).quantize(Decimal("0.0001"))
    assert total["Obligation Rate"] == format(rate, "f")

    # March is month 6 of FY2026 money: O&M goal 100% over 12 months -> 50%,
    # expenditure 75% over 12 -> 37.5%; Procurement has no expenditure goal.
    om = next(r for r in rows if r["Color of Money"] == "O&M")
    assert Decimal(om["OSD Obligation Benchmark"]) == Decimal("0.5")
    assert Decimal(om["OSD Expenditure Benchmark"]) == Decimal("0.375")
    procurement = next(r for r in rows if r["Color of Money"] == "Procurement")
    assert Decimal(procurement["OSD Obligation Benchmark"]) == Decimal("0.4")
    assert procurement["OSD Expenditure Benchmark"] == ""
    assert {r["Status"] for r in rows[:-1]} <= {"On track", "Watch", "Below benchmark"}


async def test_fydp_with_filters_matches_the_filtered_lines(
    manager: QueueManager, services: Services, sqlite_db: Database
) -> None:
    params = {"service": "navy", "color": "RDTE", "includeLineItems": True}
    job = await queued(manager, report_data("fydp", "csv", parameters=params))
    result = await reports.process(job, services)
    rows = read_csv(Path(result["filePath"]))
    expected = budget_by_year(sqlite_db, "a.service = 'Navy' AND a.color = 'RDT&E'")
    total = rows[-1]
    assert total["Appropriation"] == "Grand Total"
    assert [total[f"FY{y}"] for y in FYDP] == [format(expected[y], "f") for y in FYDP]
    assert all(r["Program Element"].endswith("N") for r in rows if r["Program Element"])
    # A parameter the report does not use is logged, not an error.
    assert any("includeLineItems" in line for line in await job.get_logs())


@pytest.mark.parametrize("fmt", ["pdf", "xlsx", "csv"])
async def test_each_format_is_written_under_the_report_id(
    manager: QueueManager, services: Services, fmt: str
) -> None:
    data = report_data("execution", fmt)
    result = await reports.process(await queued(manager, data), services)
    path = services.output_dir / "reports" / f"{data['reportId']}.{fmt}"
    assert result["filePath"] == str(path)
    magic = {"pdf": b"%PDF-", "xlsx": b"PK\x03\x04", "csv": b"Appropriation,"}[fmt]
    assert path.read_bytes().startswith(magic)


async def test_spec_minimal_payload_uses_the_latest_year_and_skips_the_follow_up(
    manager: QueueManager, services: Services, sqlite_db: Database
) -> None:
    data = {"reportId": "report-456", "reportType": "budget-summary", "format": "pdf"}
    result = await reports.process(await queued(manager, data), services)
    assert result["filePath"].endswith(".pdf")
    assert result["notificationKey"] is None
    assert stored_report(sqlite_db, "report-456").parameters == {"fiscalYear": FY}
    assert (await (await manager.queue(notification_queue(manager))).get_job_counts()).waiting == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"reportId": "../../etc/passwd"}, "reportId"),
        ({"reportId": None}, "reportId"),
        ({"reportType": "r2"}, "reportType"),
        ({"format": "docx"}, "format"),
        ({"fiscalYear": "FY20x6"}, "fiscalYear"),
        ({"fiscalYear": 1900}, "fiscalYear"),
        ({"parameters": {"kind": "enacted"}}, "parameters.kind"),
        ({"parameters": {"service": "Coast Guard"}}, "parameters.service"),
        ({"reportType": "execution", "parameters": {"asOf": "March"}}, "parameters.asOf"),
        ({"reportType": "execution", "parameters": {"asOf": "2024-01"}}, "parameters.asOf"),
        ({"reportType": "r1", "parameters": {"outYears": 7}}, "parameters.outYears"),
        ({"notify": {"channel": "email", "recipient": "user-456"}}, "notify.recipient"),
    ],
)
async def test_invalid_requests_are_permanent_errors_naming_the_field(
    manager: QueueManager, services: Services, change: dict[str, Any], field: str
) -> None:
    job = await queued(manager, report_data() | change)
    with pytest.raises(UnrecoverableError, match=rf"{job.id}.*{field}"):
        await reports.process(job, services)


async def test_a_year_without_figures_is_a_permanent_error(
    manager: QueueManager, services: Services, sqlite_db: Database
) -> None:
    data = report_data(fiscalYear=2031)
    with pytest.raises(UnrecoverableError, match="no request budget lines in the FY2031 budget"):
        await reports.process(await queued(manager, data), services)
    assert stored_report(sqlite_db, data["reportId"]).status is ReportStatus.FAILED


class ThreadRecordingDatabase(Database):
    """The real database, noting which thread opens each session."""

    def __init__(self, url: Any) -> None:
        super().__init__(url)
        self.threads: set[int] = set()

    @contextmanager
    def session(self) -> Iterator[Session]:
        self.threads.add(threading.get_ident())
        with super().session() as session:
            yield session


async def test_database_and_file_work_stay_off_the_event_loop(
    manager: QueueManager, sqlite_db: Database, tmp_path: Path
) -> None:
    database = ThreadRecordingDatabase(sqlite_db.url)
    try:
        services = Services(
            database=database, output_dir=tmp_path / "out", smtp=None, manager=manager
        )
        await reports.process(await queued(manager, report_data("fydp", "xlsx")), services)
    finally:
        database.dispose()
    assert database.threads
    assert threading.get_ident() not in database.threads


async def test_postgresql_gives_the_same_exact_figures(
    pg_db: Database, manager: QueueManager, tmp_path: Path
) -> None:
    seed(pg_db, scale="small")
    services = Services(database=pg_db, output_dir=tmp_path / "pg", smtp=None, manager=manager)
    result = await reports.process(await queued(manager, report_data()), services)
    expected = budget_by_year(pg_db)
    total = next(
        r for r in read_csv(Path(result["filePath"])) if r["Color of Money"] == "Grand Total"
    )
    assert [total[f"FY{y}"] for y in FYDP] == [format(expected[y], "f") for y in FYDP]


async def test_decimal_and_date_parameters_are_read_and_stored_as_text(
    manager: QueueManager, services: Services, sqlite_db: Database
) -> None:
    params = {"watchBand": Decimal("0.10"), "asOf": date(2026, 2, 14)}
    data = report_data("execution", "csv", parameters=params)
    result = await reports.process(await queued(manager, data), services)
    rows = read_csv(Path(result["filePath"]))
    # February is month 5: O&M obligation goal 100% x 5/12 = 41.6667% (four places).
    om = next(r for r in rows if r["Color of Money"] == "O&M")
    assert Decimal(om["OSD Obligation Benchmark"]) == Decimal("0.416667")
    assert stored_report(sqlite_db, data["reportId"]).parameters == {
        "watchBand": "0.10",
        "asOf": "2026-02-14",
        "fiscalYear": FY,
    }
