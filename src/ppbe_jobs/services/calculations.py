"""Budget calculations over the domain database: load inputs, run, store the result.

The arithmetic lives in :mod:`ppbe_jobs.domain.calculations` (pure Decimal);
this module maps database rows into its inputs and keeps the result in
``calculation_results`` under the calculation id, so a rerun returns the
stored result instead of computing (and storing) it twice.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from ppbe_jobs.db import (
    AppropriationAccount,
    BudgetKind,
    CalculationResult,
    Database,
    DeflatorTable,
    IndexKind,
    MonthlyExecution,
    ProgramElement,
    fiscal_year_of,
)
from ppbe_jobs.db import BudgetLine as BudgetLineRow
from ppbe_jobs.domain import calculations as calc
from ppbe_jobs.domain.escalation import DeflatorTable as Deflators
from ppbe_jobs.domain.money import BudgetLine, Color, ExecutionEntry

__all__ = ["CalculationFilters", "load_inputs", "run_and_store", "snake_case_params"]

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def snake_case_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``{"fiscalYear": 2026}`` -> ``{"fiscal_year": 2026}`` (snake_case passes through)."""
    return {_CAMEL.sub("_", k).lower(): v for k, v in params.items()}


class CalculationFilters:
    """Which rows a calculation looks at (all optional)."""

    def __init__(
        self,
        *,
        organization: str | None = None,
        color: str | None = None,
        program_element: str | None = None,
        fiscal_years: tuple[int, ...] | None = None,
        budget_kind: str = "enacted",
    ) -> None:
        self.organization = organization
        self.color = None if color is None else Color.parse(color)
        self.program_element = program_element
        self.fiscal_years = fiscal_years
        try:
            self.budget_kind = BudgetKind(budget_kind)
        except ValueError as exc:
            kinds = ", ".join(k.value for k in BudgetKind)
            raise ValueError(f"filters.budgetKind: {budget_kind!r} is not one of {kinds}") from exc

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> CalculationFilters:
        """Filters from job data (camelCase or snake_case)."""
        f = snake_case_params(raw)
        unknown = set(f) - {
            "organization",
            "color",
            "program_element",
            "fiscal_years",
            "budget_kind",
        }
        if unknown:
            raise ValueError(f"filters: unknown keys {sorted(unknown)}")
        years = f.get("fiscal_years")
        return cls(
            organization=f.get("organization"),
            color=f.get("color"),
            program_element=f.get("program_element"),
            fiscal_years=None if years is None else tuple(int(y) for y in years),
            budget_kind=str(f.get("budget_kind", "enacted")),
        )


def _line_id(pe: str, symbol: str, fiscal_year: int) -> str:
    return f"{pe}/{symbol}/FY{fiscal_year}"


def load_inputs(session: Session, filters: CalculationFilters) -> calc.CalculationInputs:
    """Budget lines, monthly execution (as monthly amounts) and deflators from the database."""
    q = (
        select(BudgetLineRow)
        .options(
            joinedload(BudgetLineRow.program_element).joinedload(ProgramElement.organization),
            joinedload(BudgetLineRow.appropriation),
        )
        .where(BudgetLineRow.kind == filters.budget_kind)
        .order_by(BudgetLineRow.id)
    )
    if filters.fiscal_years:
        q = q.where(BudgetLineRow.fiscal_year.in_(filters.fiscal_years))
    lines: list[BudgetLine] = []
    keys: set[tuple[int, int, int]] = set()
    totals: dict[str, Decimal] = defaultdict(Decimal)
    meta: dict[str, tuple[str, Color, int, str]] = {}
    for row in session.scalars(q).unique():
        pe, acct = row.program_element, row.appropriation
        color = Color.parse(acct.color)
        org = pe.organization.code if pe.organization is not None else ""
        if filters.color is not None and color != filters.color:
            continue
        if filters.organization is not None and org != filters.organization:
            continue
        if filters.program_element is not None and pe.code != filters.program_element:
            continue
        line_id = _line_id(pe.code, acct.symbol, row.fiscal_year)
        # Several budget years can hold the same line; the newest budget's amount counts.
        totals[line_id] = row.amount_k
        meta[line_id] = (pe.code, color, row.fiscal_year, org)
        keys.add((row.program_element_id, row.appropriation_id, row.fiscal_year))
    for line_id, amount in totals.items():
        pe_code, color, fy, org = meta[line_id]
        lines.append(
            BudgetLine(
                line_id=line_id,
                program_element=pe_code,
                appropriation=color,
                fiscal_year=fy,
                amount=amount,
                organization=org,
            )
        )

    execution: list[ExecutionEntry] = []
    rows = session.scalars(
        select(MonthlyExecution)
        .options(
            joinedload(MonthlyExecution.program_element),
            joinedload(MonthlyExecution.appropriation),
        )
        .order_by(
            MonthlyExecution.program_element_id,
            MonthlyExecution.appropriation_id,
            MonthlyExecution.fiscal_year,
            MonthlyExecution.month,
        )
    ).unique()
    previous: dict[tuple[int, int, int], tuple[Decimal, Decimal]] = {}
    for ex in rows:
        key = (ex.program_element_id, ex.appropriation_id, ex.fiscal_year)
        if key not in keys:
            continue
        obl0, exp0 = previous.get(key, (Decimal(0), Decimal(0)))
        previous[key] = (ex.cumulative_obligations_k, ex.cumulative_expenditures_k)
        execution.append(
            ExecutionEntry(
                line_id=_line_id(ex.program_element.code, ex.appropriation.symbol, ex.fiscal_year),
                fiscal_year=fiscal_year_of(ex.month),
                fiscal_month=ex.fiscal_month,
                obligations=ex.cumulative_obligations_k - obl0,
                expenditures=ex.cumulative_expenditures_k - exp0,
            )
        )
    return calc.CalculationInputs(lines=lines, execution=execution, deflators=_deflators(session))


def _deflators(session: Session) -> Deflators | None:
    rows = list(
        session.scalars(
            select(DeflatorTable)
            .where(DeflatorTable.index_kind == IndexKind.RAW)
            .order_by(DeflatorTable.base_year.desc(), DeflatorTable.fiscal_year)
        )
    )
    if not rows:
        return None
    base = rows[0].base_year
    indices: dict[Color, dict[int, Decimal]] = defaultdict(dict)
    for r in rows:
        if r.base_year == base:
            indices[Color.parse(r.color)][r.fiscal_year] = r.factor
    return Deflators(base_year=base, indices=indices)


def _json_native(value: Any) -> Any:
    """Decimals as exact strings, for the JSON column."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _json_native(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_native(v) for v in value]
    return value


def run_and_store(
    database: Database,
    calculation_id: str,
    kind: str,
    params: Mapping[str, Any],
    filters: CalculationFilters,
) -> tuple[int, dict[str, Any], bool]:
    """Run (or find) a calculation; returns (result row id, result, computed now)."""
    with database.session() as s:
        done = s.scalar(select(CalculationResult).where(CalculationResult.key == calculation_id))
        if done is not None:
            return done.id, dict(done.result), False
        inputs = load_inputs(s, filters)
        result = calc.run_calculation(kind, snake_case_params(params), inputs)
        stored = _json_native(result.to_dict())
        row = CalculationResult(
            kind=kind,
            parameters=_json_native(dict(params)),
            result=stored,
            key=calculation_id,
        )
        s.add(row)
        s.flush()
        return row.id, stored, True


def appropriation_symbols(session: Session) -> list[str]:
    """Every appropriation symbol (for error messages)."""
    return list(session.scalars(select(AppropriationAccount.symbol)))
