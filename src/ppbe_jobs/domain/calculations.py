"""Budget calculations: escalation, FYDP roll-ups, execution, variance, Anti-Deficiency checks.

Pure functions over frozen dataclasses, ``Decimal`` end to end. Nothing here
touches a database, a queue or the clock: the budget-calculation job loads a
:class:`CalculationInputs`, calls :func:`run_calculation` and stores the
JSON-friendly result. ``docs/calculations.md`` gives the formulas, the tables
and worked examples.

=====================  ==========================================================
kind                   function
=====================  ==========================================================
``escalation``         :func:`escalate_lines`, :func:`escalate_series`,
                       :func:`to_then_year`, :func:`to_constant`
``fydp-rollup``        :func:`fydp_rollup`
``execution-rates``    :func:`execution_rates` (against :data:`DEFAULT_BENCHMARKS`)
``burn-rate``          :func:`burn_rate`
``variance``           :func:`variance`
``ada-check``          :func:`ada_check` (rules in :class:`AdaRules`)
``full``               all of the above
=====================  ==========================================================

Units and calendar: amounts are thousands of dollars (``Decimal("1200.000")``
is $1,200,000). Fiscal year N runs from 1 October N-1 to 30 September N and
fiscal month 1 is October. A line's *month of availability* counts from October
of its own fiscal year, so month 13 of an FY2026 RDT&E line is FY2027 month 1.

Rounding rules:

1. All arithmetic runs in one explicit context (:func:`decimal_context`): 50
   significant digits, ``ROUND_HALF_EVEN``, traps on invalid operations,
   division by zero and overflow. The caller's ambient context is never used.
2. Money read from the inputs is rounded to 3 places (one dollar); sums and
   differences of money are then exact, so every total foots.
3. Every ratio (an escalated amount, a rate, a percentage, an interpolated
   benchmark, a burn rate, a runway) is computed at full precision from those
   money figures and rounded once: money to 3 places, rates, percentages and
   months to 4. Rates are percentages (``50.0000`` is 50%).
4. Totals of derived money are sums of the rounded figures shown; a gap is the
   difference of the two 4-place rates shown.
5. A ratio with a zero denominator is ``None``, never an error or infinity; no
   result is ever ``-0.000``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow
from enum import Enum, StrEnum
from types import MappingProxyType
from typing import Any, Final, Literal

__all__ = [
    "CALCULATION_KINDS",
    "DEFAULT_ADA_RULES",
    "DEFAULT_AVAILABILITY_YEARS",
    "DEFAULT_BENCHMARKS",
    "DEFAULT_PROGRAM_ELEMENT_COLORS",
    "DEFAULT_PURPOSE_RULES",
    "DEFAULT_TOLERANCE",
    "MONEY_PLACES",
    "PRECISION",
    "RATE_PLACES",
    "AdaFinding",
    "AdaReport",
    "AdaRules",
    "Benchmark",
    "BenchmarkCurve",
    "BudgetLine",
    "BurnRate",
    "BurnReport",
    "CalculationInputs",
    "CalculationResult",
    "Color",
    "DeflatorTable",
    "Direction",
    "EscalatedAmount",
    "EscalationReport",
    "ExecutionEntry",
    "ExecutionRate",
    "ExecutionReport",
    "FydpRollup",
    "Measure",
    "PurposeRule",
    "RateCheck",
    "RollupRow",
    "RuleName",
    "Severity",
    "Status",
    "Variance",
    "VarianceReport",
    "ada_check",
    "burn_rate",
    "decimal_context",
    "escalate_lines",
    "escalate_series",
    "execution_rates",
    "fydp_rollup",
    "round_money",
    "round_rate",
    "run_calculation",
    "to_constant",
    "to_then_year",
    "variance",
]

Direction = Literal["to-then-year", "to-constant"]
"""Escalation direction: base-year to then-year dollars, or back."""
Measure = Literal["obligations", "expenditures"]
"""Which execution amount a variance compares."""
Status = Literal["on track", "below benchmark", "above benchmark", "no authority", "no benchmark"]
"""Where a rate stands against its benchmark."""
RuleName = Literal["amount", "time", "purpose"]
"""The Anti-Deficiency rule a finding comes from."""
Severity = Literal["violation", "warning"]
"""How sure a finding is: a violation, or a warning to look at before it becomes one."""

# ----------------------------------------------------------------------------- numbers

PRECISION: Final = 50
"""Significant digits of every intermediate result."""

MONEY_PLACES: Final = 3
"""Decimal places of money results (thousands of dollars, so one dollar)."""

RATE_PLACES: Final = 4
"""Decimal places of rates, percentages, gaps and runway months."""

_CONTEXT: Final = Context(
    prec=PRECISION, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
_MONEY: Final = Decimal(1).scaleb(-MONEY_PLACES)
_RATE: Final = Decimal(1).scaleb(-RATE_PLACES)
_ZERO: Final = Decimal(0)
_HUNDRED: Final = Decimal(100)
_MIN_YEAR: Final = 1950
_MAX_YEAR: Final = 2200
_PE_CODE: Final = re.compile(r"\d{7}[A-Z][A-Z0-9]{0,2}")
_MONTHS: Final = (
    "Oct",
    "Nov",
    "Dec",
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
)


def decimal_context() -> Context:
    """A copy of the context all calculations use: 50 digits, ``ROUND_HALF_EVEN``, traps."""
    return _CONTEXT.copy()


def round_money(value: Decimal) -> Decimal:
    """``value`` rounded half-even to 3 places: ``Decimal("2.0005")`` gives ``2.000``."""
    return _no_negative_zero(value.quantize(_MONEY, context=_CONTEXT))


def round_rate(value: Decimal) -> Decimal:
    """``value`` rounded half-even to 4 places: ``Decimal("12.34565")`` gives ``12.3456``."""
    return _no_negative_zero(value.quantize(_RATE, context=_CONTEXT))


def _no_negative_zero(value: Decimal) -> Decimal:
    return value.copy_abs() if value.is_zero() else value


def _sum(values: Iterable[Decimal]) -> Decimal:
    total = _ZERO
    for value in values:
        total = _CONTEXT.add(total, value)
    return total


def _money_sum(values: Iterable[Decimal]) -> Decimal:
    # The operands are already at 3 places, so this only fixes the exponent of an empty sum.
    return round_money(_sum(values))


def _sub(a: Decimal, b: Decimal) -> Decimal:
    return _CONTEXT.subtract(a, b)


def _ratio(numerator: Decimal, denominator: Decimal, scale: int = 1) -> Decimal | None:
    """``numerator * scale / denominator`` at full precision, ``None`` for a zero denominator."""
    if denominator.is_zero():
        return None
    return _CONTEXT.divide(_CONTEXT.multiply(numerator, Decimal(scale)), denominator)


def _percent(part: Decimal, whole: Decimal) -> Decimal | None:
    raw = _ratio(part, whole, 100)
    return None if raw is None else round_rate(raw)


# ----------------------------------------------------------------------------- validation


def _decimal(value: object, name: str) -> Decimal:
    if isinstance(value, float):
        raise ValueError(
            f"{name}: {value!r} is a float; pass a Decimal such as Decimal({str(value)!r}) "
            "so no cent is lost to binary rounding"
        )
    if not isinstance(value, Decimal):
        raise ValueError(f"{name}: expected a Decimal, got {type(value).__name__} {value!r}")
    if not value.is_finite():
        raise ValueError(f"{name}: expected a finite Decimal, got {value}")
    return value


def _coerce_decimal(value: object, name: str) -> Decimal:
    """A Decimal from what a JSON job payload holds: a Decimal, an int or a numeric str."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{name}: {value!r} is not a number") from None
    return _decimal(value, name)


def _int(value: object, name: str, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected {what}, got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name}: {value} is outside {low}..{high}")
    return value


def _year(value: object, name: str) -> int:
    return _int(value, name, _MIN_YEAR, _MAX_YEAR, "a fiscal year such as 2026")


def _month(value: object, name: str) -> int:
    return _int(value, name, 1, 12, "a fiscal month 1-12 (1 = October)")


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name}: expected a non-empty str, got {value!r}")
    return value


def _choice(value: object, name: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
    return value


# ----------------------------------------------------------------------------- calendar


def _position(fiscal_year: int, fiscal_month: int) -> int:
    """An absolute month number: consecutive fiscal months differ by one, across years."""
    return fiscal_year * 12 + fiscal_month - 1


def _year_month(position: int) -> tuple[int, int]:
    return position // 12, position % 12 + 1


def _month_label(position: int) -> str:
    fiscal_year, month = _year_month(position)
    calendar_year = fiscal_year - 1 if month <= 3 else fiscal_year
    return f"FY{fiscal_year} month {month} ({_MONTHS[month - 1]} {calendar_year})"


# ----------------------------------------------------------------------------- inputs


class Color(StrEnum):
    """Color of money: the kind of appropriation, which fixes what it may buy and for how long.

    The values are those of ``ppbe_jobs.db.enums.ColorOfMoney``; members of
    either enum and their plain strings compare and hash alike, so either may
    be used as a key, and :meth:`parse` turns any of them into a ``Color``.
    """

    MILPERS = "MILPERS"
    OM = "O&M"
    PROCUREMENT = "Procurement"
    RDTE = "RDT&E"
    MILCON = "MILCON"

    @classmethod
    def parse(cls, value: object, name: str = "appropriation") -> Color:
        """The color ``value`` names (``"O&M"``, ``"OM"``, ``"RDTE"``, ``"PROC"``...).

        Raises :class:`ValueError` naming ``name`` and the accepted values.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            found = _COLOR_ALIASES.get("".join(ch for ch in value.upper() if ch.isalnum()))
            if found is not None:
                return found
        accepted = ", ".join(color.value for color in cls)
        raise ValueError(f"{name}: unknown color of money {value!r}; expected one of {accepted}")


_COLOR_ALIASES: Final[Mapping[str, Color]] = MappingProxyType(
    {
        "MILPERS": Color.MILPERS,
        "MP": Color.MILPERS,
        "MILITARYPERSONNEL": Color.MILPERS,
        "OM": Color.OM,
        "OANDM": Color.OM,
        "OPERATIONANDMAINTENANCE": Color.OM,
        "PROCUREMENT": Color.PROCUREMENT,
        "PROC": Color.PROCUREMENT,
        "RDTE": Color.RDTE,
        "RDTANDE": Color.RDTE,
        "MILCON": Color.MILCON,
        "MC": Color.MILCON,
        "MILITARYCONSTRUCTION": Color.MILCON,
    }
)


@dataclass(frozen=True, kw_only=True, slots=True)
class BudgetLine:
    """A program element's amount in one appropriation and fiscal year.

    ``amount`` is the line's total obligation authority (TOA) in thousands of
    dollars, negative for a decrement. Constant (base-year) or then-year
    dollars as the calculation expects: escalation reads base-year dollars by
    default, everything else then-year dollars. ``program_element`` is seven
    digits and a service suffix (``0603502N``, ``0305199D8Z``).
    """

    line_id: str
    program_element: str
    appropriation: Color
    fiscal_year: int
    amount: Decimal
    organization: str

    def __post_init__(self) -> None:
        where = f"BudgetLine[{_text(self.line_id, 'BudgetLine.line_id')!r}]"
        pe = self.program_element
        if not isinstance(pe, str) or not _PE_CODE.fullmatch(pe):
            raise ValueError(
                f"{where}.program_element: {pe!r} is not a program element code "
                "(7 digits and a service suffix, e.g. 0603502N)"
            )
        color = Color.parse(self.appropriation, f"{where}.appropriation")
        object.__setattr__(self, "appropriation", color)
        _year(self.fiscal_year, f"{where}.fiscal_year")
        _decimal(self.amount, f"{where}.amount")
        _text(self.organization, f"{where}.organization")


@dataclass(frozen=True, kw_only=True, slots=True)
class ExecutionEntry:
    """Obligations and expenditures recorded against a line in one fiscal month.

    Amounts are for the month, not cumulative; negative for deobligations and
    downward adjustments. The same shape holds a spend plan
    (:attr:`CalculationInputs.plan`). ``purpose`` (``"investment"``,
    ``"construction"``...) and ``unit_cost`` let :func:`ada_check` apply the
    purpose rules; ``reference`` is the obligating document, for findings.
    """

    line_id: str
    fiscal_year: int
    fiscal_month: int
    obligations: Decimal = _ZERO
    expenditures: Decimal = _ZERO
    purpose: str | None = None
    unit_cost: Decimal | None = None
    reference: str = ""

    def __post_init__(self) -> None:
        where = f"ExecutionEntry[{_text(self.line_id, 'ExecutionEntry.line_id')!r}]"
        _year(self.fiscal_year, f"{where}.fiscal_year")
        _month(self.fiscal_month, f"{where}.fiscal_month")
        _decimal(self.obligations, f"{where}.obligations")
        _decimal(self.expenditures, f"{where}.expenditures")
        if self.purpose is not None:
            object.__setattr__(self, "purpose", _text(self.purpose, f"{where}.purpose").lower())
        if self.unit_cost is not None:
            _decimal(self.unit_cost, f"{where}.unit_cost")
        if not isinstance(self.reference, str):
            raise ValueError(f"{where}.reference: expected a str, got {self.reference!r}")

    @property
    def position(self) -> int:
        """Absolute month number of the entry (for ordering; consecutive months differ by 1)."""
        return _position(self.fiscal_year, self.fiscal_month)


@dataclass(frozen=True, kw_only=True)
class DeflatorTable:
    """Price indices per color of money and fiscal year; ``base_year`` has index 1.0000.

    For budget authority use the OSD Green Book TOA (outlay-weighted) indices.
    The indices are used as given, never rounded.
    """

    base_year: int
    indices: Mapping[Color, Mapping[int, Decimal]]

    def __post_init__(self) -> None:
        _year(self.base_year, "DeflatorTable.base_year")
        if not isinstance(self.indices, Mapping):
            raise ValueError("DeflatorTable.indices: expected a mapping of color to {year: index}")
        clean: dict[Color, Mapping[int, Decimal]] = {}
        for key, by_year in self.indices.items():
            color = Color.parse(key, "DeflatorTable.indices")
            where = f"DeflatorTable.indices[{color.value!r}]"
            if not isinstance(by_year, Mapping):
                raise ValueError(f"{where}: expected a mapping of fiscal year to index")
            years: dict[int, Decimal] = {}
            for fiscal_year, index in by_year.items():
                _year(fiscal_year, f"{where} key")
                if _decimal(index, f"{where}[{fiscal_year}]") <= 0:
                    raise ValueError(f"{where}[{fiscal_year}]: an index must be positive")
                years[fiscal_year] = index
            clean[color] = MappingProxyType(years)
        object.__setattr__(self, "indices", MappingProxyType(clean))

    def index(self, appropriation: Color, fiscal_year: int) -> Decimal:
        """The index of ``appropriation`` in ``fiscal_year``; ValueError naming what is missing."""
        by_year = self.indices.get(appropriation)
        if by_year is None:
            raise ValueError(f"deflators.indices: no index table for {appropriation.value}")
        index = by_year.get(fiscal_year)
        if index is None:
            span = f"FY{min(by_year)}-FY{max(by_year)}" if by_year else "no years"
            raise ValueError(
                f"deflators.indices[{appropriation.value!r}]: no index for FY{fiscal_year} "
                f"(the table covers {span})"
            )
        return index


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

DEFAULT_AVAILABILITY_YEARS: Final[Mapping[Color, int]] = MappingProxyType(
    {Color.MILPERS: 1, Color.OM: 1, Color.PROCUREMENT: 3, Color.RDTE: 2, Color.MILCON: 5}
)
"""Years an appropriation is available for new obligations, from the start of its fiscal year."""

DEFAULT_PROGRAM_ELEMENT_COLORS: Final[Mapping[str, frozenset[Color]]] = MappingProxyType(
    {"06": frozenset({Color.RDTE})}
)
"""PE code prefix to the colors it may carry: ``06`` is Major Force Program 6, R&D."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PurposeRule:
    """An obligation for ``purpose`` larger than ``threshold`` is chargeable only to ``colors``.

    The size compared is the entry's ``unit_cost`` when given, else its
    obligation amount (thousands of dollars); ``threshold=None`` means any size.
    """

    purpose: str
    colors: frozenset[Color]
    threshold: Decimal | None = None
    citation: str = "31 U.S.C. 1301(a)"
    description: str = ""

    def __post_init__(self) -> None:
        where = f"PurposeRule[{_text(self.purpose, 'PurposeRule.purpose')!r}]"
        object.__setattr__(self, "purpose", self.purpose.strip().lower())
        colors = frozenset(Color.parse(color, f"{where}.colors") for color in self.colors)
        if not colors:
            raise ValueError(f"{where}.colors: name at least one color")
        object.__setattr__(self, "colors", colors)
        if self.threshold is not None and _decimal(self.threshold, f"{where}.threshold") < 0:
            raise ValueError(f"{where}.threshold: must not be negative")


DEFAULT_PURPOSE_RULES: Final[tuple[PurposeRule, ...]] = (
    PurposeRule(
        purpose="investment",
        colors=frozenset({Color.PROCUREMENT, Color.RDTE}),
        threshold=Decimal("250"),
        citation="31 U.S.C. 1301(a); 10 U.S.C. 2245a; DoD FMR Vol. 2A, Ch. 1, 010201",
        description="an investment item above the expense/investment threshold is Procurement"
        " (RDT&E for development and test articles), not O&M",
    ),
    PurposeRule(
        purpose="construction",
        colors=frozenset({Color.MILCON}),
        threshold=Decimal("4000"),
        citation="31 U.S.C. 1301(a); 10 U.S.C. 2805(c)",
        description="construction above the O&M minor-construction limit needs MILCON",
    ),
    PurposeRule(
        purpose="military-pay",
        colors=frozenset({Color.MILPERS}),
        description="pay and allowances of military members are MILPERS",
    ),
    PurposeRule(
        purpose="research",
        colors=frozenset({Color.RDTE}),
        description="research, development, test and evaluation efforts are RDT&E",
    ),
)
"""Default purpose rules (thresholds in thousands of dollars; check them against current law)."""


@dataclass(frozen=True, kw_only=True)
class AdaRules:
    """The tables behind :func:`ada_check`; every field has a documented default."""

    availability_years: Mapping[Color, int] = field(
        default_factory=lambda: DEFAULT_AVAILABILITY_YEARS
    )
    program_element_colors: Mapping[str, frozenset[Color]] = field(
        default_factory=lambda: DEFAULT_PROGRAM_ELEMENT_COLORS
    )
    purpose_rules: tuple[PurposeRule, ...] = DEFAULT_PURPOSE_RULES

    def __post_init__(self) -> None:
        years = {
            Color.parse(color, "AdaRules.availability_years"): _int(
                n, f"AdaRules.availability_years[{color!r}]", 1, 30, "a number of years"
            )
            for color, n in self.availability_years.items()
        }
        object.__setattr__(self, "availability_years", MappingProxyType(years))
        prefixes = {
            _text(prefix, "AdaRules.program_element_colors"): frozenset(
                Color.parse(c, f"AdaRules.program_element_colors[{prefix!r}]") for c in colors
            )
            for prefix, colors in self.program_element_colors.items()
        }
        object.__setattr__(self, "program_element_colors", MappingProxyType(prefixes))
        rules = tuple(self.purpose_rules)
        for i, rule in enumerate(rules):
            if not isinstance(rule, PurposeRule):
                raise ValueError(f"AdaRules.purpose_rules[{i}]: expected a PurposeRule")
        object.__setattr__(self, "purpose_rules", rules)

    def colors_for(self, program_element: str) -> tuple[str, frozenset[Color]] | None:
        """The longest prefix of ``program_element`` in the table and its colors, if any."""
        matches = [p for p in self.program_element_colors if program_element.startswith(p)]
        if not matches:
            return None
        prefix = max(matches, key=len)
        return prefix, self.program_element_colors[prefix]


DEFAULT_ADA_RULES: Final = AdaRules()
"""The default Anti-Deficiency tables."""


@dataclass(frozen=True, kw_only=True)
class CalculationInputs:
    """Everything a calculation reads: lines, execution, plan and the reference tables.

    Validated on construction: line ids are unique and every execution or plan
    entry names a line; errors name the offending field (``execution[3].line_id``).
    """

    lines: Sequence[BudgetLine] = ()
    execution: Sequence[ExecutionEntry] = ()
    plan: Sequence[ExecutionEntry] = ()
    deflators: DeflatorTable | None = None
    benchmarks: Mapping[Color, Benchmark] = field(default_factory=lambda: DEFAULT_BENCHMARKS)
    ada_rules: AdaRules = DEFAULT_ADA_RULES

    def __post_init__(self) -> None:
        seen: set[str] = set()
        lines = self._tuple("lines", BudgetLine)
        for i, line in enumerate(lines):
            if line.line_id in seen:
                raise ValueError(f"lines[{i}].line_id: duplicate line id {line.line_id!r}")
            seen.add(line.line_id)
        for name in ("execution", "plan"):
            for i, entry in enumerate(self._tuple(name, ExecutionEntry)):
                if entry.line_id not in seen:
                    raise ValueError(f"{name}[{i}].line_id: no budget line {entry.line_id!r}")
        if self.deflators is not None and not isinstance(self.deflators, DeflatorTable):
            raise ValueError("deflators: expected a DeflatorTable or None")
        if not isinstance(self.benchmarks, Mapping):
            raise ValueError("benchmarks: expected a mapping of color to Benchmark")
        benchmarks: dict[Color, Benchmark] = {}
        for color, benchmark in self.benchmarks.items():
            if not isinstance(benchmark, Benchmark):
                raise ValueError(f"benchmarks[{color!r}]: expected a Benchmark")
            benchmarks[Color.parse(color, "benchmarks")] = benchmark
        object.__setattr__(self, "benchmarks", MappingProxyType(benchmarks))
        if not isinstance(self.ada_rules, AdaRules):
            raise ValueError("ada_rules: expected an AdaRules")

    def _tuple(self, name: str, kind: type[Any]) -> tuple[Any, ...]:
        value = getattr(self, name)
        if isinstance(value, str | bytes) or not isinstance(value, Iterable):
            raise ValueError(f"{name}: expected a sequence of {kind.__name__}")
        items = tuple(value)
        for i, item in enumerate(items):
            if not isinstance(item, kind):
                raise ValueError(f"{name}[{i}]: expected a {kind.__name__}, got {item!r}")
        object.__setattr__(self, name, items)
        return items


# ----------------------------------------------------------------------------- results


def _plain(value: object) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


class _Report:
    """Base of the result dataclasses: :meth:`to_dict` for storage and job results."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """This result as dicts, lists, str, int, bool, None and Decimal (exact in jobq's JSON)."""
        plain: dict[str, Any] = _plain(self)
        return plain


@dataclass(frozen=True, kw_only=True, slots=True)
class EscalatedAmount(_Report):
    """One amount converted: ``result = amount * index / base_index`` (or the inverse)."""

    line_id: str | None
    appropriation: Color
    fiscal_year: int
    amount: Decimal
    index: Decimal
    base_index: Decimal
    result: Decimal


@dataclass(frozen=True, kw_only=True, slots=True)
class EscalationReport(_Report):
    """Converted amounts with per-year and grand totals; ``years`` is contiguous."""

    direction: Direction
    base_year: int
    items: tuple[EscalatedAmount, ...]
    years: tuple[int, ...]
    amount_by_year: tuple[Decimal, ...]
    result_by_year: tuple[Decimal, ...]
    amount_total: Decimal
    result_total: Decimal


@dataclass(frozen=True, kw_only=True, slots=True)
class RollupRow(_Report):
    """One key's amount in each year of the roll-up (aligned with ``years``) and its total."""

    key: str
    amounts: tuple[Decimal, ...]
    total: Decimal


@dataclass(frozen=True, kw_only=True, slots=True)
class FydpRollup(_Report):
    """Budget lines summed by appropriation, program element, organization and fiscal year."""

    years: tuple[int, ...]
    by_appropriation: tuple[RollupRow, ...]
    by_program_element: tuple[RollupRow, ...]
    by_organization: tuple[RollupRow, ...]
    year_totals: tuple[Decimal, ...]
    grand_total: Decimal
    excluded_line_ids: tuple[str, ...]


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


@dataclass(frozen=True, kw_only=True, slots=True)
class AdaFinding(_Report):
    """A possible Anti-Deficiency Act problem on a line.

    ``rule`` is ``"amount"``, ``"time"`` or ``"purpose"``; ``severity`` is
    ``"violation"`` or ``"warning"``; ``amount`` is the money at issue;
    ``recorded_*`` is when the offending obligation was recorded, if one was.
    """

    rule: RuleName
    severity: Severity
    line_id: str
    program_element: str
    appropriation: Color
    fiscal_year: int
    message: str
    citation: str
    amount: Decimal | None
    recorded_fiscal_year: int | None
    recorded_fiscal_month: int | None


@dataclass(frozen=True, kw_only=True, slots=True)
class AdaReport(_Report):
    """All findings, with counts per rule; ``clean`` when there are none."""

    fiscal_year: int | None
    fiscal_month: int | None
    findings: tuple[AdaFinding, ...]
    counts: Mapping[str, int]
    clean: bool


@dataclass(frozen=True, kw_only=True)
class CalculationResult:
    """What :func:`run_calculation` returns: per kind, a JSON-friendly dict (or ``None``)."""

    kind: str
    results: Mapping[str, dict[str, Any] | None]

    def to_dict(self) -> dict[str, Any]:
        """The result as a job return value, with the rounding it was computed under."""
        return {
            "kind": self.kind,
            "units": "thousands of dollars",
            "rounding": {
                "mode": "ROUND_HALF_EVEN",
                "money_places": MONEY_PLACES,
                "rate_places": RATE_PLACES,
            },
            "results": dict(self.results),
        }


# ----------------------------------------------------------------------------- escalation


def _escalate(
    amount: Decimal,
    appropriation: Color | str,
    fiscal_year: int,
    deflators: DeflatorTable,
    base_year: int | None,
    direction: str,
    line_id: str | None = None,
) -> EscalatedAmount:
    color = Color.parse(appropriation)
    _year(fiscal_year, "fiscal_year")
    _choice(direction, "direction", ("to-then-year", "to-constant"))
    base = deflators.base_year if base_year is None else _year(base_year, "base_year")
    money = round_money(_decimal(amount, "amount"))
    index, base_index = deflators.index(color, fiscal_year), deflators.index(color, base)
    scale, divisor = (index, base_index) if direction == "to-then-year" else (base_index, index)
    result = _CONTEXT.divide(_CONTEXT.multiply(money, scale), divisor)
    return EscalatedAmount(
        line_id=line_id,
        appropriation=color,
        fiscal_year=fiscal_year,
        amount=money,
        index=index,
        base_index=base_index,
        result=round_money(result),
    )


def to_then_year(
    amount: Decimal,
    appropriation: Color | str,
    fiscal_year: int,
    deflators: DeflatorTable,
    *,
    base_year: int | None = None,
) -> Decimal:
    """Then-year dollars of ``fiscal_year``: ``amount * index[FY] / index[base]``, 3 places."""
    return _escalate(
        amount, appropriation, fiscal_year, deflators, base_year, "to-then-year"
    ).result


def to_constant(
    amount: Decimal,
    appropriation: Color | str,
    fiscal_year: int,
    deflators: DeflatorTable,
    *,
    base_year: int | None = None,
) -> Decimal:
    """Constant base-year dollars of a then-year amount: ``amount * index[base] / index[FY]``."""
    return _escalate(amount, appropriation, fiscal_year, deflators, base_year, "to-constant").result


def _escalation_report(
    direction: str, base_year: int, items: list[EscalatedAmount]
) -> EscalationReport:
    years = _span(item.fiscal_year for item in items)
    return EscalationReport(
        direction="to-constant" if direction == "to-constant" else "to-then-year",
        base_year=base_year,
        items=tuple(items),
        years=years,
        amount_by_year=tuple(
            _money_sum(i.amount for i in items if i.fiscal_year == year) for year in years
        ),
        result_by_year=tuple(
            _money_sum(i.result for i in items if i.fiscal_year == year) for year in years
        ),
        amount_total=_money_sum(item.amount for item in items),
        result_total=_money_sum(item.result for item in items),
    )


def escalate_series(
    series: Mapping[int, Decimal],
    appropriation: Color | str,
    deflators: DeflatorTable,
    *,
    direction: Direction = "to-then-year",
    base_year: int | None = None,
) -> EscalationReport:
    """Convert a ``{fiscal year: amount}`` series of one color (a FYDP row), with totals."""
    if not isinstance(series, Mapping):
        raise ValueError("series: expected a mapping of fiscal year to amount")
    base = deflators.base_year if base_year is None else _year(base_year, "base_year")
    for year in series:
        _year(year, "series key")
    items = [
        _escalate(amount, appropriation, year, deflators, base, direction)
        for year, amount in sorted(series.items())
    ]
    return _escalation_report(direction, base, items)


def escalate_lines(
    lines: Sequence[BudgetLine],
    deflators: DeflatorTable,
    *,
    direction: Direction = "to-then-year",
    base_year: int | None = None,
) -> EscalationReport:
    """Convert every line's amount with the index of its own color and fiscal year."""
    base = deflators.base_year if base_year is None else _year(base_year, "base_year")
    items = [
        _escalate(
            ln.amount, ln.appropriation, ln.fiscal_year, deflators, base, direction, ln.line_id
        )
        for ln in sorted(lines, key=lambda ln: ln.line_id)
    ]
    return _escalation_report(direction, base, items)


# ----------------------------------------------------------------------------- FYDP roll-up


def _span(years: Iterable[int]) -> tuple[int, ...]:
    present = set(years)
    return tuple(range(min(present), max(present) + 1)) if present else ()


def fydp_rollup(
    lines: Sequence[BudgetLine], *, fydp_start: int | None = None, years: int = 5
) -> FydpRollup:
    """Sum lines by appropriation, program element, organization and fiscal year.

    The window is ``fydp_start`` and the ``years - 1`` years after it, or, without
    ``fydp_start``, every year from the earliest line to the latest. A key with
    no line in a year shows ``0.000`` there; lines outside the window are left
    out and listed in ``excluded_line_ids``.
    """
    if fydp_start is None:
        window = _span(line.fiscal_year for line in lines)
    else:
        start = _year(fydp_start, "fydp_start")
        window = tuple(range(start, start + _int(years, "years", 1, 30, "a number of years")))
    included = [line for line in lines if line.fiscal_year in window]
    excluded = tuple(sorted(line.line_id for line in lines if line.fiscal_year not in window))
    column = {year: i for i, year in enumerate(window)}

    def rows(
        key: Callable[[BudgetLine], str], order: Callable[[str], Any]
    ) -> tuple[RollupRow, ...]:
        cells: dict[str, list[Decimal]] = defaultdict(lambda: [_ZERO] * len(window))
        for line in included:
            cell = cells[key(line)]
            cell[column[line.fiscal_year]] = _CONTEXT.add(
                cell[column[line.fiscal_year]], round_money(line.amount)
            )
        return tuple(
            RollupRow(
                key=name,
                amounts=tuple(round_money(a) for a in cells[name]),
                total=_money_sum(cells[name]),
            )
            for name in sorted(cells, key=order)
        )

    color_order = list(Color)
    by_appropriation = rows(
        lambda ln: ln.appropriation.value, lambda v: color_order.index(Color(v))
    )
    year_totals = tuple(
        _money_sum(row.amounts[i] for row in by_appropriation) for i in range(len(window))
    )
    return FydpRollup(
        years=window,
        by_appropriation=by_appropriation,
        by_program_element=rows(lambda ln: ln.program_element, str),
        by_organization=rows(lambda ln: ln.organization, str),
        year_totals=year_totals,
        grand_total=_money_sum(year_totals),
        excluded_line_ids=excluded,
    )


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
    data: CalculationInputs,
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
    data: CalculationInputs, *, fiscal_year: int, fiscal_month: int, months: int = 3
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
    data: CalculationInputs,
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


def _optional_as_of(fiscal_year: int | None, fiscal_month: int | None) -> int | None:
    if fiscal_year is None and fiscal_month is None:
        return None
    if fiscal_year is None or fiscal_month is None:
        missing = "fiscal_year" if fiscal_year is None else "fiscal_month"
        raise ValueError(f"{missing}: give fiscal_year and fiscal_month together")
    return _position(_year(fiscal_year, "fiscal_year"), _month(fiscal_month, "fiscal_month"))


# ----------------------------------------------------------------------------- ADA checks


def ada_check(
    data: CalculationInputs, *, fiscal_year: int | None = None, fiscal_month: int | None = None
) -> AdaReport:
    """Anti-Deficiency Act findings on the obligations recorded through the as-of month.

    * amount (31 U.S.C. 1341(a)(1)(A)): cumulative obligations on a line, month
      by month, exceed its TOA; reported at the first month it happened, with
      the peak excess, even when a later deobligation brought it back.
    * time (31 U.S.C. 1502(a), 1341(a)(1)(B)): a positive obligation recorded
      after the period of availability ended (bona fide need) or before it began.
    * purpose (31 U.S.C. 1301(a)): a line whose PE prefix allows other colors
      (a violation once obligated, a warning before), and obligations whose
      purpose and size call for another color (:class:`PurposeRule`).
    """
    upto = _optional_as_of(fiscal_year, fiscal_month)
    rules = data.ada_rules
    entries: dict[str, list[ExecutionEntry]] = defaultdict(list)
    for entry in data.execution:
        if upto is None or entry.position <= upto:
            entries[entry.line_id].append(entry)
    findings: list[AdaFinding] = []
    for line in sorted(data.lines, key=lambda ln: ln.line_id):
        mine = sorted(entries[line.line_id], key=lambda e: e.position)
        findings.extend(_amount_findings(line, mine))
        findings.extend(_time_findings(line, mine, rules))
        findings.extend(_purpose_findings(line, mine, rules))
    counts = {
        rule: sum(1 for f in findings if f.rule == rule) for rule in ("amount", "time", "purpose")
    }
    return AdaReport(
        fiscal_year=fiscal_year,
        fiscal_month=fiscal_month,
        findings=tuple(findings),
        counts=counts,
        clean=not findings,
    )


def _finding(
    line: BudgetLine,
    rule: RuleName,
    severity: Severity,
    message: str,
    citation: str,
    amount: Decimal | None,
    position: int | None,
) -> AdaFinding:
    recorded = _year_month(position) if position is not None else (None, None)
    return AdaFinding(
        rule=rule,
        severity=severity,
        line_id=line.line_id,
        program_element=line.program_element,
        appropriation=line.appropriation,
        fiscal_year=line.fiscal_year,
        message=message,
        citation=citation,
        amount=amount,
        recorded_fiscal_year=recorded[0],
        recorded_fiscal_month=recorded[1],
    )


def _amount_findings(line: BudgetLine, entries: list[ExecutionEntry]) -> list[AdaFinding]:
    authority = round_money(line.amount)
    by_month: dict[int, Decimal] = defaultdict(Decimal)
    for entry in entries:
        by_month[entry.position] = _CONTEXT.add(
            by_month[entry.position], round_money(entry.obligations)
        )
    running, first, peak = _ZERO, None, _ZERO
    for position in sorted(by_month):
        running = _CONTEXT.add(running, by_month[position])
        excess = _sub(running, authority)
        if excess > 0:
            if first is None:
                first = (position, running, excess)
            peak = max(peak, excess)
    if first is None:
        return []
    position, at_breach, excess = first
    message = (
        f"line {line.line_id} ({line.program_element}, FY{line.fiscal_year} "
        f"{line.appropriation.value}): cumulative obligations of {at_breach} exceeded the "
        f"{authority} available by {excess} in {_month_label(position)}"
    )
    if peak != excess:
        message += f"; the excess peaked at {peak}"
    if running <= authority:
        message += (
            f"; obligations now stand at {running}, but a later deobligation does not undo it"
        )
    return [
        _finding(line, "amount", "violation", message, "31 U.S.C. 1341(a)(1)(A)", peak, position)
    ]


def _time_findings(
    line: BudgetLine, entries: list[ExecutionEntry], rules: AdaRules
) -> list[AdaFinding]:
    years = rules.availability_years.get(line.appropriation)
    if years is None:
        raise ValueError(f"ada_rules.availability_years: no period for {line.appropriation.value}")
    start = _position(line.fiscal_year, 1)
    end = start + years * 12 - 1
    found: list[AdaFinding] = []
    what = f"FY{line.fiscal_year} {line.appropriation.value}"
    for entry in entries:
        amount = round_money(entry.obligations)
        if amount <= 0 or start <= entry.position <= end:
            continue
        doc = f" ({entry.reference})" if entry.reference else ""
        if entry.position < start:
            message = (
                f"line {line.line_id}: obligation of {amount}{doc} recorded in "
                f"{_month_label(entry.position)}, before {what} became available on "
                f"1 Oct {line.fiscal_year - 1}"
            )
            citation = "31 U.S.C. 1341(a)(1)(B)"
        else:
            message = (
                f"line {line.line_id}: obligation of {amount}{doc} recorded in "
                f"{_month_label(entry.position)}, after {what} ({years}-year money) expired on "
                f"30 Sep {line.fiscal_year + years - 1}; expired funds take no new obligations "
                "(bona fide need): charge current funds, or record it as an in-scope "
                "adjustment of an obligation made in time"
            )
            citation = "31 U.S.C. 1502(a); 31 U.S.C. 1341(a)(1)(A)"
        found.append(_finding(line, "time", "violation", message, citation, amount, entry.position))
    return found


def _purpose_findings(
    line: BudgetLine, entries: list[ExecutionEntry], rules: AdaRules
) -> list[AdaFinding]:
    found: list[AdaFinding] = []
    color = line.appropriation
    match = rules.colors_for(line.program_element)
    if match is not None and color not in match[1]:
        prefix, allowed = match
        obligated = _money_sum(round_money(e.obligations) for e in entries)
        names = " or ".join(sorted(c.value for c in allowed))
        message = (
            f"line {line.line_id}: program element {line.program_element} (prefix {prefix!r}) "
            f"is funded from {names}, but the line is {color.value}"
        )
        if obligated.is_zero():
            message += "; nothing is obligated yet, so correct the line before obligating"
        else:
            message += f"; {obligated} is obligated against it"
        severity: Severity = "warning" if obligated.is_zero() else "violation"
        found.append(
            _finding(line, "purpose", severity, message, "31 U.S.C. 1301(a)", obligated, None)
        )
    for entry in entries:
        amount = round_money(entry.obligations)
        if entry.purpose is None or amount <= 0:
            continue
        size = round_money(entry.unit_cost) if entry.unit_cost is not None else amount
        for rule in rules.purpose_rules:
            if rule.purpose != entry.purpose or color in rule.colors:
                continue
            if rule.threshold is not None and size <= rule.threshold:
                continue
            names = " or ".join(sorted(c.value for c in rule.colors))
            limit = "" if rule.threshold is None else f" above {round_money(rule.threshold)}"
            unit = f" (unit cost {size})" if entry.unit_cost is not None else ""
            doc = f" {entry.reference}" if entry.reference else ""
            message = (
                f"line {line.line_id}: {entry.purpose} obligation{doc} of {amount}{unit} "
                f"in {_month_label(entry.position)} is chargeable to {names}{limit}, "
                f"not {color.value}"
            )
            if rule.description:
                message += f": {rule.description}"
            found.append(
                _finding(
                    line, "purpose", "violation", message, rule.citation, amount, entry.position
                )
            )
    return found


# ----------------------------------------------------------------------------- dispatcher

CALCULATION_KINDS: Final = (
    "escalation",
    "fydp-rollup",
    "execution-rates",
    "burn-rate",
    "variance",
    "ada-check",
    "full",
)
"""The ``kind`` values :func:`run_calculation` accepts."""

_AS_OF: Final = frozenset({"fiscal_year", "fiscal_month"})
_PARAMETERS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "escalation": frozenset({"direction", "base_year"}),
        "fydp-rollup": frozenset({"fydp_start", "years"}),
        "execution-rates": _AS_OF | {"tolerance"},
        "burn-rate": _AS_OF | {"months"},
        "variance": _AS_OF | {"measure"},
        "ada-check": _AS_OF,
    }
)


def _as_of(params: Mapping[str, Any], data: CalculationInputs) -> tuple[int, int]:
    """The as-of month from params, else the latest month with execution data."""
    year, month = params.get("fiscal_year"), params.get("fiscal_month")
    if year is None and month is None:
        if not data.execution:
            raise ValueError(
                "params.fiscal_year: give fiscal_year and fiscal_month; there is no execution "
                "data to take the latest month from"
            )
        return _year_month(max(entry.position for entry in data.execution))
    if year is None or month is None:
        missing = "fiscal_year" if year is None else "fiscal_month"
        raise ValueError(f"params.{missing}: give fiscal_year and fiscal_month together")
    return _year(year, "params.fiscal_year"), _month(month, "params.fiscal_month")


def _optional_params_as_of(params: Mapping[str, Any]) -> tuple[int | None, int | None]:
    year, month = params.get("fiscal_year"), params.get("fiscal_month")
    if year is not None:
        _year(year, "params.fiscal_year")
    if month is not None:
        _month(month, "params.fiscal_month")
    if (year is None) != (month is None):
        missing = "fiscal_year" if year is None else "fiscal_month"
        raise ValueError(f"params.{missing}: give fiscal_year and fiscal_month together")
    return year, month


def _run_escalation(params: Mapping[str, Any], data: CalculationInputs) -> _Report:
    if data.deflators is None:
        raise ValueError("data.deflators: the escalation needs a deflator table")
    direction = _choice(
        params.get("direction", "to-then-year"), "params.direction", ("to-then-year", "to-constant")
    )
    base = params.get("base_year")
    return escalate_lines(
        data.lines,
        data.deflators,
        direction="to-constant" if direction == "to-constant" else "to-then-year",
        base_year=None if base is None else _year(base, "params.base_year"),
    )


def _run_rollup(params: Mapping[str, Any], data: CalculationInputs) -> _Report:
    start = params.get("fydp_start")
    if start is None and params.get("years") is not None:
        raise ValueError("params.years: give params.fydp_start too (the window's first year)")
    return fydp_rollup(
        data.lines,
        fydp_start=None if start is None else _year(start, "params.fydp_start"),
        years=_int(params.get("years", 5), "params.years", 1, 30, "a number of years"),
    )


def _run_rates(params: Mapping[str, Any], data: CalculationInputs) -> _Report:
    year, month = _as_of(params, data)
    tolerance = _coerce_decimal(params.get("tolerance", DEFAULT_TOLERANCE), "params.tolerance")
    if tolerance < 0:
        raise ValueError("params.tolerance: must not be negative")
    return execution_rates(data, fiscal_year=year, fiscal_month=month, tolerance=tolerance)


def _run_burn(params: Mapping[str, Any], data: CalculationInputs) -> _Report:
    year, month = _as_of(params, data)
    months = _int(params.get("months", 3), "params.months", 1, 120, "a number of months")
    return burn_rate(data, fiscal_year=year, fiscal_month=month, months=months)


def _run_variance(params: Mapping[str, Any], data: CalculationInputs) -> _Report:
    year, month = _optional_params_as_of(params)
    measure = _choice(
        params.get("measure", "obligations"), "params.measure", ("obligations", "expenditures")
    )
    return variance(
        data,
        measure="expenditures" if measure == "expenditures" else "obligations",
        fiscal_year=year,
        fiscal_month=month,
    )


def _run_ada(params: Mapping[str, Any], data: CalculationInputs) -> _Report:
    year, month = _optional_params_as_of(params)
    return ada_check(data, fiscal_year=year, fiscal_month=month)


_RUNNERS: Final[Mapping[str, Callable[[Mapping[str, Any], CalculationInputs], _Report]]] = (
    MappingProxyType(
        {
            "escalation": _run_escalation,
            "fydp-rollup": _run_rollup,
            "execution-rates": _run_rates,
            "burn-rate": _run_burn,
            "variance": _run_variance,
            "ada-check": _run_ada,
        }
    )
)


def run_calculation(
    kind: str, params: Mapping[str, Any], data: CalculationInputs
) -> CalculationResult:
    """Run the calculation ``kind`` (one of :data:`CALCULATION_KINDS`) over ``data``.

    ``params`` by kind (all optional): escalation ``direction``
    ("to-then-year" | "to-constant"), ``base_year``; fydp-rollup
    ``fydp_start``, ``years`` (5); execution-rates ``fiscal_year`` and
    ``fiscal_month`` (default: the latest month with execution data),
    ``tolerance`` (5 percentage points); burn-rate the as-of month and
    ``months`` (3); variance an optional as-of month and ``measure``
    ("obligations" | "expenditures"); ada-check an optional as-of month.
    ``full`` accepts them all and runs every kind; its escalation is ``None``
    when ``data`` has no deflator table.

    Raises :class:`ValueError` naming the unknown kind, or the parameter or
    input field that is wrong (``params.fiscal_month: 13 is outside 1..12``).
    """
    if not isinstance(kind, str) or kind not in CALCULATION_KINDS:
        raise ValueError(
            f"unknown calculation kind {kind!r}; expected one of {', '.join(CALCULATION_KINDS)}"
        )
    if not isinstance(params, Mapping):
        raise ValueError(f"params: expected a mapping, got {type(params).__name__}")
    if not isinstance(data, CalculationInputs):
        raise ValueError(f"data: expected CalculationInputs, got {type(data).__name__}")
    kinds = tuple(_RUNNERS) if kind == "full" else (kind,)
    allowed = frozenset().union(*(_PARAMETERS[k] for k in kinds))
    for key in params:
        if key not in allowed:
            raise ValueError(
                f"params.{key}: not a parameter of {kind!r}; expected {', '.join(sorted(allowed))}"
            )
    results: dict[str, dict[str, Any] | None] = {}
    for name in kinds:
        if name == "escalation" and kind == "full" and data.deflators is None:
            results[name] = None
            continue
        results[name] = _RUNNERS[name](params, data).to_dict()
    return CalculationResult(kind=kind, results=results)
