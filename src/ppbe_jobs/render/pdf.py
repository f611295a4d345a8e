"""PDF output with fpdf2: landscape US Letter, banner top and bottom, paged table.

Every page carries the classification banner at its top and bottom edges, the
report title and subtitle, and the column header row (repeated on each page);
the footer has the timestamp and "Page X of Y". Money, percents and whole
numbers are right-aligned with thousands separators; subtotal and total rows
are bold. Long text cells wrap within their column; columns are sized to their
contents and the font steps down (8 pt to 6 pt) before text is squeezed.

The built-in Helvetica is used (nothing to embed or install); text is encoded
as Windows-1252, so typographic quotes and dashes print, and any character
outside that set prints as ``?``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from fpdf import FPDF
from fpdf.enums import MethodReturnValue, XPos, YPos

from ._format import format_cell, format_generated_at
from .model import ColumnKind, ReportTable, Row, RowKind
from .output import Progress, ProgressCallback, RenderedFile, ReportFormat, write_atomically

__all__ = ["write_pdf"]

_FONT = "helvetica"
_ENCODING = "windows-1252"
_FONT_SIZES = (8.0, 7.5, 7.0, 6.5, 6.0)
_PT_TO_MM = 25.4 / 72
_MARGIN = 10.0
_BOTTOM_MARGIN = 15.0  # room for the footer line
_TEXT_MIN_WIDTH = 22.0  # mm; a text column is never squeezed below this (or its header)
_FILL = {RowKind.DETAIL: None, RowKind.SUBTOTAL: 242, RowKind.TOTAL: 225}
_HEADER_FILL = 210


def _printable(text: str) -> str:
    return text.encode(_ENCODING, "replace").decode(_ENCODING)


@dataclass(frozen=True, slots=True)
class _Layout:
    font_size: float
    widths: tuple[float, ...]

    @property
    def line_height(self) -> float:
        return self.font_size * _PT_TO_MM * 1.4


class _ReportPdf(FPDF):
    """One report's document: header, footer and table drawing."""

    def __init__(self, table: ReportTable) -> None:
        super().__init__(orientation="landscape", unit="mm", format="letter")
        self.report = table
        self.core_fonts_encoding = _ENCODING
        self.set_margins(_MARGIN, _MARGIN, _MARGIN)
        self.set_auto_page_break(auto=True, margin=_BOTTOM_MARGIN)
        self.alias_nb_pages()
        # The document's date is the report's, so the same table gives the same bytes.
        self.set_creation_date(table.generated_at)
        self.set_title(table.title)  # document properties take any Unicode text
        self.set_subject(table.subtitle)
        self.set_creator("ppbe_jobs")
        self.set_keywords(table.classification)
        self.layout = self._choose_layout()
        self.column_headers_on_page = False

    # -- layout -----------------------------------------------------------------

    def _text_width(self, text: str, bold: bool, size: float) -> float:
        self.set_font(_FONT, "B" if bold else "", size)
        return self.get_string_width(_printable(text)) + 2 * self.c_margin

    def _choose_layout(self) -> _Layout:
        available = self.epw
        columns = self.report.columns
        lines = list(self.report.lines())
        widths: list[float] = []
        for size in _FONT_SIZES:
            header_min = [
                max((self._text_width(w, True, size) for w in c.header.split()), default=0.0)
                for c in columns
            ]
            natural = [
                max(
                    [header_min[i]]
                    + [
                        self._text_width(
                            format_cell(c.kind, row.get(c.key)), kind is not RowKind.DETAIL, size
                        )
                        for kind, row in lines
                    ]
                )
                for i, c in enumerate(columns)
            ]
            if sum(natural) <= available:
                # Room to spare: every column grows in proportion, the table spans the page.
                scale = available / (sum(natural) or 1.0)
                return _Layout(size, tuple(w * scale for w in natural))
            # Too wide: numbers keep their width, text columns wrap (down to a minimum).
            text_cols = [i for i, c in enumerate(columns) if c.kind is ColumnKind.TEXT]
            fixed = sum(w for i, w in enumerate(natural) if i not in text_cols)
            minimum = {i: max(header_min[i], min(natural[i], _TEXT_MIN_WIDTH)) for i in text_cols}
            if fixed + sum(minimum.values()) <= available:
                widths = list(natural)
                room = available - fixed - sum(minimum.values())
                want = sum(natural[i] - minimum[i] for i in text_cols) or 1.0
                for i in text_cols:
                    widths[i] = minimum[i] + room * (natural[i] - minimum[i]) / want
                return _Layout(size, tuple(widths))
            widths = natural
        # Even the smallest font does not fit: scale every column to the page.
        scale = available / sum(widths)
        return _Layout(_FONT_SIZES[-1], tuple(w * scale for w in widths))

    def _line_count(self, text: str, width: float) -> int:
        """How many lines ``text`` wraps to in a column of ``width`` (current font)."""
        if not text:
            return 1
        # The dry run hands back lines already encoded for the PDF, so they are
        # only counted; drawing wraps the original text again, identically.
        lines = self.multi_cell(
            width,
            self.layout.line_height,
            _printable(text),
            dry_run=True,
            output=MethodReturnValue.LINES,
        )
        return max(1, len(cast("list[str]", lines)))

    # -- page furniture ---------------------------------------------------------

    def header(self) -> None:
        """Banner, title, subtitle, and on table pages the column headers."""
        self.set_y(5)
        self.set_font(_FONT, "B", 9)
        self.cell(0, 4, _printable(self.report.classification), align="C")
        self.set_xy(self.l_margin, 11)
        self.set_font(_FONT, "B", 12)
        self.multi_cell(
            0, 5.5, _printable(self.report.title), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
        if self.report.subtitle:
            self.set_font(_FONT, "", 9)
            self.multi_cell(
                0,
                4.5,
                _printable(self.report.subtitle),
                align="L",
                new_x=XPos.LMARGIN,
                new_y=YPos.NEXT,
            )
        self.ln(2)
        if self.column_headers_on_page:
            self._column_headers()

    def footer(self) -> None:
        """Timestamp, banner and "Page X of Y"."""
        third = self.epw / 3
        self.set_y(-11)
        self.set_font(_FONT, "", 7)
        self.cell(third, 4, _printable(format_generated_at(self.report.generated_at)), align="L")
        self.set_font(_FONT, "B", 9)
        self.cell(third, 4, _printable(self.report.classification), align="C")
        self.set_font(_FONT, "", 7)
        # "{nb}" is fpdf2's page-count alias, filled in when the document is output.
        self.cell(third, 4, f"Page {self.page_no()} of {{nb}}", align="R")

    # -- table ------------------------------------------------------------------

    def _column_headers(self) -> None:
        size = self.layout.font_size
        self.set_font(_FONT, "B", size)
        headers = [_printable(c.header) for c in self.report.columns]
        counts = [self._line_count(h, w) for h, w in zip(headers, self.layout.widths, strict=True)]
        height = max(counts) * self.layout.line_height
        x, y = self.l_margin, self.get_y()
        self.set_fill_color(_HEADER_FILL)
        self.rect(x, y, sum(self.layout.widths), height, style="F")
        for col, header, count, width in zip(
            self.report.columns, headers, counts, self.layout.widths, strict=True
        ):
            # Headers sit on the bottom line of the band, aligned like their figures.
            self.set_xy(x, y + height - count * self.layout.line_height)
            align = "R" if col.kind.numeric else "L"
            self.multi_cell(width, self.layout.line_height, header, align=align)
            x += width
        self.set_xy(self.l_margin, y + height)
        self.line(self.l_margin, y + height, self.l_margin + sum(self.layout.widths), y + height)

    def draw_row(self, kind: RowKind, row: Row) -> None:
        """Draw one body row, starting a new page first if it would not fit."""
        size = self.layout.font_size
        line_h = self.layout.line_height
        bold = kind is not RowKind.DETAIL
        self.set_font(_FONT, "B" if bold else "", size)
        cells: list[tuple[ColumnKind, str]] = []
        lines = 1
        for col, width in zip(self.report.columns, self.layout.widths, strict=True):
            text = _printable(format_cell(col.kind, row.get(col.key)))
            if not col.kind.numeric:
                lines = max(lines, self._line_count(text, width))
            cells.append((col.kind, text))
        height = lines * line_h
        if self.get_y() + height > self.page_break_trigger:
            self.add_page()
            self.set_font(_FONT, "B" if bold else "", size)
        x, y = self.l_margin, self.get_y()
        table_width = sum(self.layout.widths)
        fill = _FILL[kind]
        if fill is not None:
            self.set_fill_color(fill)
            self.rect(x, y, table_width, height, style="F")
        for (col_kind, text), width in zip(cells, self.layout.widths, strict=True):
            self.set_xy(x, y)
            if col_kind.numeric:
                self.cell(width, line_h, text, align="R")
            else:
                self.multi_cell(width, line_h, text, align="L")
            x += width
        self.set_xy(self.l_margin, y + height)
        if kind is RowKind.DETAIL:
            self.set_draw_color(200)
            self.line(self.l_margin, y + height, self.l_margin + table_width, y + height)
        else:
            self.set_draw_color(0)
            self.line(self.l_margin, y, self.l_margin + table_width, y)
            if kind is RowKind.TOTAL:
                for offset in (0.0, 0.6):
                    bottom = y + height + offset
                    self.line(self.l_margin, bottom, self.l_margin + table_width, bottom)
        self.set_draw_color(0)

    def footnotes(self) -> None:
        """The notes under the table, wrapped to the page width."""
        if not self.report.footnotes:
            return
        self.ln(3)
        self.set_font(_FONT, "", 7)
        for note in self.report.footnotes:
            self.multi_cell(0, 3.5, _printable(note), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def write_pdf(
    table: ReportTable,
    path: str | os.PathLike[str],
    *,
    on_progress: ProgressCallback | None = None,
) -> RenderedFile:
    """Write ``table`` as a PDF at ``path``, atomically; return what was written."""
    progress = Progress(on_progress, table.line_count)

    def render(tmp: Path) -> None:
        progress.report(0)
        pdf = _ReportPdf(table)
        pdf.column_headers_on_page = True
        pdf.add_page()
        for done, (kind, row) in enumerate(table.lines(), start=1):
            pdf.draw_row(kind, row)
            progress.step(done)
        pdf.column_headers_on_page = False  # pages of footnotes need no column headers
        pdf.footnotes()
        pdf.output(str(tmp))

    rendered = write_atomically(path, ReportFormat.PDF, render)
    progress.report(100)
    return rendered
