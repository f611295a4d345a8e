"""XLSX output with xlsxwriter: real numbers, exact totals, print-ready.

Layout of the single sheet: the classification banner, title, subtitle and
timestamp on top, then the column header row (frozen, repeated on printed
pages), the body, the footnotes, and the banner again. Money cells are numbers
formatted ``#,##0.000``, percents ``0.0%``, whole numbers ``#,##0``.

Every figure, totals included, is written as a value, not a formula: the
totals were summed in Decimal by the report builder and must read back exactly
as computed. A Decimal becomes a float only as it is handed to the cell, which
is exact for the up to 15 significant digits Excel keeps.

Text is always written as text: a title starting with ``=`` stays a string,
never a formula or a link.
"""

from __future__ import annotations

import os
import re
from datetime import UTC
from decimal import Decimal
from pathlib import Path
from typing import Any

import xlsxwriter

from ._format import (
    XLSX_INT_FORMAT,
    XLSX_MONEY_FORMAT,
    XLSX_PERCENT_FORMAT,
    format_cell,
    format_generated_at,
)
from .model import ColumnKind, ReportTable, RowKind
from .output import Progress, ProgressCallback, RenderedFile, ReportFormat, write_atomically

__all__ = ["write_xlsx"]

_HEADER_ROW = 5  # banner, title, subtitle, timestamp, blank; then the column headers
_MAX_TEXT_WIDTH = 48
_NUM_FORMATS = {
    ColumnKind.MONEY: XLSX_MONEY_FORMAT,
    ColumnKind.PERCENT: XLSX_PERCENT_FORMAT,
    ColumnKind.INT: XLSX_INT_FORMAT,
}


def _sheet_name(title: str) -> str:
    name = " ".join(re.sub(r"[\[\]:*?/\\]", " ", title).split()).strip("'")[:31].strip()
    return name or "Report"


def _header_footer_text(text: str) -> str:
    return text.replace("&", "&&")  # '&' starts a control code in Excel headers


def _column_widths(table: ReportTable) -> list[float]:
    widths: list[float] = []
    for col in table.columns:
        longest_word = max((len(w) for w in col.header.split()), default=0)
        longest_value = max(
            (len(format_cell(col.kind, row.get(col.key))) for _, row in table.lines()),
            default=0,
        )
        width = max(longest_word, longest_value, 6) + 2
        if col.kind is ColumnKind.TEXT:
            width = min(width, _MAX_TEXT_WIDTH)
        widths.append(width)
    return widths


class _Formats:
    """The cell formats of one workbook, made once."""

    def __init__(self, book: Any) -> None:
        self.banner = book.add_format({"bold": True, "align": "center", "font_size": 11})
        self.title = book.add_format({"bold": True, "font_size": 14})
        self.subtitle = book.add_format({"font_size": 11})
        self.note = book.add_format({"italic": True, "font_size": 9})
        self.header = book.add_format(
            {
                "bold": True,
                "text_wrap": True,
                "valign": "bottom",
                "align": "center",
                "bg_color": "#D9D9D9",
                "border": 1,
            }
        )
        self._cells: dict[tuple[ColumnKind, RowKind], Any] = {}
        for kind in ColumnKind:
            for row_kind in RowKind:
                props: dict[str, object] = {"valign": "top"}
                if kind is ColumnKind.TEXT:
                    props["text_wrap"] = True
                else:
                    props["num_format"] = _NUM_FORMATS[kind]
                if row_kind is not RowKind.DETAIL:
                    props.update(bold=True, top=1)
                if row_kind is RowKind.TOTAL:
                    props["bottom"] = 6  # double underline under the grand total
                self._cells[kind, row_kind] = book.add_format(props)

    def cell(self, kind: ColumnKind, row_kind: RowKind) -> Any:
        """The format of a body cell."""
        return self._cells[kind, row_kind]


def write_xlsx(
    table: ReportTable,
    path: str | os.PathLike[str],
    *,
    on_progress: ProgressCallback | None = None,
) -> RenderedFile:
    """Write ``table`` as an XLSX workbook at ``path``, atomically; return what was written."""
    progress = Progress(on_progress, table.line_count)

    def render(tmp: Path) -> None:
        progress.report(0)
        book = xlsxwriter.Workbook(
            str(tmp),
            {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False},
        )
        try:
            _fill(book, table, progress)
        finally:
            book.close()

    rendered = write_atomically(path, ReportFormat.XLSX, render)
    progress.report(100)
    return rendered


def _fill(book: Any, table: ReportTable, progress: Progress) -> None:
    created = table.generated_at.astimezone(UTC).replace(tzinfo=None)
    book.set_properties(
        {
            "title": table.title,
            "subject": table.subtitle,
            "comments": table.classification,
            "created": created,  # a fixed date keeps reruns of the same table byte-identical
        }
    )
    book.set_custom_property("Classification", table.classification)
    fmt = _Formats(book)
    sheet = book.add_worksheet(_sheet_name(table.title))
    last_col = len(table.columns) - 1

    def banner(row: int) -> None:
        if last_col > 0:
            sheet.merge_range(row, 0, row, last_col, table.classification, fmt.banner)
        else:
            sheet.write_string(row, 0, table.classification, fmt.banner)

    banner(0)
    sheet.write_string(1, 0, table.title, fmt.title)
    sheet.write_string(2, 0, table.subtitle, fmt.subtitle)
    sheet.write_string(3, 0, format_generated_at(table.generated_at), fmt.note)

    for c, (col, width) in enumerate(zip(table.columns, _column_widths(table), strict=True)):
        sheet.set_column(c, c, width)
        sheet.write_string(_HEADER_ROW, c, col.header, fmt.header)
    sheet.freeze_panes(_HEADER_ROW + 1, 0)

    r = _HEADER_ROW
    for done, (row_kind, row) in enumerate(table.lines(), start=1):
        r += 1
        for c, col in enumerate(table.columns):
            value = row.get(col.key)
            cell_format = fmt.cell(col.kind, row_kind)
            if value is None:
                sheet.write_blank(r, c, None, cell_format)
            elif isinstance(value, str):
                sheet.write_string(r, c, value, cell_format)
            elif isinstance(value, Decimal):
                sheet.write_number(r, c, float(value), cell_format)  # the one conversion
            else:
                sheet.write_number(r, c, value, cell_format)
        progress.step(done)

    r += 1
    for note in table.footnotes:
        r += 1
        sheet.write_string(r, 0, note, fmt.note)
    banner(r + 2)

    sheet.set_landscape()
    sheet.set_paper(1)  # US Letter
    sheet.repeat_rows(_HEADER_ROW)
    sheet.fit_to_pages(1, 0)
    shown = _header_footer_text(table.classification)
    sheet.set_header(f'&C&"Calibri,Bold"{shown}')
    sheet.set_footer(
        f"&L{_header_footer_text(format_generated_at(table.generated_at))}"
        f'&C&"Calibri,Bold"{shown}&RPage &P of &N'
    )
