"""Data export: every dataset in every format, exact amounts, checksums, reruns, real workers."""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import func, select, update

import ppbe_jobs.processors.exports as exports
from jobq import JobFailedError
from ppbe_jobs.config import load_settings
from ppbe_jobs.db import (
    AppropriationAccount,
    BudgetKind,
    BudgetLine,
    ColorOfMoney,
    Database,
    MonthlyExecution,
    Organization,
    ProgramElement,
    seed,
)
from ppbe_jobs.manager import QueueManager
from ppbe_jobs.processors.services import Services
from ppbe_jobs.services import dataio
from ppbe_jobs.services.dataio import (
    ExportDataset,
    ExportFormat,
    ExportRequest,
    InvalidRequestError,
    export_data,
)

HEADERS = {
    ExportDataset.LINE_ITEMS: [
        "program_element", "organization", "appropriation", "color", "budget_year",
        "fiscal_year", "kind", "amount_k",
    ],
    ExportDataset.EXECUTION: [
        "program_element", "organization", "appropriation", "color", "fiscal_year", "month",
        "fiscal_month", "cumulative_obligations_k", "cumulative_expenditures_k",
    ],
    ExportDataset.PROGRAM_ELEMENTS: [
        "program_element", "title", "organization", "service", "budget_activity",
    ],
}  # fmt: skip
TABLES: dict[ExportDataset, Any] = {
    ExportDataset.LINE_ITEMS: BudgetLine,
    ExportDataset.EXECUTION: MonthlyExecution,
    ExportDataset.PROGRAM_ELEMENTS: ProgramElement,
}


def request(export_id: str = "e-1", **data: Any) -> ExportRequest:
    return ExportRequest.from_data({"exportId": export_id, **data})


def count(db: Database, model: Any) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def read_rows(path: Path, fmt: ExportFormat) -> list[list[Any]]:
    """Every row of an export, the header first (JSONL: the keys of the first object)."""
    if fmt is ExportFormat.CSV:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.reader(f))
    if fmt is ExportFormat.JSONL:
        objects = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
        return [list(objects[0]), *[list(o.values()) for o in objects]]
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        rows: list[list[Any]] = []
        for i, sheet in enumerate(book.worksheets):
            sheet_rows = [list(r) for r in sheet.iter_rows(values_only=True)]
            rows.extend(sheet_rows if i == 0 else sheet_rows[1:])
        return rows
    finally:
        book.close()


def line_amounts(db: Database) -> dict[tuple[str, str, int, int, str], Decimal]:
    """Every budget line's amount by (PE, account, fiscal year, budget year, kind), from SQL."""
    with db.session() as session:
        rows = session.execute(
            select(
                ProgramElement.code,
                AppropriationAccount.symbol,
                BudgetLine.fiscal_year,
                BudgetLine.budget_year,
                BudgetLine.kind,
                BudgetLine.amount_k,
            )
            .join(ProgramElement, BudgetLine.program_element_id == ProgramElement.id)
            .join(AppropriationAccount, BudgetLine.appropriation_id == AppropriationAccount.id)
        ).all()
    return {(pe, acct, fy, by, str(kind)): amount for pe, acct, fy, by, kind, amount in rows}


@pytest.mark.parametrize("fmt", list(ExportFormat))
@pytest.mark.parametrize("dataset", list(ExportDataset))
def test_each_dataset_and_format_holds_every_row(
    sqlite_db: Database, tmp_path: Path, dataset: ExportDataset, fmt: ExportFormat
) -> None:
    result = export_data(sqlite_db, tmp_path, request(dataset=dataset.value, format=fmt.value))
    expected_rows = count(sqlite_db, TABLES[dataset])
    assert expected_rows > 0
    path = tmp_path / "exports" / f"e-1.{fmt.value}"
    data = path.read_bytes()
    assert result.as_dict() == {
        "exportId": "e-1",
        "filePath": str(path),
        "rows": expected_rows,
        "checksum": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "format": fmt.value,
        "dataset": dataset.value,
    }
    rows = read_rows(path, fmt)
    assert rows[0] == HEADERS[dataset]
    assert len(rows) - 1 == expected_rows
    assert sorted(os.listdir(path.parent)) == [path.name]  # no temporary file left


def test_csv_amounts_are_exactly_the_database_amounts(sqlite_db: Database, tmp_path: Path) -> None:
    result = export_data(sqlite_db, tmp_path, request(dataset="line-items", format="csv"))
    expected = line_amounts(sqlite_db)
    with open(result.path, newline="", encoding="utf-8") as f:
        exported = list(csv.DictReader(f))
    assert len(exported) == len(expected)
    for row in exported:
        key = (
            row["program_element"],
            row["appropriation"],
            int(row["fiscal_year"]),
            int(row["budget_year"]),
            row["kind"],
        )
        assert Decimal(row["amount_k"]) == expected[key]
        assert len(row["amount_k"].partition(".")[2]) == 3  # dollars kept: three decimals
    # A few values spelled out, against a direct query.
    with sqlite_db.session() as session:
        first = session.execute(select(BudgetLine).order_by(BudgetLine.id).limit(3)).scalars()
        for line, row in zip(first, exported, strict=False):
            assert row["amount_k"] == f"{line.amount_k:f}"


def test_xlsx_keeps_numbers_dates_and_exact_amounts(sqlite_db: Database, tmp_path: Path) -> None:
    result = export_data(sqlite_db, tmp_path, request(dataset="execution", format="xlsx"))
    with sqlite_db.session() as session:
        first = session.scalars(select(MonthlyExecution).order_by(MonthlyExecution.id)).first()
        assert first is not None
        expected = (first.month, first.cumulative_obligations_k, first.cumulative_expenditures_k)
    book = openpyxl.load_workbook(result.path, read_only=True)
    try:
        sheet = book.worksheets[0]
        assert sheet.title == "execution"
        _, row = list(sheet.iter_rows(min_row=1, max_row=2, values_only=True))
    finally:
        book.close()
    assert isinstance(row[5], datetime)
    assert isinstance(row[7], float)
    assert isinstance(row[4], int)
    month, obligations, expenditures = expected
    assert row[5].date() == month
    # The number in the cell reads back as the exact Decimal (shortest repr of the double).
    assert Decimal(repr(row[7])).quantize(Decimal("0.001")) == obligations
    assert Decimal(repr(row[8])).quantize(Decimal("0.001")) == expenditures


def test_jsonl_writes_decimals_and_dates_as_text(sqlite_db: Database, tmp_path: Path) -> None:
    result = export_data(sqlite_db, tmp_path, request(dataset="execution", format="jsonl"))
    lines = result.path.read_text("utf-8").splitlines()
    first = json.loads(lines[0])
    with sqlite_db.session() as session:
        row = session.scalars(select(MonthlyExecution).order_by(MonthlyExecution.id)).first()
        assert row is not None
        assert first["cumulative_obligations_k"] == f"{row.cumulative_obligations_k:f}"
        assert first["month"] == row.month.isoformat()
        assert first["fiscal_year"] == row.fiscal_year
        assert first["fiscal_month"] == row.fiscal_month
    assert all(isinstance(json.loads(x)["cumulative_expenditures_k"], str) for x in lines)


def test_filters_select_the_rows_sql_selects(sqlite_db: Database, tmp_path: Path) -> None:
    with sqlite_db.session() as session:
        org = session.scalars(
            select(Organization.code)
            .join(ProgramElement, ProgramElement.organization_id == Organization.id)
            .join(BudgetLine, BudgetLine.program_element_id == ProgramElement.id)
            .join(AppropriationAccount, BudgetLine.appropriation_id == AppropriationAccount.id)
            .where(AppropriationAccount.color == ColorOfMoney.RDTE)
            .limit(1)
        ).one()
        expected = session.scalar(
            select(func.count())
            .select_from(BudgetLine)
            .join(ProgramElement, BudgetLine.program_element_id == ProgramElement.id)
            .join(Organization, ProgramElement.organization_id == Organization.id)
            .join(AppropriationAccount, BudgetLine.appropriation_id == AppropriationAccount.id)
            .where(
                BudgetLine.fiscal_year == 2027,
                BudgetLine.kind == BudgetKind.REQUEST,
                AppropriationAccount.color == ColorOfMoney.RDTE,
                Organization.code == org,
            )
        )
    filters = {"fiscalYear": "FY2027", "color": "RDTE", "organization": org, "kind": "request"}
    result = export_data(
        sqlite_db, tmp_path, request(dataset="line-items", format="csv", filters=filters)
    )
    assert expected
    assert result.rows == expected
    rows = read_rows(result.path, ExportFormat.CSV)[1:]
    assert {(r[1], r[3], r[5], r[6]) for r in rows} == {(org, "RDT&E", "2027", "request")}


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_no_matching_rows_gives_a_header_only_file(
    sqlite_db: Database, tmp_path: Path, fmt: ExportFormat
) -> None:
    result = export_data(
        sqlite_db,
        tmp_path,
        request(dataset="line-items", format=fmt.value, filters={"organization": "NOBODY"}),
    )
    assert result.rows == 0
    if fmt is ExportFormat.JSONL:
        assert result.path.read_bytes() == b""
    else:
        assert read_rows(result.path, fmt) == [HEADERS[ExportDataset.LINE_ITEMS]]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"dataset": "line-items", "format": "csv"}, "exportId"),
        ({"exportId": "../etc/x", "dataset": "line-items", "format": "csv"}, "exportId"),
        ({"exportId": "e", "dataset": "budgets", "format": "csv"}, "dataset"),
        ({"exportId": "e", "dataset": "line-items", "format": "pdf"}, "format"),
        ({"exportId": "e", "dataset": "line-items", "format": "csv", "filters": [1]}, "filters"),
        (
            {"exportId": "e", "dataset": "line-items", "format": "csv", "filters": {"foo": 1}},
            "filters.foo",
        ),
        (
            {"exportId": "e", "dataset": "execution", "format": "csv", "filters": {"kind": "plan"}},
            "filters.kind",
        ),
        (
            {"exportId": "e", "dataset": "line-items", "format": "csv", "filters": {"color": "X"}},
            "filters.color",
        ),
        (
            {
                "exportId": "e",
                "dataset": "line-items",
                "format": "csv",
                "filters": {"fiscalYear": "FY20x6"},
            },
            "filters.fiscalYear",
        ),
    ],
)
def test_invalid_requests_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        ExportRequest.from_data(data)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


@pytest.mark.parametrize("fmt", list(ExportFormat))
def test_rerun_replaces_the_file(sqlite_db: Database, tmp_path: Path, fmt: ExportFormat) -> None:
    req = request(dataset="line-items", format=fmt.value)
    first = export_data(sqlite_db, tmp_path, req)
    again = export_data(sqlite_db, tmp_path, req)
    assert again.checksum == first.checksum  # same rows, same bytes (XLSX too)
    with sqlite_db.session() as session:
        line_id = session.scalars(select(BudgetLine.id).order_by(BudgetLine.id)).first()
        session.execute(
            update(BudgetLine).where(BudgetLine.id == line_id).values(amount_k=Decimal("7.007"))
        )
    changed = export_data(sqlite_db, tmp_path, req)
    assert changed.path == first.path
    assert changed.checksum != first.checksum
    assert changed.checksum == hashlib.sha256(changed.path.read_bytes()).hexdigest()
    assert read_rows(changed.path, fmt)[1][7] in ("7.007", 7.007)
    assert os.listdir(changed.path.parent) == [changed.path.name]


def test_a_full_xlsx_sheet_continues_on_the_next(
    sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dataio, "_XLSX_MAX_ROWS", 501)  # 500 rows and the header a sheet
    result = export_data(sqlite_db, tmp_path, request(dataset="line-items", format="xlsx"))
    book = openpyxl.load_workbook(result.path, read_only=True)
    try:
        names = [s.title for s in book.worksheets]
    finally:
        book.close()
    assert result.rows == count(sqlite_db, BudgetLine) == 1144
    assert names == ["line-items", "line-items (2)", "line-items (3)"]
    assert len(read_rows(result.path, ExportFormat.XLSX)) == 1145


def test_progress_is_reported_sparingly_and_ends_at_100(
    sqlite_db: Database, tmp_path: Path
) -> None:
    seen: list[int] = []
    export_data(sqlite_db, tmp_path, request(dataset="execution", format="csv"), seen.append)
    assert seen == sorted(set(seen))
    assert seen[-1] == 100
    assert len(seen) <= 12  # every 10 points at most (or once a second), never per row


def test_on_postgresql(pg_db: Database, tmp_path: Path) -> None:
    seed(pg_db, scale="small")
    result = export_data(pg_db, tmp_path, request(dataset="line-items", format="csv"))
    expected = line_amounts(pg_db)
    rows = read_rows(result.path, ExportFormat.CSV)[1:]
    assert result.rows == len(rows) == len(expected) == 1144
    exported = {(r[0], r[2], int(r[5]), int(r[4]), r[6]): r[7] for r in rows}
    assert {k: Decimal(v) for k, v in exported.items()} == expected
    assert all(len(v.partition(".")[2]) == 3 for v in exported.values())


# --------------------------------------------------------------------------- real workers


@pytest.fixture
async def manager(redis_url: str) -> AsyncIterator[QueueManager]:
    # No dead-letter queue: a job that failed for good stays in its queue to be looked at.
    async with QueueManager(load_settings({}), connection=redis_url, dead_letter_queue=None) as m:
        yield m


async def test_export_job_through_a_worker(
    manager: QueueManager, sqlite_db: Database, tmp_path: Path
) -> None:
    services = Services(database=sqlite_db, output_dir=tmp_path, smtp=None, manager=manager)
    queue = f"{exports.QUEUE}-{uuid.uuid4().hex[:8]}"
    manager.register_processor(queue, functools.partial(exports.process, services=services))
    await manager.start_workers()
    job = await manager.add_job(
        queue,
        exports.JOB_NAMES[0],
        {"exportId": "fy26-rdte", "dataset": "line-items", "format": "jsonl",
         "filters": {"fiscalYear": 2026, "color": "RDT&E"}},
    )  # fmt: skip
    result = await job.wait_until_finished(timeout=30)
    path = tmp_path / "exports" / "fy26-rdte.jsonl"
    assert result["filePath"] == str(path)
    assert result["checksum"] == hashlib.sha256(path.read_bytes()).hexdigest()
    lines = [json.loads(x) for x in path.read_text("utf-8").splitlines()]
    assert result["rows"] == len(lines) > 0
    assert {(x["fiscal_year"], x["color"]) for x in lines} == {(2026, "RDT&E")}
    done = await job.refresh()
    assert done.progress == 100
    assert any("exported" in line for line in await done.get_logs())

    bad = await manager.add_job(
        queue, "export-data", {"exportId": "x", "dataset": "line-items", "format": "pdf"},
        {"attempts": 3},
    )  # fmt: skip
    with pytest.raises(JobFailedError, match=r"format: 'pdf' is not one of csv, xlsx, jsonl"):
        await bad.wait_until_finished(timeout=30)
    assert (await bad.refresh()).attempts_made == 1  # permanent: not retried


def test_contract() -> None:
    assert {"queue": exports.QUEUE, "names": exports.JOB_NAMES} == {
        "queue": "exports",
        "names": ("export-data",),
    }
    assert tuple(HEADERS[ExportDataset.LINE_ITEMS]) == dataio.BUDGET_LINE_COLUMNS
