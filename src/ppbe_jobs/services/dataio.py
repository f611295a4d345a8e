"""Data export and import: budget figures out to CSV, XLSX or JSONL files, and budget lines in.

Export (:func:`export_data`) streams rows from the database in batches
(``yield_per``; a server-side cursor on PostgreSQL) straight into the file, so
memory stays flat however many rows there are, and moves the finished file
over ``<output_dir>/exports/<exportId>.<ext>`` in one step (a rerun replaces
it). Amounts keep their three decimals: text in CSV and JSONL, numbers in XLSX
(as text past the 15 digits a spreadsheet keeps).

Import (:func:`import_data`) reads a CSV or XLSX file of budget lines row by
row, checks every field, and upserts on the line's natural key (program
element, appropriation, fiscal year, budget year, kind), counting inserted,
updated and unchanged lines. ``all-or-nothing`` writes nothing if any row is
refused (the batch is ``rejected``); ``valid-rows`` writes the others. Every
refused row is kept as an :class:`~ppbe_jobs.db.ImportRowError` of the
:class:`~ppbe_jobs.db.ImportBatch`. An import id that already completed (or,
without an import id, the same file, target and mode) returns the recorded
outcome instead of running again. (:class:`~ppbe_jobs.db.ImportBatch` has no
column for the caller's import id, so the ``import`` row of the audit log
links the id to its batch.)

Problems retrying cannot fix raise :class:`DataIOError`; database errors
propagate unchanged, since a retry may well succeed.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import enum
import hashlib
import io
import json
import re
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Select, func, insert, select, tuple_, update
from sqlalchemy.orm import Session

from ppbe_jobs.db import (
    AppropriationAccount,
    AuditLog,
    BudgetKind,
    BudgetLine,
    ColorOfMoney,
    Database,
    FiscalYear,
    ImportBatch,
    ImportMode,
    ImportRowError,
    ImportStatus,
    InvalidProgramElementCodeError,
    MonthlyExecution,
    Organization,
    ProgramElement,
    parse_fiscal_year,
    utcnow,
    validate_pe_code,
)
from ppbe_jobs.db.types import SQLITE_EXACT_DIGITS, Money
from ppbe_jobs.render.output import ProgressCallback, ReportFormat, write_atomically

__all__ = [
    "BUDGET_LINE_COLUMNS",
    "DataIOError",
    "ExportDataset",
    "ExportFormat",
    "ExportRequest",
    "ExportResult",
    "ImportFileError",
    "ImportFormat",
    "ImportRequest",
    "ImportResult",
    "InvalidRequestError",
    "ProgressThrottle",
    "RowError",
    "export_data",
    "import_data",
    "progress_from_thread",
]

_E = TypeVar("_E", bound=enum.StrEnum)
_Batches = Iterator[Sequence[Sequence[Any]]]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_AMOUNT = re.compile(r"^[+-]?\d+(?:\.\d+)?$")
_MILLI = Decimal("0.001")
_XLSX_EXACT_DIGITS = 15  # a spreadsheet number is a double: 15 significant digits survive
_XLSX_MAX_ROWS = 1_048_576
_XLSX_EPOCH = datetime(2000, 1, 1)  # any fixed time; see _write_xlsx
_BATCH = 1000
_WRITE_BATCH = 500
_MAX_VALUE_CHARS = 200
RESULT_ERRORS = 50
"""How many row errors a result carries (all of them are stored with the batch)."""


class DataIOError(Exception):
    """A permanent problem with an export or import request or its file: a retry cannot help."""


class InvalidRequestError(DataIOError, ValueError):
    """A request field is missing or wrong; :attr:`field` names it (``filters.fiscalYear``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ImportFileError(DataIOError):
    """The import file is missing, unreadable, or not shaped like the target's rows."""


# --------------------------------------------------------------------------- progress


class ProgressThrottle:
    """Turns "done of total" into whole percentages, reported sparingly.

    A new percentage goes to ``callback`` once ``min_interval`` seconds have
    passed since the last report or it is ``min_step`` points higher, never
    per row; :meth:`finish` reports 100.
    """

    def __init__(
        self,
        callback: ProgressCallback | None,
        *,
        min_interval: float = 1.0,
        min_step: int = 10,
    ) -> None:
        self._callback = callback
        self._interval = min_interval
        self._step = min_step
        self._last = -1
        self._last_at = time.monotonic()

    def fraction(self, value: float) -> None:
        """Report ``value`` (0.0 to 1.0) if it is due."""
        if self._callback is None:
            return
        percent = max(0, min(99, int(value * 100)))
        if percent <= self._last:
            return
        now = time.monotonic()
        if percent - self._last >= self._step or now - self._last_at >= self._interval:
            self._last, self._last_at = percent, now
            self._callback(percent)

    def finish(self) -> None:
        """Report 100."""
        if self._callback is not None and self._last < 100:
            self._last = 100
            self._callback(100)


def progress_from_thread(
    loop: asyncio.AbstractEventLoop, report: Callable[[int], Coroutine[Any, Any, None]]
) -> ProgressCallback:
    """A callback for worker threads that runs ``report(percent)`` on ``loop`` and waits for it.

    Waiting lets a failed report (a job whose lease was lost, say) stop the work.
    """

    def callback(percent: int) -> None:
        asyncio.run_coroutine_threadsafe(report(percent), loop).result()

    return callback


# --------------------------------------------------------------------------- request parsing


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _required_text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequestError(key, f"required text, got {value!r}")
    return value.strip()


def _identifier(data: Mapping[str, Any], key: str) -> str:
    value = _required_text(data, key)
    if not _ID.match(value):
        raise InvalidRequestError(
            key,
            f"{value!r} must be 1-128 letters, digits, '.', '_' or '-' (it names a file "
            "and a record)",
        )
    return value


def _choice(data: Mapping[str, Any], key: str, enum_cls: type[_E], default: _E | None = None) -> _E:
    value: Any = data.get(key)
    if value is None and default is not None:
        return default
    try:
        return enum_cls(value)
    except (ValueError, TypeError):
        accepted = ", ".join(m.value for m in enum_cls)
        raise InvalidRequestError(key, f"{value!r} is not one of {accepted}") from None


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else [value]


class ExportDataset(enum.StrEnum):
    """What an export holds."""

    LINE_ITEMS = "line-items"
    EXECUTION = "execution"
    PROGRAM_ELEMENTS = "program-elements"


class ExportFormat(enum.StrEnum):
    """The file format of an export; the value is the file suffix."""

    CSV = "csv"
    XLSX = "xlsx"
    JSONL = "jsonl"


_FILTERS: dict[ExportDataset, frozenset[str]] = {
    ExportDataset.LINE_ITEMS: frozenset(
        {
            "fiscal_year",
            "budget_year",
            "kind",
            "color",
            "appropriation",
            "organization",
            "program_element",
        }
    ),
    ExportDataset.EXECUTION: frozenset(
        {"fiscal_year", "color", "appropriation", "organization", "program_element"}
    ),
    ExportDataset.PROGRAM_ELEMENTS: frozenset({"organization", "program_element"}),
}


def _parse_filter(name: str, where: str, raw: object) -> tuple[Any, ...]:
    values = _as_list(raw)
    out: list[Any] = []
    for value in values:
        try:
            if name in ("fiscal_year", "budget_year"):
                if not isinstance(value, int | str):
                    raise ValueError(f"not a fiscal year: {value!r}")
                out.append(parse_fiscal_year(value))
            elif name == "kind":
                out.append(BudgetKind(str(value).strip().lower()))
            elif name == "color":
                out.append(ColorOfMoney.parse(str(value)))
            elif name == "program_element":
                out.append(validate_pe_code(str(value)))
            elif not isinstance(value, str) or not value.strip():
                raise ValueError(f"expected text, got {value!r}")
            else:
                out.append(value.strip())
        except (ValueError, TypeError) as exc:
            raise InvalidRequestError(where, str(exc)) from None
    if not out:
        raise InvalidRequestError(where, "an empty list matches nothing; leave the filter out")
    return tuple(out)


@dataclass(frozen=True, kw_only=True, slots=True)
class ExportRequest:
    """A checked export request: which rows (``filters``, by snake_case name) into which file."""

    export_id: str
    dataset: ExportDataset
    format: ExportFormat
    filters: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ExportRequest:
        """Parse job data ``{"exportId", "dataset", "format", "filters"}`` (camelCase or snake).

        Raises :class:`InvalidRequestError` naming the field at fault.
        """
        if not isinstance(data, Mapping):
            raise InvalidRequestError("data", f"expected an object, got {type(data).__name__}")
        export_id = _identifier(data, "exportId")
        dataset = _choice(data, "dataset", ExportDataset)
        fmt = _choice(data, "format", ExportFormat)
        raw_filters = data.get("filters") or {}
        if not isinstance(raw_filters, Mapping):
            raise InvalidRequestError("filters", "expected an object such as {fiscalYear: 2026}")
        allowed = _FILTERS[dataset]
        filters: dict[str, tuple[Any, ...]] = {}
        for key, raw in raw_filters.items():
            name = _snake(str(key))
            if name not in allowed:
                names = ", ".join(
                    sorted(re.sub(r"_(.)", lambda m: m[1].upper(), n) for n in allowed)
                )
                raise InvalidRequestError(
                    f"filters.{key}", f"not a filter of {dataset.value} (filters: {names})"
                )
            if raw is not None:
                filters[name] = _parse_filter(name, f"filters.{key}", raw)
        return cls(export_id=export_id, dataset=dataset, format=fmt, filters=filters)


@dataclass(frozen=True, kw_only=True, slots=True)
class ExportResult:
    """A finished export: where the file is, how many rows, its SHA-256 and size."""

    export_id: str
    dataset: ExportDataset
    format: ExportFormat
    path: Path
    rows: int
    checksum: str
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        """The job result: exportId, filePath, rows, checksum, bytes, format, dataset."""
        return {
            "exportId": self.export_id,
            "filePath": str(self.path),
            "rows": self.rows,
            "checksum": self.checksum,
            "bytes": self.bytes,
            "format": self.format.value,
            "dataset": self.dataset.value,
        }


# --------------------------------------------------------------------------- export


class _Col(enum.Enum):
    TEXT = "text"
    INT = "int"
    MONEY = "money"
    DATE = "date"


_PE, _ORG, _ACCT = ProgramElement, Organization, AppropriationAccount

_LINE_ITEMS: Sequence[tuple[str, _Col, Any]] = (
    ("program_element", _Col.TEXT, _PE.code),
    ("organization", _Col.TEXT, _ORG.code),
    ("appropriation", _Col.TEXT, _ACCT.symbol),
    ("color", _Col.TEXT, _ACCT.color),
    ("budget_year", _Col.INT, BudgetLine.budget_year),
    ("fiscal_year", _Col.INT, BudgetLine.fiscal_year),
    ("kind", _Col.TEXT, BudgetLine.kind),
    ("amount_k", _Col.MONEY, BudgetLine.amount_k),
)
_EXECUTION: Sequence[tuple[str, _Col, Any]] = (
    ("program_element", _Col.TEXT, _PE.code),
    ("organization", _Col.TEXT, _ORG.code),
    ("appropriation", _Col.TEXT, _ACCT.symbol),
    ("color", _Col.TEXT, _ACCT.color),
    ("fiscal_year", _Col.INT, MonthlyExecution.fiscal_year),
    ("month", _Col.DATE, MonthlyExecution.month),
    ("fiscal_month", _Col.INT, MonthlyExecution.fiscal_month),
    ("cumulative_obligations_k", _Col.MONEY, MonthlyExecution.cumulative_obligations_k),
    ("cumulative_expenditures_k", _Col.MONEY, MonthlyExecution.cumulative_expenditures_k),
)
_PROGRAM_ELEMENTS: Sequence[tuple[str, _Col, Any]] = (
    ("program_element", _Col.TEXT, _PE.code),
    ("title", _Col.TEXT, _PE.title),
    ("organization", _Col.TEXT, _ORG.code),
    ("service", _Col.TEXT, _ORG.service),
    ("budget_activity", _Col.INT, _PE.budget_activity),
)

BUDGET_LINE_COLUMNS = tuple(name for name, _, _ in _LINE_ITEMS)
"""Columns of a line-items export; an import of budget lines reads the same file back."""


def _export_query(request: ExportRequest) -> tuple[Sequence[tuple[str, _Col, Any]], Select[Any]]:
    f = request.filters
    if request.dataset is ExportDataset.PROGRAM_ELEMENTS:
        columns = _PROGRAM_ELEMENTS
        stmt = select(*(c for _, _, c in columns)).join(_ORG, _PE.organization_id == _ORG.id)
        order = _PE.id
    else:
        table: Any = BudgetLine if request.dataset is ExportDataset.LINE_ITEMS else MonthlyExecution
        columns = _LINE_ITEMS if table is BudgetLine else _EXECUTION
        stmt = (
            select(*(c for _, _, c in columns))
            .select_from(table)
            .join(_PE, table.program_element_id == _PE.id)
            .join(_ORG, _PE.organization_id == _ORG.id)
            .join(_ACCT, table.appropriation_id == _ACCT.id)
        )
        order = table.id
        for name, column in (
            ("fiscal_year", table.fiscal_year),
            ("color", _ACCT.color),
            ("appropriation", _ACCT.symbol),
        ):
            if name in f:
                stmt = stmt.where(column.in_(f[name]))
        if table is BudgetLine:
            if "budget_year" in f:
                stmt = stmt.where(BudgetLine.budget_year.in_(f["budget_year"]))
            if "kind" in f:
                stmt = stmt.where(BudgetLine.kind.in_(f["kind"]))
    if "organization" in f:
        stmt = stmt.where(_ORG.code.in_(f["organization"]))
    if "program_element" in f:
        stmt = stmt.where(_PE.code.in_(f["program_element"]))
    return columns, stmt.order_by(order)


def _money_text(value: Decimal) -> str:
    return format(value, "f")  # never an exponent; the column's three decimals kept


def _converters(kinds: Sequence[_Col]) -> list[Callable[[Any], Any]]:
    """Per column: the value as CSV/JSON wants it (Decimal and date as text, None kept)."""

    def text(value: Any) -> Any:
        return None if value is None else str(value)

    def money(value: Any) -> Any:
        return None if value is None else _money_text(value)

    def day(value: Any) -> Any:
        return None if value is None else value.isoformat()

    def same(value: Any) -> Any:
        return value

    table = {_Col.TEXT: text, _Col.MONEY: money, _Col.DATE: day, _Col.INT: same}
    return [table[k] for k in kinds]


def _write_csv(path: Path, header: Sequence[str], kinds: Sequence[_Col], batches: _Batches) -> int:
    rows = 0
    convert = _converters(kinds)
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        for batch in batches:
            # csv writes None as an empty field
            writer.writerows([f(v) for f, v in zip(convert, row, strict=True)] for row in batch)
            rows += len(batch)
    return rows


def _write_jsonl(
    path: Path, header: Sequence[str], kinds: Sequence[_Col], batches: _Batches
) -> int:
    rows = 0
    convert = list(zip(header, _converters(kinds), strict=True))
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for batch in batches:
            out.writelines(
                dumps({name: f(v) for (name, f), v in zip(convert, row, strict=True)}) + "\n"
                for row in batch
            )
            rows += len(batch)
    return rows


def _write_xlsx(
    path: Path, header: Sequence[str], kinds: Sequence[_Col], batches: _Batches, sheet: str
) -> int:
    import xlsxwriter  # heavy; only XLSX needs it

    book = xlsxwriter.Workbook(
        str(path),
        {
            "constant_memory": True,
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
        },
    )
    # A fixed creation time: the same rows give the same bytes, and so the same checksum.
    book.set_properties({"created": _XLSX_EPOCH})
    bold = book.add_format({"bold": True})
    formats = {
        _Col.MONEY: book.add_format({"num_format": "#,##0.000"}),
        _Col.DATE: book.add_format({"num_format": "yyyy-mm-dd"}),
        _Col.INT: None,
        _Col.TEXT: None,
    }
    limit = 10**_XLSX_EXACT_DIGITS
    rows = 0
    sheets = 0
    ws: Any = None
    r = _XLSX_MAX_ROWS
    try:
        for batch in batches:
            for row in batch:
                if r >= _XLSX_MAX_ROWS:  # a sheet is full: go on in the next one
                    sheets += 1
                    ws = book.add_worksheet(sheet if sheets == 1 else f"{sheet} ({sheets})")
                    ws.write_row(0, 0, header, bold)
                    ws.freeze_panes(1, 0)
                    r = 1
                for c, (kind, value) in enumerate(zip(kinds, row, strict=True)):
                    if value is None:
                        continue
                    if kind is _Col.MONEY:
                        digits = value.scaleb(3).copy_abs()
                        if digits < limit:
                            ws.write_number(r, c, float(value), formats[kind])
                        else:
                            ws.write_string(r, c, _money_text(value))
                    elif kind is _Col.INT:
                        ws.write_number(r, c, value)
                    elif kind is _Col.DATE:
                        ws.write_datetime(r, c, value, formats[kind])
                    else:
                        ws.write_string(r, c, str(value))
                r += 1
            rows += len(batch)
        if ws is None:
            ws = book.add_worksheet(sheet)
            ws.write_row(0, 0, header, bold)
    finally:
        book.close()
    return rows


def export_data(
    database: Database,
    output_dir: str | Path,
    request: ExportRequest,
    progress: ProgressCallback | None = None,
) -> ExportResult:
    """Write ``request``'s rows to ``output_dir/exports/<exportId>.<format>``, atomically.

    Rows are read ``yield_per`` 1,000 and written as they come, so memory does
    not grow with the row count. ``progress`` receives whole percentages
    (sparingly, see :class:`ProgressThrottle`), 100 when the file is in place.
    """
    columns, stmt = _export_query(request)
    header = [name for name, _, _ in columns]
    kinds = [kind for _, kind, _ in columns]
    target = Path(output_dir) / "exports" / f"{request.export_id}.{request.format.value}"
    throttle = ProgressThrottle(progress)
    with database.session() as session:
        total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))

        def batches() -> _Batches:
            done = 0
            result = session.execute(stmt.execution_options(yield_per=_BATCH))
            for batch in result.partitions():
                yield batch
                done += len(batch)
                throttle.fraction(done / total if total else 1.0)

        written = 0

        def render(tmp: Path) -> None:
            nonlocal written
            if request.format is ExportFormat.CSV:
                written = _write_csv(tmp, header, kinds, batches())
            elif request.format is ExportFormat.JSONL:
                written = _write_jsonl(tmp, header, kinds, batches())
            else:
                written = _write_xlsx(tmp, header, kinds, batches(), request.dataset.value)

        # RenderedFile's format label is a report's; an export reports its own format.
        label = ReportFormat.XLSX if request.format is ExportFormat.XLSX else ReportFormat.CSV
        rendered = write_atomically(target, label, render)
    throttle.finish()
    return ExportResult(
        export_id=request.export_id,
        dataset=request.dataset,
        format=request.format,
        path=rendered.path,
        rows=written,
        checksum=rendered.sha256,
        bytes=rendered.bytes,
    )


# --------------------------------------------------------------------------- import requests


class ImportFormat(enum.StrEnum):
    """The file formats an import reads."""

    CSV = "csv"
    XLSX = "xlsx"


_SUFFIXES = {".csv": ImportFormat.CSV, ".xlsx": ImportFormat.XLSX, ".xlsm": ImportFormat.XLSX}
_TARGETS = ("budget-lines",)


@dataclass(frozen=True, kw_only=True, slots=True)
class ImportRequest:
    """A checked import request.

    ``import_id`` is the idempotency key (None: the file's checksum, target and
    mode are); ``allow_negative`` accepts negative amounts (reductions).
    """

    import_id: str | None
    path: Path
    format: ImportFormat
    mode: ImportMode
    target: str = "budget-lines"
    allow_negative: bool = False
    requested_by: str | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ImportRequest:
        """Parse job data ``{"importId", "path", "format", "mode", "target", ...}``.

        ``format`` defaults to the file's suffix, ``mode`` to ``all-or-nothing``.
        Raises :class:`InvalidRequestError` naming the field at fault.
        """
        if not isinstance(data, Mapping):
            raise InvalidRequestError("data", f"expected an object, got {type(data).__name__}")
        import_id = None if data.get("importId") is None else _identifier(data, "importId")
        path = Path(_required_text(data, "path"))
        if data.get("format") is None:
            fmt = _SUFFIXES.get(path.suffix.lower())
            if fmt is None:
                raise InvalidRequestError(
                    "format", f"cannot tell from {path.name!r}; give csv or xlsx"
                )
        else:
            fmt = _choice(data, "format", ImportFormat)
        target = data.get("target", "budget-lines")
        if target not in _TARGETS:
            raise InvalidRequestError("target", f"{target!r} is not one of {', '.join(_TARGETS)}")
        allow_negative = data.get("allowNegative", False)
        if not isinstance(allow_negative, bool):
            raise InvalidRequestError(
                "allowNegative", f"expected true or false, got {allow_negative!r}"
            )
        requested_by = data.get("requestedBy")
        if requested_by is not None and (
            not isinstance(requested_by, str) or len(requested_by) > 128
        ):
            raise InvalidRequestError(
                "requestedBy", f"expected text of at most 128 characters, got {requested_by!r}"
            )
        return cls(
            import_id=import_id,
            path=path,
            format=fmt,
            mode=_choice(data, "mode", ImportMode, ImportMode.ALL_OR_NOTHING),
            target=str(target),
            allow_negative=allow_negative,
            requested_by=requested_by,
        )


@dataclass(frozen=True, slots=True)
class RowError:
    """Why a row was refused: data row number (1 = first), column (None: the whole row)."""

    row: int
    field: str | None
    message: str
    value: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """``{"row", "field", "message", "value"}``."""
        return {"row": self.row, "field": self.field, "message": self.message, "value": self.value}


@dataclass(frozen=True, kw_only=True, slots=True)
class ImportResult:
    """The outcome of an import; ``replayed`` when it is a previous run's, returned again."""

    import_id: str | None
    batch_id: int
    status: ImportStatus
    total: int
    inserted: int
    updated: int
    unchanged: int
    rejected: int
    errors: list[RowError]
    replayed: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The job result; ``errors`` holds the first :data:`RESULT_ERRORS`."""
        return {
            "importId": self.import_id,
            "batchId": self.batch_id,
            "status": self.status.value,
            "total": self.total,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "errors": [e.as_dict() for e in self.errors],
            "replayed": self.replayed,
        }


# --------------------------------------------------------------------------- reading files

# Accepted header names, compared lower-case with everything but letters and digits dropped.
_HEADERS: dict[str, str] = {
    **dict.fromkeys(("programelement", "pe", "pecode", "programelementcode"), "program_element"),
    **dict.fromkeys(("appropriation", "appropriationsymbol", "account", "symbol"), "appropriation"),
    **dict.fromkeys(("fiscalyear", "fy"), "fiscal_year"),
    **dict.fromkeys(("budgetyear", "by"), "budget_year"),
    **dict.fromkeys(("kind", "budgetkind"), "kind"),
    **dict.fromkeys(("amountk", "amount", "amountthousands"), "amount_k"),
    **dict.fromkeys(("color", "colorofmoney"), "color"),
}
_REQUIRED = ("program_element", "appropriation", "fiscal_year", "budget_year", "kind", "amount_k")


@dataclass(slots=True)
class _Table:
    header: list[object]
    rows: Iterator[Sequence[object]]
    fraction: Callable[[], float]


@contextlib.contextmanager
def _open_csv(path: Path) -> Iterator[_Table]:
    size = max(path.stat().st_size, 1)
    with open(path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        reader = csv.reader(text)
        header = next(reader, None)
        if header is None:
            raise ImportFileError(f"{path}: the file is empty; the first row must name the columns")
        yield _Table(list(header), reader, lambda: raw.tell() / size)


@contextlib.contextmanager
def _open_xlsx(path: Path) -> Iterator[_Table]:
    import openpyxl  # heavy; only XLSX needs it

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # zip, XML and openpyxl's own errors all mean "not a workbook"
        raise ImportFileError(f"{path}: not a readable XLSX workbook ({exc})") from exc
    try:
        sheet = book.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            raise ImportFileError(
                f"{path}: the first sheet is empty; its first row must name the columns"
            )
        last = sheet.max_row if isinstance(sheet.max_row, int) and sheet.max_row > 1 else 0
        seen = 0

        def counted() -> Iterator[Sequence[object]]:
            nonlocal seen
            for row in rows:
                seen += 1
                yield row

        yield _Table(list(header), counted(), lambda: seen / last if last else 0.0)
    finally:
        book.close()


def _columns(path: Path, header: Sequence[object]) -> dict[str, int]:
    found: dict[str, int] = {}
    for index, name in enumerate(header):
        if name is None or not str(name).strip():
            continue
        key = _HEADERS.get(re.sub(r"[^a-z0-9]", "", str(name).lower()))
        if key is None:
            continue  # informational columns (organization, title...) are allowed and ignored
        if key in found:
            raise ImportFileError(
                f"{path}: two columns mean {key} ({header[found[key]]!r}, {name!r})"
            )
        found[key] = index
    missing = [c for c in _REQUIRED if c not in found]
    if missing:
        raise ImportFileError(
            f"{path}: missing column(s) {', '.join(missing)}; the first row must name "
            f"{', '.join(_REQUIRED)} (color optional; e.g. the columns of a line-items export)"
        )
    return found


# --------------------------------------------------------------------------- row checks


class _Line(NamedTuple):
    pe_id: int
    appropriation_id: int
    fiscal_year: int
    budget_year: int
    kind: BudgetKind
    amount: Decimal


class _Reference:
    """What rows are checked against: program elements, accounts, fiscal years."""

    def __init__(self, session: Session, dialect: str) -> None:
        self.pes: dict[str, int] = dict(session.execute(select(_PE.code, _PE.id)).all())
        self.accounts: dict[str, tuple[int, ColorOfMoney]] = {
            symbol: (id_, color)
            for symbol, id_, color in session.execute(select(_ACCT.symbol, _ACCT.id, _ACCT.color))
        }
        self.years = frozenset(session.scalars(select(FiscalYear.year)))
        digits = (
            Money.precision if dialect != "sqlite" else min(Money.precision, SQLITE_EXACT_DIGITS)
        )
        self.amount_limit = Decimal(10) ** (digits - Money.scale)


class _Bad(Exception):
    """One field of one row is wrong (the message says how)."""


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text_of(value: object) -> str | None:
    if value is None:
        return None
    return str(value)[:_MAX_VALUE_CHARS]


def _check_pe(value: object, ref: _Reference) -> int:
    try:
        code = validate_pe_code(str(value))
    except InvalidProgramElementCodeError as exc:
        raise _Bad(str(exc)) from None
    pe_id = ref.pes.get(code)
    if pe_id is None:
        raise _Bad(f"program element {code} does not exist")
    return pe_id


def _check_year(value: object, ref: _Reference) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int | str):
        raise _Bad(f"not a fiscal year: {value!r} (expected e.g. 2026 or FY2026)")
    try:
        year = parse_fiscal_year(value)
    except (ValueError, TypeError) as exc:
        raise _Bad(str(exc)) from None
    if year not in ref.years:
        known = f"FY{min(ref.years)}..FY{max(ref.years)}" if ref.years else "none"
        raise _Bad(f"FY{year} is not a fiscal year of the database ({known})")
    return year


def _check_kind(value: object) -> BudgetKind:
    try:
        return BudgetKind(str(value).strip().lower())
    except ValueError:
        kinds = ", ".join(k.value for k in BudgetKind)
        raise _Bad(f"unknown kind {value!r}; expected {kinds}") from None


def _check_amount(value: object, ref: _Reference, allow_negative: bool) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise _Bad(f"not an amount: {value!r}")
    if isinstance(value, float):
        # A spreadsheet number: its shortest decimal form is what the cell shows.
        number = Decimal(repr(value)) if value == value and abs(value) != float("inf") else None
        if number is None:
            raise _Bad(f"not an amount: {value!r}")
    elif isinstance(value, str):
        text = value.strip()
        if not _AMOUNT.match(text):
            raise _Bad(
                f"not a decimal amount: {value!r} (write digits with an optional point and up "
                "to 3 decimals, e.g. 1234.567; no exponent, no thousands separators)"
            )
        number = Decimal(text)
    else:
        number = Decimal(value)
    try:
        exact = number.quantize(_MILLI)
    except InvalidOperation:
        raise _Bad(f"amount {value!r} is too large") from None
    if exact != number:
        raise _Bad(
            f"amount {value!r} has more than 3 decimal places (amounts are thousands of "
            "dollars; 3 decimals are whole dollars)"
        )
    if exact < 0 and not allow_negative:
        raise _Bad(f"negative amount {value!r}; the import does not allow negative amounts")
    if abs(exact) >= ref.amount_limit:
        raise _Bad(f"amount {value!r} is too large (must be below {ref.amount_limit:,})")
    return exact + 0  # -0.000 -> 0.000


def _check_row(
    number: int, cells: Mapping[str, object], ref: _Reference, allow_negative: bool
) -> tuple[_Line | None, list[RowError]]:
    errors: list[RowError] = []
    values: dict[str, Any] = {}
    checks: dict[str, Callable[[object], Any]] = {
        "program_element": lambda v: _check_pe(v, ref),
        "appropriation": lambda v: ref.accounts.get(str(v).strip()) or _no_account(v),
        "fiscal_year": lambda v: _check_year(v, ref),
        "budget_year": lambda v: _check_year(v, ref),
        "kind": _check_kind,
        "amount_k": lambda v: _check_amount(v, ref, allow_negative),
    }
    for name, check in checks.items():
        raw = cells.get(name)
        if _blank(raw):
            errors.append(RowError(number, name, f"{name} is required", _text_of(raw)))
            continue
        try:
            values[name] = check(raw)
        except _Bad as exc:
            errors.append(RowError(number, name, str(exc), _text_of(raw)))
    color_raw = cells.get("color")
    if "appropriation" in values and not _blank(color_raw):
        try:
            color = ColorOfMoney.parse(str(color_raw))
        except ValueError as exc:
            errors.append(RowError(number, "color", str(exc), _text_of(color_raw)))
        else:
            if color is not values["appropriation"][1]:
                symbol = str(cells["appropriation"]).strip()
                errors.append(
                    RowError(
                        number,
                        "color",
                        f"appropriation {symbol} is {values['appropriation'][1].value}, "
                        f"not {color.value}",
                        _text_of(color_raw),
                    )
                )
    if {"fiscal_year", "budget_year", "kind"} <= values.keys():
        fy, by, kind = values["fiscal_year"], values["budget_year"], values["kind"]
        if kind is BudgetKind.ENACTED and fy != by:
            errors.append(
                RowError(
                    number,
                    "fiscal_year",
                    f"an enacted line is for its budget year (FY{by}), not FY{fy}",
                    _text_of(cells["fiscal_year"]),
                )
            )
        elif not by <= fy <= by + 4:
            errors.append(
                RowError(
                    number,
                    "fiscal_year",
                    f"FY{fy} is outside the FY{by} budget's FYDP (FY{by}..FY{by + 4})",
                    _text_of(cells["fiscal_year"]),
                )
            )
    if errors:
        return None, errors
    line = _Line(
        values["program_element"],
        values["appropriation"][0],
        values["fiscal_year"],
        values["budget_year"],
        values["kind"],
        values["amount_k"],
    )
    return line, []


def _no_account(value: object) -> Any:
    raise _Bad(f"appropriation account {str(value).strip()!r} does not exist")


# --------------------------------------------------------------------------- import run


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except FileNotFoundError:
        raise ImportFileError(f"import file {path} does not exist") from None
    except OSError as exc:
        raise ImportFileError(f"import file {path} cannot be read: {exc}") from None
    return digest.hexdigest()


def _outcome(
    session: Session, batch: ImportBatch, import_id: str | None, replayed: bool
) -> ImportResult:
    errors = session.scalars(
        select(ImportRowError)
        .where(ImportRowError.batch_id == batch.id)
        .order_by(ImportRowError.row_number, ImportRowError.id)
        .limit(RESULT_ERRORS)
    )
    return ImportResult(
        import_id=import_id,
        batch_id=batch.id,
        status=batch.status,
        total=batch.rows_total,
        inserted=batch.rows_inserted,
        updated=batch.rows_updated,
        unchanged=batch.rows_unchanged,
        rejected=batch.rows_invalid,
        errors=[RowError(e.row_number, e.field, e.message, e.value) for e in errors],
        replayed=replayed,
    )


_FINAL = (ImportStatus.COMPLETED, ImportStatus.REJECTED)
_AUDIT_ACTION = "import"


def _claim_batch(session: Session, request: ImportRequest, checksum: str) -> ImportResult | int:
    """The recorded outcome of this import if it finished, else the id of the batch to (re)run."""
    if request.import_id is not None:
        # ImportBatch has no column for the caller's id: the audit row of the import holds it.
        audit = session.scalars(
            select(AuditLog)
            .where(AuditLog.action == _AUDIT_ACTION, AuditLog.job_id == request.import_id)
            .order_by(AuditLog.id.desc())
            .limit(1)
        ).first()
        batch = None if audit is None else session.get(ImportBatch, audit.details.get("batchId"))
        if batch is not None:
            if batch.checksum != checksum:
                raise InvalidRequestError(
                    "importId",
                    f"{request.import_id!r} was already used for another file (batch "
                    f"{batch.id}, SHA-256 {batch.checksum[:12]}...); use a new import id",
                )
            if batch.status in _FINAL:
                return _outcome(session, batch, request.import_id, replayed=True)
            batch.errors.clear()  # an earlier attempt that did not finish: run it again
            batch.status = ImportStatus.RUNNING
            return batch.id
    else:
        previous = session.scalars(
            select(ImportBatch)
            .where(
                ImportBatch.checksum == checksum,
                ImportBatch.target == request.target,
                ImportBatch.mode == request.mode,
                ImportBatch.status.in_(_FINAL),
            )
            .order_by(ImportBatch.id.desc())
            .limit(1)
        ).first()
        if previous is not None:
            return _outcome(session, previous, None, replayed=True)
    batch = ImportBatch(
        filename=str(request.path)[-512:],
        checksum=checksum,
        mode=request.mode,
        target=request.target,
        status=ImportStatus.RUNNING,
        requested_by=request.requested_by,
    )
    session.add(batch)
    session.flush()
    if request.import_id is not None:
        session.add(
            AuditLog(
                actor=request.requested_by or "ppbe-jobs",
                action=_AUDIT_ACTION,
                job_id=request.import_id,
                job_name="import-data",
                details={
                    "batchId": batch.id,
                    "path": str(request.path),
                    "checksum": checksum,
                    "mode": request.mode.value,
                    "target": request.target,
                },
            )
        )
    return batch.id


@dataclass(slots=True)
class _Counts:
    total: int = 0
    rejected: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    first_errors: list[RowError] = field(default_factory=list)


def _upsert(session: Session, lines: list[_Line], counts: _Counts) -> None:
    bl = BudgetLine
    key_cols = (bl.program_element_id, bl.appropriation_id, bl.fiscal_year, bl.budget_year, bl.kind)
    existing = {
        (pe, acct, fy, by, kind): (id_, amount)
        for id_, pe, acct, fy, by, kind, amount in session.execute(
            select(bl.id, *key_cols, bl.amount_k).where(
                tuple_(*key_cols).in_([line[:5] for line in lines])
            )
        )
    }
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for line in lines:
        found = existing.get(line[:5])
        if found is None:
            inserts.append(
                {
                    "program_element_id": line.pe_id,
                    "appropriation_id": line.appropriation_id,
                    "fiscal_year": line.fiscal_year,
                    "budget_year": line.budget_year,
                    "kind": line.kind,
                    "amount_k": line.amount,
                }
            )
        elif found[1] == line.amount:
            counts.unchanged += 1
        else:
            updates.append({"id": found[0], "amount_k": line.amount})
    if inserts:
        session.execute(insert(BudgetLine), inserts)
    if updates:
        session.execute(update(BudgetLine), updates)
    counts.inserted += len(inserts)
    counts.updated += len(updates)
    lines.clear()


def _scan(
    session: Session,
    request: ImportRequest,
    batch_id: int,
    ref: _Reference,
    *,
    write: bool,
    record_errors: bool,
    progress: Callable[[float], None],
) -> _Counts:
    """One pass over the file: check every row; upsert the valid ones if ``write``."""
    counts = _Counts()
    seen: dict[tuple[Any, ...], int] = {}
    pending_lines: list[_Line] = []
    pending_errors: list[dict[str, Any]] = []
    opener = _open_csv if request.format is ImportFormat.CSV else _open_xlsx
    try:
        with opener(request.path) as table:
            columns = _columns(request.path, table.header)
            width = len(table.header)
            for number, row in enumerate(table.rows, start=1):
                if all(_blank(v) for v in row):
                    continue
                counts.total += 1
                cells = {name: (row[i] if i < len(row) else None) for name, i in columns.items()}
                line, errors = _check_row(number, cells, ref, request.allow_negative)
                if line is not None:
                    first = seen.setdefault(line[:5], number)
                    if first != number:
                        line, errors = (
                            None,
                            [
                                RowError(
                                    number,
                                    None,
                                    f"the same line as row "
                                    f"{first} (program element, appropriation, fiscal "
                                    "year, budget year and kind)",
                                )
                            ],
                        )
                if len(row) > width and not all(_blank(v) for v in row[width:]):
                    line = None
                    errors.append(
                        RowError(number, None, f"{len(row)} values but {width} column names")
                    )
                if errors:
                    counts.rejected += 1
                    for e in errors:
                        if len(counts.first_errors) < RESULT_ERRORS:
                            counts.first_errors.append(e)
                        if record_errors:
                            pending_errors.append(
                                {
                                    "batch_id": batch_id,
                                    "row_number": e.row,
                                    "field": e.field,
                                    "message": e.message,
                                    "value": e.value,
                                }
                            )
                    if len(pending_errors) >= _WRITE_BATCH:
                        session.execute(insert(ImportRowError), pending_errors)
                        pending_errors.clear()
                elif write and line is not None:
                    pending_lines.append(line)
                    if len(pending_lines) >= _WRITE_BATCH:
                        _upsert(session, pending_lines, counts)
                if number % _BATCH == 0:
                    progress(table.fraction())
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{request.path}: not UTF-8 text ({exc})") from None
    except csv.Error as exc:
        raise ImportFileError(f"{request.path}: not readable as CSV ({exc})") from None
    if pending_lines:
        _upsert(session, pending_lines, counts)
    if pending_errors:
        session.execute(insert(ImportRowError), pending_errors)
    return counts


def _finish(session: Session, batch_id: int, status: ImportStatus, counts: _Counts) -> ImportBatch:
    batch = session.get_one(ImportBatch, batch_id)
    batch.status = status
    batch.rows_total = counts.total
    batch.rows_invalid = counts.rejected
    batch.rows_inserted = counts.inserted
    batch.rows_updated = counts.updated
    batch.rows_unchanged = counts.unchanged
    batch.finished_at = utcnow()
    return batch


def _mark_failed(database: Database, batch_id: int, problem: DataIOError | None) -> None:
    with contextlib.suppress(Exception), database.session() as session:
        batch = session.get_one(ImportBatch, batch_id)
        batch.status = ImportStatus.FAILED
        batch.finished_at = utcnow()
        if problem is not None:  # row 0: the file as a whole
            session.add(ImportRowError(batch_id=batch_id, row_number=0, message=str(problem)))


def import_data(
    database: Database, request: ImportRequest, progress: ProgressCallback | None = None
) -> ImportResult:
    """Import ``request``'s file into the budget lines; see the module docstring.

    Valid-rows mode writes in one pass and one transaction; all-or-nothing
    checks the whole file first, then writes in a second pass. Raises
    :class:`ImportFileError` for a missing, unreadable or wrongly shaped file
    (the batch is then ``failed`` with the reason as its row-0 error) and
    :class:`InvalidRequestError` for an import id reused with another file.
    """
    checksum = _sha256(request.path)
    with database.session() as session:
        claimed = _claim_batch(session, request, checksum)
    if isinstance(claimed, ImportResult):
        return claimed
    batch_id = claimed
    throttle = ProgressThrottle(progress)
    try:
        with database.session() as session:
            ref = _Reference(session, database.dialect_name)
        all_or_nothing = request.mode is ImportMode.ALL_OR_NOTHING
        with database.session() as session:
            counts = _scan(
                session,
                request,
                batch_id,
                ref,
                write=not all_or_nothing,
                record_errors=True,
                progress=lambda f: throttle.fraction(f / 2 if all_or_nothing else f),
            )
            if all_or_nothing and counts.rejected:
                batch = _finish(session, batch_id, ImportStatus.REJECTED, counts)
            elif not all_or_nothing:
                batch = _finish(session, batch_id, ImportStatus.COMPLETED, counts)
        if all_or_nothing and not counts.rejected:
            with database.session() as session:
                counts = _scan(
                    session,
                    request,
                    batch_id,
                    ref,
                    write=True,
                    record_errors=False,
                    progress=lambda f: throttle.fraction(0.5 + f / 2),
                )
                if counts.rejected:
                    raise ImportFileError(f"{request.path} changed while it was being imported")
                batch = _finish(session, batch_id, ImportStatus.COMPLETED, counts)
        with database.session() as session:
            result = _outcome(
                session, session.get_one(ImportBatch, batch.id), request.import_id, replayed=False
            )
    except DataIOError as exc:
        _mark_failed(database, batch_id, exc)
        raise
    except BaseException:
        _mark_failed(database, batch_id, None)
        raise
    throttle.finish()
    return result
