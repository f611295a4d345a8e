"""The models on SQLite and on PostgreSQL: schema, exact decimals, UTC times, constraints."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import Numeric, func, insert, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from ppbe_jobs.db import (
    AppropriationAccount,
    AuditLog,
    Base,
    BudgetKind,
    BudgetLine,
    CalculationResult,
    ColorOfMoney,
    Database,
    DeflatorTable,
    FiscalYear,
    ImportBatch,
    ImportMode,
    ImportRowError,
    IndexKind,
    MonthlyExecution,
    Notification,
    NotificationChannel,
    Organization,
    OutboxMessage,
    ProgramElement,
    Report,
    ReportFormat,
    Service,
)


def _reference(session: Session) -> tuple[ProgramElement, AppropriationAccount]:
    session.add_all([FiscalYear(year=2025), FiscalYear(year=2026)])
    org = Organization(code="NAVSEA", name="Naval Sea Systems Command", service=Service.NAVY)
    account = AppropriationAccount(
        symbol="017-1319", title="RDT&E, Navy", color=ColorOfMoney.RDTE, service=Service.NAVY
    )
    pe = ProgramElement(code="0603502N", title="MCM", organization=org, budget_activity=4)
    session.add_all([org, account, pe])
    session.flush()
    return pe, account


def _line(
    pe: ProgramElement, account: AppropriationAccount, amount: object, **kw: object
) -> BudgetLine:
    values: dict[str, object] = {
        "fiscal_year": 2026,
        "budget_year": 2026,
        "kind": BudgetKind.ENACTED,
    }
    values.update(kw)
    return BudgetLine(
        program_element=pe,
        appropriation=account,
        amount_k=amount,  # type: ignore[arg-type]
        **values,  # type: ignore[arg-type]
    )


def _reference_ids(db: Database) -> tuple[int, int]:
    """Reference rows committed; the ids of the program element and the account."""
    with db.session() as session:
        pe, account = _reference(session)
        return pe.id, account.id


def _line_for(ids: tuple[int, int], amount: object, **kw: object) -> BudgetLine:
    values: dict[str, object] = {
        "fiscal_year": 2026,
        "budget_year": 2026,
        "kind": BudgetKind.ENACTED,
    }
    values.update(kw)
    return BudgetLine(
        program_element_id=ids[0],
        appropriation_id=ids[1],
        amount_k=amount,  # type: ignore[arg-type]
        **values,  # type: ignore[arg-type]
    )


def test_every_table_and_index_is_created(any_db: Database) -> None:
    inspector = inspect(any_db.engine)
    assert set(inspector.get_table_names()) == set(Base.metadata.tables)
    outbox_indexes = {ix["name"]: ix["column_names"] for ix in inspector.get_indexes("outbox")}
    assert outbox_indexes["ix_outbox_pending"] == ["relayed_at", "id"]
    line_indexes = {ix["name"] for ix in inspector.get_indexes("budget_lines")}
    assert "ix_budget_lines_fiscal_year_appropriation_id" in line_indexes
    columns = {c["name"]: c for c in inspector.get_columns("budget_lines")}
    amount_type = columns["amount_k"]["type"]
    assert isinstance(amount_type, Numeric)
    assert (amount_type.precision, amount_type.scale) == (18, 3)


@pytest.mark.parametrize(
    "amount",
    ["1234567.891", "0.001", "-5.5", "999999999999.999", "850000000", "0"],
)
def test_decimal_round_trips_exactly(any_db: Database, amount: str) -> None:
    with any_db.session() as session:
        pe, account = _reference(session)
        session.add(_line(pe, account, Decimal(amount)))
    with any_db.session() as session:
        stored = session.scalars(select(BudgetLine.amount_k)).one()
    assert isinstance(stored, Decimal)
    assert stored == Decimal(amount)
    assert str(stored) == str(Decimal(amount).quantize(Decimal("0.001")))


def test_sums_are_exact(any_db: Database) -> None:
    amounts = [Decimal("0.1"), Decimal("0.2"), Decimal("1234567.891"), Decimal("0.007")] * 25
    with any_db.session() as session:
        pe, account = _reference(session)
        session.execute(
            insert(MonthlyExecution),
            [
                {
                    "program_element_id": pe.id,
                    "appropriation_id": account.id,
                    "fiscal_year": 2026,
                    "month": date(2025, 10, 1) + timedelta(days=31 * i),
                    "fiscal_month": 1,
                    "cumulative_obligations_k": amount,
                    "cumulative_expenditures_k": amount,
                }
                for i, amount in enumerate(amounts)
            ],
        )
    with any_db.session() as session:
        total = session.scalar(select(func.sum(MonthlyExecution.cumulative_obligations_k)))
    assert total == sum(amounts) == Decimal("30864204.950")
    assert isinstance(total, Decimal)


def test_money_refuses_float(any_db: Database) -> None:
    ids = _reference_ids(any_db)
    with (
        pytest.raises(StatementError, match=r"takes Decimal or int, got float"),
        any_db.session() as session,
    ):
        session.add(_line_for(ids, 1.5))


def test_money_refuses_more_than_three_decimals(any_db: Database) -> None:
    ids = _reference_ids(any_db)
    with (
        pytest.raises(StatementError, match=r"more than 3 decimal places"),
        any_db.session() as session,
    ):
        session.add(_line_for(ids, Decimal("1.0005")))


def test_money_limits_are_those_of_the_database(any_db: Database) -> None:
    """NUMERIC(18,3) on PostgreSQL; SQLite's REAL holds 15 significant digits exactly."""
    ids = _reference_ids(any_db)
    big = Decimal("123456789012345.678")  # 18 digits
    if any_db.dialect_name == "sqlite":
        with (
            pytest.raises(StatementError, match=r"more than 15 significant digits"),
            any_db.session() as session,
        ):
            session.add(_line_for(ids, big))
    else:
        with any_db.session() as session:
            session.add(_line_for(ids, big))
        with any_db.session() as session:
            assert session.scalars(select(BudgetLine.amount_k)).one() == big
    with (
        pytest.raises(StatementError, match=r"more than 1[58] significant digits"),
        any_db.session() as session,
    ):
        session.add(_line_for(ids, Decimal("1234567890123456"), kind=BudgetKind.PLAN))


def test_index_factors_keep_six_decimals(any_db: Database) -> None:
    with any_db.session() as session:
        session.add(
            DeflatorTable(
                base_year=2026,
                fiscal_year=2030,
                color=ColorOfMoney.PROCUREMENT,
                factor=Decimal("1.087654"),
                index_kind=IndexKind.RAW,
            )
        )
    with any_db.session() as session:
        row = session.scalars(select(DeflatorTable)).one()
    assert row.factor == Decimal("1.087654")
    assert row.index_kind is IndexKind.RAW


def test_datetimes_come_back_aware_in_utc(any_db: Database) -> None:
    eastern = timezone(timedelta(hours=-5))
    finished = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=eastern)
    with any_db.session() as session:
        session.add(
            Report(
                id="report-1",
                report_type="budget-summary",
                format=ReportFormat.PDF,
                finished_at=finished,
            )
        )
    with any_db.session() as session:
        report = session.get(Report, "report-1")
        assert report is not None
    assert report.finished_at == finished
    assert report.finished_at is not None
    assert report.finished_at.tzinfo is UTC
    assert report.finished_at.hour == 14
    assert report.created_at.tzinfo is UTC
    assert abs(datetime.now(UTC) - report.created_at) < timedelta(minutes=5)


def test_naive_datetimes_are_refused(any_db: Database) -> None:
    with pytest.raises(StatementError, match="naive datetime"), any_db.session() as session:
        session.add(
            Report(
                id="r", report_type="x", format=ReportFormat.CSV, finished_at=datetime(2026, 1, 1)
            )
        )


def test_json_documents_round_trip(any_db: Database) -> None:
    parameters = {
        "fiscalYear": "fy-2026",
        "includeLineItems": True,
        "orgs": ["NAVSEA", "ONR"],
        "n": 3,
    }
    with any_db.session() as session:
        session.add(
            Report(id="r", report_type="fydp", format=ReportFormat.XLSX, parameters=parameters)
        )
        session.add(CalculationResult(kind="escalation", parameters={}, result={"total": "12.345"}))
    with any_db.session() as session:
        assert session.get_one(Report, "r").parameters == parameters
        assert session.scalars(select(CalculationResult.result)).one() == {"total": "12.345"}


def test_json_refuses_decimal_with_a_hint(any_db: Database) -> None:
    with (
        pytest.raises(StatementError, match=r"\$\.total: Decimal .*not JSON.*as a string"),
        any_db.session() as session,
    ):
        session.add(CalculationResult(kind="x", result={"total": Decimal("1.5")}))


def test_enums_are_stored_as_their_values(any_db: Database) -> None:
    with any_db.session() as session:
        _reference(session)
    with any_db.engine.connect() as connection:
        row = connection.execute(text("SELECT color, service FROM appropriation_accounts")).one()
    assert tuple(row) == ("RDT&E", "Navy")


def test_budget_line_is_unique_per_pe_appropriation_year_budget_and_kind(any_db: Database) -> None:
    with any_db.session() as session:
        pe, account = _reference(session)
        session.add(_line(pe, account, Decimal(1)))
        session.add(_line(pe, account, Decimal(2), kind=BudgetKind.REQUEST))
        session.add(_line(pe, account, Decimal(3), fiscal_year=2025, budget_year=2025))
    with pytest.raises(IntegrityError), any_db.session() as session:
        session.add(
            _line(
                session.get_one(ProgramElement, pe.id),
                session.get_one(AppropriationAccount, account.id),
                Decimal(4),
            )
        )
    with any_db.session() as session:
        assert session.scalar(select(func.count()).select_from(BudgetLine)) == 3


def test_budget_line_knows_its_fydp_year() -> None:
    line = BudgetLine(fiscal_year=2029, budget_year=2026, kind=BudgetKind.PLAN, amount_k=Decimal(1))
    assert line.fydp_year == 3


@pytest.mark.parametrize(
    "duplicate",
    [
        lambda: Organization(code="NAVSEA", name="again", service=Service.NAVY),
        lambda: AppropriationAccount(
            symbol="017-1319", title="again", color=ColorOfMoney.RDTE, service=Service.NAVY
        ),
        lambda: FiscalYear(year=2026),
    ],
    ids=["organization-code", "account-symbol", "fiscal-year"],
)
def test_reference_keys_are_unique(any_db: Database, duplicate: object) -> None:
    with any_db.session() as session:
        _reference(session)
    assert callable(duplicate)
    with pytest.raises(IntegrityError), any_db.session() as session:
        session.add(duplicate())


def test_program_element_code_is_unique(any_db: Database) -> None:
    with any_db.session() as session:
        pe, _ = _reference(session)
        org_id = pe.organization_id
    with pytest.raises(IntegrityError), any_db.session() as session:
        session.add(ProgramElement(code="0603502N", title="again", organization_id=org_id))


def test_notification_key_is_unique(any_db: Database) -> None:
    def note() -> Notification:
        return Notification(
            notification_key="report-ready:report-1:user-1",
            channel=NotificationChannel.EMAIL,
            recipient="analyst@example.mil",
            template="report-ready",
        )

    with any_db.session() as session:
        session.add(note())
    with pytest.raises(IntegrityError), any_db.session() as session:
        session.add(note())


def test_deflator_is_unique_per_base_year_fiscal_year_color_and_kind(any_db: Database) -> None:
    def entry(kind: IndexKind) -> DeflatorTable:
        return DeflatorTable(
            base_year=2026,
            fiscal_year=2027,
            color=ColorOfMoney.OM,
            factor=Decimal("1.021"),
            index_kind=kind,
        )

    with any_db.session() as session:
        session.add_all([entry(IndexKind.RAW), entry(IndexKind.OUTLAY_WEIGHTED)])
    with pytest.raises(IntegrityError), any_db.session() as session:
        session.add(entry(IndexKind.RAW))


def test_foreign_keys_are_enforced(any_db: Database) -> None:
    with any_db.session() as session:
        _reference(session)
    with pytest.raises(IntegrityError), any_db.session() as session:
        session.add(
            BudgetLine(
                program_element_id=999_999,
                appropriation_id=999_999,
                fiscal_year=2026,
                budget_year=2026,
                kind=BudgetKind.PLAN,
                amount_k=Decimal(1),
            )
        )


def test_unknown_fiscal_year_is_refused(any_db: Database) -> None:
    with any_db.session() as session:
        pe, account = _reference(session)
        ids = (pe.id, account.id)
    with pytest.raises(IntegrityError), any_db.session() as session:
        session.add(
            BudgetLine(
                program_element_id=ids[0],
                appropriation_id=ids[1],
                fiscal_year=2040,
                budget_year=2026,
                kind=BudgetKind.PLAN,
                amount_k=Decimal(1),
            )
        )


def test_budget_activity_must_be_1_to_7(any_db: Database) -> None:
    with any_db.session() as session:
        pe, _ = _reference(session)
        org_id = pe.organization_id
    with pytest.raises(IntegrityError), any_db.session() as session:
        session.add(
            ProgramElement(code="0603999N", title="x", organization_id=org_id, budget_activity=8)
        )


def test_expenditures_cannot_exceed_obligations(any_db: Database) -> None:
    pe_id, account_id = _reference_ids(any_db)
    row = MonthlyExecution(
        program_element_id=pe_id,
        appropriation_id=account_id,
        fiscal_year=2026,
        month=date(2025, 11, 1),
        cumulative_obligations_k=Decimal("10.000"),
        cumulative_expenditures_k=Decimal("10.001"),
    )
    with pytest.raises(IntegrityError), any_db.session() as session:
        session.add(row)


def test_execution_month_is_normalized_and_numbered_from_october(any_db: Database) -> None:
    with any_db.session() as session:
        pe, account = _reference(session)
        row = MonthlyExecution(
            program_element=pe,
            appropriation=account,
            fiscal_year=2026,
            month=date(2026, 3, 31),
            cumulative_obligations_k=Decimal("10"),
            cumulative_expenditures_k=Decimal("4"),
        )
        session.add(row)
    assert (row.month, row.fiscal_month) == (date(2026, 3, 1), 6)
    with any_db.session() as session:
        stored = session.scalars(select(MonthlyExecution)).one()
    assert (stored.month, stored.fiscal_month) == (date(2026, 3, 1), 6)


def test_execution_before_the_money_exists_is_refused() -> None:
    with pytest.raises(ValueError, match="before FY2026 money exists"):
        MonthlyExecution(
            fiscal_year=2026,
            month=date(2025, 9, 1),
            cumulative_obligations_k=Decimal(0),
            cumulative_expenditures_k=Decimal(0),
        )


def test_core_inserts_get_the_default_availability(any_db: Database) -> None:
    with any_db.session() as session:
        session.execute(
            insert(AppropriationAccount),
            [
                {
                    "symbol": "021-2050",
                    "title": "MILCON, A",
                    "color": ColorOfMoney.MILCON,
                    "service": Service.ARMY,
                },
                {
                    "symbol": "021-2035",
                    "title": "OPA",
                    "color": ColorOfMoney.PROCUREMENT,
                    "service": Service.ARMY,
                },
            ],
        )
    with any_db.session() as session:
        years = dict(
            session.execute(
                select(AppropriationAccount.symbol, AppropriationAccount.availability_years)
            ).all()
        )
    assert years == {"021-2050": 5, "021-2035": 3}


def test_import_row_errors_go_with_their_batch(any_db: Database) -> None:
    with any_db.session() as session:
        batch = ImportBatch(filename="lines.csv", checksum="ab" * 32, mode=ImportMode.VALID_ROWS)
        batch.errors.append(
            ImportRowError(row_number=7, field="pe_code", message="invalid", value="12345")
        )
        batch.errors.append(ImportRowError(row_number=3, field="amount", message="not a number"))
        session.add(batch)
    with any_db.session() as session:
        loaded = session.get_one(ImportBatch, batch.id)
        assert [(e.row_number, e.field) for e in loaded.errors] == [(3, "amount"), (7, "pe_code")]
        session.delete(loaded)
    with any_db.session() as session:
        assert session.scalar(select(func.count()).select_from(ImportRowError)) == 0


def test_outbox_and_audit_rows(any_db: Database) -> None:
    with any_db.session() as session:
        session.add(
            OutboxMessage(
                queue="reports",
                job_name="generate",
                data={"reportId": "r-1"},
                options={"priority": 20},
            )
        )
        session.add(
            AuditLog(
                actor="user-456",
                action="enqueue",
                queue="reports",
                job_id="j-1",
                details={"priority": 20},
            )
        )
    with any_db.session() as session:
        pending = session.scalars(
            select(OutboxMessage).where(OutboxMessage.relayed_at.is_(None))
        ).all()
        assert [(m.queue, m.job_name, m.data) for m in pending] == [
            ("reports", "generate", {"reportId": "r-1"})
        ]
        pending[0].relayed_at = datetime.now(UTC)
        audit = session.scalars(select(AuditLog)).one()
        assert audit.at.tzinfo is UTC
    with any_db.session() as session:
        assert (
            session.scalars(select(OutboxMessage).where(OutboxMessage.relayed_at.is_(None))).all()
            == []
        )


def test_json_documents_can_be_queried_by_key(any_db: Database) -> None:
    with any_db.session() as session:
        session.add(
            Report(id="a", report_type="r1", format=ReportFormat.PDF, parameters={"fy": "fy-2026"})
        )
        session.add(
            Report(id="b", report_type="r1", format=ReportFormat.PDF, parameters={"fy": "fy-2025"})
        )
    with any_db.session() as session:
        found = session.scalars(
            select(Report.id).where(Report.parameters["fy"].as_string() == "fy-2025")
        )
        assert found.all() == ["b"]
