"""The domain database of the PPBE application: models, sessions and sample data.

SQLAlchemy 2 on SQLite (default) or PostgreSQL (psycopg 3). Amounts are
:class:`~decimal.Decimal` thousands of dollars; times are aware UTC datetimes.

>>> from ppbe_jobs.db import Database, seed                 # doctest: +SKIP
>>> db = Database.from_env()          # DATABASE_URL, else ./ppbe-data/ppbe.sqlite3
>>> seed(db, scale="small")           # create the tables and fill them
"""

from __future__ import annotations

from .codes import InvalidProgramElementCodeError, is_valid_pe_code, validate_pe_code
from .enums import (
    AVAILABILITY_YEARS,
    BudgetKind,
    ColorOfMoney,
    ImportMode,
    ImportStatus,
    IndexKind,
    NotificationChannel,
    NotificationStatus,
    ReportFormat,
    ReportStatus,
    Service,
)
from .fiscal import (
    fiscal_month_of,
    fiscal_year_bounds,
    fiscal_year_label,
    fiscal_year_of,
    month_start_of_fiscal_month,
    parse_fiscal_year,
)
from .models import (
    AppropriationAccount,
    AuditLog,
    Base,
    BudgetLine,
    CalculationResult,
    DeflatorTable,
    FiscalYear,
    ImportBatch,
    ImportRowError,
    MonthlyExecution,
    Notification,
    Organization,
    OutboxMessage,
    ProgramElement,
    Report,
)
from .seed import SeedError, SeedSummary, fingerprint, seed
from .session import Database, DatabaseConfigurationError, create_engine_from_url
from .types import utcnow

__all__ = [
    "AVAILABILITY_YEARS",
    "AppropriationAccount",
    "AuditLog",
    "Base",
    "BudgetKind",
    "BudgetLine",
    "CalculationResult",
    "ColorOfMoney",
    "Database",
    "DatabaseConfigurationError",
    "DeflatorTable",
    "FiscalYear",
    "ImportBatch",
    "ImportMode",
    "ImportRowError",
    "ImportStatus",
    "IndexKind",
    "InvalidProgramElementCodeError",
    "MonthlyExecution",
    "Notification",
    "NotificationChannel",
    "NotificationStatus",
    "Organization",
    "OutboxMessage",
    "ProgramElement",
    "Report",
    "ReportFormat",
    "ReportStatus",
    "SeedError",
    "SeedSummary",
    "Service",
    "create_engine_from_url",
    "fingerprint",
    "fiscal_month_of",
    "fiscal_year_bounds",
    "fiscal_year_label",
    "fiscal_year_of",
    "is_valid_pe_code",
    "month_start_of_fiscal_month",
    "parse_fiscal_year",
    "seed",
    "utcnow",
    "validate_pe_code",
]
