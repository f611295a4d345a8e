"""The sample-data generator: deterministic, plausible, and the same on both databases."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ppbe_jobs.db import (
    AppropriationAccount,
    BudgetKind,
    BudgetLine,
    ColorOfMoney,
    Database,
    DeflatorTable,
    FiscalYear,
    IndexKind,
    MonthlyExecution,
    Organization,
    ProgramElement,
    SeedError,
    Service,
    fingerprint,
    is_valid_pe_code,
    seed,
)
from ppbe_jobs.db.seed import dump_rows, main


def _count(db: Database, model: type[object]) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_same_seed_gives_identical_rows(tmp_path: Path) -> None:
    with Database(tmp_path / "a.sqlite3") as a, Database(tmp_path / "b.sqlite3") as b:
        first = seed(a, scale="small", seed=2026)
        second = seed(b, scale="small", seed=2026)
        dump_a, dump_b = dump_rows(a), dump_rows(b)
        assert dump_a == dump_b
        assert sum(len(rows) for rows in dump_a.values()) > 3000
        assert first.fingerprint == second.fingerprint == fingerprint(a)
        assert first.counts == second.counts


def test_another_seed_gives_other_rows(tmp_path: Path) -> None:
    with Database(tmp_path / "a.sqlite3") as a, Database(tmp_path / "b.sqlite3") as b:
        assert seed(a, seed=1).fingerprint != seed(b, seed=2).fingerprint


def test_seed_is_the_same_on_postgresql(pg_db: Database, sqlite_db: Database) -> None:
    summary = seed(pg_db, scale="small")
    assert summary.fingerprint == fingerprint(sqlite_db)
    assert dump_rows(pg_db) == dump_rows(sqlite_db)


def test_small_row_counts(sqlite_db: Database) -> None:
    assert _count(sqlite_db, FiscalYear) == 8
    assert 20 <= _count(sqlite_db, Organization) <= 30
    assert _count(sqlite_db, AppropriationAccount) == 31
    assert _count(sqlite_db, ProgramElement) == 60
    assert _count(sqlite_db, DeflatorTable) == 16 * 5 * 2
    lines = _count(sqlite_db, BudgetLine)
    assert 60 * 13 <= lines <= 60 * 13 * 3
    # every PE x appropriation pair: 18 months of FY2025 money, 6 of FY2026 money
    assert _count(sqlite_db, MonthlyExecution) == lines // 13 * 24


def test_realistic_row_counts(tmp_path: Path) -> None:
    with Database(tmp_path / "r.sqlite3") as db:
        summary = seed(db, scale="realistic")
        assert summary.counts["program_elements"] == 1500
        assert 1500 * 13 <= summary.counts["budget_lines"] <= 1500 * 13 * 3
        assert summary.counts["monthly_execution"] == summary.counts["budget_lines"] // 13 * 24


def test_every_service_has_all_five_colors(sqlite_db: Database) -> None:
    with sqlite_db.session() as session:
        pairs = set(
            session.execute(select(AppropriationAccount.service, AppropriationAccount.color))
        )
        years = dict(
            session.execute(
                select(AppropriationAccount.symbol, AppropriationAccount.availability_years)
            ).all()
        )
    assert pairs == {(service, color) for service in Service for color in ColorOfMoney}
    assert years["017-1611"] == 5  # Shipbuilding and Conversion, Navy
    assert years["017-1319"] == 2
    assert years["021-2050"] == 5


def test_program_elements_look_real(sqlite_db: Database) -> None:
    with sqlite_db.session() as session:
        rows = session.execute(select(ProgramElement.code, ProgramElement.budget_activity)).all()
        rdte_accounts = session.scalars(
            select(BudgetLine.program_element_id)
            .join(AppropriationAccount)
            .where(AppropriationAccount.color == ColorOfMoney.RDTE)
        ).all()
        rdte_pes = set(
            session.scalars(
                select(ProgramElement.id).where(ProgramElement.budget_activity.is_not(None))
            )
        )
    assert all(is_valid_pe_code(code) for code, _ in rows)
    for code, activity in rows:
        if activity is not None and activity < 7:
            assert code[2:4] == f"0{activity}", code
            assert code[:2] in ("06", "12"), code
    assert {activity for _, activity in rows} >= {None, 1, 2, 3, 4, 5}
    assert set(rdte_accounts) == rdte_pes  # RDT&E money goes to RDT&E program elements


def test_budget_lines_span_the_fydp(sqlite_db: Database) -> None:
    years: dict[tuple[int, int, BudgetKind], set[tuple[int, int]]] = defaultdict(set)
    with sqlite_db.session() as session:
        for line in session.scalars(select(BudgetLine)):
            years[(line.program_element_id, line.appropriation_id, line.kind)].add(
                (line.budget_year, line.fiscal_year)
            )
            assert line.amount_k > 0
            assert line.amount_k == line.amount_k.quantize(Decimal("0.001"))
    fydp = {(2026, fy) for fy in range(2026, 2031)}
    for (_pe, _account, kind), found in years.items():
        if kind is BudgetKind.ENACTED:
            assert found == {(2024, 2024), (2025, 2025), (2026, 2026)}
        else:
            assert found == fydp


def test_execution_is_cumulative_and_plausible(sqlite_db: Database) -> None:
    with sqlite_db.session() as session:
        enacted = {
            (line.program_element_id, line.appropriation_id, line.fiscal_year): line.amount_k
            for line in session.scalars(
                select(BudgetLine).where(BudgetLine.kind == BudgetKind.ENACTED)
            )
        }
        colors = dict(
            session.execute(select(AppropriationAccount.id, AppropriationAccount.color)).all()
        )
        rows = session.scalars(
            select(MonthlyExecution).order_by(
                MonthlyExecution.program_element_id,
                MonthlyExecution.appropriation_id,
                MonthlyExecution.fiscal_year,
                MonthlyExecution.month,
            )
        ).all()
    assert max(row.month for row in rows) == date(2026, 3, 1)
    previous: dict[tuple[int, int, int], MonthlyExecution] = {}
    year_end: dict[ColorOfMoney, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for row in rows:
        key = (row.program_element_id, row.appropriation_id, row.fiscal_year)
        assert row.cumulative_expenditures_k <= row.cumulative_obligations_k <= enacted[key]
        before = previous.get(key)
        if before is not None:
            assert row.cumulative_obligations_k >= before.cumulative_obligations_k
            assert row.cumulative_expenditures_k >= before.cumulative_expenditures_k
        previous[key] = row
        if row.fiscal_year == 2025 and row.month == date(2025, 9, 1):
            totals = year_end[colors[row.appropriation_id]]
            totals[0] += row.cumulative_obligations_k
            totals[1] += enacted[key]
    rate = {color: obligated / total for color, (obligated, total) in year_end.items()}
    assert rate[ColorOfMoney.OM] > Decimal("0.9")
    assert rate[ColorOfMoney.OM] > rate[ColorOfMoney.RDTE] > rate[ColorOfMoney.PROCUREMENT]
    assert rate[ColorOfMoney.PROCUREMENT] > Decimal("0.4")


def test_deflators_are_one_in_the_base_year_and_rise(sqlite_db: Database) -> None:
    series: dict[tuple[ColorOfMoney, IndexKind], list[tuple[int, Decimal]]] = defaultdict(list)
    with sqlite_db.session() as session:
        for row in session.scalars(select(DeflatorTable).order_by(DeflatorTable.fiscal_year)):
            assert row.base_year == 2026
            series[(row.color, row.index_kind)].append((row.fiscal_year, row.factor))
    assert len(series) == 10
    for values in series.values():
        assert [year for year, _ in values] == list(range(2020, 2036))
        assert dict(values)[2026] == Decimal(1)
        factors = [factor for _, factor in values]
        assert factors == sorted(factors)
        assert Decimal("0.7") < factors[0] < 1 < factors[-1] < Decimal("1.4")
        assert all(factor == factor.quantize(Decimal("0.0001")) for factor in factors)


def test_seeding_a_filled_database_is_refused_unless_reset(sqlite_db: Database) -> None:
    before = fingerprint(sqlite_db)
    with pytest.raises(SeedError, match="already holds data"):
        seed(sqlite_db)
    assert fingerprint(sqlite_db) == before
    assert seed(sqlite_db, seed=7, reset=True).fingerprint != before
    assert seed(sqlite_db, reset=True).fingerprint == before


def test_unknown_scale_is_refused(sqlite_empty_db: Database) -> None:
    with pytest.raises(ValueError, match="scale"):
        seed(sqlite_empty_db, scale="huge")  # type: ignore[arg-type]


def test_main_seeds_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cli.sqlite3"
    assert main(["--database-url", str(path)]) == 0
    out = capsys.readouterr().out
    assert "program_elements" in out
    assert "fingerprint" in out
    assert main(["--database-url", str(path)]) == 1
    assert "already holds data" in capsys.readouterr().err
    assert main(["--database-url", str(path), "--reset", "--seed", "5"]) == 0
    assert main(["--database-url", "mysql://x@y/z"]) == 2
    assert "DATABASE_URL" in capsys.readouterr().err
