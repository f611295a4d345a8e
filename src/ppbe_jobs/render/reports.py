"""The four PPBE reports, built from plain inputs into :class:`ReportTable` s.

No database here: each builder takes simple frozen records (the report job maps
database rows into them) and a :class:`ReportContext`, and returns a table whose
every subtotal and total was summed exactly in Decimal. Amounts are in
thousands of dollars throughout, as budget exhibits are.

- :func:`budget_summary`: appropriation x FYDP year; subtotals by color of
  money, grand total.
- :func:`rdte_exhibit`: R-1, program element x PY, CY, BY and out years;
  subtotals by budget activity, appropriation total.
- :func:`execution_report`: per appropriation TOA, obligations, expenditures,
  rates against the OSD benchmarks and a status; total with overall rates.
- :func:`fydp_table`: program element x FYDP year; subtotals by
  appropriation, grand total.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TypeVar

from .model import CellValue, Column, ColumnKind, ReportTable, Row, RowGroup

__all__ = [
    "BUDGET_ACTIVITIES",
    "FYDP_YEARS",
    "AppropriationAmount",
    "ExecutionLine",
    "ExecutionStatus",
    "ProgramAmount",
    "RdteProgramLine",
    "ReportContext",
    "budget_summary",
    "execution_report",
    "execution_status",
    "fydp_table",
    "rdte_exhibit",
]

FYDP_YEARS: tuple[int, ...] = (2026, 2027, 2028, 2029, 2030)
"""The Future Years Defense Program the reports cover by default."""

BUDGET_ACTIVITIES: dict[int, str] = {
    1: "Basic Research",
    2: "Applied Research",
    3: "Advanced Technology Development",
    4: "Advanced Component Development and Prototypes",
    5: "System Development and Demonstration",
    6: "RDT&E Management Support",
    7: "Operational Systems Development",
    8: "Software and Digital Technology Pilot Programs",
}
"""RDT&E budget activities (BA 01-08) by number."""

_COLOR_ORDER = ("MILPERS", "O&M", "Procurement", "RDT&E", "MILCON")
_RATE_PLACES = Decimal("0.0001")
_ZERO = Decimal(0)
_MONEY_NOTE = "Amounts in thousands of dollars. Totals are summed from unrounded amounts."


@dataclass(frozen=True, kw_only=True, slots=True)
class ReportContext:
    """What a report prints besides its figures.

    Attributes:
        budget_cycle: e.g. ``"FY2027 President's Budget"``.
        organization: e.g. ``"Department of the Navy"``; leads the subtitle if set.
        classification: the banner text.
        generated_at: the report's timestamp (timezone-aware); now if None.
    """

    budget_cycle: str
    organization: str = ""
    classification: str = "UNCLASSIFIED"
    generated_at: datetime | None = None

    def subtitle(self, *parts: str) -> str:
        """``organization, budget cycle, *parts, $ in thousands`` (empty parts left out)."""
        pieces = [self.organization, self.budget_cycle, *parts, "$ in thousands"]
        return ", ".join(p for p in pieces if p)


def _table(
    context: ReportContext,
    *,
    title: str,
    subtitle: str,
    columns: Sequence[Column],
    groups: Sequence[RowGroup],
    total: Row,
    footnotes: Sequence[str],
) -> ReportTable:
    return ReportTable(
        title=title,
        subtitle=subtitle,
        columns=tuple(columns),
        groups=tuple(groups),
        total=total,
        footnotes=tuple(footnotes),
        classification=context.classification,
        generated_at=context.generated_at or datetime.now(UTC),
    )


# -- inputs ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class AppropriationAmount:
    """An amount of one appropriation in one fiscal year (amounts of a key are added)."""

    appropriation: str
    color_of_money: str
    fiscal_year: int
    amount: Decimal


@dataclass(frozen=True, kw_only=True, slots=True)
class ProgramAmount:
    """An amount of one program element, in one appropriation and fiscal year."""

    pe_number: str
    pe_title: str
    appropriation: str
    fiscal_year: int
    amount: Decimal


@dataclass(frozen=True, kw_only=True, slots=True)
class RdteProgramLine:
    """One R-1 line: a program element's request by year.

    ``out_years`` follow the budget year (BY+1, BY+2, ...); every line of one
    exhibit has the same number of them.
    """

    pe_number: str
    pe_title: str
    budget_activity: int
    prior_year: Decimal
    current_year: Decimal
    budget_year: Decimal
    out_years: tuple[Decimal, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class ExecutionLine:
    """Execution of one appropriation to date, with the OSD benchmarks for this point.

    Benchmarks are fractions of TOA expected obligated / expended by now
    (``Decimal("0.80")`` is 80 %), as the budget calculation derives them from
    the color of money, year of availability and month.
    """

    appropriation: str
    color_of_money: str
    toa: Decimal
    obligations: Decimal
    expenditures: Decimal
    obligation_benchmark: Decimal
    expenditure_benchmark: Decimal


class ExecutionStatus(enum.StrEnum):
    """How an appropriation's execution compares with the OSD benchmarks."""

    ON_TRACK = "On track"
    """Both rates at or above their benchmarks."""
    WATCH = "Watch"
    """A rate below its benchmark by no more than the watch band."""
    BELOW = "Below benchmark"
    """A rate below its benchmark by more than the watch band."""
    NO_TOA = "No TOA"
    """No (positive) TOA, so no rate."""


# -- helpers ---------------------------------------------------------------------


def _fy(year: int) -> str:
    return f"fy{year}"


def _check_years(fiscal_years: Sequence[int]) -> tuple[int, ...]:
    years = tuple(fiscal_years)
    if not years or any(b <= a for a, b in itertools.pairwise(years)):
        raise ValueError(f"fiscal_years must be increasing and not empty, got {years}")
    return years


def _money_sum(rows: Iterable[Row], keys: Iterable[str]) -> dict[str, CellValue]:
    rows = list(rows)
    totals: dict[str, CellValue] = {}
    for key in keys:
        total = _ZERO
        for row in rows:
            value = row.get(key)
            if isinstance(value, Decimal):
                total += value
        totals[key] = total
    return totals


K = TypeVar("K", bound=Hashable)


def _pivot(
    records: Iterable[tuple[K, int, Decimal]], years: tuple[int, ...], what: Callable[[K], str]
) -> dict[K, dict[int, Decimal]]:
    """Add up ``(key, fiscal_year, amount)`` into key -> year -> amount (zeros filled in)."""
    table: dict[K, dict[int, Decimal]] = {}
    for key, year, amount in records:
        if year not in years:
            raise ValueError(
                f"{what(key)}: fiscal year {year} is outside the report's years "
                f"FY{years[0]}-FY{years[-1]}"
            )
        by_year = table.setdefault(key, dict.fromkeys(years, _ZERO))
        by_year[year] += amount
    return table


def _year_cells(by_year: dict[int, Decimal], years: tuple[int, ...]) -> dict[str, CellValue]:
    cells: dict[str, CellValue] = {_fy(y): by_year[y] for y in years}
    cells["total"] = sum((by_year[y] for y in years), _ZERO)
    return cells


def _color_rank(color: str) -> tuple[int, str]:
    return (_COLOR_ORDER.index(color), "") if color in _COLOR_ORDER else (len(_COLOR_ORDER), color)


def _fydp_columns(years: tuple[int, ...]) -> list[Column]:
    return [Column(key=_fy(y), header=f"FY{y}", kind=ColumnKind.MONEY) for y in years] + [
        Column(key="total", header="FYDP Total", kind=ColumnKind.MONEY)
    ]


# -- builders --------------------------------------------------------------------


def budget_summary(
    amounts: Iterable[AppropriationAmount],
    context: ReportContext,
    *,
    fiscal_years: Sequence[int] = FYDP_YEARS,
) -> ReportTable:
    """Budget summary: each appropriation across the FYDP, by color of money.

    Amounts of the same appropriation and year are added (pass budget lines as
    they are). Groups follow MILPERS, O&M, Procurement, RDT&E, MILCON, then
    other colors alphabetically; each ends with a subtotal, and a grand total
    closes the table. A fiscal year outside ``fiscal_years`` is an error, never
    silently dropped.
    """
    years = _check_years(fiscal_years)
    pivot = _pivot(
        (((a.color_of_money, a.appropriation), a.fiscal_year, a.amount) for a in amounts),
        years,
        lambda key: f"appropriation {key[1]!r}",
    )
    money_keys = [*map(_fy, years), "total"]
    groups: list[RowGroup] = []
    for color in sorted({c for c, _ in pivot}, key=_color_rank):
        rows = [
            {"color": color, "appropriation": approp, **_year_cells(pivot[color, approp], years)}
            for c, approp in sorted(pivot)
            if c == color
        ]
        subtotal = {"color": f"Total {color}", **_money_sum(rows, money_keys)}
        groups.append(RowGroup(rows=tuple(rows), subtotal=subtotal))
    all_rows = [r for g in groups for r in g.rows]
    return _table(
        context,
        title="Budget Summary by Appropriation",
        subtitle=context.subtitle(f"FY{years[0]}-FY{years[-1]} FYDP"),
        columns=(
            Column(key="color", header="Color of Money"),
            Column(key="appropriation", header="Appropriation"),
            *_fydp_columns(years),
        ),
        groups=tuple(groups),
        total={"color": "Grand Total", **_money_sum(all_rows, money_keys)},
        footnotes=(_MONEY_NOTE,),
    )


def rdte_exhibit(
    lines: Iterable[RdteProgramLine],
    context: ReportContext,
    *,
    budget_year: int,
    appropriation: str = "Research, Development, Test and Evaluation",
) -> ReportTable:
    """Exhibit R-1: RDT&E program elements by budget activity.

    Columns: PE number, title, BA, prior year (BY-2), current year (BY-1),
    budget year and the out years; a subtotal closes each budget activity and
    a total the appropriation. Lines are ordered by BA, then PE number.
    """
    items = sorted(lines, key=lambda line: (line.budget_activity, line.pe_number))
    out_count = len(items[0].out_years) if items else 0
    for line in items:
        if len(line.out_years) != out_count:
            raise ValueError(
                f"program element {line.pe_number}: {len(line.out_years)} out years, "
                f"but the exhibit has {out_count}"
            )
    year_cols = [
        Column(key="py", header=f"FY{budget_year - 2} (PY)", kind=ColumnKind.MONEY),
        Column(key="cy", header=f"FY{budget_year - 1} (CY)", kind=ColumnKind.MONEY),
        Column(key="by", header=f"FY{budget_year} (BY)", kind=ColumnKind.MONEY),
        *(
            Column(key=f"oy{i}", header=f"FY{budget_year + i}", kind=ColumnKind.MONEY)
            for i in range(1, out_count + 1)
        ),
    ]
    money_keys = [c.key for c in year_cols]

    def ba_name(ba: int) -> str:
        return BUDGET_ACTIVITIES.get(ba, f"Budget Activity {ba:02d}")

    groups: list[RowGroup] = []
    activities = sorted({line.budget_activity for line in items})
    for ba in activities:
        rows: list[dict[str, CellValue]] = []
        for line in items:
            if line.budget_activity != ba:
                continue
            amounts = (line.prior_year, line.current_year, line.budget_year, *line.out_years)
            rows.append(
                {
                    "pe": line.pe_number,
                    "title": line.pe_title,
                    "ba": f"{ba:02d}",
                    **dict(zip(money_keys, amounts, strict=True)),
                }
            )
        subtotal = {"title": f"Total BA {ba:02d}, {ba_name(ba)}", **_money_sum(rows, money_keys)}
        groups.append(RowGroup(rows=tuple(rows), subtotal=subtotal))
    all_rows = [r for g in groups for r in g.rows]
    footnotes = [_MONEY_NOTE, "PY: prior year; CY: current year; BY: budget year."]
    footnotes.append(
        "Budget activities: " + "; ".join(f"{ba:02d} {ba_name(ba)}" for ba in activities) + "."
    )
    return _table(
        context,
        title="Exhibit R-1, RDT&E Programs",
        subtitle=context.subtitle(appropriation),
        columns=(
            Column(key="pe", header="Program Element"),
            Column(key="title", header="Program Element Title"),
            Column(key="ba", header="BA"),
            *year_cols,
        ),
        groups=tuple(groups),
        total={"title": f"Total {appropriation}", **_money_sum(all_rows, money_keys)},
        footnotes=tuple(footnotes),
    )


def _rate(part: Decimal, whole: Decimal) -> Decimal | None:
    if whole <= 0:
        return None
    return (part / whole).quantize(_RATE_PLACES, rounding=ROUND_HALF_UP)


def _measure(done: Decimal, toa: Decimal, benchmark: Decimal, band: Decimal) -> ExecutionStatus:
    # Compared without dividing, so a rate exactly on the benchmark is on it.
    if done >= benchmark * toa:
        return ExecutionStatus.ON_TRACK
    if done >= (benchmark - band) * toa:
        return ExecutionStatus.WATCH
    return ExecutionStatus.BELOW


def execution_status(line: ExecutionLine, *, watch_band: Decimal) -> ExecutionStatus:
    """The worse of the obligation and expenditure comparisons for ``line``."""
    if line.toa <= 0:
        return ExecutionStatus.NO_TOA
    order = [ExecutionStatus.ON_TRACK, ExecutionStatus.WATCH, ExecutionStatus.BELOW]
    return max(
        _measure(line.obligations, line.toa, line.obligation_benchmark, watch_band),
        _measure(line.expenditures, line.toa, line.expenditure_benchmark, watch_band),
        key=order.index,
    )


def execution_report(
    lines: Iterable[ExecutionLine],
    context: ReportContext,
    *,
    as_of: date,
    watch_band: Decimal = Decimal("0.05"),
) -> ReportTable:
    """Execution against the OSD benchmarks, one row per appropriation, as of a date.

    Rates are obligations (expenditures) over TOA, rounded half-up to four
    places (0.01 %); blank where TOA is not positive. Status is the worse of the
    two comparisons: on track at or above the benchmark, "Watch" within
    ``watch_band`` (a fraction, 0.05 = 5 points) below it, else below benchmark.
    The total row carries summed amounts and overall rates, no benchmark.
    """
    items = list(lines)
    rows: list[dict[str, CellValue]] = []
    for line in items:
        rows.append(
            {
                "appropriation": line.appropriation,
                "color": line.color_of_money,
                "toa": line.toa,
                "obligations": line.obligations,
                "obligation_rate": _rate(line.obligations, line.toa),
                "obligation_benchmark": line.obligation_benchmark,
                "expenditures": line.expenditures,
                "expenditure_rate": _rate(line.expenditures, line.toa),
                "expenditure_benchmark": line.expenditure_benchmark,
                "status": str(execution_status(line, watch_band=watch_band)),
            }
        )
    toa = sum((line.toa for line in items), _ZERO)
    obligations = sum((line.obligations for line in items), _ZERO)
    expenditures = sum((line.expenditures for line in items), _ZERO)
    total: dict[str, CellValue] = {
        "appropriation": "Total",
        "toa": toa,
        "obligations": obligations,
        "obligation_rate": _rate(obligations, toa),
        "expenditures": expenditures,
        "expenditure_rate": _rate(expenditures, toa),
    }
    money, pct = ColumnKind.MONEY, ColumnKind.PERCENT
    band_points = (watch_band * 100).normalize()
    return _table(
        context,
        title="Execution Report: Obligations and Expenditures against OSD Benchmarks",
        subtitle=context.subtitle(f"as of {as_of.day} {as_of:%B %Y}"),
        columns=(
            Column(key="appropriation", header="Appropriation"),
            Column(key="color", header="Color of Money"),
            Column(key="toa", header="TOA", kind=money),
            Column(key="obligations", header="Obligations", kind=money),
            Column(key="obligation_rate", header="Obligation Rate", kind=pct),
            Column(key="obligation_benchmark", header="OSD Obligation Benchmark", kind=pct),
            Column(key="expenditures", header="Expenditures", kind=money),
            Column(key="expenditure_rate", header="Expenditure Rate", kind=pct),
            Column(key="expenditure_benchmark", header="OSD Expenditure Benchmark", kind=pct),
            Column(key="status", header="Status"),
        ),
        groups=(RowGroup(rows=tuple(rows)),),
        total=total,
        footnotes=(
            _MONEY_NOTE,
            "TOA: Total Obligation Authority. Rates are cumulative, to the as-of date.",
            f"Status: on track when both rates meet their OSD benchmarks; Watch when a rate "
            f"is under its benchmark by {band_points:f} percentage points or less; "
            "below benchmark otherwise.",
        ),
    )


def fydp_table(
    amounts: Iterable[ProgramAmount],
    context: ReportContext,
    *,
    fiscal_years: Sequence[int] = FYDP_YEARS,
) -> ReportTable:
    """FYDP table: program element by fiscal year, grouped by appropriation.

    Amounts of the same PE, appropriation and year are added. Each appropriation
    ends with a subtotal; a grand total closes the table. A PE's title is the
    first one seen.
    """
    years = _check_years(fiscal_years)
    amounts = list(amounts)
    titles: dict[str, str] = {}
    for a in amounts:
        titles.setdefault(a.pe_number, a.pe_title)
    pivot = _pivot(
        (((a.appropriation, a.pe_number), a.fiscal_year, a.amount) for a in amounts),
        years,
        lambda key: f"program element {key[1]} ({key[0]})",
    )
    money_keys = [*map(_fy, years), "total"]
    groups: list[RowGroup] = []
    for approp in sorted({ap for ap, _ in pivot}):
        rows = [
            {
                "appropriation": approp,
                "pe": pe,
                "title": titles[pe],
                **_year_cells(pivot[ap, pe], years),
            }
            for ap, pe in sorted(pivot)
            if ap == approp
        ]
        subtotal = {"appropriation": f"Total {approp}", **_money_sum(rows, money_keys)}
        groups.append(RowGroup(rows=tuple(rows), subtotal=subtotal))
    all_rows = [r for g in groups for r in g.rows]
    return _table(
        context,
        title="Future Years Defense Program by Program Element",
        subtitle=context.subtitle(f"FY{years[0]}-FY{years[-1]}"),
        columns=(
            Column(key="appropriation", header="Appropriation"),
            Column(key="pe", header="Program Element"),
            Column(key="title", header="Program Element Title"),
            *_fydp_columns(years),
        ),
        groups=tuple(groups),
        total={"appropriation": "Grand Total", **_money_sum(all_rows, money_keys)},
        footnotes=(_MONEY_NOTE,),
    )
