"""Report rendering: PPBE report tables, written as PDF, XLSX or CSV.

Database-free: :mod:`.reports` builds a :class:`ReportTable` from plain records;
:func:`write_pdf`, :func:`write_xlsx` and :func:`write_csv` (or
:func:`write_report`) write it atomically and return a :class:`RenderedFile`
with the path, SHA-256 and size.
"""

from __future__ import annotations

from .csvfile import write_csv
from .model import CellValue, Column, ColumnKind, ReportTable, Row, RowGroup, RowKind
from .output import ProgressCallback, RenderedFile, ReportFormat
from .pdf import write_pdf
from .reports import (
    BUDGET_ACTIVITIES,
    FYDP_YEARS,
    AppropriationAmount,
    ExecutionLine,
    ExecutionStatus,
    ProgramAmount,
    RdteProgramLine,
    ReportContext,
    budget_summary,
    execution_report,
    execution_status,
    fydp_table,
    rdte_exhibit,
)
from .writers import write_report
from .xlsx import write_xlsx

__all__ = [
    "BUDGET_ACTIVITIES",
    "FYDP_YEARS",
    "AppropriationAmount",
    "CellValue",
    "Column",
    "ColumnKind",
    "ExecutionLine",
    "ExecutionStatus",
    "ProgramAmount",
    "ProgressCallback",
    "RdteProgramLine",
    "RenderedFile",
    "ReportContext",
    "ReportFormat",
    "ReportTable",
    "Row",
    "RowGroup",
    "RowKind",
    "budget_summary",
    "execution_report",
    "execution_status",
    "fydp_table",
    "rdte_exhibit",
    "write_csv",
    "write_pdf",
    "write_report",
    "write_xlsx",
]
