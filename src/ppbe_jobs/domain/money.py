"""Money, the calendar and the inputs every budget calculation shares.

The foundation of :mod:`ppbe_jobs.domain.calculations`: the one decimal
context, rounding, the fiscal calendar, argument validation, the color of
money, the two input records (:class:`BudgetLine`, :class:`ExecutionEntry`)
and the base of the result dataclasses. It imports no other module of the
package; every other calculation module imports it.

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

The underscored helpers (``_money_sum``, ``_year``, ``_Report``...) are private
to the package: the sibling calculation modules use them, nothing else should.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow
from enum import Enum, StrEnum
from types import MappingProxyType
from typing import Any, Final

__all__ = [
    "MONEY_PLACES",
    "PRECISION",
    "RATE_PLACES",
    "BudgetLine",
    "Color",
    "ExecutionEntry",
    "decimal_context",
    "round_money",
    "round_rate",
]

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


def _span(years: Iterable[int]) -> tuple[int, ...]:
    """Every fiscal year from the earliest of ``years`` to the latest; ``()`` for none."""
    present = set(years)
    return tuple(range(min(present), max(present) + 1)) if present else ()


def _optional_as_of(fiscal_year: int | None, fiscal_month: int | None) -> int | None:
    """The position of an optional as-of month: both given, or neither (``None``)."""
    if fiscal_year is None and fiscal_month is None:
        return None
    if fiscal_year is None or fiscal_month is None:
        missing = "fiscal_year" if fiscal_year is None else "fiscal_month"
        raise ValueError(f"{missing}: give fiscal_year and fiscal_month together")
    return _position(_year(fiscal_year, "fiscal_year"), _month(fiscal_month, "fiscal_month"))


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
    (:attr:`~ppbe_jobs.domain.calculations.CalculationInputs.plan`).
    ``purpose`` (``"investment"``, ``"construction"``...) and ``unit_cost`` let
    :func:`~ppbe_jobs.domain.ada.ada_check` apply the purpose rules;
    ``reference`` is the obligating document, for findings.
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
