"""Budget calculations, checked against figures worked out by hand.

Every expected figure is a literal computed on paper; the comment beside it
shows the arithmetic. Amounts are thousands of dollars.
"""

from __future__ import annotations

import inspect
import re
from decimal import ROUND_DOWN, Decimal, localcontext
from typing import Any

import pytest

from jobq.serialization import decode, encode
from ppbe_jobs.domain import calculations
from ppbe_jobs.domain.calculations import (
    CALCULATION_KINDS,
    DEFAULT_BENCHMARKS,
    AdaRules,
    Benchmark,
    BenchmarkCurve,
    BudgetLine,
    CalculationInputs,
    Color,
    DeflatorTable,
    ExecutionEntry,
    PurposeRule,
    ada_check,
    burn_rate,
    escalate_lines,
    escalate_series,
    execution_rates,
    fydp_rollup,
    round_money,
    round_rate,
    run_calculation,
    to_constant,
    to_then_year,
    variance,
)

D = Decimal


def line(
    line_id: str,
    amount: str,
    *,
    color: Color = Color.OM,
    fiscal_year: int = 2026,
    pe: str = "0204228N",
    org: str = "NAVY",
) -> BudgetLine:
    """A budget line with the defaults most tests need."""
    return BudgetLine(
        line_id=line_id,
        program_element=pe,
        appropriation=color,
        fiscal_year=fiscal_year,
        amount=D(amount),
        organization=org,
    )


def entry(
    line_id: str,
    fiscal_month: int,
    obligations: str = "0",
    expenditures: str = "0",
    *,
    fiscal_year: int = 2026,
    purpose: str | None = None,
    unit_cost: str | None = None,
) -> ExecutionEntry:
    """One month of execution (or plan) for a line."""
    return ExecutionEntry(
        line_id=line_id,
        fiscal_year=fiscal_year,
        fiscal_month=fiscal_month,
        obligations=D(obligations),
        expenditures=D(expenditures),
        purpose=purpose,
        unit_cost=None if unit_cost is None else D(unit_cost),
        reference="N0001426C0001" if purpose else "",
    )


@pytest.fixture
def deflators() -> DeflatorTable:
    """A BY2026 table: O&M and RDT&E escalate alike, Procurement a little faster."""
    same = {2026: D("1.0000"), 2027: D("1.0210"), 2028: D("1.0412")}
    return DeflatorTable(
        base_year=2026,
        indices={
            Color.OM: same,
            Color.RDTE: same,
            Color.PROCUREMENT: {2026: D("1.0000"), 2027: D("1.0250")},
        },
    )


# --------------------------------------------------------------------------- rounding


def test_rounding_is_half_even_to_three_and_four_places() -> None:
    assert round_money(D("1.0005")) == D("1.000")  # tie, 0 is even: stays
    assert round_money(D("1.0015")) == D("1.002")  # tie, 1 is odd: goes up
    assert round_money(D("-2.0025")) == D("-2.002")
    assert str(round_money(D("-0.0004"))) == "0.000"  # never -0.000
    assert round_rate(D("12.34565")) == D("12.3456")
    assert round_rate(D("12.34575")) == D("12.3458")
    assert str(round_money(D("7"))) == "7.000"


def test_decimal_sums_are_exact_where_floats_are_not() -> None:
    lines = [line(f"L{i}", "0.1") for i in range(10)]
    rollup = fydp_rollup(lines)
    assert sum([0.1] * 10) != 1.0  # the reason money is never a float
    assert rollup.grand_total == D("1")
    assert str(rollup.grand_total) == "1.000"


def test_ambient_decimal_context_does_not_change_results(deflators: DeflatorTable) -> None:
    with localcontext() as ctx:
        ctx.prec = 3
        ctx.rounding = ROUND_DOWN
        escalated = to_then_year(D("100000"), Color.OM, 2028, deflators)
        rate = execution_rates(
            CalculationInputs(lines=[line("L1", "3000")], execution=[entry("L1", 1, "2000")]),
            fiscal_year=2026,
            fiscal_month=1,
        ).lines[0]
    assert escalated == D("104120.000")
    assert rate.obligation.rate == D("66.6667")  # 2000 / 3000 = 66.66666... rounds up


# --------------------------------------------------------------------------- escalation


def test_base_year_to_then_year(deflators: DeflatorTable) -> None:
    # 100,000 x 1.0412 / 1.0000 = 104,120
    assert to_then_year(D("100000.000"), Color.OM, 2028, deflators) == D("104120.000")
    # the base year itself is unchanged
    assert to_then_year(D("100000.000"), Color.OM, 2026, deflators) == D("100000.000")


def test_then_year_to_constant_is_the_inverse(deflators: DeflatorTable) -> None:
    # 104,120 x 1.0000 / 1.0412 = 100,000
    assert to_constant(D("104120.000"), "O&M", 2028, deflators) == D("100000.000")
    # 100 / 1.0210 = 97.94319... -> 97.943
    assert to_constant(D("100.000"), "OM", 2027, deflators) == D("97.943")


def test_escalation_rounds_once_half_even(deflators: DeflatorTable) -> None:
    table = DeflatorTable(base_year=2026, indices={Color.OM: {2026: D("1"), 2027: D("1.0005")}})
    assert to_then_year(D("1.000"), Color.OM, 2027, table) == D("1.000")  # 1.0005 -> even 1.000
    assert to_then_year(D("3.000"), Color.OM, 2027, table) == D("3.002")  # 3.0015 -> even 3.002


def test_escalation_with_another_base_year(deflators: DeflatorTable) -> None:
    # FY2027 dollars to FY2028: 1,021 x 1.0412 / 1.0210 = 1,041.2
    assert to_then_year(D("1021"), Color.RDTE, 2028, deflators, base_year=2027) == D("1041.200")


def test_escalate_series_across_the_fydp(deflators: DeflatorTable) -> None:
    report = escalate_series(
        {2026: D("1000"), 2027: D("1000"), 2028: D("1000")}, Color.RDTE, deflators
    )
    assert [i.result for i in report.items] == [D("1000.000"), D("1021.000"), D("1041.200")]
    assert report.result_total == D("3062.200")  # 1000 + 1021 + 1041.2
    assert report.amount_total == D("3000.000")
    assert report.years == (2026, 2027, 2028)


def test_escalate_series_fills_missing_years_and_handles_negatives(
    deflators: DeflatorTable,
) -> None:
    report = escalate_series({2028: D("-500"), 2026: D("100")}, Color.OM, deflators)
    assert report.years == (2026, 2027, 2028)
    # -500 x 1.0412 = -520.6
    assert report.result_by_year == (D("100.000"), D("0.000"), D("-520.600"))
    assert report.result_total == D("-420.600")


def test_escalate_empty_series(deflators: DeflatorTable) -> None:
    report = escalate_series({}, Color.OM, deflators)
    assert report.items == ()
    assert report.years == ()
    assert str(report.result_total) == "0.000"


def test_escalate_lines_uses_each_lines_color(deflators: DeflatorTable) -> None:
    lines = [
        line("A", "200", color=Color.PROCUREMENT, fiscal_year=2027, pe="0208045K"),
        line("B", "200", color=Color.OM, fiscal_year=2027),
    ]
    report = escalate_lines(lines, deflators)
    # Procurement 200 x 1.0250 = 205; O&M 200 x 1.0210 = 204.2
    assert [(i.line_id, i.result) for i in report.items] == [
        ("A", D("205.000")),
        ("B", D("204.200")),
    ]
    assert report.result_by_year == (D("409.200"),)
    back = escalate_lines(lines, deflators, direction="to-constant")
    # 200 / 1.025 = 195.12195... ; 200 / 1.021 = 195.88638...
    assert [i.result for i in back.items] == [D("195.122"), D("195.886")]


def test_escalation_names_the_missing_index(deflators: DeflatorTable) -> None:
    with pytest.raises(ValueError, match=r"no index for FY2031 \(the table covers FY2026-FY2028\)"):
        to_then_year(D("1"), Color.OM, 2031, deflators)
    with pytest.raises(ValueError, match="no index table for MILCON"):
        to_then_year(D("1"), Color.MILCON, 2026, deflators)
    with pytest.raises(ValueError, match=r"DeflatorTable.indices\['O&M'\]\[2027\]: .*positive"):
        DeflatorTable(base_year=2026, indices={Color.OM: {2026: D("1"), 2027: D("0")}})


# --------------------------------------------------------------------------- FYDP roll-up


@pytest.fixture
def fydp_lines() -> list[BudgetLine]:
    """Five lines across three colors, one negative adjustment, one outside FY2026-2030."""
    return [
        line("L1", "1000.000", color=Color.RDTE, fiscal_year=2026, pe="0603502N"),
        line("L2", "1100.000", color=Color.RDTE, fiscal_year=2027, pe="0603502N"),
        line("L3", "500.000", fiscal_year=2026),
        line("L4", "-50.000", fiscal_year=2028),
        line("L5", "250.500", color=Color.PROCUREMENT, fiscal_year=2027, pe="0208045K", org="DISA"),
        line("L6", "999.000", fiscal_year=2031),
    ]


def test_fydp_rollup_by_every_dimension(fydp_lines: list[BudgetLine]) -> None:
    r = fydp_rollup(fydp_lines, fydp_start=2026)
    z = D("0.000")
    assert r.years == (2026, 2027, 2028, 2029, 2030)
    assert [(row.key, row.amounts, row.total) for row in r.by_appropriation] == [
        ("O&M", (D("500.000"), z, D("-50.000"), z, z), D("450.000")),
        ("Procurement", (z, D("250.500"), z, z, z), D("250.500")),
        ("RDT&E", (D("1000.000"), D("1100.000"), z, z, z), D("2100.000")),
    ]
    assert [(row.key, row.total) for row in r.by_program_element] == [
        ("0204228N", D("450.000")),
        ("0208045K", D("250.500")),
        ("0603502N", D("2100.000")),
    ]
    assert [(row.key, row.total) for row in r.by_organization] == [
        ("DISA", D("250.500")),
        ("NAVY", D("2550.000")),
    ]
    # 1000 + 500; 1100 + 250.5; -50; nothing; nothing
    assert r.year_totals == (D("1500.000"), D("1350.500"), D("-50.000"), z, z)
    assert r.grand_total == D("2800.500")
    assert r.excluded_line_ids == ("L6",)


def test_fydp_rollup_without_a_start_spans_the_lines(fydp_lines: list[BudgetLine]) -> None:
    r = fydp_rollup(fydp_lines)
    assert r.years == (2026, 2027, 2028, 2029, 2030, 2031)
    assert r.grand_total == D("3799.500")  # 2800.5 + 999
    assert r.excluded_line_ids == ()


def test_fydp_rollup_of_nothing() -> None:
    r = fydp_rollup([])
    assert (r.years, r.by_appropriation, r.year_totals) == ((), (), ())
    assert str(r.grand_total) == "0.000"
    empty_window = fydp_rollup([], fydp_start=2026, years=2)
    assert empty_window.year_totals == (D("0.000"), D("0.000"))


# --------------------------------------------------------------------------- execution rates


@pytest.fixture
def execution_data() -> CalculationInputs:
    """O&M, RDT&E (second year), Procurement, a zero-TOA line and one not yet started."""
    om = [entry("OM1", m, "100", "50") for m in range(1, 7)]  # 600 obligated, 300 spent
    rdte = [
        entry("R1", 6, "1000", "600", fiscal_year=2025),
        entry("R1", 3, "500", "400", fiscal_year=2026),  # month 18 of availability
    ]
    return CalculationInputs(
        lines=[
            line("OM1", "1200.000"),
            line("R1", "2000.000", color=Color.RDTE, fiscal_year=2025, pe="0603502N"),
            line("P1", "3000.000", color=Color.PROCUREMENT, pe="0208045K"),
            line("Z1", "0.000"),
            line("NEXT", "10.000", fiscal_year=2027),
        ],
        execution=[*om, *rdte, entry("P1", 2, "2000")],
    )


def test_execution_rates_against_benchmarks(execution_data: CalculationInputs) -> None:
    report = execution_rates(execution_data, fiscal_year=2026, fiscal_month=6)
    rows = {row.line_id: row for row in report.lines}

    om = rows["OM1"]
    assert om.month_of_availability == 6
    # 600 / 1200 = 50%; O&M benchmark 100% x 6/12 = 50%
    assert (om.obligation.rate, om.obligation.benchmark) == (D("50.0000"), D("50.0000"))
    assert (om.obligation.gap, om.obligation.status) == (D("0.0000"), "on track")
    # 300 / 1200 = 25%; benchmark 75% x 6/12 = 37.5%; 12.5 points short
    assert om.expenditure.rate == D("25.0000")
    assert om.expenditure.benchmark == D("37.5000")
    assert (om.expenditure.gap, om.expenditure.status) == (D("-12.5000"), "below benchmark")

    rdte = rows["R1"]
    assert rdte.month_of_availability == 18
    # 1500 / 2000 = 75%; benchmark 90 + (100 - 90) x 6/12 = 95%
    assert (rdte.obligation.rate, rdte.obligation.benchmark) == (D("75.0000"), D("95.0000"))
    assert rdte.obligation.gap == D("-20.0000")
    # 1000 / 2000 = 50%; benchmark 55 + (90 - 55) x 6/12 = 72.5%
    assert (rdte.expenditure.benchmark, rdte.expenditure.gap) == (D("72.5000"), D("-22.5000"))

    proc = rows["P1"]
    # 2000 / 3000 = 66.6667%; benchmark 80% x 6/12 = 40%
    assert (proc.obligation.rate, proc.obligation.gap) == (D("66.6667"), D("26.6667"))
    assert proc.obligation.status == "above benchmark"
    assert (proc.expenditure.benchmark, proc.expenditure.status) == (None, "no benchmark")

    zero = rows["Z1"]
    assert (zero.obligation.rate, zero.obligation.gap) == (None, None)
    assert zero.obligation.status == "no authority"
    assert report.not_started == ("NEXT",)


def test_execution_rates_summarised_by_color_and_year(execution_data: CalculationInputs) -> None:
    report = execution_rates(execution_data, fiscal_year=2026, fiscal_month=6)
    summary = {(s.appropriation, s.fiscal_year): s for s in report.by_appropriation}
    om = summary[(Color.OM, 2026)]  # OM1 and Z1
    assert (om.authority, om.obligations, om.obligation.rate) == (
        D("1200.000"),
        D("600.000"),
        D("50.0000"),
    )
    assert [(s.appropriation.value, s.fiscal_year) for s in report.by_appropriation] == [
        ("O&M", 2026),
        ("Procurement", 2026),
        ("RDT&E", 2025),
    ]


def test_execution_rates_count_only_months_through_the_as_of_month(
    execution_data: CalculationInputs,
) -> None:
    report = execution_rates(execution_data, fiscal_year=2026, fiscal_month=3, tolerance=D("0"))
    om = next(row for row in report.lines if row.line_id == "OM1")
    # 300 / 1200 = 25%; benchmark 100% x 3/12 = 25%
    assert (om.obligations, om.obligation.rate, om.obligation.benchmark) == (
        D("300.000"),
        D("25.0000"),
        D("25.0000"),
    )
    assert om.obligation.status == "on track"


def test_benchmark_tolerance_and_custom_table() -> None:
    benchmarks = {Color.OM: Benchmark(obligation=BenchmarkCurve(((3, D("30")),)), expenditure=None)}
    data = CalculationInputs(
        lines=[line("L1", "1000")], execution=[entry("L1", 2, "170")], benchmarks=benchmarks
    )
    row = execution_rates(data, fiscal_year=2026, fiscal_month=2, tolerance=D("3")).lines[0]
    # 170 / 1000 = 17%; benchmark 30 x 2/3 = 20%; 3 points short is within tolerance
    assert (row.obligation.benchmark, row.obligation.gap) == (D("20.0000"), D("-3.0000"))
    assert row.obligation.status == "on track"
    row = execution_rates(data, fiscal_year=2026, fiscal_month=2, tolerance=D("2.9999")).lines[0]
    assert row.obligation.status == "below benchmark"
    # after the last anchor the benchmark stays flat
    assert BenchmarkCurve(((3, D("30")),)).at(40) == D("30.0000")
    om_obligation = DEFAULT_BENCHMARKS[Color.OM].obligation
    assert om_obligation is not None
    assert om_obligation.at(1) == D("8.3333")  # 100 / 12


# --------------------------------------------------------------------------- burn rate


@pytest.fixture
def burn_data() -> CalculationInputs:
    """Four O&M lines: steady, one big month, idle, and overspent."""
    steady = [entry("B1", m, o) for m, o in enumerate(["100", "100", "100", "100", "150", "50"], 1)]
    return CalculationInputs(
        lines=[line("B1", "1200"), line("B2", "600"), line("B3", "300"), line("B4", "100")],
        execution=[*steady, entry("B2", 4, "100"), entry("B4", 2, "150"), entry("B4", 5, "10")],
    )


def test_burn_rate_and_runway(burn_data: CalculationInputs) -> None:
    report = burn_rate(burn_data, fiscal_year=2026, fiscal_month=6, months=3)
    rows = {row.line_id: row for row in report.lines}
    # months 4-6: 100 + 150 + 50 = 300, / 3 = 100 a month; 1200 - 600 = 600 left, 6 months
    b1 = rows["B1"]
    assert (b1.window_obligations, b1.burn_rate) == (D("300.000"), D("100.000"))
    assert (b1.remaining, b1.runway_months) == (D("600.000"), D("6.0000"))
    # 100 / 3 = 33.333 a month; 500 left lasts 500 x 3 / 100 = 15 months exactly
    b2 = rows["B2"]
    assert (b2.burn_rate, b2.runway_months) == (D("33.333"), D("15.0000"))
    # nothing spent: no runway to speak of, and no division by zero
    assert (rows["B3"].burn_rate, rows["B3"].runway_months) == (D("0.000"), None)
    # 160 obligated against 100: exhausted
    assert (rows["B4"].remaining, rows["B4"].runway_months) == (D("-60.000"), D("0.0000"))
    total = report.total
    # 2200 - 860 = 1340 left; 410 / 3 = 136.667 a month; 1340 x 3 / 410 = 9.80487...
    assert (total.authority, total.obligations, total.remaining) == (
        D("2200.000"),
        D("860.000"),
        D("1340.000"),
    )
    assert (total.burn_rate, total.runway_months) == (D("136.667"), D("9.8049"))
    assert (report.window_start_fiscal_year, report.window_start_fiscal_month) == (2026, 4)


def test_burn_window_crosses_fiscal_years_and_deobligations_stop_the_clock() -> None:
    data = CalculationInputs(
        lines=[line("L1", "1000", color=Color.RDTE, pe="0603502N")],
        execution=[
            entry("L1", 11, "300", fiscal_year=2026),
            entry("L1", 12, "-30", fiscal_year=2026),
            entry("L1", 1, "-100", fiscal_year=2027),
        ],
    )
    report = burn_rate(data, fiscal_year=2027, fiscal_month=1, months=3)
    assert (report.window_start_fiscal_year, report.window_start_fiscal_month) == (2026, 11)
    assert report.total.burn_rate == D("56.667")  # (300 - 30 - 100) / 3 = 56.666...
    later = burn_rate(data, fiscal_year=2027, fiscal_month=1, months=2)
    assert later.total.burn_rate == D("-65.000")  # (-30 - 100) / 2: net deobligation
    assert later.total.runway_months is None


# --------------------------------------------------------------------------- variance


def test_variance_against_plan() -> None:
    data = CalculationInputs(
        lines=[line("V1", "1000"), line("V2", "1000"), line("V3", "1000"), line("V4", "1000")],
        plan=[
            *(entry("V1", m, "100") for m in (1, 2, 3)),
            entry("V3", 1, "-100"),
            entry("V4", 2, "200"),
        ],
        execution=[
            entry("V1", 1, "90"),
            entry("V1", 2, "100"),
            entry("V1", 3, "140"),
            entry("V2", 1, "50"),
            entry("V3", 1, "-150"),
        ],
    )
    report = variance(data)
    rows = {(r.line_id): (r.plan, r.actual, r.variance, r.variance_percent) for r in report.lines}
    assert rows == {
        "V1": (D("300.000"), D("330.000"), D("30.000"), D("10.0000")),  # 30 / 300
        "V2": (D("0.000"), D("50.000"), D("50.000"), None),  # no plan: no percent
        "V3": (D("-100.000"), D("-150.000"), D("-50.000"), D("-50.0000")),  # -50 / |-100|
        "V4": (D("200.000"), D("0.000"), D("-200.000"), D("-100.0000")),
    }
    total = report.total
    # plan 300 + 0 - 100 + 200 = 400; actual 330 + 50 - 150 = 230; -170 / 400 = -42.5%
    assert (total.plan, total.actual, total.variance, total.variance_percent) == (
        D("400.000"),
        D("230.000"),
        D("-170.000"),
        D("-42.5000"),
    )
    through_november = variance(data, fiscal_year=2026, fiscal_month=2)
    v1 = through_november.lines[0]
    assert (v1.plan, v1.actual, v1.variance_percent) == (D("200.000"), D("190.000"), D("-5.0000"))


def test_variance_of_expenditures_and_of_nothing() -> None:
    data = CalculationInputs(
        lines=[line("L1", "10")],
        plan=[entry("L1", 1, "5", "4")],
        execution=[entry("L1", 1, "5", "3")],
    )
    spent = variance(data, measure="expenditures").lines[0]
    assert (spent.variance, spent.variance_percent) == (D("-1.000"), D("-25.0000"))  # -1 / 4
    empty = variance(CalculationInputs())
    assert empty.lines == ()
    assert (str(empty.total.plan), empty.total.variance_percent) == ("0.000", None)


# --------------------------------------------------------------------------- ADA checks


def test_a_clean_dataset_has_no_findings() -> None:
    data = CalculationInputs(
        lines=[
            line("OM", "1200"),
            line("RD", "500", color=Color.RDTE, pe="0603502N"),
            line("PR", "900", color=Color.PROCUREMENT, fiscal_year=2024, pe="0208045K"),
        ],
        execution=[
            entry("OM", 3, "1200", purpose="investment", unit_cost="250"),  # at the threshold
            entry("RD", 2, "500", fiscal_year=2027),  # 2-year money, second year
            entry("PR", 12, "900", fiscal_year=2026, purpose="investment", unit_cost="900"),
            entry("OM", 2, "-10", fiscal_year=2027),  # deobligating expired money is fine
            entry("OM", 4, "0", "100", fiscal_year=2027),  # so is paying a bill
        ],
    )
    report = ada_check(data)
    assert report.findings == ()
    assert report.clean
    assert dict(report.counts) == {"amount": 0, "time": 0, "purpose": 0}


def test_amount_rule_flags_the_month_authority_was_exceeded() -> None:
    data = CalculationInputs(
        lines=[line("A1", "1200")],
        execution=[entry("A1", 3, "700"), entry("A1", 5, "600"), entry("A1", 6, "-200")],
    )
    (finding,) = ada_check(data).findings
    assert (finding.rule, finding.severity) == ("amount", "violation")
    assert finding.citation == "31 U.S.C. 1341(a)(1)(A)"
    assert finding.amount == D("100.000")  # 700 + 600 - 1200
    assert (finding.recorded_fiscal_year, finding.recorded_fiscal_month) == (2026, 5)
    assert "exceeded the 1200.000 available by 100.000 in FY2026 month 5 (Feb 2026)" in (
        finding.message
    )
    assert "does not undo" in finding.message  # 1100 now, but the violation stands
    # looked at before February, there was nothing wrong yet
    assert ada_check(data, fiscal_year=2026, fiscal_month=4).clean


def test_amount_rule_on_a_zero_authority_line() -> None:
    data = CalculationInputs(lines=[line("Z", "0")], execution=[entry("Z", 1, "0.001")])
    (finding,) = ada_check(data).findings
    assert (finding.rule, finding.amount) == ("amount", D("0.001"))


def test_time_rule_after_expiry_and_before_availability() -> None:
    data = CalculationInputs(
        lines=[
            line("OM", "1000"),
            line("PR", "1000", color=Color.PROCUREMENT, fiscal_year=2024, pe="0208045K"),
        ],
        execution=[
            entry("OM", 2, "50", fiscal_year=2027),  # November 2026: O&M expired 30 Sep 2026
            entry("OM", 12, "20", fiscal_year=2025),  # September 2025: before FY2026 began
            entry("PR", 12, "10", fiscal_year=2026),  # last month of 3-year money: fine
            entry("PR", 1, "10", fiscal_year=2027),  # first month after: not
        ],
    )
    findings = ada_check(data).findings
    assert [
        (f.line_id, f.rule, f.recorded_fiscal_year, f.recorded_fiscal_month) for f in findings
    ] == [
        ("OM", "time", 2025, 12),
        ("OM", "time", 2027, 2),
        ("PR", "time", 2027, 1),
    ]
    before, after, procurement = findings
    assert before.citation == "31 U.S.C. 1341(a)(1)(B)"
    assert "became available on 1 Oct 2025" in before.message
    assert after.amount == D("50.000")
    assert "expired on 30 Sep 2026" in after.message
    assert "bona fide need" in after.message
    assert "expired on 30 Sep 2026" in procurement.message  # FY2024 + 3 years - 1


def test_purpose_rule_rdte_program_element_on_other_money() -> None:
    data = CalculationInputs(
        lines=[
            line("BAD", "100", color=Color.OM, pe="0603502N"),
            line("IDLE", "100", color=Color.PROCUREMENT, pe="0604256F"),
        ],
        execution=[entry("BAD", 1, "40")],
    )
    bad, idle = ada_check(data).findings
    assert (bad.rule, bad.severity, bad.amount) == ("purpose", "violation", D("40.000"))
    assert "program element 0603502N (prefix '06') is funded from RDT&E" in bad.message
    assert (idle.rule, idle.severity) == ("purpose", "warning")  # nothing obligated yet


def test_purpose_rule_object_thresholds() -> None:
    data = CalculationInputs(
        lines=[line("OM", "100000"), line("PR", "1000", color=Color.PROCUREMENT, pe="0208045K")],
        execution=[
            entry("OM", 1, "600", purpose="investment", unit_cost="300"),  # above 250
            entry("OM", 1, "600", purpose="investment", unit_cost="200"),  # an expense
            entry("OM", 2, "5000", purpose="Construction"),  # above O&M's 4,000 limit
            entry("OM", 2, "3000", purpose="construction"),  # minor construction
            entry("OM", 3, "10", purpose="military-pay"),  # any amount
            entry("PR", 1, "600", purpose="investment", unit_cost="300"),  # right money
        ],
    )
    findings = ada_check(data).findings
    assert [(f.rule, f.amount, f.recorded_fiscal_month) for f in findings] == [
        ("purpose", D("600.000"), 1),
        ("purpose", D("5000.000"), 2),
        ("purpose", D("10.000"), 3),
    ]
    assert "chargeable to Procurement or RDT&E above 250.000, not O&M" in findings[0].message
    assert "unit cost 300.000" in findings[0].message
    assert findings[1].citation == "31 U.S.C. 1301(a); 10 U.S.C. 2805(c)"
    assert "chargeable to MILPERS, not O&M" in findings[2].message


def test_ada_rules_are_configurable() -> None:
    rules = AdaRules(
        availability_years={**calculations.DEFAULT_AVAILABILITY_YEARS, Color.OM: 2},
        program_element_colors={},
        purpose_rules=(PurposeRule(purpose="travel", colors=frozenset({Color.OM})),),
    )
    data = CalculationInputs(
        lines=[line("L", "100", color=Color.RDTE, pe="0204228N"), line("O", "100", pe="0603502N")],
        execution=[entry("L", 1, "5", purpose="travel"), entry("O", 2, "5", fiscal_year=2027)],
        ada_rules=rules,
    )
    (finding,) = ada_check(data).findings
    assert (finding.line_id, finding.rule) == ("L", "purpose")
    assert ada_check(CalculationInputs(lines=data.lines, execution=data.execution)).counts == {
        "amount": 0,
        "time": 1,  # O&M is 1-year money by default
        "purpose": 1,  # 0603502N is an R&D program element
    }


# --------------------------------------------------------------------------- dispatcher


@pytest.fixture
def full_data(deflators: DeflatorTable) -> CalculationInputs:
    """A small dataset every kind can run on."""
    return CalculationInputs(
        lines=[
            line("OM1", "1200.000"),
            line("R1", "1000.000", color=Color.RDTE, fiscal_year=2027, pe="0603502N"),
        ],
        execution=[entry("OM1", m, "100", "50") for m in range(1, 7)],
        plan=[entry("OM1", m, "110") for m in range(1, 7)],
        deflators=deflators,
    )


def test_run_calculation_single_kind(full_data: CalculationInputs) -> None:
    result = run_calculation("execution-rates", {"fiscal_year": 2026, "fiscal_month": 6}, full_data)
    assert result.kind == "execution-rates"
    rates = result.results["execution-rates"]
    assert rates is not None
    om = rates["lines"][0]
    assert om["appropriation"] == "O&M"
    assert om["obligation"] == {
        "rate": D("50.0000"),
        "benchmark": D("50.0000"),
        "gap": D("0.0000"),
        "status": "on track",
    }


def test_run_calculation_full_round_trips_through_the_job_envelope(
    full_data: CalculationInputs,
) -> None:
    result = run_calculation("full", {"months": 2, "tolerance": "2.5"}, full_data)
    assert set(result.results) == set(CALCULATION_KINDS) - {"full"}
    payload = result.to_dict()
    assert payload["rounding"] == {"mode": "ROUND_HALF_EVEN", "money_places": 3, "rate_places": 4}
    assert decode(encode(payload)) == payload
    results: dict[str, Any] = payload["results"]
    assert results["escalation"]["result_total"] == D("2221.000")  # 1200 + 1000 x 1.0210
    assert results["fydp-rollup"]["grand_total"] == D("2200.000")
    assert results["burn-rate"]["total"]["burn_rate"] == D("100.000")  # months 5-6: 200 / 2
    assert results["variance"]["total"]["variance_percent"] == D("-9.0909")  # -60 / 660
    assert results["ada-check"]["clean"] is True
    # the as-of month defaulted to the latest month with execution data
    assert (results["execution-rates"]["fiscal_year"], results["burn-rate"]["fiscal_month"]) == (
        2026,
        6,
    )


def test_full_without_deflators_skips_escalation(full_data: CalculationInputs) -> None:
    data = CalculationInputs(lines=full_data.lines, execution=full_data.execution)
    assert run_calculation("full", {}, data).results["escalation"] is None
    with pytest.raises(ValueError, match=r"data\.deflators"):
        run_calculation("escalation", {}, data)


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("bogus", {}, r"unknown calculation kind 'bogus'"),
        ("burn-rate", {"fiscal_mnth": 6}, r"params\.fiscal_mnth: not a parameter of 'burn-rate'"),
        ("burn-rate", {"fiscal_year": 2026, "fiscal_month": 13}, r"params\.fiscal_month: 13"),
        ("burn-rate", {"fiscal_year": 2026}, r"params\.fiscal_month: give fiscal_year and"),
        ("burn-rate", {"months": 0}, r"params\.months: 0 is outside 1\.\.120"),
        ("execution-rates", {"tolerance": 0.5}, r"params\.tolerance: 0\.5 is a float"),
        ("execution-rates", {"tolerance": "-1"}, r"params\.tolerance: must not be negative"),
        ("variance", {"measure": "outlays"}, r"params\.measure: expected one of"),
        ("variance", {"fiscal_month": 2}, r"params\.fiscal_year: give"),
        ("escalation", {"direction": "sideways"}, r"params\.direction"),
        ("fydp-rollup", {"fydp_start": "2026"}, r"params\.fydp_start: expected a fiscal year"),
        ("fydp-rollup", {"years": 3}, r"params\.years: give params\.fydp_start too"),
        ("ada-check", {"fiscal_year": True, "fiscal_month": 1}, r"params\.fiscal_year"),
    ],
)
def test_run_calculation_rejects_bad_requests(
    full_data: CalculationInputs, kind: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        run_calculation(kind, params, full_data)


def test_as_of_month_is_required_without_execution_data() -> None:
    with pytest.raises(ValueError, match=r"params\.fiscal_year: give fiscal_year and fiscal_month"):
        run_calculation("execution-rates", {}, CalculationInputs(lines=[line("L", "1")]))
    result = run_calculation(
        "burn-rate", {"fiscal_year": 2026, "fiscal_month": 1}, CalculationInputs()
    )
    burn = result.results["burn-rate"]
    assert burn is not None
    assert burn["total"]["runway_months"] is None


# --------------------------------------------------------------------------- input validation


def test_inputs_reject_floats_and_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"BudgetLine\['L1'\]\.amount: 0\.1 is a float"):
        BudgetLine(
            line_id="L1",
            program_element="0603502N",
            appropriation=Color.RDTE,
            fiscal_year=2026,
            amount=0.1,  # type: ignore[arg-type]
            organization="NAVY",
        )
    with pytest.raises(ValueError, match=r"ExecutionEntry\['L1'\]\.obligations: expected a finite"):
        entry("L1", 1, "NaN")
    with pytest.raises(ValueError, match=r"ExecutionEntry\['L1'\]\.fiscal_month: 13 is outside"):
        entry("L1", 13)


def test_inputs_validate_codes_colors_and_references() -> None:
    with pytest.raises(ValueError, match=r"program_element: '603502N' is not a program element"):
        line("L1", "1", pe="603502N")
    with pytest.raises(ValueError, match=r"appropriation: unknown color of money 'OPA'"):
        line("L1", "1", color="OPA")  # type: ignore[arg-type]
    assert line("L1", "1", color="PROC").appropriation is Color.PROCUREMENT  # type: ignore[arg-type]
    assert line("L1", "1", pe="0305199D8Z").program_element == "0305199D8Z"
    with pytest.raises(ValueError, match=r"lines\[1\]\.line_id: duplicate line id 'L1'"):
        CalculationInputs(lines=[line("L1", "1"), line("L1", "2")])
    with pytest.raises(ValueError, match=r"plan\[0\]\.line_id: no budget line 'L9'"):
        CalculationInputs(lines=[line("L1", "1")], plan=[entry("L9", 1)])


def test_rollup_through_the_dispatcher(fydp_lines: list[BudgetLine]) -> None:
    data = CalculationInputs(lines=fydp_lines)
    rollup = run_calculation("fydp-rollup", {"fydp_start": 2027, "years": 2}, data)
    result = rollup.results["fydp-rollup"]
    assert result is not None
    assert result["years"] == [2027, 2028]
    assert result["year_totals"] == [D("1350.500"), D("-50.000")]
    assert result["excluded_line_ids"] == ["L1", "L3", "L6"]


# --------------------------------------------------------------------------- public API


def _isort_key(name: str) -> tuple[int, list[tuple[int, int | str]]]:
    """RUF022 order: CONSTANTS, then Classes, then functions; digit runs compare as numbers."""
    group = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return group, [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name) if p]


def test_public_api_is_sorted_present_and_documented() -> None:
    names = calculations.__all__
    assert names == sorted(names, key=_isort_key)
    assert len(set(names)) == len(names)
    for name in names:
        obj = getattr(calculations, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            doc = vars(obj).get("__doc__") if inspect.isclass(obj) else obj.__doc__
            assert doc, f"{name} has no docstring"
            assert not doc.startswith(f"{name}("), f"{name} has only its signature as a docstring"
