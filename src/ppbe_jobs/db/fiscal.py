"""The federal fiscal calendar: fiscal year N runs from 1 October N-1 to 30 September N.

Fiscal months count from October: fiscal month 1 is October, 12 is September.
All functions are pure and work on :class:`datetime.date` (pass ``dt.date()``
for a datetime; convert it to the time zone that matters to you first).
"""

from __future__ import annotations

import re
from datetime import date

__all__ = [
    "MAX_FISCAL_YEAR",
    "MIN_FISCAL_YEAR",
    "fiscal_month_of",
    "fiscal_year_bounds",
    "fiscal_year_label",
    "fiscal_year_of",
    "month_start_of_fiscal_month",
    "parse_fiscal_year",
]

MIN_FISCAL_YEAR = 1950
"""Earliest fiscal year the application accepts."""

MAX_FISCAL_YEAR = 2200
"""Latest fiscal year the application accepts."""

_FY_TEXT = re.compile(r"^\s*(?:fy[-_ ]?)?(\d{2}|\d{4})\s*$", re.IGNORECASE)


def _check_year(year: int) -> int:
    if isinstance(year, bool) or not isinstance(year, int):
        raise TypeError(f"fiscal year must be an int, got {type(year).__name__}")
    if not MIN_FISCAL_YEAR <= year <= MAX_FISCAL_YEAR:
        raise ValueError(f"fiscal year {year} is outside {MIN_FISCAL_YEAR}..{MAX_FISCAL_YEAR}")
    return year


def fiscal_year_of(day: date) -> int:
    """The fiscal year a calendar day falls in (1 Oct 2025 -> 2026, 30 Sep 2026 -> 2026)."""
    return day.year + 1 if day.month >= 10 else day.year


def fiscal_year_bounds(year: int) -> tuple[date, date]:
    """First and last day of fiscal year ``year`` (both inclusive)."""
    _check_year(year)
    return date(year - 1, 10, 1), date(year, 9, 30)


def fiscal_month_of(day: date) -> int:
    """The fiscal month (1 = October ... 12 = September) of a calendar day."""
    return (day.month - 10) % 12 + 1


def month_start_of_fiscal_month(year: int, fiscal_month: int) -> date:
    """First calendar day of ``fiscal_month`` (1-12) of fiscal year ``year``."""
    _check_year(year)
    if not 1 <= fiscal_month <= 12:
        raise ValueError(f"fiscal month must be 1..12, got {fiscal_month}")
    month = (fiscal_month + 8) % 12 + 1
    return date(year - 1 if month >= 10 else year, month, 1)


def fiscal_year_label(year: int) -> str:
    """The label budget documents use: ``FY2026``."""
    return f"FY{_check_year(year)}"


def parse_fiscal_year(value: int | str) -> int:
    """A fiscal year from ``2026``, ``"2026"``, ``"FY2026"``, ``"fy-2026"`` or ``"FY26"``.

    Two-digit years are taken as 20xx. Raises :class:`ValueError` naming the
    value when it is not a fiscal year.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a fiscal year: {value!r}")
    if isinstance(value, int):
        return _check_year(value)
    match = _FY_TEXT.match(value)
    if match is None:
        raise ValueError(
            f"not a fiscal year: {value!r} (expected e.g. 2026, 'FY2026' or 'fy-2026')"
        )
    digits = match.group(1)
    return _check_year(2000 + int(digits) if len(digits) == 2 else int(digits))
