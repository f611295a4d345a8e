"""The fiscal calendar: FY N runs 1 October N-1 to 30 September N."""

from __future__ import annotations

from datetime import date

import pytest

from ppbe_jobs.db import (
    FiscalYear,
    fiscal_month_of,
    fiscal_year_bounds,
    fiscal_year_label,
    fiscal_year_of,
    month_start_of_fiscal_month,
    parse_fiscal_year,
)


def test_fy2026_runs_from_october_2025_to_september_2026() -> None:
    assert fiscal_year_bounds(2026) == (date(2025, 10, 1), date(2026, 9, 30))
    fy = FiscalYear(year=2026)
    assert (fy.start_date, fy.end_date) == (date(2025, 10, 1), date(2026, 9, 30))
    assert fy.label == "FY2026" == fiscal_year_label(2026)


@pytest.mark.parametrize(
    ("day", "year"),
    [
        (date(2025, 9, 30), 2025),
        (date(2025, 10, 1), 2026),
        (date(2025, 12, 31), 2026),
        (date(2026, 1, 1), 2026),
        (date(2026, 9, 30), 2026),
        (date(2026, 10, 1), 2027),
    ],
)
def test_fiscal_year_of_boundaries(day: date, year: int) -> None:
    assert fiscal_year_of(day) == year
    assert FiscalYear(year=year).contains(day)
    assert not FiscalYear(year=year + 1).contains(day)


def test_fiscal_months_count_from_october() -> None:
    assert [fiscal_month_of(date(2025, m, 15)) for m in (10, 11, 12)] == [1, 2, 3]
    assert [fiscal_month_of(date(2026, m, 1)) for m in range(1, 10)] == list(range(4, 13))
    assert month_start_of_fiscal_month(2026, 1) == date(2025, 10, 1)
    assert month_start_of_fiscal_month(2026, 3) == date(2025, 12, 1)
    assert month_start_of_fiscal_month(2026, 4) == date(2026, 1, 1)
    assert month_start_of_fiscal_month(2026, 12) == date(2026, 9, 1)
    for fiscal_month in range(1, 13):
        first = month_start_of_fiscal_month(2026, fiscal_month)
        assert fiscal_month_of(first) == fiscal_month
        assert fiscal_year_of(first) == 2026
    with pytest.raises(ValueError, match="fiscal month"):
        month_start_of_fiscal_month(2026, 13)


@pytest.mark.parametrize(
    ("text", "year"),
    [(2026, 2026), ("2026", 2026), ("FY2026", 2026), ("fy-2025", 2025), ("FY26", 2026)],
)
def test_parse_fiscal_year(text: int | str, year: int) -> None:
    assert parse_fiscal_year(text) == year


@pytest.mark.parametrize("text", ["", "FY", "2026-27", "fy-99999", "1800", True])
def test_parse_fiscal_year_refuses_non_years(text: str) -> None:
    with pytest.raises(ValueError, match=r"fiscal year"):
        parse_fiscal_year(text)
