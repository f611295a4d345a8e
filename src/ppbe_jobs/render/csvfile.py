"""CSV output: one header row, then every body row, values exact.

UTF-8 without a byte-order mark, RFC 4180 quoting and ``\\r\\n`` line ends.
Decimals are written in plain notation straight from the value
(``Decimal("1E+3")`` is ``1000``, ``Decimal("0.10")`` is ``0.10``): never through
``float``, never rounded. Percent cells hold the fraction (``0.8525``). Title,
banner and footnotes are not written, so the file loads as a plain table.

A text cell that a spreadsheet would run as a formula (it starts with ``=``,
``+``, ``-``, ``@``, tab or carriage return) is prefixed with ``'``.
"""

from __future__ import annotations

import csv
import os
from decimal import Decimal
from pathlib import Path

from .model import CellValue, Column, ColumnKind, ReportTable
from .output import Progress, ProgressCallback, RenderedFile, ReportFormat, write_atomically

__all__ = ["write_csv"]

_FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")


def _csv_value(column: Column, value: CellValue) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, int):
        return str(value)
    if column.kind is ColumnKind.TEXT and value.startswith(_FORMULA_LEADS):
        return "'" + value
    return value


def write_csv(
    table: ReportTable,
    path: str | os.PathLike[str],
    *,
    on_progress: ProgressCallback | None = None,
) -> RenderedFile:
    """Write ``table`` as CSV at ``path``, atomically; return what was written."""
    progress = Progress(on_progress, table.line_count)

    def render(tmp: Path) -> None:
        progress.report(0)
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\r\n")
            writer.writerow([c.header for c in table.columns])
            for done, (_, row) in enumerate(table.lines(), start=1):
                writer.writerow([_csv_value(c, row.get(c.key)) for c in table.columns])
                progress.step(done)

    rendered = write_atomically(path, ReportFormat.CSV, render)
    progress.report(100)
    return rendered
