"""How cell values are shown on paper (PDF) and sized for columns (XLSX).

Display rounding is half-up (the way budget tables are read), applied to the
shown text only; the values stored in XLSX and CSV cells are not rounded.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from .model import CellValue, ColumnKind

MONEY_PLACES = Decimal("0.001")
PERCENT_PLACES = Decimal("0.1")
XLSX_MONEY_FORMAT = "#,##0.000"
XLSX_PERCENT_FORMAT = "0.0%"
XLSX_INT_FORMAT = "#,##0"


def format_money(value: Decimal) -> str:
    """``1234.5`` -> ``"1,234.500"`` (thousands separators, three places, half-up)."""
    shown = value.quantize(MONEY_PLACES, rounding=ROUND_HALF_UP)
    if shown == 0:
        shown = abs(shown)  # never print "-0.000"
    return f"{shown:,.3f}"


def format_percent(value: Decimal) -> str:
    """``Decimal("0.8525")`` -> ``"85.3%"`` (one place, half-up)."""
    shown = (value * 100).quantize(PERCENT_PLACES, rounding=ROUND_HALF_UP)
    if shown == 0:
        shown = abs(shown)
    return f"{shown:,.1f}%"


def format_cell(kind: ColumnKind, value: CellValue) -> str:
    """The text a reader sees for ``value`` in a column of ``kind``; blank for None."""
    if value is None:
        return ""
    if kind is ColumnKind.MONEY and isinstance(value, Decimal):
        return format_money(value)
    if kind is ColumnKind.PERCENT and isinstance(value, Decimal):
        return format_percent(value)
    if kind is ColumnKind.INT and isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_generated_at(moment: datetime) -> str:
    """``"Generated 2026-03-31 14:05 UTC"``, in the timestamp's own zone."""
    return f"Generated {moment:%Y-%m-%d %H:%M} {moment.tzname() or ''}".rstrip()
