"""Data import: row-by-row error reports, both modes, idempotent upserts, exact amounts, workers."""

from __future__ import annotations

import csv
import functools
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from sqlalchemy import func, select

import ppbe_jobs.processors.imports as imports
from jobq import JobFailedError
from ppbe_jobs.config import load_settings
from ppbe_jobs.db import (
    AppropriationAccount,
    AuditLog,
    BudgetKind,
    BudgetLine,
    Database,
    ImportBatch,
    ImportMode,
    ImportRowError,
    ImportStatus,
    ProgramElement,
    seed,
)
from ppbe_jobs.manager import QueueManager
from ppbe_jobs.processors.services import Services
from ppbe_jobs.services.dataio import (
    ExportRequest,
    ImportFileError,
    ImportRequest,
    ImportResult,
    InvalidRequestError,
    export_data,
    import_data,
)

HEADER = ["program_element", "appropriation", "fiscal_year", "budget_year", "kind", "amount_k",
          "color"]  # fmt: skip


@dataclass(frozen=True)
class Line:
    pe: str
    symbol: str
    color: str
    fiscal_year: int
    budget_year: int
    kind: str
    amount: Decimal

    def row(self, amount: str | None = None) -> list[str]:
        return [self.pe, self.symbol, str(self.fiscal_year), str(self.budget_year), self.kind,
                f"{self.amount:f}" if amount is None else amount, ""]  # fmt: skip


def plan_lines(db: Database) -> list[Line]:
    """Plan lines of the sample data (FY2026 budget), in id order."""
    with db.session() as session:
        rows = session.execute(
            select(
                ProgramElement.code,
                AppropriationAccount.symbol,
                AppropriationAccount.color,
                BudgetLine.fiscal_year,
                BudgetLine.budget_year,
                BudgetLine.kind,
                BudgetLine.amount_k,
            )
            .join(ProgramElement, BudgetLine.program_element_id == ProgramElement.id)
            .join(AppropriationAccount, BudgetLine.appropriation_id == AppropriationAccount.id)
            .where(BudgetLine.kind == BudgetKind.PLAN, BudgetLine.fiscal_year == 2027)
            .order_by(BudgetLine.id)
        ).all()
    return [Line(pe, s, str(c), fy, by, str(k), a) for pe, s, c, fy, by, k, a in rows]


def dump(db: Database) -> list[tuple[Any, ...]]:
    """Every budget line, as stored."""
    with db.session() as session:
        return [
            tuple(r)
            for r in session.execute(
                select(
                    BudgetLine.id,
                    BudgetLine.program_element_id,
                    BudgetLine.appropriation_id,
                    BudgetLine.fiscal_year,
                    BudgetLine.budget_year,
                    BudgetLine.kind,
                    BudgetLine.amount_k,
                ).order_by(BudgetLine.id)
            )
        ]


def amount_of(db: Database, pe: str, symbol: str, fy: int, by: int, kind: str) -> Decimal | None:
    with db.session() as session:
        return session.scalar(
            select(BudgetLine.amount_k)
            .join(ProgramElement, BudgetLine.program_element_id == ProgramElement.id)
            .join(AppropriationAccount, BudgetLine.appropriation_id == AppropriationAccount.id)
            .where(
                ProgramElement.code == pe,
                AppropriationAccount.symbol == symbol,
                BudgetLine.fiscal_year == fy,
                BudgetLine.budget_year == by,
                BudgetLine.kind == BudgetKind(kind),
            )
        )


def write_csv(path: Path, rows: Sequence[Sequence[object]], header: Sequence[str] = HEADER) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def run(db: Database, path: Path, mode: str, import_id: str | None = "imp-1") -> ImportResult:
    data: dict[str, Any] = {"path": str(path), "mode": mode}
    if import_id is not None:
        data["importId"] = import_id
    return import_data(db, ImportRequest.from_data(data))


def count(db: Database, model: Any) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


@dataclass(frozen=True)
class Mixed:
    path: Path
    new: Line
    changed: Line
    same: Line


def mixed_file(db: Database, folder: Path) -> Mixed:
    """Three good rows (new, changed, unchanged) and fourteen refused ones, plus a blank row."""
    same, changed, other = plan_lines(db)[:3]
    new = Line(same.pe, same.symbol, same.color, 2028, 2027, "plan", Decimal("1234.567"))
    wrong_color = "MILCON" if same.color != "MILCON" else "O&M"
    with db.session() as session:
        assert (
            session.scalar(select(ProgramElement).where(ProgramElement.code == "0699999N")) is None
        )
    rows: list[list[str]] = [
        new.row("1234.567"),  # 1 inserted
        changed.row(f"{changed.amount + 1:f}"),  # 2 updated
        same.row(),  # 3 unchanged
        ["06035N", *same.row()[1:]],  # 4
        ["0699999N", *same.row()[1:]],  # 5
        [same.pe, same.symbol, "FY20x6", "2026", "plan", "1.000", ""],  # 6
        [same.pe, "999-9999", "2027", "2026", "plan", "1.000", ""],  # 7
        same.row("1.2e3"),  # 8
        same.row("12.3456"),  # 9
        same.row("-5"),  # 10
        [same.pe, same.symbol, "2027", "2026", "final", "1.000", ""],  # 11
        [*same.row()[:6], wrong_color],  # 12
        new.row("99.000"),  # 13 the same line as row 1
        [same.pe, same.symbol, "2027", "2026", "enacted", "1.000", ""],  # 14
        ["bad", same.symbol, "2027", "2026", "plan", "abc", ""],  # 15
        ["", "", "", "", "", "", ""],  # 16 blank: skipped
        [same.pe, same.symbol, "2040", "2026", "plan", "1.000", ""],  # 17
        same.row(""),  # 18
        [*other.row(), "surplus"],  # 19
    ]
    return Mixed(write_csv(folder / "mixed.csv", rows), new, changed, same)


def expected_errors(m: Mixed) -> list[tuple[int, str | None, str, str | None]]:
    wrong_color = "MILCON" if m.same.color != "MILCON" else "O&M"
    return [
        (4, "program_element", "invalid program element code '06035N': expected 7 digits",
         "06035N"),
        (5, "program_element", "program element 0699999N does not exist", "0699999N"),
        (6, "fiscal_year", "not a fiscal year: 'FY20x6'", "FY20x6"),
        (7, "appropriation", "appropriation account '999-9999' does not exist", "999-9999"),
        (8, "amount_k", "not a decimal amount: '1.2e3'", "1.2e3"),
        (9, "amount_k", "amount '12.3456' has more than 3 decimal places", "12.3456"),
        (10, "amount_k", "negative amount '-5'", "-5"),
        (11, "kind", "unknown kind 'final'; expected plan, request, enacted", "final"),
        (12, "color", f"appropriation {m.same.symbol} is {m.same.color}, not {wrong_color}",
         wrong_color),
        (13, None, "the same line as row 1 (program element, appropriation", None),
        (14, "fiscal_year", "an enacted line is for its budget year (FY2026), not FY2027", "2027"),
        (15, "program_element", "invalid program element code 'bad'", "bad"),
        (15, "amount_k", "not a decimal amount: 'abc'", "abc"),
        (17, "fiscal_year", "FY2040 is not a fiscal year of the database (FY2024..FY2031)",
         "2040"),
        (18, "amount_k", "amount_k is required", ""),
        (19, None, "8 values but 7 column names", None),
    ]  # fmt: skip


def check_errors(actual: Sequence[tuple[int, str | None, str, str | None]], m: Mixed) -> None:
    expected = expected_errors(m)
    assert [(r, f) for r, f, _, _ in actual] == [(r, f) for r, f, _, _ in expected]
    for (row, _, message, value), (_, _, fragment, expected_value) in zip(
        actual, expected, strict=True
    ):
        assert fragment in message, (row, message)
        assert value == expected_value, (row, value)


def stored_errors(db: Database, batch_id: int) -> list[tuple[int, str | None, str, str | None]]:
    with db.session() as session:
        batch = session.get_one(ImportBatch, batch_id)
        return [(e.row_number, e.field, e.message, e.value) for e in batch.errors]


def test_valid_rows_writes_the_good_rows_and_reports_each_bad_one(
    sqlite_db: Database, tmp_path: Path
) -> None:
    m = mixed_file(sqlite_db, tmp_path)
    before = count(sqlite_db, BudgetLine)
    result = run(sqlite_db, m.path, "valid-rows")
    assert (result.status, result.total, result.inserted, result.updated, result.unchanged,
            result.rejected) == (ImportStatus.COMPLETED, 18, 1, 1, 1, 15)  # fmt: skip
    check_errors([(e.row, e.field, e.message, e.value) for e in result.errors], m)
    check_errors(stored_errors(sqlite_db, result.batch_id), m)
    assert count(sqlite_db, BudgetLine) == before + 1
    new, changed = m.new, m.changed
    assert amount_of(sqlite_db, new.pe, new.symbol, 2028, 2027, "plan") == Decimal("1234.567")
    assert (
        amount_of(
            sqlite_db, changed.pe, changed.symbol, changed.fiscal_year, changed.budget_year, "plan"
        )
        == changed.amount + 1
    )
    with sqlite_db.session() as session:
        batch = session.get_one(ImportBatch, result.batch_id)
        assert (batch.status, batch.mode, batch.rows_total, batch.rows_invalid,
                batch.rows_inserted, batch.rows_updated, batch.rows_unchanged) == (
            ImportStatus.COMPLETED, ImportMode.VALID_ROWS, 18, 15, 1, 1, 1)  # fmt: skip
        assert batch.finished_at is not None


def test_all_or_nothing_writes_nothing_and_reports_each_bad_row(
    sqlite_db: Database, tmp_path: Path
) -> None:
    m = mixed_file(sqlite_db, tmp_path)
    before = dump(sqlite_db)
    result = run(sqlite_db, m.path, "all-or-nothing")
    assert dump(sqlite_db) == before
    assert (result.status, result.total, result.inserted, result.updated, result.unchanged,
            result.rejected) == (ImportStatus.REJECTED, 18, 0, 0, 0, 15)  # fmt: skip
    check_errors([(e.row, e.field, e.message, e.value) for e in result.errors], m)
    check_errors(stored_errors(sqlite_db, result.batch_id), m)


def test_all_or_nothing_writes_a_clean_file(sqlite_db: Database, tmp_path: Path) -> None:
    same, changed = plan_lines(sqlite_db)[:2]
    path = write_csv(tmp_path / "ok.csv", [same.row(), changed.row("0.001")])
    result = run(sqlite_db, path, "all-or-nothing")
    assert (result.status, result.updated, result.unchanged, result.errors) == (
        ImportStatus.COMPLETED, 1, 1, [])  # fmt: skip
    assert amount_of(sqlite_db, changed.pe, changed.symbol, 2027, 2026, "plan") == Decimal("0.001")


def test_importing_the_same_file_again_changes_nothing(sqlite_db: Database, tmp_path: Path) -> None:
    m = mixed_file(sqlite_db, tmp_path)
    first = run(sqlite_db, m.path, "valid-rows", import_id="first")
    after_first = dump(sqlite_db)
    second = run(sqlite_db, m.path, "valid-rows", import_id="second")
    assert dump(sqlite_db) == after_first
    assert (first.inserted, first.updated, first.unchanged) == (1, 1, 1)
    assert (second.inserted, second.updated, second.unchanged, second.rejected) == (0, 0, 3, 15)
    assert not second.replayed
    assert second.batch_id != first.batch_id


def test_a_finished_import_id_returns_its_outcome(sqlite_db: Database, tmp_path: Path) -> None:
    m = mixed_file(sqlite_db, tmp_path)
    first = run(sqlite_db, m.path, "valid-rows", import_id="once")
    state = (dump(sqlite_db), count(sqlite_db, ImportBatch), count(sqlite_db, ImportRowError),
             count(sqlite_db, AuditLog))  # fmt: skip
    again = run(sqlite_db, m.path, "valid-rows", import_id="once")
    assert again.replayed
    assert again.as_dict() == {**first.as_dict(), "replayed": True}
    assert (dump(sqlite_db), count(sqlite_db, ImportBatch), count(sqlite_db, ImportRowError),
            count(sqlite_db, AuditLog)) == state  # fmt: skip
    # Without an import id the file's checksum, target and mode identify the import.
    anonymous = run(sqlite_db, m.path, "all-or-nothing", import_id=None)
    assert not anonymous.replayed
    again = run(sqlite_db, m.path, "all-or-nothing", import_id=None)
    assert again == replace(anonymous, replayed=True)


def test_an_import_id_cannot_be_reused_for_another_file(
    sqlite_db: Database, tmp_path: Path
) -> None:
    same = plan_lines(sqlite_db)[0]
    run(sqlite_db, write_csv(tmp_path / "a.csv", [same.row()]), "valid-rows", import_id="x")
    other = write_csv(tmp_path / "b.csv", [same.row("5.000")])
    with pytest.raises(InvalidRequestError, match="'x' was already used for another file") as e:
        run(sqlite_db, other, "valid-rows", import_id="x")
    assert e.value.field == "importId"


def test_xlsx_numbers_text_and_header_aliases(sqlite_db: Database, tmp_path: Path) -> None:
    same = plan_lines(sqlite_db)[0]
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["PE", "Organization", "Appropriation Symbol", "FY", "Budget Year", "Kind",
                  "Amount"])  # fmt: skip
    sheet.append([same.pe, "ignored", same.symbol, 2028, 2027, "plan", 1234.567])
    sheet.append([same.pe, None, same.symbol, "FY2029", "FY27", "PLAN", 5000])
    sheet.append([same.pe, None, same.symbol, 2030.0, 2027, "plan", 1234.5678])
    sheet.append([None, None, None, None, None, None, None])
    sheet.append([same.pe, None, same.symbol, 2031, 2027, "plan", "987654.321"])
    path = tmp_path / "lines.xlsx"
    book.save(path)
    result = import_data(
        sqlite_db, ImportRequest.from_data({"importId": "x1", "path": str(path),
                                            "mode": "valid-rows"})
    )  # fmt: skip
    assert (result.total, result.inserted, result.rejected) == (4, 3, 1)
    [error] = result.errors
    assert (error.row, error.field, error.value) == (3, "amount_k", "1234.5678")
    assert "more than 3 decimal places" in error.message
    assert amount_of(sqlite_db, same.pe, same.symbol, 2028, 2027, "plan") == Decimal("1234.567")
    assert amount_of(sqlite_db, same.pe, same.symbol, 2029, 2027, "plan") == Decimal("5000")
    assert amount_of(sqlite_db, same.pe, same.symbol, 2031, 2027, "plan") == Decimal("987654.321")


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("1234.567", Decimal("1234.567")),
        ("0.001", Decimal("0.001")),
        (" +42.5 ", Decimal("42.500")),
        ("1.2500", Decimal("1.250")),
        ("999999999999.999", Decimal("999999999999.999")),  # the 15 digits SQLite keeps
    ],
)
def test_amounts_are_stored_exactly(
    sqlite_db: Database, tmp_path: Path, text: str, stored: Decimal
) -> None:
    same = plan_lines(sqlite_db)[0]
    run(sqlite_db, write_csv(tmp_path / "a.csv", [same.row(text)]), "all-or-nothing")
    value = amount_of(sqlite_db, same.pe, same.symbol, same.fiscal_year, same.budget_year, "plan")
    assert value == stored
    assert str(value) == f"{stored:f}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,234.5", "not a decimal amount"),
        ("NaN", "not a decimal amount"),
        ("1e3", "not a decimal amount"),
        ("0x10", "not a decimal amount"),
        ("1000000000000", "too large"),  # more digits than SQLite keeps exactly
    ],
)
def test_amounts_that_are_not_exact_decimals_are_refused(
    sqlite_db: Database, tmp_path: Path, text: str, message: str
) -> None:
    same = plan_lines(sqlite_db)[0]
    result = run(sqlite_db, write_csv(tmp_path / "a.csv", [same.row(text)]), "valid-rows")
    [error] = result.errors
    assert (error.field, error.value) == ("amount_k", text)
    assert message in error.message


def test_negative_amounts_only_when_allowed(sqlite_db: Database, tmp_path: Path) -> None:
    same = plan_lines(sqlite_db)[0]
    path = write_csv(tmp_path / "a.csv", [same.row("-12.5")])
    data = {"path": str(path), "mode": "all-or-nothing", "allowNegative": True}
    result = import_data(sqlite_db, ImportRequest.from_data(data))
    assert (result.status, result.updated) == (ImportStatus.COMPLETED, 1)
    assert amount_of(sqlite_db, same.pe, same.symbol, 2027, 2026, "plan") == Decimal("-12.500")


def test_a_missing_file_is_a_permanent_error(sqlite_db: Database, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="does not exist"):
        run(sqlite_db, tmp_path / "nope.csv", "valid-rows")
    assert count(sqlite_db, ImportBatch) == 0


def test_missing_columns_fail_the_batch_with_the_reason(
    sqlite_db: Database, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "a.csv", [["0603502N", "x"]], header=["pe", "Appropriation"])
    with pytest.raises(ImportFileError, match=r"missing column\(s\) fiscal_year, budget_year"):
        run(sqlite_db, path, "valid-rows")
    with sqlite_db.session() as session:
        batch = session.scalars(select(ImportBatch)).one()
        assert batch.status == ImportStatus.FAILED
        assert [(e.row_number, e.field) for e in batch.errors] == [(0, None)]
        assert "missing column(s)" in batch.errors[0].message


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"path": "x.txt"}, "format"),
        ({"path": "x.csv", "format": "ods"}, "format"),
        ({"path": "x.csv", "mode": "some"}, "mode"),
        ({"path": "x.csv", "target": "execution"}, "target"),
        ({"path": "x.csv", "importId": "a/b"}, "importId"),
        ({"path": ""}, "path"),
        ({"path": "x.csv", "allowNegative": "yes"}, "allowNegative"),
    ],
)
def test_invalid_requests_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        ImportRequest.from_data(data)
    assert caught.value.field == field


def test_format_follows_the_suffix_and_mode_defaults_to_all_or_nothing() -> None:
    req = ImportRequest.from_data({"path": "/data/Lines.XLSX"})
    assert (req.format.value, req.mode, req.import_id) == ("xlsx", ImportMode.ALL_OR_NOTHING, None)


def test_an_export_imports_back_unchanged(sqlite_db: Database, tmp_path: Path) -> None:
    exported = export_data(
        sqlite_db,
        tmp_path,
        ExportRequest.from_data({"exportId": "all", "dataset": "line-items", "format": "csv"}),
    )
    before = dump(sqlite_db)
    progress: list[int] = []
    result = import_data(
        sqlite_db, ImportRequest.from_data({"path": str(exported.path)}), progress.append
    )
    assert (result.inserted, result.updated, result.unchanged, result.rejected) == (0, 0, 1144, 0)
    assert dump(sqlite_db) == before
    assert progress == sorted(set(progress))
    assert progress[-1] == 100


def test_on_postgresql(pg_db: Database, tmp_path: Path) -> None:
    seed(pg_db, scale="small")
    same = plan_lines(pg_db)[0]
    new = Line(same.pe, same.symbol, same.color, 2028, 2027, "plan", Decimal(0))
    path = write_csv(
        tmp_path / "pg.csv", [same.row("1234.567"), new.row("123456789012345.678"), ["bad"]]
    )
    first = run(pg_db, path, "valid-rows", import_id="pg-1")
    assert (first.inserted, first.updated, first.rejected) == (1, 1, 1)
    assert amount_of(pg_db, same.pe, same.symbol, 2027, 2026, "plan") == Decimal("1234.567")
    big = amount_of(pg_db, new.pe, new.symbol, 2028, 2027, "plan")
    assert big == Decimal("123456789012345.678")  # 18 digits: PostgreSQL keeps them all
    before = dump(pg_db)
    second = run(pg_db, path, "valid-rows", import_id="pg-2")
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 2)
    assert dump(pg_db) == before


# --------------------------------------------------------------------------- real workers


@pytest.fixture
async def manager(redis_url: str) -> AsyncIterator[QueueManager]:
    # No dead-letter queue: a job that failed for good stays in its queue to be looked at.
    async with QueueManager(load_settings({}), connection=redis_url, dead_letter_queue=None) as m:
        yield m


async def start(manager: QueueManager, database: Database, tmp_path: Path) -> str:
    services = Services(database=database, output_dir=tmp_path, smtp=None, manager=manager)
    queue = f"{imports.QUEUE}-{uuid.uuid4().hex[:8]}"
    manager.register_processor(queue, functools.partial(imports.process, services=services))
    await manager.start_workers()
    return queue


async def test_import_job_through_a_worker(
    manager: QueueManager, sqlite_db: Database, tmp_path: Path
) -> None:
    m = mixed_file(sqlite_db, tmp_path)
    queue = await start(manager, sqlite_db, tmp_path)
    job = await manager.add_job(
        queue, "import-data", {"importId": "w-1", "path": str(m.path), "mode": "valid-rows"}
    )
    result = await job.wait_until_finished(timeout=30)
    assert {k: result[k] for k in ("importId", "status", "inserted", "updated", "unchanged",
                                   "rejected", "total", "replayed")} == {
        "importId": "w-1", "status": "completed", "inserted": 1, "updated": 1, "unchanged": 1,
        "rejected": 15, "total": 18, "replayed": False,
    }  # fmt: skip
    check_errors([(e["row"], e["field"], e["message"], e["value"]) for e in result["errors"]], m)
    done = await job.refresh()
    assert done.progress == 100
    assert any(
        "1 inserted, 1 updated, 1 unchanged, 15 rejected" in x for x in await done.get_logs()
    )

    missing = await manager.add_job(
        queue, "import-data", {"importId": "w-2", "path": str(tmp_path / "gone.csv")},
        {"attempts": 3},
    )  # fmt: skip
    with pytest.raises(JobFailedError, match=r"gone.csv does not exist"):
        await missing.wait_until_finished(timeout=30)
    assert (await missing.refresh()).attempts_made == 1  # permanent: not retried


async def test_a_database_error_is_retried(manager: QueueManager, tmp_path: Path) -> None:
    broken = Database(tmp_path / "no-tables.sqlite3")  # no tables: every query fails
    path = write_csv(tmp_path / "a.csv", [["0603502N", "017-1319", "2026", "2026", "plan", "1"]])
    queue = await start(manager, broken, tmp_path)
    job = await manager.add_job(
        queue, "import-data", {"importId": "r-1", "path": str(path)},
        {"attempts": 2, "backoff": {"type": "fixed", "delay": 10}},
    )  # fmt: skip
    with pytest.raises(JobFailedError, match="no such table"):
        await job.wait_until_finished(timeout=30)
    assert (await job.refresh()).attempts_made == 2
    broken.dispose()


def test_contract() -> None:
    assert {"queue": imports.QUEUE, "names": imports.JOB_NAMES} == {
        "queue": "imports",
        "names": ("import-data",),
    }
