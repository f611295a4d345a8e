"""Report generation: from the domain database to a report file, idempotent by report id.

The report job (:mod:`ppbe_jobs.processors.reports`) is a thin adapter over
this module; a CLI or a test can use it the same way without a queue::

    request = parse_report_request({"reportId": "report-123", "reportType": "r1",
                                    "format": "xlsx", "fiscalYear": "FY2026"})
    service = ReportService(database, output_dir)
    generated = service.generate(request, on_progress=print)
    generated.rendered.path       # output_dir/reports/report-123.xlsx

Steps, each safe to repeat:

1. :meth:`ReportService.start` upserts the :class:`~ppbe_jobs.db.Report` row
   (status ``running``), keyed by the caller's report id.
2. :meth:`ReportService.build_table` reads the figures (``Decimal`` end to end,
   summed in Python, never by the database, whose SQLite ``SUM`` is binary
   floating point) into the records of :mod:`ppbe_jobs.render.reports` and
   builds the :class:`~ppbe_jobs.render.ReportTable`.
3. :meth:`ReportService.write` writes ``output_dir/reports/<reportId>.<format>``
   atomically: a rerun replaces the file in one step, never half of it.
4. :meth:`ReportService.complete` marks the row ``completed`` with the path,
   the SHA-256 and the finish time.

A report is stamped with the time it was first requested (the row's
``created_at``, to the second), not the time of the run: a rerun on unchanged
data therefore writes the same bytes, with the same checksum.

The four report types and their ``parameters`` (all optional):

=================  =========================================================
``budget-summary``  appropriation by FYDP year. ``kind`` (``request`` or
                    ``plan``; default ``request``), ``service``, ``color``.
``r1``              R-1 RDT&E exhibit for the budget year ``fiscalYear``.
                    ``kind``, ``service``, ``outYears`` (0-4, default 4).
``execution``       obligations and expenditures of FY ``fiscalYear`` money
                    against the OSD benchmarks. ``asOf`` (a month,
                    ``2026-03``, or a day of it; default the latest month with
                    figures), ``watchBand`` (a fraction, default ``0.05``),
                    ``service``, ``color``.
``fydp``            program element by FYDP year. ``kind``, ``service``, ``color``.
=================  =========================================================

Every type also takes ``classification`` (the banner; default
``UNCLASSIFIED``). ``fiscalYear`` is the budget year (the first FYDP year) for
all but ``execution``, where it is the program year of the money; without it,
the latest year in the database is used. Parameters a report does not know are
not an error (payloads written for other versions still run): they are listed
in :attr:`ReportRequest.ignored_parameters`.
"""

from __future__ import annotations

import calendar
import contextlib
import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ppbe_jobs.db import (
    AppropriationAccount,
    BudgetKind,
    BudgetLine,
    ColorOfMoney,
    Database,
    MonthlyExecution,
    ProgramElement,
    Report,
    ReportStatus,
    Service,
    fiscal_year_bounds,
    parse_fiscal_year,
    utcnow,
)
from ppbe_jobs.db import ReportFormat as StoredReportFormat
from ppbe_jobs.domain.calculations import DEFAULT_BENCHMARKS, Color
from ppbe_jobs.render import (
    AppropriationAmount,
    ExecutionLine,
    ProgramAmount,
    ProgressCallback,
    RdteProgramLine,
    RenderedFile,
    ReportContext,
    ReportFormat,
    ReportTable,
    Row,
    RowGroup,
    budget_summary,
    execution_report,
    fydp_table,
    rdte_exhibit,
    write_report,
)

__all__ = [
    "FYDP_LENGTH",
    "REPORT_READY_TEMPLATE",
    "ExecutionFigures",
    "GeneratedReport",
    "NotifyTarget",
    "ReportDataError",
    "ReportError",
    "ReportRequest",
    "ReportRequestError",
    "ReportService",
    "ReportType",
    "json_native",
    "load_appropriation_amounts",
    "load_execution_lines",
    "load_program_amounts",
    "load_rdte_lines",
    "month_of_availability",
    "parse_report_request",
    "report_ready_notification",
]

FYDP_LENGTH = 5
"""Years in a FYDP: the budget year and four out-years."""

REPORT_READY_TEMPLATE = "report-ready"
"""The notification template the follow-up of a finished report uses."""

_REPORT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_MAX_TEXT = 128

# Stages of :meth:`ReportService.generate`, in whole percent.
_STARTED, _LOADED, _RENDER_END, _DONE = 5, 30, 95, 100


class ReportType(enum.StrEnum):
    """The reports this service can generate."""

    BUDGET_SUMMARY = "budget-summary"
    """Budget summary: appropriation by FYDP year, subtotals by color of money."""
    R1 = "r1"
    """Exhibit R-1: RDT&E program elements by budget activity."""
    EXECUTION = "execution"
    """Obligations and expenditures against the OSD benchmarks."""
    FYDP = "fydp"
    """Program element by FYDP year, by appropriation."""


_TYPE_ALIASES = {"r-1": ReportType.R1, "budget_summary": ReportType.BUDGET_SUMMARY}

_KNOWN_PARAMETERS: Mapping[ReportType, frozenset[str]] = {
    ReportType.BUDGET_SUMMARY: frozenset({"kind", "service", "color", "classification"}),
    ReportType.R1: frozenset({"kind", "service", "outYears", "classification"}),
    ReportType.EXECUTION: frozenset({"asOf", "watchBand", "service", "color", "classification"}),
    ReportType.FYDP: frozenset({"kind", "service", "color", "classification"}),
}


# --------------------------------------------------------------------------- errors


class ReportError(Exception):
    """A report cannot be generated, and trying again will not change that."""


class ReportRequestError(ReportError, ValueError):
    """A report request is invalid; ``field`` names the part at fault (``parameters.asOf``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ReportDataError(ReportError, ValueError):
    """The database holds nothing to report for the request (no figures for that year...)."""


# --------------------------------------------------------------------------- the request


@dataclass(frozen=True, kw_only=True, slots=True)
class NotifyTarget:
    """Who hears that a report is ready, and how (``email`` or ``in-app``)."""

    channel: str
    recipient: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ReportRequest:
    """A checked report request (see the module docstring for the fields).

    ``fiscal_year`` is None when the request named none: the latest year in
    the database is then used. ``parameters`` are the request's parameters as
    given, in JSON-native form (stored in the report row); the typed fields are
    what was read from them.
    """

    report_id: str
    report_type: ReportType
    format: ReportFormat
    fiscal_year: int | None = None
    requested_by: str | None = None
    notify: NotifyTarget | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    kind: BudgetKind = BudgetKind.REQUEST
    service: Service | None = None
    color: ColorOfMoney | None = None
    out_years: int = FYDP_LENGTH - 1
    as_of: date | None = None
    watch_band: Decimal = Decimal("0.05")
    classification: str = "UNCLASSIFIED"
    ignored_parameters: tuple[str, ...] = ()


def _text(value: object, name: str, *, max_length: int = _MAX_TEXT) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ReportRequestError(name, f"expected a non-empty string, got {value!r}")
    text = value.strip()
    if len(text) > max_length:
        raise ReportRequestError(name, f"longer than {max_length} characters")
    return text


def _choice(value: object, name: str, choices: Iterable[str]) -> str:
    options = list(choices)
    text = value.strip().lower() if isinstance(value, str) else None
    if text not in options:
        raise ReportRequestError(name, f"expected one of {', '.join(options)}, got {value!r}")
    return text


def _service(value: object, name: str) -> Service:
    def key(text: str) -> str:
        return "".join(ch for ch in text.lower() if ch.isalnum())

    if isinstance(value, str):
        for member in Service:
            if key(value) in (key(member.value), key(member.name)):
                return member
    accepted = ", ".join(s.value for s in Service)
    raise ReportRequestError(name, f"unknown service {value!r}; expected one of {accepted}")


def _color(value: object, name: str) -> ColorOfMoney:
    if not isinstance(value, str):
        raise ReportRequestError(name, f"expected a color of money, got {value!r}")
    try:
        return ColorOfMoney.parse(value)
    except ValueError as exc:
        raise ReportRequestError(name, str(exc)) from None


def json_native(value: Any) -> Any:
    """``value`` with what JSON lacks written as text: Decimal, date and datetime, UUID...

    Job data keeps those types exactly (the jobq envelope); a JSON column does not.
    """
    if isinstance(value, Mapping):
        return {str(k): json_native(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_native(v) for v in value]
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _as_of_month(value: object, name: str) -> date:
    """The last day of the month ``value`` names (``2026-03`` or a day of it)."""
    if isinstance(value, date):
        value = value.isoformat()[:10]
    if isinstance(value, str):
        text = value.strip()
        try:
            day = (
                date.fromisoformat(f"{text}-01")
                if re.fullmatch(r"\d{4}-\d{2}", text)
                else date.fromisoformat(text)
            )
        except ValueError:
            pass
        else:
            last = calendar.monthrange(day.year, day.month)[1]
            return day.replace(day=last)
    raise ReportRequestError(
        name, f"expected a month (2026-03) or a date (2026-03-31), got {value!r}"
    )


def _fraction(value: object, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ReportRequestError(name, f"expected a decimal string such as '0.05', got {value!r}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ReportRequestError(name, f"not a decimal number: {value!r}") from None
    if not number.is_finite() or not _ZERO <= number <= 1:
        raise ReportRequestError(name, f"must be a fraction from 0 to 1, got {value!r}")
    return number


def _fiscal_year(value: object) -> int:
    if not isinstance(value, int | str):
        raise ReportRequestError(
            "fiscalYear", f"expected e.g. 2026, 'FY2026' or 'fy-2026', got {value!r}"
        )
    try:
        return parse_fiscal_year(value)
    except (TypeError, ValueError) as exc:
        raise ReportRequestError("fiscalYear", str(exc)) from None


def _notify(value: object, requested_by: str | None) -> NotifyTarget | None:
    if value is None:
        return (
            None if requested_by is None else NotifyTarget(channel="in-app", recipient=requested_by)
        )
    if not isinstance(value, Mapping):
        raise ReportRequestError(
            "notify", f"expected an object {{channel, recipient}}, got {value!r}"
        )
    channel = _choice(value.get("channel", "in-app"), "notify.channel", ("email", "in-app"))
    raw_recipient = value.get("recipient", requested_by)
    if raw_recipient is None:
        raise ReportRequestError("notify.recipient", "required when requestedBy is not given")
    recipient = _text(raw_recipient, "notify.recipient", max_length=320)
    if channel == "email" and not re.fullmatch(r"[^@\s]+@[^@\s]+", recipient):
        raise ReportRequestError("notify.recipient", f"not an e-mail address: {recipient!r}")
    return NotifyTarget(channel=channel, recipient=recipient)


def parse_report_request(data: object) -> ReportRequest:
    """Check a report job's data and read it into a :class:`ReportRequest`.

    ``data`` holds ``reportId`` (letters, digits, ``.``, ``_``, ``-``; at most
    64), ``reportType``, ``format`` (``pdf``, ``xlsx``, ``csv``) and optionally
    ``fiscalYear`` (``2026``, ``"FY2026"``, ``"fy-2026"``; ``fiscalYearId`` is
    read too), ``parameters``, ``requestedBy`` and ``notify`` (``{channel,
    recipient}``; by default an in-app notification to ``requestedBy``).

    Raises :class:`ReportRequestError` naming the field at fault.
    """
    if not isinstance(data, Mapping):
        raise ReportRequestError("data", f"expected an object, got {type(data).__name__}")
    report_id = data.get("reportId")
    if not isinstance(report_id, str) or not _REPORT_ID.fullmatch(report_id):
        raise ReportRequestError(
            "reportId",
            "expected 1-64 letters, digits, '.', '_' or '-' (starting with a letter or digit), "
            f"got {report_id!r}",
        )
    raw_type = data.get("reportType")
    key = raw_type.strip().lower() if isinstance(raw_type, str) else None
    report_type = _TYPE_ALIASES.get(key or "") or next(
        (t for t in ReportType if t.value == key), None
    )
    if report_type is None:
        accepted = ", ".join(t.value for t in ReportType)
        raise ReportRequestError("reportType", f"expected one of {accepted}, got {raw_type!r}")
    fmt = ReportFormat(_choice(data.get("format"), "format", (f.value for f in ReportFormat)))
    raw_year = data.get("fiscalYear", data.get("fiscalYearId"))
    fiscal_year = None if raw_year is None else _fiscal_year(raw_year)
    requested_by = data.get("requestedBy")
    if requested_by is not None:
        requested_by = _text(requested_by, "requestedBy")
    notify = _notify(data.get("notify"), requested_by)

    params = data.get("parameters") or {}
    if not isinstance(params, Mapping):
        raise ReportRequestError("parameters", f"expected an object, got {params!r}")
    known = _KNOWN_PARAMETERS[report_type]
    fields: dict[str, Any] = {}
    if "kind" in params and "kind" in known:
        fields["kind"] = BudgetKind(
            _choice(params["kind"], "parameters.kind", (BudgetKind.REQUEST, BudgetKind.PLAN))
        )
    if params.get("service") is not None:
        fields["service"] = _service(params["service"], "parameters.service")
    if params.get("color") is not None and "color" in known:
        fields["color"] = _color(params["color"], "parameters.color")
    if "outYears" in params and "outYears" in known:
        years = params["outYears"]
        if isinstance(years, bool) or not isinstance(years, int) or not 0 <= years < FYDP_LENGTH:
            raise ReportRequestError(
                "parameters.outYears", f"expected a whole number 0-{FYDP_LENGTH - 1}, got {years!r}"
            )
        fields["out_years"] = years
    if params.get("asOf") is not None and "asOf" in known:
        fields["as_of"] = _as_of_month(params["asOf"], "parameters.asOf")
    if params.get("watchBand") is not None and "watchBand" in known:
        fields["watch_band"] = _fraction(params["watchBand"], "parameters.watchBand")
    if "classification" in params:
        fields["classification"] = _text(params["classification"], "parameters.classification")
    ignored = tuple(sorted(str(k) for k in params if k not in known))
    return ReportRequest(
        report_id=report_id,
        report_type=report_type,
        format=fmt,
        fiscal_year=fiscal_year,
        requested_by=requested_by,
        notify=notify,
        parameters=json_native(params),
        ignored_parameters=ignored,
        **fields,
    )


# --------------------------------------------------------------------------- loading figures


def _account_label(symbol: str, title: str) -> str:
    return f"{symbol} {title}"


_Query = TypeVar("_Query", bound=Select[*tuple[Any, ...]])


def _filtered(query: _Query, service: Service | None, color: ColorOfMoney | None) -> _Query:
    if service is not None:
        query = query.where(AppropriationAccount.service == service)
    if color is not None:
        query = query.where(AppropriationAccount.color == color)
    return query


def _budget_cycle(kind: BudgetKind, budget_year: int) -> str:
    if kind is BudgetKind.PLAN:
        return f"FY{budget_year} Program Objective Memorandum"
    return f"FY{budget_year} President's Budget"


def _latest_budget_year(session: Session, kind: BudgetKind) -> int:
    year = session.scalar(select(func.max(BudgetLine.budget_year)).where(BudgetLine.kind == kind))
    if year is None:
        raise ReportDataError(f"the database holds no {kind} budget lines: nothing to report")
    return int(year)


def _latest_execution_year(session: Session) -> int:
    year = session.scalar(select(func.max(MonthlyExecution.fiscal_year)))
    if year is None:
        raise ReportDataError("the database holds no execution figures: nothing to report")
    return int(year)


def _describe_filters(request: ReportRequest) -> str:
    return _describe_filters_of(request.service, request.color)


def _describe_filters_of(service: Service | None, color: ColorOfMoney | None) -> str:
    parts = [p for p in (service, color) if p is not None]
    return f" ({', '.join(parts)})" if parts else ""


def load_appropriation_amounts(
    session: Session,
    *,
    budget_year: int,
    kind: BudgetKind,
    service: Service | None = None,
    color: ColorOfMoney | None = None,
) -> list[AppropriationAmount]:
    """Budget lines of one budget (``budget_year`` and ``kind``) over its FYDP, by appropriation."""
    years = range(budget_year, budget_year + FYDP_LENGTH)
    query = (
        select(
            AppropriationAccount.symbol,
            AppropriationAccount.title,
            AppropriationAccount.color,
            BudgetLine.fiscal_year,
            BudgetLine.amount_k,
        )
        .join(AppropriationAccount, BudgetLine.appropriation_id == AppropriationAccount.id)
        .where(
            BudgetLine.budget_year == budget_year,
            BudgetLine.kind == kind,
            BudgetLine.fiscal_year.in_(years),
        )
        .order_by(BudgetLine.id)
    )
    rows = session.execute(_filtered(query, service, color))
    return [
        AppropriationAmount(
            appropriation=_account_label(symbol, title),
            color_of_money=str(color_of_money),
            fiscal_year=year,
            amount=amount,
        )
        for symbol, title, color_of_money, year, amount in rows
    ]


def load_program_amounts(
    session: Session,
    *,
    budget_year: int,
    kind: BudgetKind,
    service: Service | None = None,
    color: ColorOfMoney | None = None,
) -> list[ProgramAmount]:
    """Budget lines of one budget over its FYDP, by program element and appropriation."""
    years = range(budget_year, budget_year + FYDP_LENGTH)
    query = (
        select(
            ProgramElement.code,
            ProgramElement.title,
            AppropriationAccount.symbol,
            AppropriationAccount.title,
            BudgetLine.fiscal_year,
            BudgetLine.amount_k,
        )
        .join(ProgramElement, BudgetLine.program_element_id == ProgramElement.id)
        .join(AppropriationAccount, BudgetLine.appropriation_id == AppropriationAccount.id)
        .where(
            BudgetLine.budget_year == budget_year,
            BudgetLine.kind == kind,
            BudgetLine.fiscal_year.in_(years),
        )
        .order_by(BudgetLine.id)
    )
    rows = session.execute(_filtered(query, service, color))
    return [
        ProgramAmount(
            pe_number=code,
            pe_title=pe_title,
            appropriation=_account_label(symbol, account_title),
            fiscal_year=year,
            amount=amount,
        )
        for code, pe_title, symbol, account_title, year, amount in rows
    ]


def load_rdte_lines(
    session: Session,
    *,
    budget_year: int,
    kind: BudgetKind,
    out_years: int = FYDP_LENGTH - 1,
    service: Service | None = None,
) -> tuple[list[RdteProgramLine], list[str]]:
    """R-1 lines of the RDT&E program elements, and the titles of the accounts they use.

    Prior year (BY-2) and current year (BY-1) are the enacted amounts; the
    budget year and ``out_years`` out-years come from the ``kind`` lines of the
    ``budget_year`` budget. A program element without a budget activity is
    shown under BA 00.
    """
    enacted = (BudgetLine.kind == BudgetKind.ENACTED) & (
        BudgetLine.budget_year == BudgetLine.fiscal_year
    )
    years = range(budget_year, budget_year + out_years + 1)
    budget = (
        (BudgetLine.kind == kind)
        & (BudgetLine.budget_year == budget_year)
        & BudgetLine.fiscal_year.in_(years)
    )
    query = (
        select(
            ProgramElement.code,
            ProgramElement.title,
            ProgramElement.budget_activity,
            AppropriationAccount.title,
            BudgetLine.fiscal_year,
            BudgetLine.amount_k,
        )
        .join(ProgramElement, BudgetLine.program_element_id == ProgramElement.id)
        .join(AppropriationAccount, BudgetLine.appropriation_id == AppropriationAccount.id)
        .where((enacted & BudgetLine.fiscal_year.in_((budget_year - 2, budget_year - 1))) | budget)
        .order_by(BudgetLine.id)
    )
    rows = session.execute(_filtered(query, service, ColorOfMoney.RDTE))
    columns = [budget_year - 2, budget_year - 1, *years]
    by_pe: dict[str, tuple[str, int, dict[int, Decimal]]] = {}
    titles: set[str] = set()
    for code, pe_title, activity, account_title, year, amount in rows:
        titles.add(account_title)
        _, _, amounts = by_pe.setdefault(
            code, (pe_title, activity or 0, dict.fromkeys(columns, _ZERO))
        )
        amounts[year] += amount
    lines = [
        RdteProgramLine(
            pe_number=code,
            pe_title=title,
            budget_activity=activity,
            prior_year=amounts[budget_year - 2],
            current_year=amounts[budget_year - 1],
            budget_year=amounts[budget_year],
            out_years=tuple(amounts[y] for y in years[1:]),
        )
        for code, (title, activity, amounts) in sorted(by_pe.items())
    ]
    return lines, sorted(titles)


@dataclass(frozen=True, kw_only=True, slots=True)
class ExecutionFigures:
    """What the execution report shows: one line per appropriation, as of a month.

    ``missing_benchmarks`` holds ``(appropriation, "obligation" | "expenditure")``
    for the lines whose color has no such OSD benchmark (their line carries 0).
    """

    lines: tuple[ExecutionLine, ...]
    as_of: date
    month_of_availability: int
    missing_benchmarks: frozenset[tuple[str, str]] = frozenset()


def month_of_availability(fiscal_year: int, as_of: date) -> int:
    """Month of availability of FY ``fiscal_year`` money at ``as_of`` (October of FY-1 is 1)."""
    start, _ = fiscal_year_bounds(fiscal_year)
    return (as_of.year - start.year) * 12 + as_of.month - start.month + 1


def _benchmark_fraction(color: ColorOfMoney, month: int, which: str) -> Decimal | None:
    benchmark = DEFAULT_BENCHMARKS.get(Color.parse(str(color)))
    curve = None if benchmark is None else getattr(benchmark, which)
    return None if curve is None else curve.at(month) / _HUNDRED


def load_execution_lines(
    session: Session,
    *,
    fiscal_year: int,
    as_of: date | None = None,
    service: Service | None = None,
    color: ColorOfMoney | None = None,
) -> ExecutionFigures:
    """Execution of FY ``fiscal_year`` money per appropriation, through the month of ``as_of``.

    TOA is the enacted amount; obligations and expenditures are each line's
    cumulative figures of its latest month up to ``as_of`` (default: the latest
    month with figures), added per appropriation. Benchmarks are the OSD
    curves (:data:`ppbe_jobs.domain.calculations.DEFAULT_BENCHMARKS`) at the
    month of availability, as fractions; where a color has none the line
    carries 0 and :attr:`ExecutionFigures.missing_benchmarks` says so.
    """
    start, _ = fiscal_year_bounds(fiscal_year)
    if as_of is None:
        latest = session.scalar(
            _filtered(
                select(func.max(MonthlyExecution.month))
                .join(
                    AppropriationAccount,
                    MonthlyExecution.appropriation_id == AppropriationAccount.id,
                )
                .where(MonthlyExecution.fiscal_year == fiscal_year),
                service,
                color,
            )
        )
        if latest is None:
            filters = _describe_filters_of(service, color)
            raise ReportDataError(f"no execution figures for FY{fiscal_year} money{filters}")
        as_of = latest.replace(day=calendar.monthrange(latest.year, latest.month)[1])
    if as_of < start:
        raise ReportRequestError(
            "parameters.asOf",
            f"{as_of.isoformat()} is before FY{fiscal_year} money exists ({start.isoformat()})",
        )
    month_start = as_of.replace(day=1)

    accounts: dict[int, tuple[str, ColorOfMoney]] = {}
    toa: dict[int, Decimal] = {}
    toa_query = (
        select(
            AppropriationAccount.id,
            AppropriationAccount.symbol,
            AppropriationAccount.title,
            AppropriationAccount.color,
            BudgetLine.amount_k,
        )
        .join(AppropriationAccount, BudgetLine.appropriation_id == AppropriationAccount.id)
        .where(
            BudgetLine.kind == BudgetKind.ENACTED,
            BudgetLine.budget_year == fiscal_year,
            BudgetLine.fiscal_year == fiscal_year,
        )
        .order_by(BudgetLine.id)
    )
    for account_id, symbol, title, account_color, amount in session.execute(
        _filtered(toa_query, service, color)
    ):
        accounts[account_id] = (_account_label(symbol, title), account_color)
        toa[account_id] = toa.get(account_id, _ZERO) + amount

    # Cumulative figures: each line's latest month up to the as-of month counts.
    latest_of_line: dict[tuple[int, int], tuple[date, Decimal, Decimal]] = {}
    execution_query = (
        select(
            AppropriationAccount.id,
            AppropriationAccount.symbol,
            AppropriationAccount.title,
            AppropriationAccount.color,
            MonthlyExecution.program_element_id,
            MonthlyExecution.month,
            MonthlyExecution.cumulative_obligations_k,
            MonthlyExecution.cumulative_expenditures_k,
        )
        .join(AppropriationAccount, MonthlyExecution.appropriation_id == AppropriationAccount.id)
        .where(
            MonthlyExecution.fiscal_year == fiscal_year,
            MonthlyExecution.month <= month_start,
        )
    )
    for (
        account_id,
        symbol,
        title,
        account_color,
        pe_id,
        month,
        obligated,
        expended,
    ) in session.execute(_filtered(execution_query, service, color)):
        accounts.setdefault(account_id, (_account_label(symbol, title), account_color))
        key = (account_id, pe_id)
        seen = latest_of_line.get(key)
        if seen is None or month > seen[0]:
            latest_of_line[key] = (month, obligated, expended)
    obligations: dict[int, Decimal] = {}
    expenditures: dict[int, Decimal] = {}
    for (account_id, _), (_, obligated, expended) in latest_of_line.items():
        obligations[account_id] = obligations.get(account_id, _ZERO) + obligated
        expenditures[account_id] = expenditures.get(account_id, _ZERO) + expended

    availability_month = month_of_availability(fiscal_year, as_of)
    lines: list[ExecutionLine] = []
    missing: set[tuple[str, str]] = set()
    for account_id, (label, account_color) in sorted(accounts.items(), key=lambda a: a[1][0]):
        benchmarks: dict[str, Decimal] = {}
        for which in ("obligation", "expenditure"):
            value = _benchmark_fraction(account_color, availability_month, which)
            if value is None:
                missing.add((label, which))
            benchmarks[which] = _ZERO if value is None else value
        lines.append(
            ExecutionLine(
                appropriation=label,
                color_of_money=str(account_color),
                toa=toa.get(account_id, _ZERO),
                obligations=obligations.get(account_id, _ZERO),
                expenditures=expenditures.get(account_id, _ZERO),
                obligation_benchmark=benchmarks["obligation"],
                expenditure_benchmark=benchmarks["expenditure"],
            )
        )
    return ExecutionFigures(
        lines=tuple(lines),
        as_of=as_of,
        month_of_availability=availability_month,
        missing_benchmarks=frozenset(missing),
    )


def _execution_table(
    figures: ExecutionFigures, fiscal_year: int, context: ReportContext, watch_band: Decimal
) -> ReportTable:
    """The execution report, with the benchmarks a color does not have left blank."""
    table = execution_report(figures.lines, context, as_of=figures.as_of, watch_band=watch_band)
    missing = figures.missing_benchmarks

    def blank(row: Row) -> Row:
        cells = dict(row)
        for which in ("obligation", "expenditure"):
            if (row.get("appropriation"), which) in missing:
                cells[f"{which}_benchmark"] = None
        return cells

    notes = [
        f"Month {figures.month_of_availability} of availability of FY{fiscal_year} money; "
        "benchmarks are the OSD cumulative goals at that month."
    ]
    for which in ("obligation", "expenditure"):
        colors = sorted(
            {
                str(line.color_of_money)
                for line in figures.lines
                if (line.appropriation, which) in missing
            }
        )
        if colors:
            notes.append(
                f"No OSD {which} benchmark for {', '.join(colors)}: left blank, and that "
                "rate does not count toward the status."
            )
    return ReportTable(
        title=table.title,
        subtitle=table.subtitle,
        columns=table.columns,
        groups=tuple(
            RowGroup(rows=tuple(blank(r) for r in g.rows), subtotal=g.subtotal)
            for g in table.groups
        ),
        total=table.total,
        footnotes=(*table.footnotes, *notes),
        classification=table.classification,
        generated_at=table.generated_at,
    )


# --------------------------------------------------------------------------- the service


@dataclass(frozen=True, kw_only=True, slots=True)
class GeneratedReport:
    """A report in place: the request it answers, its table's title, and the file."""

    request: ReportRequest
    fiscal_year: int
    title: str
    rendered: RenderedFile
    finished_at: datetime

    def to_result(self) -> dict[str, Any]:
        """The job result: ``reportId``, ``filePath``, ``checksum``, ``bytes``, ``format``."""
        return {
            "reportId": self.request.report_id,
            "filePath": str(self.rendered.path),
            "checksum": self.rendered.sha256,
            "bytes": self.rendered.bytes,
            "format": str(self.rendered.format),
        }


def _stage(on_progress: ProgressCallback | None, low: int, high: int) -> ProgressCallback | None:
    """A callback taking 0-100 and reporting ``low``-``high`` of the whole."""
    if on_progress is None:
        return None
    callback = on_progress

    def scaled(percent: int) -> None:
        callback(low + (high - low) * percent // 100)

    return scaled


class ReportService:
    """Generates reports from ``database`` into ``output_dir / "reports"``.

    Every method is blocking (database and file work); the report job runs
    them in a thread. Each step is idempotent by report id (see the module
    docstring).
    """

    def __init__(self, database: Database, output_dir: Path) -> None:
        self.database = database
        self.output_dir = Path(output_dir)

    def output_path(self, request: ReportRequest) -> Path:
        """Where the report's file goes: ``output_dir/reports/<reportId>.<format>``."""
        return self.output_dir / "reports" / f"{request.report_id}.{request.format.value}"

    def resolve_fiscal_year(self, session: Session, request: ReportRequest) -> int:
        """The request's fiscal year, or the latest one the database has figures for."""
        if request.fiscal_year is not None:
            return request.fiscal_year
        if request.report_type is ReportType.EXECUTION:
            return _latest_execution_year(session)
        return _latest_budget_year(session, request.kind)

    def start(self, request: ReportRequest) -> tuple[int, datetime]:
        """Upsert the report row as ``running``; return the fiscal year and the report's stamp.

        The stamp is when the report was first requested (the row's
        ``created_at``, to the second), so reruns print the same time.
        """
        for attempt in (1, 2):
            try:
                with self.database.session() as session:
                    fiscal_year = self.resolve_fiscal_year(session, request)
                    stored = {**request.parameters, "fiscalYear": fiscal_year}
                    row = session.get(Report, request.report_id)
                    if row is None:
                        row = Report(
                            id=request.report_id,
                            report_type=request.report_type.value,
                            format=StoredReportFormat(request.format.value),
                            parameters=stored,
                            requested_by=request.requested_by,
                            created_at=utcnow().replace(microsecond=0),
                        )
                        session.add(row)
                    row.report_type = request.report_type.value
                    row.format = StoredReportFormat(request.format.value)
                    row.parameters = stored
                    row.requested_by = request.requested_by
                    row.status = ReportStatus.RUNNING
                    row.error = None
                    row.finished_at = None
                    stamp = row.created_at.replace(microsecond=0)
                return fiscal_year, stamp
            except IntegrityError:
                if attempt == 2:
                    raise
                # Another run inserted the same report id first: update its row instead.
        raise AssertionError("unreachable")  # pragma: no cover

    def build_table(
        self, request: ReportRequest, fiscal_year: int, generated_at: datetime
    ) -> ReportTable:
        """Read the figures and build the report's table.

        Raises :class:`ReportDataError` when there is nothing to report.
        """
        organization = request.service.value if request.service is not None else ""
        with self.database.session() as session:
            if request.report_type is ReportType.EXECUTION:
                figures = load_execution_lines(
                    session,
                    fiscal_year=fiscal_year,
                    as_of=request.as_of,
                    service=request.service,
                    color=request.color,
                )
                if not figures.lines:
                    raise ReportDataError(
                        f"no enacted amounts or execution figures for FY{fiscal_year} money"
                        f"{_describe_filters(request)}"
                    )
                context = ReportContext(
                    budget_cycle=f"FY{fiscal_year} appropriations",
                    organization=organization,
                    classification=request.classification,
                    generated_at=generated_at,
                )
                return _execution_table(figures, fiscal_year, context, request.watch_band)

            context = ReportContext(
                budget_cycle=_budget_cycle(request.kind, fiscal_year),
                organization=organization,
                classification=request.classification,
                generated_at=generated_at,
            )
            years = tuple(range(fiscal_year, fiscal_year + FYDP_LENGTH))
            nothing = ReportDataError(
                f"no {request.kind} budget lines in the FY{fiscal_year} budget"
                f"{_describe_filters(request)}: nothing to report"
            )
            if request.report_type is ReportType.BUDGET_SUMMARY:
                amounts = load_appropriation_amounts(
                    session,
                    budget_year=fiscal_year,
                    kind=request.kind,
                    service=request.service,
                    color=request.color,
                )
                if not amounts:
                    raise nothing
                return budget_summary(amounts, context, fiscal_years=years)
            if request.report_type is ReportType.FYDP:
                programs = load_program_amounts(
                    session,
                    budget_year=fiscal_year,
                    kind=request.kind,
                    service=request.service,
                    color=request.color,
                )
                if not programs:
                    raise nothing
                return fydp_table(programs, context, fiscal_years=years)
            rdte, titles = load_rdte_lines(
                session,
                budget_year=fiscal_year,
                kind=request.kind,
                out_years=request.out_years,
                service=request.service,
            )
            if not rdte:
                raise ReportDataError(
                    f"no RDT&E budget lines for the FY{fiscal_year} R-1"
                    f"{_describe_filters(request)}: nothing to report"
                )
            if len(titles) == 1:
                return rdte_exhibit(rdte, context, budget_year=fiscal_year, appropriation=titles[0])
            return rdte_exhibit(rdte, context, budget_year=fiscal_year)

    def write(
        self,
        request: ReportRequest,
        table: ReportTable,
        *,
        on_progress: ProgressCallback | None = None,
    ) -> RenderedFile:
        """Write ``table`` at :meth:`output_path`, atomically (a rerun replaces the file)."""
        return write_report(
            table, self.output_path(request), request.format, on_progress=on_progress
        )

    def complete(self, request: ReportRequest, rendered: RenderedFile) -> datetime:
        """Mark the row ``completed`` with the file; remove an older file of another format."""
        finished = utcnow()
        previous: str | None = None
        with self.database.session() as session:
            row = session.get(Report, request.report_id)
            if row is None:  # deleted meanwhile: the file exists, so record it again
                row = Report(
                    id=request.report_id,
                    report_type=request.report_type.value,
                    format=StoredReportFormat(request.format.value),
                    parameters=dict(request.parameters),
                    requested_by=request.requested_by,
                )
                session.add(row)
            previous = row.file_path
            row.status = ReportStatus.COMPLETED
            row.file_path = str(rendered.path)
            row.checksum = rendered.sha256
            row.error = None
            row.finished_at = finished
        if previous and Path(previous) != rendered.path:
            old = Path(previous)
            # Only a file this service wrote for this report, never anything else.
            if old.parent == rendered.path.parent and old.stem == request.report_id:
                with contextlib.suppress(OSError):
                    old.unlink()
        return finished

    def fail(self, report_id: str, error: str) -> bool:
        """Mark the report ``failed`` with ``error``; False when there is no row for it."""
        with self.database.session() as session:
            row = session.get(Report, report_id)
            if row is None:
                return False
            row.status = ReportStatus.FAILED
            row.error = error
            row.finished_at = utcnow()
        return True

    def generate(
        self, request: ReportRequest, *, on_progress: ProgressCallback | None = None
    ) -> GeneratedReport:
        """All the steps: start, build, write, complete; progress 0-100 along the way."""
        fiscal_year, stamp = self.start(request)
        if on_progress is not None:
            on_progress(_STARTED)
        table = self.build_table(request, fiscal_year, stamp)
        if on_progress is not None:
            on_progress(_LOADED)
        rendered = self.write(request, table, on_progress=_stage(on_progress, _LOADED, _RENDER_END))
        finished = self.complete(request, rendered)
        if on_progress is not None:
            on_progress(_DONE)
        return GeneratedReport(
            request=request,
            fiscal_year=fiscal_year,
            title=table.title,
            rendered=rendered,
            finished_at=finished,
        )


def report_ready_notification(generated: GeneratedReport) -> dict[str, Any] | None:
    """The data of the "report ready" notification job, or None when nobody is to be told.

    Its ``notificationKey`` is ``report-ready:<reportId>``: a rerun of the
    report asks for the same notification, which is then not sent again.
    """
    target = generated.request.notify
    if target is None:
        return None
    return {
        "notificationKey": f"{REPORT_READY_TEMPLATE}:{generated.request.report_id}",
        "channel": target.channel,
        "recipient": target.recipient,
        "template": REPORT_READY_TEMPLATE,
        "context": {
            "reportTitle": generated.title,
            "format": str(generated.rendered.format),
            "location": str(generated.rendered.path),
        },
        "reportId": generated.request.report_id,
    }
