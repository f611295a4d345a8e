"""Program element codes, colors of money and their periods of availability."""

from __future__ import annotations

from datetime import date

import pytest

from ppbe_jobs.db import (
    AVAILABILITY_YEARS,
    AppropriationAccount,
    ColorOfMoney,
    InvalidProgramElementCodeError,
    ProgramElement,
    Service,
    is_valid_pe_code,
    validate_pe_code,
)
from ppbe_jobs.db.codes import budget_activity_hint


@pytest.mark.parametrize(
    "code", ["0603502N", "0601102A", "0604800F", "0206623M", "1206601SF", "0603000D8Z", "1160403BB"]
)
def test_well_formed_pe_codes_are_accepted(code: str) -> None:
    assert validate_pe_code(code) == code
    assert is_valid_pe_code(code)


def test_pe_code_is_normalized() -> None:
    assert validate_pe_code(" 0603502n ") == "0603502N"


@pytest.mark.parametrize(
    "code",
    [
        "",
        "603502N",  # six digits
        "06035020N",  # eight digits
        "0603502",  # no suffix
        "0603502-N",
        "0603502N1234",  # suffix too long
        "0603502 N",
        "A0603502",
        "1303502N",  # Major Force Program 13 does not exist
        "0003502N",
    ],
)
def test_malformed_pe_codes_are_refused(code: str) -> None:
    assert not is_valid_pe_code(code)
    with pytest.raises(InvalidProgramElementCodeError, match="program element code"):
        validate_pe_code(code)


def test_program_element_validates_its_code() -> None:
    assert ProgramElement(code="0603502n", title="MCM").code == "0603502N"
    with pytest.raises(InvalidProgramElementCodeError, match="'12345'"):
        ProgramElement(code="12345", title="bad")


def test_budget_activity_hint() -> None:
    assert budget_activity_hint("0603502N") == 3
    assert budget_activity_hint("0601102A") == 1
    assert budget_activity_hint("0208058N") is None
    assert budget_activity_hint("0609999N") is None


@pytest.mark.parametrize(
    ("color", "years"),
    [
        (ColorOfMoney.OM, 1),
        (ColorOfMoney.MILPERS, 1),
        (ColorOfMoney.RDTE, 2),
        (ColorOfMoney.PROCUREMENT, 3),
        (ColorOfMoney.MILCON, 5),
    ],
)
def test_period_of_availability_follows_the_color(color: ColorOfMoney, years: int) -> None:
    assert color.availability_years == years == AVAILABILITY_YEARS[color]
    account = AppropriationAccount(symbol="x", title="x", color=color, service=Service.NAVY)
    assert account.availability_years == years
    assert account.last_obligation_year(2026) == 2026 + years - 1


def test_availability_can_be_overridden() -> None:
    scn = AppropriationAccount(
        symbol="017-1611",
        title="Shipbuilding and Conversion, Navy",
        color=ColorOfMoney.PROCUREMENT,
        service=Service.NAVY,
        availability_years=5,
    )
    assert scn.availability_years == 5


def test_money_expires_after_its_period_of_availability() -> None:
    rdte = AppropriationAccount(
        symbol="017-1319", title="RDT&E, N", color=ColorOfMoney.RDTE, service=Service.NAVY
    )
    assert not rdte.is_available_for_obligation(2025, date(2024, 9, 30))
    assert rdte.is_available_for_obligation(2025, date(2024, 10, 1))
    assert rdte.is_available_for_obligation(2025, date(2026, 9, 30))
    assert not rdte.is_available_for_obligation(2025, date(2026, 10, 1))
    om = AppropriationAccount(
        symbol="017-1804", title="O&M, N", color=ColorOfMoney.OM, service=Service.NAVY
    )
    assert om.is_available_for_obligation(2025, date(2025, 9, 30))
    assert not om.is_available_for_obligation(2025, date(2025, 10, 1))


@pytest.mark.parametrize(
    ("text", "color"),
    [
        ("O&M", ColorOfMoney.OM),
        ("om", ColorOfMoney.OM),
        ("RDT&E", ColorOfMoney.RDTE),
        ("rdte", ColorOfMoney.RDTE),
        ("Procurement", ColorOfMoney.PROCUREMENT),
        ("PROC", ColorOfMoney.PROCUREMENT),
        ("MILCON", ColorOfMoney.MILCON),
        ("Military Personnel", ColorOfMoney.MILPERS),
    ],
)
def test_color_parse(text: str, color: ColorOfMoney) -> None:
    assert ColorOfMoney.parse(text) is color


def test_color_parse_names_the_accepted_values() -> None:
    with pytest.raises(ValueError, match=r"'Working Capital'.*O&M, MILPERS, RDT&E"):
        ColorOfMoney.parse("Working Capital")
