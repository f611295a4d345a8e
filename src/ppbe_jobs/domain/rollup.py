"""FYDP roll-up: budget lines summed by appropriation, program element, organization and year.

Money is rounded to 3 places as it is read, so every row and column foots
(see :mod:`ppbe_jobs.domain.money`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .money import (
    _CONTEXT,
    _ZERO,
    BudgetLine,
    Color,
    _int,
    _money_sum,
    _Report,
    _span,
    _year,
    round_money,
)

__all__ = ["FydpRollup", "RollupRow", "fydp_rollup"]


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
