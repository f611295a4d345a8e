"""Execution: obligation and expenditure rates against benchmarks, burn rate, variance.

* :func:`execution_rates`: cumulative rates (percent of TOA) at a fiscal
  month, against the :class:`BenchmarkCurve` of each color
  (:data:`DEFAULT_BENCHMARKS`).
* :func:`burn_rate`: average monthly obligations over a window, and the runway.
* :func:`variance`: actual against plan.

Each reads the parts of the inputs named by :class:`ExecutionData`, which
:class:`ppbe_jobs.domain.calculations.CalculationInputs` provides. Rounding
follows :mod:`ppbe_jobs.domain.money`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Final, Literal, Protocol

from .money import (
    _CONTEXT,
    _HUNDRED,
    _ZERO,
    BudgetLine,
    Color,
    ExecutionEntry,
    _choice,
    _decimal,
    _int,
    _money_sum,
    _month,
    _no_negative_zero,
    _optional_as_of,
    _percent,
    _position,
    _ratio,
    _Report,
    _sub,
    _year,
    _year_month,
    round_money,
    round_rate,
)

__all__ = [
    "DEFAULT_BENCHMARKS",
    "DEFAULT_TOLERANCE",
    "Benchmark",
    "BenchmarkCurve",
    "BurnRate",
    "BurnReport",
    "ExecutionData",
    "ExecutionRate",
    "ExecutionReport",
    "Measure",
    "RateCheck",
    "Status",
    "Variance",
    "VarianceReport",
    "burn_rate",
    "execution_rates",
    "variance",
]

Measure = Literal["obligations", "expenditures"]
"""Which execution amount a variance compares."""
Status = Literal["on track", "below benchmark", "above benchmark", "no authority", "no benchmark"]
"""Where a rate stands against its benchmark."""


@dataclass(frozen=True, slots=True)
class BenchmarkCurve:
    """Cumulative percent of TOA expected by the end of each month of availability.

    ``points`` are ``(month, percent)`` anchors with increasing months and
    non-decreasing percents up to 100. The curve runs straight from ``(0, 0)``
    through the anchors and stays flat after the last one.
    """

    points: tuple[tuple[int, Decimal], ...]

    def __post_init__(self) -> None:
        if not isinstance(self.points, tuple) or not self.points:
            raise ValueError(
                "BenchmarkCurve.points: expected a non-empty tuple of (month, percent)"
            )
        last_month, last_percent = 0, _ZERO
        for i, point in enumerate(self.points):
            where = f"BenchmarkCurve.points[{i}]"
            if not isinstance(point, tuple) or len(point) != 2:
                raise ValueError(f"{where}: expected a (month, percent) pair, got {point!r}")
            month = _int(point[0], f"{where} month", last_month + 1, 1200, "an increasing month")
            percent = _decimal(point[1], f"{where} percent")
            if not last_percent <= percent <= _HUNDRED:
                raise ValueError(f"{where}: percent {percent} is outside {last_percent}..100")
            last_month, last_percent = month, percent

    def at(self, month: int) -> Decimal:
        """The benchmark percent at ``month`` of availability, rounded to 4 places."""
        prev_month, prev_percent = 0, _ZERO
        if month <= 0:
            return round_rate(_ZERO)
        for anchor, percent in self.points:
            if month <= anchor:
                rise = _CONTEXT.multiply(_sub(percent, prev_percent), Decimal(month - prev_month))
                step = _CONTEXT.divide(rise, Decimal(anchor - prev_month))
                return round_rate(_CONTEXT.add(prev_percent, step))
            prev_month, prev_percent = anchor, percent
        return round_rate(prev_percent)


@dataclass(frozen=True, kw_only=True, slots=True)
class Benchmark:
    """Obligation and expenditure curves of one color; ``None`` where there is no benchmark."""

    obligation: BenchmarkCurve | None
    expenditure: BenchmarkCurve | None


def _curve(*points: tuple[int, str]) -> BenchmarkCurve:
    return BenchmarkCurve(tuple((month, Decimal(percent)) for month, percent in points))


DEFAULT_BENCHMARKS: Final[Mapping[Color, Benchmark]] = MappingProxyType(
    {
        # OUSD(C) rule-of-thumb goals (cumulative, end of each year of availability),
        # spread evenly over the months as OSD analysts do.
        Color.OM: Benchmark(
            obligation=_curve((12, "100")), expenditure=_curve((12, "75"), (24, "100"))
        ),
        Color.RDTE: Benchmark(
            obligation=_curve((12, "90"), (24, "100")), expenditure=_curve((12, "55"), (24, "90"))
        ),
        Color.PROCUREMENT: Benchmark(
            obligation=_curve((12, "80"), (24, "90"), (36, "100")), expenditure=None
        ),
        # Not in the OSD table; house assumptions until the budget office sets them.
        Color.MILPERS: Benchmark(obligation=_curve((12, "100")), expenditure=None),
        Color.MILCON: Benchmark(
            obligation=_curve((12, "60"), (24, "85"), (36, "100")), expenditure=None
        ),
    }
)
"""Default obligation and expenditure benchmarks per color (see ``docs/calculations.md``)."""

DEFAULT_TOLERANCE: Final = Decimal("5.0000")
"""Percentage points either side of a benchmark that still count as "on track"."""


class ExecutionData(Protocol):
    """The inputs the execution calculations read.

    :class:`ppbe_jobs.domain.calculations.CalculationInputs` is the one to
    pass: ``lines`` with their TOA, monthly ``execution`` and ``plan`` entries,
    and the ``benchmarks`` per color.
    """

    @property
    def lines(self) -> Sequence[BudgetLine]: ...
    @property
    def execution(self) -> Sequence[ExecutionEntry]: ...
    @property
    def plan(self) -> Sequence[ExecutionEntry]: ...
    @property
    def benchmarks(self) -> Mapping[Color, Benchmark]: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class RateCheck(_Report):
    """A rate (percent of TOA) against its benchmark; ``gap`` in percentage points."""

    rate: Decimal | None
    benchmark: Decimal | None
    gap: Decimal | None
    status: Status


@dataclass(frozen=True, kw_only=True, slots=True)
class ExecutionRate(_Report):
    """Cumulative execution of a line (or, with ``line_id=None``, a color and year)."""

    line_id: str | None
    program_element: str | None
    appropriation: Color
    fiscal_year: int
    month_of_availability: int
    authority: Decimal
    obligations: Decimal
    expenditures: Decimal
    obligation: RateCheck
    expenditure: RateCheck


@dataclass(frozen=True, kw_only=True, slots=True)
class ExecutionReport(_Report):
    """Execution rates at a fiscal month, per line and per appropriation and fiscal year."""

    fiscal_year: int
    fiscal_month: int
    tolerance: Decimal
    lines: tuple[ExecutionRate, ...]
    by_appropriation: tuple[ExecutionRate, ...]
    not_started: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class BurnRate(_Report):
    """Burn rate and runway of a line (``line_id=None`` for the total)."""

    line_id: str | None
    authority: Decimal
    obligations: Decimal
    remaining: Decimal
    window_obligations: Decimal
    burn_rate: Decimal
    runway_months: Decimal | None


@dataclass(frozen=True, kw_only=True, slots=True)
class BurnReport(_Report):
    """Burn rates over the ``months`` fiscal months ending at the as-of month."""

    fiscal_year: int
    fiscal_month: int
    months: int
    window_start_fiscal_year: int
    window_start_fiscal_month: int
    lines: tuple[BurnRate, ...]
    total: BurnRate


@dataclass(frozen=True, kw_only=True, slots=True)
class Variance(_Report):
    """Actual against plan for a line (``line_id=None`` for the total)."""

    line_id: str | None
    program_element: str | None
    plan: Decimal
    actual: Decimal
    variance: Decimal
    variance_percent: Decimal | None


@dataclass(frozen=True, kw_only=True, slots=True)
class VarianceReport(_Report):
    """Variances of ``measure`` through the as-of month (all months when it is ``None``)."""

    measure: Measure
    fiscal_year: int | None
    fiscal_month: int | None
    lines: tuple[Variance, ...]
    total: Variance


# ----------------------------------------------------------------------------- execution


def _sums(
    entries: Iterable[ExecutionEntry],
    measure: Measure,
    *,
    upto: int | None = None,
    since: int | None = None,
) -> defaultdict[str, Decimal]:
    """Per line, the rounded ``measure`` of the entries in ``since..upto`` (inclusive)."""
    totals: defaultdict[str, Decimal] = defaultdict(Decimal)
    for entry in entries:
        if (upto is not None and entry.position > upto) or (
            since is not None and entry.position < since
        ):
            continue
        amount = entry.obligations if measure == "obligations" else entry.expenditures
        totals[entry.line_id] = _CONTEXT.add(totals[entry.line_id], round_money(amount))
    return totals


def _check_rate(
    amount: Decimal,
    authority: Decimal,
    curve: BenchmarkCurve | None,
    month: int,
    tolerance: Decimal,
) -> RateCheck:
    benchmark = None if curve is None else curve.at(month)
    rate = _percent(amount, authority) if authority > 0 else None
    if rate is None:
        return RateCheck(rate=None, benchmark=benchmark, gap=None, status="no authority")
    if benchmark is None:
        return RateCheck(rate=rate, benchmark=None, gap=None, status="no benchmark")
    gap = _no_negative_zero(_sub(rate, benchmark))
    status: Status = "on track"
    if gap < -tolerance:
        status = "below benchmark"
    elif gap > tolerance:
        status = "above benchmark"
    return RateCheck(rate=rate, benchmark=benchmark, gap=gap, status=status)


def _benchmark(benchmarks: Mapping[Color, Benchmark], color: Color) -> Benchmark:
    found = benchmarks.get(color)
    if found is None:
        raise ValueError(f"benchmarks: no benchmark for {color.value}")
    return found


def execution_rates(
    data: ExecutionData,
    *,
    fiscal_year: int,
    fiscal_month: int,
    tolerance: Decimal = DEFAULT_TOLERANCE,
) -> ExecutionReport:
    """Obligation and expenditure rates at a fiscal month against the benchmarks.

    rate = cumulative amount through the month * 100 / TOA; gap = rate -
    benchmark at the line's month of availability; "below benchmark" when the
    gap is below ``-tolerance``, "above benchmark" above ``+tolerance``, else
    "on track". A TOA of zero or less gives rate ``None`` ("no authority").
    Lines whose fiscal year has not begun are listed in ``not_started``.
    """
    as_of = _position(_year(fiscal_year, "fiscal_year"), _month(fiscal_month, "fiscal_month"))
    if _decimal(tolerance, "tolerance") < 0:
        raise ValueError("tolerance: must not be negative")
    obligations = _sums(data.execution, "obligations", upto=as_of)
    expenditures = _sums(data.execution, "expenditures", upto=as_of)
    rows: list[ExecutionRate] = []
    not_started: list[str] = []
    groups: dict[tuple[Color, int], list[ExecutionRate]] = defaultdict(list)
    for line in sorted(data.lines, key=lambda ln: ln.line_id):
        month = as_of - _position(line.fiscal_year, 1) + 1
        if month < 1:
            not_started.append(line.line_id)
            continue
        row = _rate_row(
            data.benchmarks,
            line=line,
            color=line.appropriation,
            fiscal_year=line.fiscal_year,
            month=month,
            authority=round_money(line.amount),
            obligations=round_money(obligations[line.line_id]),
            expenditures=round_money(expenditures[line.line_id]),
            tolerance=tolerance,
        )
        rows.append(row)
        groups[(line.appropriation, line.fiscal_year)].append(row)
    order = list(Color)
    summaries = tuple(
        _rate_row(
            data.benchmarks,
            line=None,
            color=color,
            fiscal_year=year,
            month=members[0].month_of_availability,
            authority=_money_sum(m.authority for m in members),
            obligations=_money_sum(m.obligations for m in members),
            expenditures=_money_sum(m.expenditures for m in members),
            tolerance=tolerance,
        )
        for (color, year), members in sorted(
            groups.items(), key=lambda g: (order.index(g[0][0]), g[0][1])
        )
    )
    return ExecutionReport(
        fiscal_year=fiscal_year,
        fiscal_month=fiscal_month,
        tolerance=round_rate(tolerance),
        lines=tuple(rows),
        by_appropriation=summaries,
        not_started=tuple(not_started),
    )


def _rate_row(
    benchmarks: Mapping[Color, Benchmark],
    *,
    line: BudgetLine | None,
    color: Color,
    fiscal_year: int,
    month: int,
    authority: Decimal,
    obligations: Decimal,
    expenditures: Decimal,
    tolerance: Decimal,
) -> ExecutionRate:
    benchmark = _benchmark(benchmarks, color)
    return ExecutionRate(
        line_id=None if line is None else line.line_id,
        program_element=None if line is None else line.program_element,
        appropriation=color,
        fiscal_year=fiscal_year,
        month_of_availability=month,
        authority=authority,
        obligations=obligations,
        expenditures=expenditures,
        obligation=_check_rate(obligations, authority, benchmark.obligation, month, tolerance),
        expenditure=_check_rate(expenditures, authority, benchmark.expenditure, month, tolerance),
    )


# ----------------------------------------------------------------------------- burn rate


def _burn(
    line_id: str | None, authority: Decimal, obligations: Decimal, window: Decimal, months: int
) -> BurnRate:
    remaining = _no_negative_zero(_sub(authority, obligations))
    burn = _ratio(window, Decimal(months))
    runway: Decimal | None = None
    if window > 0:
        runway = round_rate(_ZERO) if remaining <= 0 else _ratio(remaining, window, months)
    return BurnRate(
        line_id=line_id,
        authority=authority,
        obligations=obligations,
        remaining=remaining,
        window_obligations=window,
        burn_rate=round_money(burn if burn is not None else _ZERO),
        runway_months=None if runway is None else round_rate(runway),
    )


def burn_rate(
    data: ExecutionData, *, fiscal_year: int, fiscal_month: int, months: int = 3
) -> BurnReport:
    """Average monthly obligations over the last ``months`` months and the runway.

    burn = obligations in the window / ``months`` (a month without entries
    counts as zero); remaining = TOA - cumulative obligations; runway =
    remaining / burn in months, computed from the unrounded burn. Runway is
    ``None`` when the burn is zero or negative (nothing is being spent) and
    ``0.0000`` when the authority is already used up.
    """
    as_of = _position(_year(fiscal_year, "fiscal_year"), _month(fiscal_month, "fiscal_month"))
    months = _int(months, "months", 1, 120, "a number of months")
    start = as_of - months + 1
    cumulative = _sums(data.execution, "obligations", upto=as_of)
    window = _sums(data.execution, "obligations", upto=as_of, since=start)
    rows = tuple(
        _burn(
            line.line_id,
            round_money(line.amount),
            round_money(cumulative[line.line_id]),
            round_money(window[line.line_id]),
            months,
        )
        for line in sorted(data.lines, key=lambda ln: ln.line_id)
    )
    total = _burn(
        None,
        _money_sum(r.authority for r in rows),
        _money_sum(r.obligations for r in rows),
        _money_sum(r.window_obligations for r in rows),
        months,
    )
    start_year, start_month = _year_month(start)
    return BurnReport(
        fiscal_year=fiscal_year,
        fiscal_month=fiscal_month,
        months=months,
        window_start_fiscal_year=start_year,
        window_start_fiscal_month=start_month,
        lines=rows,
        total=total,
    )


# ----------------------------------------------------------------------------- variance


def _variance(line_id: str | None, pe: str | None, plan: Decimal, actual: Decimal) -> Variance:
    difference = _no_negative_zero(_sub(actual, plan))
    return Variance(
        line_id=line_id,
        program_element=pe,
        plan=plan,
        actual=actual,
        variance=difference,
        variance_percent=_percent(difference, plan.copy_abs()),
    )


def variance(
    data: ExecutionData,
    *,
    measure: Measure = "obligations",
    fiscal_year: int | None = None,
    fiscal_month: int | None = None,
) -> VarianceReport:
    """Actual against plan per line and in total, through the as-of month if one is given.

    variance = actual - plan; variance_percent = variance * 100 / |plan|, so a
    positive percent always means "more than planned"; ``None`` when the plan
    is zero.
    """
    _choice(measure, "measure", ("obligations", "expenditures"))
    upto = _optional_as_of(fiscal_year, fiscal_month)
    plan = _sums(data.plan, measure, upto=upto)
    actual = _sums(data.execution, measure, upto=upto)
    rows = tuple(
        _variance(
            line.line_id,
            line.program_element,
            round_money(plan[line.line_id]),
            round_money(actual[line.line_id]),
        )
        for line in sorted(data.lines, key=lambda ln: ln.line_id)
    )
    total = _variance(
        None, None, _money_sum(r.plan for r in rows), _money_sum(r.actual for r in rows)
    )
    return VarianceReport(
        measure="expenditures" if measure == "expenditures" else "obligations",
        fiscal_year=fiscal_year,
        fiscal_month=fiscal_month,
        lines=rows,
        total=total,
    )
