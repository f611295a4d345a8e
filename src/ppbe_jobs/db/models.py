"""The domain database: PPBE reference data, budget and execution figures, and job records.

Mapped classes are typed dataclasses (:class:`~sqlalchemy.orm.MappedAsDataclass`):
construct them with keyword arguments, which mypy checks. Amounts are
:class:`~decimal.Decimal` in **thousands of dollars** (``NUMERIC(18,3)``, so
three decimals are whole dollars); times are aware UTC datetimes; JSON columns
hold JSON-native values. ``docs/domain.md`` describes every table in plain words.

=====================  ==========================================================
reference              :class:`FiscalYear`, :class:`Organization`,
                       :class:`AppropriationAccount`, :class:`ProgramElement`,
                       :class:`DeflatorTable`
figures                :class:`BudgetLine`, :class:`MonthlyExecution`
job records            :class:`Report`, :class:`Notification`, :class:`ImportBatch`,
                       :class:`ImportRowError`, :class:`CalculationResult`,
                       :class:`OutboxMessage`, :class:`AuditLog`
=====================  ==========================================================
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    MappedAsDataclass,
    mapped_column,
    relationship,
    validates,
)

from .codes import validate_pe_code
from .enums import (
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
    MAX_FISCAL_YEAR,
    MIN_FISCAL_YEAR,
    fiscal_month_of,
    fiscal_year_bounds,
    fiscal_year_label,
)
from .types import IndexFactor, JSONDocument, Money, UTCDateTime, utcnow

__all__ = [
    "AppropriationAccount",
    "AuditLog",
    "Base",
    "BudgetLine",
    "CalculationResult",
    "DeflatorTable",
    "FiscalYear",
    "ImportBatch",
    "ImportRowError",
    "MonthlyExecution",
    "Notification",
    "Organization",
    "OutboxMessage",
    "ProgramElement",
    "Report",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_E = TypeVar("_E", bound=enum.StrEnum)

# 64-bit keys on PostgreSQL; SQLite's rowid alias must be spelled INTEGER.
_ID = BigInteger().with_variant(Integer(), "sqlite")


def _enum(enum_cls: type[_E], name: str) -> SAEnum:
    """A VARCHAR holding the enum's values, with a CHECK constraint, on every database."""
    return SAEnum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        validate_strings=True,
        values_callable=lambda cls: [member.value for member in cls],
    )


class Base(MappedAsDataclass, DeclarativeBase, kw_only=True, eq=False):
    """Declarative base of every table: keyword-only dataclass constructors, identity equality.

    Subclasses repeat ``kw_only=True`` so type checkers see keyword-only fields too.
    """

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - read by SQLAlchemy at class creation only
        datetime: UTCDateTime(),
        Decimal: Money,
        dict[str, Any]: JSONDocument,
        date: Date(),
    }


# --------------------------------------------------------------------------- reference data


class FiscalYear(Base, kw_only=True):
    """A federal fiscal year: FY N runs from 1 October N-1 to 30 September N.

    Construct with the year only (``FiscalYear(year=2026)``); the dates follow.
    """

    __tablename__ = "fiscal_years"
    __table_args__ = (
        CheckConstraint(f"year BETWEEN {MIN_FISCAL_YEAR} AND {MAX_FISCAL_YEAR}", name="year"),
        CheckConstraint("end_date > start_date", name="dates"),
    )

    year: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    """The fiscal year number (2026 for FY2026)."""
    start_date: Mapped[date] = mapped_column(init=False)
    """1 October of the previous calendar year."""
    end_date: Mapped[date] = mapped_column(init=False)
    """30 September of ``year``."""

    def __post_init__(self) -> None:
        self.start_date, self.end_date = fiscal_year_bounds(self.year)

    @property
    def label(self) -> str:
        """``FY2026``."""
        return fiscal_year_label(self.year)

    def contains(self, day: date) -> bool:
        """Whether ``day`` falls in this fiscal year."""
        return self.start_date <= day <= self.end_date


class Organization(Base, kw_only=True):
    """A budget-holding organization (a service headquarters, command, agency...)."""

    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(_ID, primary_key=True, init=False)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    """Short unique code, e.g. ``NAVSEA``."""
    name: Mapped[str] = mapped_column(String(200))
    service: Mapped[Service] = mapped_column(_enum(Service, "service"))
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id"), default=None, index=True
    )
    """The organization this one reports to, if any."""
    parent: Mapped[Organization | None] = relationship(
        remote_side=[id], back_populates="children", default=None, repr=False
    )
    children: Mapped[list[Organization]] = relationship(
        back_populates="parent", init=False, repr=False
    )


def _unset_int() -> int:
    """Dataclass placeholder for a value ``__post_init__`` fills in."""
    return None  # type: ignore[return-value]


def _default_availability(context: DefaultExecutionContext) -> int:
    """Core inserts without ``availability_years`` get the color's default."""
    parameters = context.get_current_parameters()  # type: ignore[no-untyped-call]
    return ColorOfMoney(parameters["color"]).availability_years


class AppropriationAccount(Base, kw_only=True):
    """An appropriation account (a Treasury account such as ``017-1319``) and its color of money.

    ``availability_years`` defaults to the color's period of availability
    (O&M 1, MILPERS 1, RDT&E 2, Procurement 3, MILCON 5); give it to override
    (Shipbuilding and Conversion, Navy is Procurement with five years).
    """

    __tablename__ = "appropriation_accounts"
    __table_args__ = (
        CheckConstraint("availability_years >= 1", name="availability_years"),
        Index(None, "service", "color"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, init=False)
    symbol: Mapped[str] = mapped_column(String(32), unique=True)
    """Treasury-style account symbol: agency code and main account, e.g. ``017-1319``."""
    title: Mapped[str] = mapped_column(String(200))
    color: Mapped[ColorOfMoney] = mapped_column(_enum(ColorOfMoney, "color_of_money"))
    service: Mapped[Service] = mapped_column(_enum(Service, "service"))
    # Not ``default=None``: in a mapped dataclass that would also become the Core default.
    availability_years: Mapped[int] = mapped_column(
        default_factory=_unset_int, insert_default=_default_availability
    )
    """Fiscal years new obligations may be made in, counting the program year."""

    def __post_init__(self) -> None:
        if self.availability_years is None:
            self.availability_years = ColorOfMoney(self.color).availability_years

    def last_obligation_year(self, program_year: int) -> int:
        """Last fiscal year money of ``program_year`` may be newly obligated in."""
        return program_year + self.availability_years - 1

    def is_available_for_obligation(self, program_year: int, on: date) -> bool:
        """Whether money of ``program_year`` may be newly obligated on ``on``.

        After its period of availability the money is expired: it may still pay
        for earlier obligations, but new ones would break the time rule of the
        Anti-Deficiency Act.
        """
        start, _ = fiscal_year_bounds(program_year)
        _, end = fiscal_year_bounds(self.last_obligation_year(program_year))
        return start <= on <= end


class ProgramElement(Base, kw_only=True):
    """A program element (PE): the basic building block of the FYDP, e.g. ``0603502N``.

    ``budget_activity`` (1-7) is set for RDT&E program elements only.
    """

    __tablename__ = "program_elements"
    __table_args__ = (
        CheckConstraint("budget_activity BETWEEN 1 AND 7", name="budget_activity"),
        CheckConstraint("length(code) BETWEEN 8 AND 10", name="code_length"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, init=False)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    """Seven digits and a component suffix (see :mod:`ppbe_jobs.db.codes`)."""
    title: Mapped[str] = mapped_column(String(300))
    organization_id: Mapped[int] = mapped_column(
        ForeignKey("organizations.id"), default=None, index=True
    )
    budget_activity: Mapped[int | None] = mapped_column(default=None)
    """RDT&E budget activity: 1 basic research ... 7 operational systems development."""
    organization: Mapped[Organization] = relationship(default=None, repr=False)

    @validates("code")
    def _check_code(self, _key: str, code: str) -> str:
        return validate_pe_code(code)


class DeflatorTable(Base, kw_only=True):
    """One entry of a deflator table (OSD Green Book style): a price index for one year and color.

    ``factor`` is 1 in ``base_year``. To turn base-year (constant) dollars into
    then-year dollars of ``fiscal_year``, multiply by the ``outlay-weighted``
    factor; divide to go back.
    """

    __tablename__ = "deflators"
    __table_args__ = (
        UniqueConstraint("base_year", "fiscal_year", "color", "index_kind"),
        CheckConstraint("factor > 0", name="factor_positive"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, init=False)
    base_year: Mapped[int]
    fiscal_year: Mapped[int]
    color: Mapped[ColorOfMoney] = mapped_column(_enum(ColorOfMoney, "color_of_money"))
    factor: Mapped[Decimal] = mapped_column(IndexFactor)
    """Index relative to the base year, with up to six decimals (Green Book prints four)."""
    index_kind: Mapped[IndexKind] = mapped_column(
        _enum(IndexKind, "index_kind"), default=IndexKind.OUTLAY_WEIGHTED
    )
    source: Mapped[str] = mapped_column(String(200), default="")
    """Where the figures come from, e.g. ``"sample data"`` or a Green Book table."""


# --------------------------------------------------------------------------- figures


class BudgetLine(Base, kw_only=True):
    """An amount for one program element, appropriation and fiscal year, in one budget.

    ``budget_year`` is the budget (FYDP) the line belongs to, ``fiscal_year``
    the year the money is for: in the FY2026 budget the FYDP covers FY2026
    (``fydp_year`` 0, the budget year) to FY2030 (``fydp_year`` 4). Enacted
    lines have ``fiscal_year == budget_year``.
    """

    __tablename__ = "budget_lines"
    __table_args__ = (
        UniqueConstraint(
            "program_element_id",
            "appropriation_id",
            "fiscal_year",
            "budget_year",
            "kind",
            name="uq_budget_lines_line",
        ),
        Index(None, "fiscal_year", "appropriation_id"),
        Index(None, "budget_year", "kind", "fiscal_year"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, init=False)
    program_element_id: Mapped[int] = mapped_column(ForeignKey("program_elements.id"), default=None)
    appropriation_id: Mapped[int] = mapped_column(
        ForeignKey("appropriation_accounts.id"), default=None
    )
    fiscal_year: Mapped[int] = mapped_column(ForeignKey("fiscal_years.year"))
    """The fiscal year the money is for (its program year)."""
    budget_year: Mapped[int] = mapped_column(ForeignKey("fiscal_years.year"))
    """The budget the line belongs to: the first year of its FYDP."""
    kind: Mapped[BudgetKind] = mapped_column(_enum(BudgetKind, "budget_kind"))
    amount_k: Mapped[Decimal]
    """Amount in thousands of dollars."""
    program_element: Mapped[ProgramElement] = relationship(default=None, repr=False)
    appropriation: Mapped[AppropriationAccount] = relationship(default=None, repr=False)

    @property
    def fydp_year(self) -> int:
        """Offset in the FYDP: 0 for the budget year, 1-4 for the out-years."""
        return self.fiscal_year - self.budget_year


class MonthlyExecution(Base, kw_only=True):
    """Execution of one program element's money of one appropriation and fiscal year, to a month.

    Figures are **cumulative**: obligations and expenditures (outlays) from the
    start of the money's availability through the end of ``month``, in
    thousands of dollars. The amount of a single month is the difference from
    the month before; rates against enacted amounts need no sum.

    ``month`` is the first day of the calendar month reported (another day of
    the month is moved to the first); ``fiscal_month`` (1 = October) follows
    from it.
    """

    __tablename__ = "monthly_execution"
    __table_args__ = (
        UniqueConstraint(
            "program_element_id",
            "appropriation_id",
            "fiscal_year",
            "month",
            name="uq_monthly_execution_line",
        ),
        Index(None, "fiscal_year", "appropriation_id"),
        Index(None, "month"),
        CheckConstraint("fiscal_month BETWEEN 1 AND 12", name="fiscal_month"),
        CheckConstraint("cumulative_obligations_k >= 0", name="obligations_nonnegative"),
        CheckConstraint("cumulative_expenditures_k >= 0", name="expenditures_nonnegative"),
        CheckConstraint(
            "cumulative_expenditures_k <= cumulative_obligations_k",
            name="expenditures_within_obligations",
        ),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, init=False)
    program_element_id: Mapped[int] = mapped_column(ForeignKey("program_elements.id"), default=None)
    appropriation_id: Mapped[int] = mapped_column(
        ForeignKey("appropriation_accounts.id"), default=None
    )
    fiscal_year: Mapped[int] = mapped_column(ForeignKey("fiscal_years.year"))
    """Program year of the money (FY2025 money can still be executed in FY2026)."""
    month: Mapped[date]
    """First day of the calendar month the figures run through."""
    cumulative_obligations_k: Mapped[Decimal]
    cumulative_expenditures_k: Mapped[Decimal]
    fiscal_month: Mapped[int] = mapped_column(init=False)
    """Fiscal month of ``month``: 1 = October ... 12 = September."""
    program_element: Mapped[ProgramElement] = relationship(default=None, repr=False)
    appropriation: Mapped[AppropriationAccount] = relationship(default=None, repr=False)

    @validates("month")
    def _set_month(self, _key: str, month: date) -> date:
        first = month.replace(day=1)
        self.fiscal_month = fiscal_month_of(first)
        return first

    def __post_init__(self) -> None:
        start, _ = fiscal_year_bounds(self.fiscal_year)
        if self.month < start:
            raise ValueError(
                f"execution month {self.month.isoformat()} is before FY{self.fiscal_year} "
                f"money exists ({start.isoformat()})"
            )


# --------------------------------------------------------------------------- job records


class Report(Base, kw_only=True):
    """A requested report and, once generated, its file; keyed by the caller's report id."""

    __tablename__ = "reports"
    __table_args__ = (
        Index(None, "status", "created_at"),
        Index(None, "requested_by", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """The report id the request carries, e.g. ``report-123``."""
    report_type: Mapped[str] = mapped_column(String(64))
    """``budget-summary``, ``r1``, ``execution``, ``fydp``..."""
    format: Mapped[ReportFormat] = mapped_column(_enum(ReportFormat, "report_format"))
    parameters: Mapped[dict[str, Any]] = mapped_column(default_factory=dict)
    status: Mapped[ReportStatus] = mapped_column(
        _enum(ReportStatus, "report_status"), default=ReportStatus.PENDING
    )
    requested_by: Mapped[str | None] = mapped_column(String(128), default=None)
    file_path: Mapped[str | None] = mapped_column(String(1024), default=None)
    checksum: Mapped[str | None] = mapped_column(String(64), default=None)
    """SHA-256 of the file, lower-case hex."""
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default_factory=utcnow, insert_default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class Notification(Base, kw_only=True):
    """An e-mail or in-app notification; ``notification_key`` makes sending it twice impossible."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index(None, "recipient", "channel", "status"),
        Index(None, "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, init=False)
    notification_key: Mapped[str] = mapped_column(String(128), unique=True)
    """Caller-chosen unique key (e.g. ``report-ready:report-123:user-456``)."""
    channel: Mapped[NotificationChannel] = mapped_column(
        _enum(NotificationChannel, "notification_channel")
    )
    recipient: Mapped[str] = mapped_column(String(320))
    """An e-mail address, or a user id for in-app notifications."""
    template: Mapped[str] = mapped_column(String(64))
    """``report-ready``, ``approval-due``, ``job-failed``..."""
    subject: Mapped[str] = mapped_column(String(300), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    context: Mapped[dict[str, Any]] = mapped_column(default_factory=dict)
    """The values the template was filled with."""
    status: Mapped[NotificationStatus] = mapped_column(
        _enum(NotificationStatus, "notification_status"), default=NotificationStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default_factory=utcnow, insert_default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    read_at: Mapped[datetime | None] = mapped_column(default=None)
    """When an in-app notification was read."""


class ImportBatch(Base, kw_only=True):
    """One file import: its mode, outcome and row counts; row errors hang off it."""

    __tablename__ = "import_batches"
    __table_args__ = (Index(None, "checksum"), Index(None, "status", "created_at"))

    id: Mapped[int] = mapped_column(_ID, primary_key=True, init=False)
    filename: Mapped[str] = mapped_column(String(512))
    checksum: Mapped[str] = mapped_column(String(64))
    """SHA-256 of the file, lower-case hex."""
    mode: Mapped[ImportMode] = mapped_column(_enum(ImportMode, "import_mode"))
    target: Mapped[str] = mapped_column(String(64), default="budget-lines")
    """What the rows are: ``budget-lines``, ``execution``, ``program-elements``..."""
    status: Mapped[ImportStatus] = mapped_column(
        _enum(ImportStatus, "import_status"), default=ImportStatus.PENDING
    )
    requested_by: Mapped[str | None] = mapped_column(String(128), default=None)
    rows_total: Mapped[int] = mapped_column(default=0)
    rows_invalid: Mapped[int] = mapped_column(default=0)
    rows_inserted: Mapped[int] = mapped_column(default=0)
    rows_updated: Mapped[int] = mapped_column(default=0)
    rows_unchanged: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default_factory=utcnow, insert_default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    errors: Mapped[list[ImportRowError]] = relationship(
        back_populates="batch",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ImportRowError.row_number, ImportRowError.id",
        init=False,
        repr=False,
    )


class ImportRowError(Base, kw_only=True):
    """Why one row of an import was refused: row number (1 = first data row), field, message."""

    __tablename__ = "import_row_errors"
    __table_args__ = (Index(None, "batch_id", "row_number"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, init=False)
    batch_id: Mapped[int] = mapped_column(
        ForeignKey("import_batches.id", ondelete="CASCADE"), default=None
    )
    row_number: Mapped[int]
    message: Mapped[str] = mapped_column(Text)
    field: Mapped[str | None] = mapped_column(String(64), default=None)
    """The column at fault, or None for the row as a whole."""
    value: Mapped[str | None] = mapped_column(Text, default=None)
    """The offending value as read from the file."""
    batch: Mapped[ImportBatch] = relationship(back_populates="errors", default=None, repr=False)


class CalculationResult(Base, kw_only=True):
    """A stored budget calculation: what was asked (parameters) and the answer (result)."""

    __tablename__ = "calculation_results"
    __table_args__ = (Index(None, "kind", "created_at"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, init=False)
    kind: Mapped[str] = mapped_column(String(64))
    """``escalation``, ``fydp-rollup``, ``execution-rates``, ``ada-check``..."""
    parameters: Mapped[dict[str, Any]] = mapped_column(default_factory=dict)
    result: Mapped[dict[str, Any]] = mapped_column(default_factory=dict)
    """JSON-native; Decimal figures are stored as strings."""
    key: Mapped[str | None] = mapped_column(String(128), unique=True, default=None)
    """Optional idempotency key (e.g. the calculation id of the job), unique when set."""
    created_at: Mapped[datetime] = mapped_column(default_factory=utcnow, insert_default=utcnow)


class OutboxMessage(Base, kw_only=True):
    """A job to enqueue, written in the same transaction as the domain change that needs it.

    A relay enqueues rows whose ``relayed_at`` is NULL (at least once, using
    ``id`` to deduplicate) and then sets ``relayed_at``.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_pending", "relayed_at", "id"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, init=False)
    queue: Mapped[str] = mapped_column(String(128))
    job_name: Mapped[str] = mapped_column(String(128))
    data: Mapped[dict[str, Any]] = mapped_column(default_factory=dict)
    options: Mapped[dict[str, Any]] = mapped_column(default_factory=dict)
    """Job options in the spec's shape (``priority``, ``attempts``, ``backoff``...)."""
    created_at: Mapped[datetime] = mapped_column(default_factory=utcnow, insert_default=utcnow)
    relayed_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    """Relay attempts that failed so far."""
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class AuditLog(Base, kw_only=True):
    """Who did what to which queue or job, and when."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index(None, "at"),
        Index(None, "queue", "job_id"),
        Index(None, "actor", "at"),
    )

    id: Mapped[int] = mapped_column(_ID, primary_key=True, init=False)
    actor: Mapped[str] = mapped_column(String(128))
    """The user or service account."""
    action: Mapped[str] = mapped_column(String(64))
    """``enqueue``, ``retry``, ``remove``, ``pause``..."""
    queue: Mapped[str | None] = mapped_column(String(128), default=None)
    job_id: Mapped[str | None] = mapped_column(String(128), default=None)
    job_name: Mapped[str | None] = mapped_column(String(128), default=None)
    details: Mapped[dict[str, Any]] = mapped_column(default_factory=dict)
    at: Mapped[datetime] = mapped_column(default_factory=utcnow, insert_default=utcnow)
