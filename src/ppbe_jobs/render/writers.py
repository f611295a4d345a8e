"""One entry point for the three writers, chosen by :class:`ReportFormat`."""

from __future__ import annotations

import os

from .csvfile import write_csv
from .model import ReportTable
from .output import ProgressCallback, RenderedFile, ReportFormat
from .pdf import write_pdf
from .xlsx import write_xlsx

__all__ = ["write_report"]

_WRITERS = {ReportFormat.PDF: write_pdf, ReportFormat.XLSX: write_xlsx, ReportFormat.CSV: write_csv}


def write_report(
    table: ReportTable,
    path: str | os.PathLike[str],
    fmt: ReportFormat | str,
    *,
    on_progress: ProgressCallback | None = None,
) -> RenderedFile:
    """Write ``table`` at ``path`` as ``fmt`` (``"pdf"``, ``"xlsx"`` or ``"csv"``), atomically."""
    try:
        chosen = ReportFormat(str(fmt).lower())
    except ValueError:
        known = ", ".join(f.value for f in ReportFormat)
        raise ValueError(f"unknown report format {fmt!r}; expected one of {known}") from None
    return _WRITERS[chosen](table, path, on_progress=on_progress)
