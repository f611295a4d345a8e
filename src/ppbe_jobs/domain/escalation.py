"""Escalation: base-year (constant) dollars to then-year dollars and back.

``result = amount * index[FY] / index[base]`` to then-year dollars, the
inverse to constant dollars, with the indices of a :class:`DeflatorTable`
(the OSD Green Book TOA indices for budget authority). Rounding follows
:mod:`ppbe_jobs.domain.money`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Literal

from .money import (
    _CONTEXT,
    BudgetLine,
    Color,
    _choice,
    _decimal,
    _money_sum,
    _Report,
    _span,
    _year,
    round_money,
)

__all__ = [
    "DeflatorTable",
    "Direction",
    "EscalatedAmount",
    "EscalationReport",
    "escalate_lines",
    "escalate_series",
    "to_constant",
    "to_then_year",
]

Direction = Literal["to-then-year", "to-constant"]
"""Escalation direction: base-year to then-year dollars, or back."""


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
