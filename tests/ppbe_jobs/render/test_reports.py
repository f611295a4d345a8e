"""Report builders: ordering, status rules and refusals (figures: test_writers.py)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from ppbe_jobs.render import (
    AppropriationAmount,
    ExecutionLine,
    ExecutionStatus,
    RdteProgramLine,
    ReportContext,
    budget_summary,
    execution_report,
    execution_status,
    fydp_table,
    rdte_exhibit,
)

from .data import CONTEXT, GENERATED_AT, execution_lines, rdte_lines


def _line(obl: str, exp: str, obl_bm: str = "0.50", exp_bm: str = "0.30") -> ExecutionLine:
    return ExecutionLine(
        appropriation="a",
        color_of_money="O&M",
        toa=Decimal(1000),
        obligations=Decimal(obl),
        expenditures=Decimal(exp),
        obligation_benchmark=Decimal(obl_bm),
        expenditure_benchmark=Decimal(exp_bm),
    )


@pytest.mark.parametrize(
    ("obligations", "expenditures", "status"),
    [
        ("500", "300", ExecutionStatus.ON_TRACK),  # exactly on both benchmarks
        ("499.999", "300", ExecutionStatus.WATCH),  # a hair under
        ("450", "300", ExecutionStatus.WATCH),  # exactly 5 points under
        ("449.999", "900", ExecutionStatus.BELOW),  # past the band: the worse one wins
        ("900", "249.999", ExecutionStatus.BELOW),
    ],
)
def test_execution_status_edges(
    obligations: str, expenditures: str, status: ExecutionStatus
) -> None:
    assert execution_status(_line(obligations, expenditures), watch_band=Decimal("0.05")) == status


def test_execution_status_without_toa() -> None:
    line = ExecutionLine(
        appropriation="a",
        color_of_money="MILCON",
        toa=Decimal(0),
        obligations=Decimal(0),
        expenditures=Decimal(0),
        obligation_benchmark=Decimal("0.2"),
        expenditure_benchmark=Decimal("0.1"),
    )
    assert execution_status(line, watch_band=Decimal("0.05")) is ExecutionStatus.NO_TOA


def test_execution_report_subtitle_and_band_footnote() -> None:
    table = execution_report(
        execution_lines(), CONTEXT, as_of=date(2026, 3, 31), watch_band=Decimal("0.25")
    )
    assert table.subtitle == (
        "Department of the Navy, FY2027 President's Budget, as of 31 March 2026, $ in thousands"
    )
    assert "by 25 percentage points or less" in table.footnotes[-1]
    # With a 25-point band the procurement line, 20 points under, is only "Watch".
    assert [r["status"] for r in table.rows] == ["Watch", "On track", "Watch", "No TOA"]


def test_budget_summary_refuses_a_year_outside_the_fydp() -> None:
    amount = AppropriationAmount(
        appropriation="Operation and Maintenance, Navy",
        color_of_money="O&M",
        fiscal_year=2031,
        amount=Decimal(1),
    )
    with pytest.raises(ValueError, match=r"'Operation and Maintenance, Navy'.*2031.*FY2026-FY2030"):
        budget_summary([amount], CONTEXT)


def test_budget_summary_other_years_and_unknown_colors() -> None:
    amounts = [
        AppropriationAmount(appropriation=a, color_of_money=c, fiscal_year=2027, amount=Decimal(1))
        for a, c in [("X", "Revolving Fund"), ("Y", "MILCON"), ("Z", "Defense Health")]
    ]
    table = budget_summary(amounts, CONTEXT, fiscal_years=[2027, 2028])
    assert [c.header for c in table.columns][2:] == ["FY2027", "FY2028", "FYDP Total"]
    assert [r["color"] for r in table.rows] == ["MILCON", "Defense Health", "Revolving Fund"]
    assert table.total is not None
    assert table.total["total"] == Decimal(3)


def test_fiscal_years_must_increase() -> None:
    with pytest.raises(ValueError, match="increasing"):
        fydp_table([], CONTEXT, fiscal_years=[2027, 2026])


def test_rdte_out_years_must_match() -> None:
    lines = rdte_lines()
    short = RdteProgramLine(
        pe_number="0605000N",
        pe_title="Short",
        budget_activity=6,
        prior_year=Decimal(0),
        current_year=Decimal(0),
        budget_year=Decimal(0),
        out_years=(Decimal(1),),
    )
    with pytest.raises(ValueError, match="0605000N: 1 out years, but the exhibit has 4"):
        rdte_exhibit([*lines, short], CONTEXT, budget_year=2027)


def test_empty_inputs_give_a_zero_total() -> None:
    table = fydp_table([], CONTEXT)
    assert table.rows == ()
    assert table.total is not None
    assert table.total["total"] == Decimal(0)


def test_context_supplies_banner_and_timestamp() -> None:
    context = ReportContext(
        budget_cycle="FY2027 PB", classification="CUI", generated_at=GENERATED_AT
    )
    table = fydp_table([], context)
    assert table.classification == "CUI"
    assert table.generated_at == GENERATED_AT
    assert table.subtitle == "FY2027 PB, FY2026-FY2030, $ in thousands"
