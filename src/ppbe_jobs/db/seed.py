"""A deterministic sample-data generator for the domain database.

``seed(db, scale="small" | "realistic", seed=2026)`` fills an empty database
with fiscal years FY2024-FY2031, 27 organizations across the services, 31
appropriation accounts (all five colors of money for every service, plus
Shipbuilding and Conversion, Navy), program elements (60 small, 1,500
realistic), budget lines for the FY2026 budget (plan and request for the FYDP
FY2026-FY2030, enacted for FY2024-FY2026), cumulative monthly execution of
FY2025 money (from October 2024) and FY2026 money (from October 2025) through
:data:`AS_OF`, and deflators with base year FY2026 for FY2020-FY2035.

Determinism: every random choice comes from one ``random.Random(seed)`` drawn
in a fixed order, all money is integer dollars turned into Decimal thousands,
and nothing depends on the clock, so the same seed gives byte-identical rows
(:func:`fingerprint` hashes them; it is the same on SQLite and PostgreSQL).
The names, codes and amounts are invented; account symbols follow the Treasury
pattern and are real where the service has such an account, illustrative
(titles marked "sample") where it does not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Literal, TypeVar

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from .codes import SERVICE_PE_SUFFIXES, validate_pe_code
from .enums import BudgetKind, ColorOfMoney, IndexKind, Service
from .fiscal import fiscal_month_of, fiscal_year_bounds
from .models import (
    AppropriationAccount,
    Base,
    BudgetLine,
    DeflatorTable,
    FiscalYear,
    MonthlyExecution,
    Organization,
    ProgramElement,
)
from .session import Database, DatabaseConfigurationError

__all__ = [
    "AS_OF",
    "BUDGET_YEAR",
    "DEFAULT_SEED",
    "DEFLATOR_BASE_YEAR",
    "FISCAL_YEARS",
    "FYDP_YEARS",
    "PROGRAM_ELEMENT_COUNTS",
    "Scale",
    "SeedError",
    "SeedSummary",
    "dump_rows",
    "fingerprint",
    "main",
    "seed",
]

Scale = Literal["small", "realistic"]
"""How much sample data: ``small`` for tests, ``realistic`` for demos and benchmarks."""

DEFAULT_SEED = 2026
"""The seed used when none is given."""

FISCAL_YEARS = tuple(range(2024, 2032))
"""Fiscal years created: FY2024-FY2031."""

BUDGET_YEAR = 2026
"""The budget the plan and request lines belong to."""

FYDP_YEARS = tuple(range(BUDGET_YEAR, BUDGET_YEAR + 5))
"""The five years of the FY2026 FYDP: FY2026-FY2030."""

ENACTED_YEARS = (2024, 2025, 2026)
EXECUTION_YEARS = (2025, 2026)

AS_OF = date(2026, 3, 31)
"""Execution data runs through this day (fiscal month 6 of FY2026); fixed, not today."""

DEFLATOR_BASE_YEAR = 2026
"""Base year of the sample deflator tables (factor 1.0000)."""

DEFLATOR_YEARS = tuple(range(2020, 2036))

PROGRAM_ELEMENT_COUNTS: Mapping[str, int] = {"small": 60, "realistic": 1500}
"""Program elements generated at each scale."""

_T = TypeVar("_T")
_FACTOR_PLACES = Decimal("0.0001")


class SeedError(RuntimeError):
    """The sample data cannot be written (e.g. the database already holds data)."""


@dataclass(frozen=True, kw_only=True)
class SeedSummary:
    """What :func:`seed` wrote: rows per table, and the fingerprint of the result."""

    scale: Scale
    seed: int
    counts: Mapping[str, int]
    fingerprint: str

    def describe(self) -> str:
        """One line per table, for people."""
        lines = [f"sample data (scale={self.scale}, seed={self.seed})"]
        lines += [f"  {table:<24} {count:>8,}" for table, count in self.counts.items()]
        lines.append(f"  fingerprint              {self.fingerprint[:16]}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- reference data

_ORGANIZATIONS: tuple[tuple[str, str, Service, str | None], ...] = (
    ("HQDA", "Headquarters, Department of the Army", Service.ARMY, None),
    ("AMC", "U.S. Army Materiel Command", Service.ARMY, "HQDA"),
    ("FORSCOM", "U.S. Army Forces Command", Service.ARMY, "HQDA"),
    ("AFC", "U.S. Army Futures Command", Service.ARMY, "HQDA"),
    ("TRADOC", "U.S. Army Training and Doctrine Command", Service.ARMY, "HQDA"),
    ("OPNAV", "Office of the Chief of Naval Operations", Service.NAVY, None),
    ("NAVSEA", "Naval Sea Systems Command", Service.NAVY, "OPNAV"),
    ("NAVAIR", "Naval Air Systems Command", Service.NAVY, "OPNAV"),
    ("NAVWAR", "Naval Information Warfare Systems Command", Service.NAVY, "OPNAV"),
    ("ONR", "Office of Naval Research", Service.NAVY, "OPNAV"),
    ("HQMC", "Headquarters, U.S. Marine Corps", Service.MARINE_CORPS, None),
    ("MARCORSYSCOM", "Marine Corps Systems Command", Service.MARINE_CORPS, "HQMC"),
    ("MCCDC", "Marine Corps Combat Development Command", Service.MARINE_CORPS, "HQMC"),
    ("HAF", "Headquarters, U.S. Air Force", Service.AIR_FORCE, None),
    ("AFMC", "Air Force Materiel Command", Service.AIR_FORCE, "HAF"),
    ("ACC", "Air Combat Command", Service.AIR_FORCE, "HAF"),
    ("AETC", "Air Education and Training Command", Service.AIR_FORCE, "HAF"),
    ("AFRL", "Air Force Research Laboratory", Service.AIR_FORCE, "AFMC"),
    ("USSF", "Headquarters, U.S. Space Force", Service.SPACE_FORCE, None),
    ("SSC", "Space Systems Command", Service.SPACE_FORCE, "USSF"),
    ("SPOC", "Space Operations Command", Service.SPACE_FORCE, "USSF"),
    ("OSD", "Office of the Secretary of Defense", Service.DEFENSE_WIDE, None),
    ("DARPA", "Defense Advanced Research Projects Agency", Service.DEFENSE_WIDE, "OSD"),
    ("MDA", "Missile Defense Agency", Service.DEFENSE_WIDE, "OSD"),
    ("DISA", "Defense Information Systems Agency", Service.DEFENSE_WIDE, "OSD"),
    ("SOCOM", "U.S. Special Operations Command", Service.DEFENSE_WIDE, "OSD"),
    ("DLA", "Defense Logistics Agency", Service.DEFENSE_WIDE, "OSD"),
)

# Program element suffix of each defense-wide organization (services use one each).
_DW_SUFFIX = {"OSD": "D8Z", "DARPA": "E", "MDA": "C", "DISA": "K", "SOCOM": "BB", "DLA": "S"}

# Organizations whose program elements are nearly all RDT&E.
_RESEARCH_ORGS = frozenset({"AFC", "ONR", "AFRL", "DARPA", "MDA", "SSC"})

_OM, _MP, _RD, _PR, _MC = (
    ColorOfMoney.OM,
    ColorOfMoney.MILPERS,
    ColorOfMoney.RDTE,
    ColorOfMoney.PROCUREMENT,
    ColorOfMoney.MILCON,
)

# (symbol, title, color, service, availability override)
_APPROPRIATIONS: tuple[tuple[str, str, ColorOfMoney, Service, int | None], ...] = (
    ("021-2020", "Operation and Maintenance, Army", _OM, Service.ARMY, None),
    ("021-2010", "Military Personnel, Army", _MP, Service.ARMY, None),
    ("021-2040", "Research, Development, Test and Evaluation, Army", _RD, Service.ARMY, None),
    ("021-2035", "Other Procurement, Army", _PR, Service.ARMY, None),
    ("021-2050", "Military Construction, Army", _MC, Service.ARMY, None),
    ("017-1804", "Operation and Maintenance, Navy", _OM, Service.NAVY, None),
    ("017-1453", "Military Personnel, Navy", _MP, Service.NAVY, None),
    ("017-1319", "Research, Development, Test and Evaluation, Navy", _RD, Service.NAVY, None),
    ("017-1810", "Other Procurement, Navy", _PR, Service.NAVY, None),
    ("017-1611", "Shipbuilding and Conversion, Navy", _PR, Service.NAVY, 5),
    ("017-1205", "Military Construction, Navy and Marine Corps", _MC, Service.NAVY, None),
    ("017-1106", "Operation and Maintenance, Marine Corps", _OM, Service.MARINE_CORPS, None),
    ("017-1105", "Military Personnel, Marine Corps", _MP, Service.MARINE_CORPS, None),
    (
        "017-9319",
        "Research, Development, Test and Evaluation, Marine Corps (sample)",
        _RD,
        Service.MARINE_CORPS,
        None,
    ),
    ("017-1109", "Procurement, Marine Corps", _PR, Service.MARINE_CORPS, None),
    ("017-9205", "Military Construction, Marine Corps (sample)", _MC, Service.MARINE_CORPS, None),
    ("057-3400", "Operation and Maintenance, Air Force", _OM, Service.AIR_FORCE, None),
    ("057-3500", "Military Personnel, Air Force", _MP, Service.AIR_FORCE, None),
    (
        "057-3600",
        "Research, Development, Test and Evaluation, Air Force",
        _RD,
        Service.AIR_FORCE,
        None,
    ),
    ("057-3010", "Aircraft Procurement, Air Force", _PR, Service.AIR_FORCE, None),
    ("057-3300", "Military Construction, Air Force", _MC, Service.AIR_FORCE, None),
    ("057-3410", "Operation and Maintenance, Space Force", _OM, Service.SPACE_FORCE, None),
    ("057-9500", "Military Personnel, Space Force (sample)", _MP, Service.SPACE_FORCE, None),
    (
        "057-3620",
        "Research, Development, Test and Evaluation, Space Force",
        _RD,
        Service.SPACE_FORCE,
        None,
    ),
    ("057-3022", "Procurement, Space Force", _PR, Service.SPACE_FORCE, None),
    ("057-9300", "Military Construction, Space Force (sample)", _MC, Service.SPACE_FORCE, None),
    ("097-0100", "Operation and Maintenance, Defense-Wide", _OM, Service.DEFENSE_WIDE, None),
    ("097-9000", "Military Personnel, Defense-Wide (sample)", _MP, Service.DEFENSE_WIDE, None),
    (
        "097-0400",
        "Research, Development, Test and Evaluation, Defense-Wide",
        _RD,
        Service.DEFENSE_WIDE,
        None,
    ),
    ("097-0300", "Procurement, Defense-Wide", _PR, Service.DEFENSE_WIDE, None),
    ("097-0500", "Military Construction, Defense-Wide", _MC, Service.DEFENSE_WIDE, None),
)

# Share of program elements per service, in per mille.
_SERVICE_WEIGHTS: tuple[tuple[Service, int], ...] = (
    (Service.ARMY, 220),
    (Service.NAVY, 220),
    (Service.AIR_FORCE, 220),
    (Service.SPACE_FORCE, 80),
    (Service.MARINE_CORPS, 80),
    (Service.DEFENSE_WIDE, 180),
)

# RDT&E budget activity weights (per mille) and FY2026 plan ranges in thousands.
_BUDGET_ACTIVITIES: tuple[tuple[int, int, int, int], ...] = (
    (1, 80, 5_000, 60_000),
    (2, 150, 10_000, 120_000),
    (3, 200, 15_000, 200_000),
    (4, 250, 20_000, 450_000),
    (5, 200, 30_000, 900_000),
    (6, 70, 5_000, 150_000),
    (7, 50, 10_000, 300_000),
)

_RANGE_K: Mapping[ColorOfMoney, tuple[int, int]] = {
    _OM: (20_000, 2_500_000),
    _MP: (50_000, 3_000_000),
    _PR: (20_000, 1_500_000),
    _MC: (10_000, 250_000),
}

_TOPICS = (
    "Hypersonics",
    "Directed Energy",
    "Undersea Warfare",
    "Autonomy",
    "Microelectronics",
    "Quantum Science",
    "Space Domain Awareness",
    "Electronic Warfare",
    "Cyberspace Operations",
    "Biotechnology",
    "Advanced Materials",
    "Power and Energy",
    "Sensors",
    "Command and Control",
    "Missile Defense",
    "Tactical Networks",
    "Human Performance",
    "Munitions",
    "Aviation",
    "Ground Vehicles",
)
_SYSTEMS = (
    "Next Generation Jammer",
    "Long Range Strike",
    "Future Vertical Lift",
    "Surface Combatant",
    "Tactical Satellite",
    "Integrated Air and Missile Defense",
    "Unmanned Surface Vessel",
    "Airborne Early Warning",
    "Precision Fires",
    "Resilient GPS",
    "Joint Tactical Network",
    "Counter-UAS",
)
_BA_TITLES = {
    1: "Basic Research: {topic}",
    2: "Applied Research: {topic}",
    3: "Advanced Technology Development: {topic}",
    4: "{system} Prototyping",
    5: "{system} Engineering and Manufacturing Development",
    6: "{topic} Test and Evaluation Support",
    7: "{system} Operational Systems Development",
}
_FUNCTIONS = (
    "Depot Maintenance",
    "Base Operations Support",
    "Recruiting and Advertising",
    "Flight Training",
    "Facilities Sustainment, Restoration and Modernization",
    "Ship Operations",
    "Combat Communications",
    "Medical Readiness",
    "Logistics Operations",
    "Cyberspace Activities",
    "Satellite Operations",
    "Specialized Skill Training",
    "Air Operations",
    "Land Forces Readiness",
    "Weapons Support",
)
# Major Force Programs of non-R&D program elements, and of budget activity 7.
_OTHER_MFPS = ("01", "02", "03", "04", "05", "07", "08", "09", "11")
_BA7_MFPS = ("02", "03", "12")

# Cumulative share (per mille) of the enacted amount obligated / expended by the
# end of each month of the money's first 24 months (month 1 = October of its FY).
# One-year money stops obligating when it expires but keeps paying its bills.
# fmt: off
_OBLIGATION_CURVES: Mapping[ColorOfMoney, tuple[int, ...]] = {
    _OM: (
        110, 200, 290, 370, 450, 530, 610, 690, 770, 850, 920, 990,
        990, 990, 990, 990, 990, 990, 990, 990, 990, 990, 990, 990,
    ),
    _MP: (
        83, 166, 250, 333, 416, 500, 583, 666, 750, 833, 916, 998,
        998, 998, 998, 998, 998, 998, 998, 998, 998, 998, 998, 998,
    ),
    _RD: (
        40, 90, 150, 210, 270, 330, 400, 470, 540, 610, 690, 800,
        830, 855, 875, 895, 910, 925, 940, 952, 964, 975, 985, 995,
    ),
    _PR: (
        20, 40, 70, 110, 160, 210, 260, 320, 380, 450, 530, 650,
        690, 720, 750, 775, 800, 820, 840, 855, 870, 885, 900, 920,
    ),
    _MC: (
        0, 10, 30, 60, 90, 130, 170, 220, 280, 340, 410, 500,
        540, 575, 610, 640, 665, 690, 710, 730, 750, 770, 790, 810,
    ),
}
_EXPENDITURE_CURVES: Mapping[ColorOfMoney, tuple[int, ...]] = {
    _OM: (
        40, 100, 170, 240, 310, 380, 450, 520, 590, 650, 710, 770,
        820, 860, 890, 910, 925, 938, 948, 955, 962, 968, 973, 978,
    ),
    _MP: (
        80, 160, 243, 325, 407, 490, 572, 654, 736, 818, 900, 975,
        985, 990, 992, 993, 994, 995, 996, 996, 997, 997, 997, 997,
    ),
    _RD: (
        5, 20, 40, 70, 100, 140, 180, 220, 270, 320, 370, 430,
        480, 530, 575, 620, 660, 700, 735, 770, 800, 830, 855, 880,
    ),
    _PR: (
        0, 3, 8, 15, 25, 40, 55, 75, 95, 120, 150, 180,
        210, 240, 270, 300, 330, 360, 390, 420, 450, 480, 510, 540,
    ),
    _MC: (
        0, 0, 2, 5, 10, 18, 28, 40, 55, 72, 92, 115,
        140, 165, 190, 215, 240, 265, 290, 315, 340, 365, 390, 415,
    ),
}
# fmt: on

# Share of a year's budget authority spent in each following year (per mille):
# what turns raw inflation into outlay-weighted (TOA) deflators.
_OUTLAY_PROFILES: Mapping[ColorOfMoney, tuple[int, ...]] = {
    _OM: (800, 170, 30),
    _MP: (950, 50),
    _RD: (550, 380, 50, 20),
    _PR: (150, 350, 250, 150, 70, 30),
    _MC: (100, 300, 300, 200, 100),
}
# Raw inflation in basis points by fiscal year (pay raises for MILPERS); later years 210/300.
_NONPAY_BP = {2020: 150, 2021: 240, 2022: 520, 2023: 380, 2024: 250, 2025: 220}
_PAY_BP = {2020: 310, 2021: 300, 2022: 270, 2023: 460, 2024: 520, 2025: 450, 2026: 380}
_COLOR_OFFSET_BP = {_OM: 0, _MP: 0, _RD: 10, _PR: 5, _MC: 25}


# --------------------------------------------------------------------------- generation


def _dollars_to_k(dollars: int) -> Decimal:
    """Whole dollars as thousands of dollars with three decimals, exactly."""
    return Decimal(dollars).scaleb(-3)


def _pick_weighted(rng: random.Random, choices: Sequence[tuple[_T, int]]) -> _T:
    """Integer-weighted choice (no floats, so the same on every platform)."""
    point = rng.randrange(sum(weight for _, weight in choices))
    for value, weight in choices:
        if point < weight:
            return value
        point -= weight
    raise AssertionError("unreachable")


def _draw_dollars(rng: random.Random, low_k: int, high_k: int) -> int:
    """An amount between two bounds (thousands), skewed toward the low end, in dollars."""
    return min(
        rng.randrange(low_k * 1000, high_k * 1000), rng.randrange(low_k * 1000, high_k * 1000)
    )


def _scale_pm(dollars: int, per_mille: int) -> int:
    return dollars * per_mille // 1000


@dataclass(frozen=True)
class _PE:
    code: str
    title: str
    org: str
    budget_activity: int | None
    appropriations: tuple[str, ...]


def _accounts_by_service() -> dict[tuple[Service, ColorOfMoney], list[str]]:
    found: dict[tuple[Service, ColorOfMoney], list[str]] = {}
    for symbol, _title, color, service, _years in _APPROPRIATIONS:
        found.setdefault((service, color), []).append(symbol)
    return found


def _generate_pes(rng: random.Random, count: int) -> list[_PE]:
    orgs_by_service: dict[Service, list[tuple[str, str | None]]] = {}
    for code, _name, service, parent in _ORGANIZATIONS:
        orgs_by_service.setdefault(service, []).append((code, parent))
    accounts = _accounts_by_service()
    used: set[str] = set()
    pes: list[_PE] = []
    ba_weights = [(ba, weight) for ba, weight, _lo, _hi in _BUDGET_ACTIVITIES]
    while len(pes) < count:
        service = _pick_weighted(rng, _SERVICE_WEIGHTS)
        org, _parent = rng.choice(orgs_by_service[service])
        suffix = (
            _DW_SUFFIX[org] if service is Service.DEFENSE_WIDE else SERVICE_PE_SUFFIXES[service][0]
        )
        rdte_pm = 950 if org in _RESEARCH_ORGS else 500
        if rng.randrange(1000) < rdte_pm:
            ba = _pick_weighted(rng, ba_weights)
            if ba == 7:
                mfp = "12" if service is Service.SPACE_FORCE else rng.choice(_BA7_MFPS[:2])
                digits = f"{mfp}{rng.randrange(100_000):05d}"
            else:
                mfp = "12" if service is Service.SPACE_FORCE and ba >= 4 else "06"
                digits = f"{mfp}0{ba}{rng.randrange(1000):03d}"
            template = _BA_TITLES[ba]
            title = template.format(topic=rng.choice(_TOPICS), system=rng.choice(_SYSTEMS))
            chosen = [accounts[(service, _RD)][0]]
            if ba in (4, 5, 7) and rng.randrange(1000) < 350:
                chosen.append(rng.choice(accounts[(service, _PR)]))
            budget_activity: int | None = ba
        else:
            mfp = "12" if service is Service.SPACE_FORCE else rng.choice(_OTHER_MFPS)
            digits = f"{mfp}{rng.randrange(100_000):05d}"
            title = f"{rng.choice(_FUNCTIONS)} ({org})"
            chosen = [accounts[(service, _OM)][0]]
            if rng.randrange(1000) < 500:
                chosen.append(accounts[(service, _MP)][0])
            if rng.randrange(1000) < 350:
                chosen.append(rng.choice(accounts[(service, _PR)]))
            if rng.randrange(1000) < 150:
                chosen.append(accounts[(service, _MC)][0])
            budget_activity = None
        code = validate_pe_code(digits + suffix)
        if code in used:
            continue
        used.add(code)
        pes.append(_PE(code, title, org, budget_activity, tuple(chosen)))
    return pes


def _plan_range_k(color: ColorOfMoney, budget_activity: int | None) -> tuple[int, int]:
    if color is _RD:
        for ba, _weight, low, high in _BUDGET_ACTIVITIES:
            if ba == (budget_activity or 6):
                return low, high
    return _RANGE_K[color]


@dataclass(frozen=True)
class _Pair:
    pe: str
    symbol: str
    color: ColorOfMoney
    plan: tuple[int, ...]  # dollars, FYDP_YEARS
    request: tuple[int, ...]
    enacted: Mapping[int, int]


def _generate_pairs(rng: random.Random, pes: Sequence[_PE]) -> list[_Pair]:
    color_of = {symbol: color for symbol, _t, color, _s, _y in _APPROPRIATIONS}
    pairs: list[_Pair] = []
    for pe in pes:
        for symbol in pe.appropriations:
            color = color_of[symbol]
            low, high = _plan_range_k(color, pe.budget_activity)
            plan = [_draw_dollars(rng, low, high)]
            for _ in FYDP_YEARS[1:]:
                plan.append(_scale_pm(plan[-1], 1000 + rng.randint(-40, 80)))
            request = tuple(_scale_pm(p, 1000 + rng.randint(-30, 15)) for p in plan)
            enacted_2026 = _scale_pm(request[0], 1000 + rng.randint(-60, 20))
            enacted_2025 = _scale_pm(plan[0], 1000 - rng.randint(10, 60))
            enacted_2024 = _scale_pm(enacted_2025, 1000 - rng.randint(10, 60))
            enacted = {2024: enacted_2024, 2025: enacted_2025, 2026: enacted_2026}
            pairs.append(_Pair(pe.code, symbol, color, tuple(plan), request, enacted))
    return pairs


def _execution_months(program_year: int) -> Iterator[tuple[int, date]]:
    """(month of availability starting at 1, first day of the month) through AS_OF."""
    start, _ = fiscal_year_bounds(program_year)
    index, year, month = 1, start.year, start.month
    while date(year, month, 1) <= AS_OF and index <= 24:
        yield index, date(year, month, 1)
        index += 1
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def _raw_rates_bp(rng: random.Random, color: ColorOfMoney) -> dict[int, int]:
    last = DEFLATOR_YEARS[-1] + max(len(p) for p in _OUTLAY_PROFILES.values())
    rates: dict[int, int] = {}
    for year in range(DEFLATOR_YEARS[0], last + 1):
        if color is _MP:
            base = _PAY_BP.get(year, 300)
        else:
            base = _NONPAY_BP.get(year, 210) + _COLOR_OFFSET_BP[color]
        rates[year] = base + rng.randint(-15, 15)
    return rates


def _deflator_rows(rng: random.Random) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for color in ColorOfMoney:
        rates = _raw_rates_bp(rng, color)
        raw: dict[int, Decimal] = {DEFLATOR_BASE_YEAR: Decimal(1)}
        for year in range(DEFLATOR_BASE_YEAR + 1, max(rates) + 1):
            raw[year] = raw[year - 1] * (1 + Decimal(rates[year]).scaleb(-4))
        for year in range(DEFLATOR_BASE_YEAR - 1, min(rates) - 1, -1):
            raw[year] = raw[year + 1] / (1 + Decimal(rates[year + 1]).scaleb(-4))
        profile = _OUTLAY_PROFILES[color]

        def spread(
            year: int, raw: dict[int, Decimal] = raw, profile: Sequence[int] = profile
        ) -> Decimal:
            return sum(
                (Decimal(w) * raw[year + i] for i, w in enumerate(profile)), Decimal(0)
            ) / Decimal(sum(profile))

        weighted_base = spread(DEFLATOR_BASE_YEAR)
        for year in DEFLATOR_YEARS:
            for kind, value in (
                (IndexKind.RAW, raw[year]),
                (IndexKind.OUTLAY_WEIGHTED, spread(year) / weighted_base),
            ):
                rows.append(
                    {
                        "base_year": DEFLATOR_BASE_YEAR,
                        "fiscal_year": year,
                        "color": color,
                        "index_kind": kind,
                        "factor": value.quantize(_FACTOR_PLACES),
                        "source": f"sample data, base FY{DEFLATOR_BASE_YEAR}",
                    }
                )
    return rows


# --------------------------------------------------------------------------- writing


def _require_empty(session: Session) -> None:
    for model in (FiscalYear, Organization, AppropriationAccount, ProgramElement, DeflatorTable):
        if session.scalar(select(func.count()).select_from(model)):
            raise SeedError(
                f"the database already holds data ({model.__tablename__}); seed an empty "
                "database, or pass reset=True (seed-db --reset) to drop and recreate every "
                "table first"
            )


def seed(
    db: Database, *, scale: Scale = "small", seed: int = DEFAULT_SEED, reset: bool = False
) -> SeedSummary:
    """Create the tables and fill them with sample data (see the module docstring).

    ``reset`` drops every table first; without it the database must be empty
    (:class:`SeedError` otherwise). Returns the row counts and fingerprint.
    """
    if scale not in PROGRAM_ELEMENT_COUNTS:
        raise ValueError(f"scale must be 'small' or 'realistic', got {scale!r}")
    if reset:
        db.drop_all()
    db.create_all()
    rng = random.Random(seed)
    pes = _generate_pes(rng, PROGRAM_ELEMENT_COUNTS[scale])
    pairs = _generate_pairs(rng, pes)
    deflators = _deflator_rows(rng)

    with db.session() as session:
        _require_empty(session)
        session.add_all([FiscalYear(year=year) for year in FISCAL_YEARS])
        orgs: dict[str, Organization] = {}
        for code, name, service, parent in _ORGANIZATIONS:
            orgs[code] = Organization(
                code=code, name=name, service=service, parent=orgs[parent] if parent else None
            )
            session.add(orgs[code])
        for symbol, title, color, service, years in _APPROPRIATIONS:
            account = AppropriationAccount(symbol=symbol, title=title, color=color, service=service)
            if years is not None:
                account.availability_years = years
            session.add(account)
        session.flush()
        org_ids = {code: org.id for code, org in orgs.items()}
        session.execute(
            insert(ProgramElement),
            [
                {
                    "code": pe.code,
                    "title": pe.title,
                    "organization_id": org_ids[pe.org],
                    "budget_activity": pe.budget_activity,
                }
                for pe in pes
            ],
        )
        pe_ids = dict(session.execute(select(ProgramElement.code, ProgramElement.id)).all())
        account_ids = dict(
            session.execute(select(AppropriationAccount.symbol, AppropriationAccount.id)).all()
        )
        session.execute(insert(BudgetLine), list(_budget_line_rows(pairs, pe_ids, account_ids)))
        session.execute(
            insert(MonthlyExecution), list(_execution_rows(rng, pairs, pe_ids, account_ids))
        )
        session.execute(insert(DeflatorTable), deflators)

    counts = {table.name: _count(db, table.name) for table in Base.metadata.sorted_tables}
    return SeedSummary(
        scale=scale,
        seed=seed,
        counts={name: n for name, n in counts.items() if n},
        fingerprint=fingerprint(db),
    )


def _budget_line_rows(
    pairs: Sequence[_Pair], pe_ids: Mapping[str, int], account_ids: Mapping[str, int]
) -> Iterator[dict[str, Any]]:
    for pair in pairs:
        ids = {"program_element_id": pe_ids[pair.pe], "appropriation_id": account_ids[pair.symbol]}
        for kind, amounts in ((BudgetKind.PLAN, pair.plan), (BudgetKind.REQUEST, pair.request)):
            for year, dollars in zip(FYDP_YEARS, amounts, strict=True):
                yield {
                    **ids,
                    "fiscal_year": year,
                    "budget_year": BUDGET_YEAR,
                    "kind": kind,
                    "amount_k": _dollars_to_k(dollars),
                }
        for year in ENACTED_YEARS:
            yield {
                **ids,
                "fiscal_year": year,
                "budget_year": year,
                "kind": BudgetKind.ENACTED,
                "amount_k": _dollars_to_k(pair.enacted[year]),
            }


def _execution_rows(
    rng: random.Random,
    pairs: Sequence[_Pair],
    pe_ids: Mapping[str, int],
    account_ids: Mapping[str, int],
) -> Iterator[dict[str, Any]]:
    for pair in pairs:
        obligations_curve = _OBLIGATION_CURVES[pair.color]
        expenditures_curve = _EXPENDITURE_CURVES[pair.color]
        for program_year in EXECUTION_YEARS:
            enacted = pair.enacted[program_year]
            obligation_pace = rng.randint(880, 1060)
            expenditure_pace = rng.randint(850, 1100)
            for index, month in _execution_months(program_year):
                obligated_pm = min(1000, _scale_pm(obligations_curve[index - 1], obligation_pace))
                expended_pm = min(
                    obligated_pm, _scale_pm(expenditures_curve[index - 1], expenditure_pace)
                )
                yield {
                    "program_element_id": pe_ids[pair.pe],
                    "appropriation_id": account_ids[pair.symbol],
                    "fiscal_year": program_year,
                    "month": month,
                    "fiscal_month": fiscal_month_of(month),
                    "cumulative_obligations_k": _dollars_to_k(_scale_pm(enacted, obligated_pm)),
                    "cumulative_expenditures_k": _dollars_to_k(_scale_pm(enacted, expended_pm)),
                }


def _count(db: Database, table: str) -> int:
    with db.engine.connect() as connection:
        value = connection.scalar(select(func.count()).select_from(Base.metadata.tables[table]))
    return int(value or 0)


# --------------------------------------------------------------------------- checking


def _canonical(value: object) -> object:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return value


def dump_rows(db: Database) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, ordered by primary key, in a dialect-neutral form.

    Decimals become their exact strings, dates and datetimes ISO text, enums
    their values, JSON canonical text: two databases with the same content dump
    the same, whichever engine holds them.
    """
    dump: dict[str, list[tuple[object, ...]]] = {}
    with db.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            query = select(table).order_by(*table.primary_key.columns)
            dump[table.name] = [
                tuple(_canonical(value) for value in row) for row in connection.execute(query)
            ]
    return dump


def fingerprint(db: Database) -> str:
    """SHA-256 (hex) of :func:`dump_rows`: equal fingerprints mean identical contents."""
    digest = hashlib.sha256()
    for table, rows in dump_rows(db).items():
        digest.update(f"{table}\n".encode())
        for row in rows:
            digest.update(json.dumps(row, separators=(",", ":")).encode())
            digest.update(b"\n")
    return digest.hexdigest()


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``seed-db``: create and fill the database named by DATABASE_URL (or ``--database-url``).

    Returns the exit status: 0 done, 1 the database already holds data, 2 bad
    configuration.
    """
    parser = argparse.ArgumentParser(
        prog="seed-db", description="Fill the PPBE domain database with deterministic sample data."
    )
    parser.add_argument(
        "--database-url",
        help="SQLAlchemy URL or SQLite file path "
        "(default: DATABASE_URL, else ./ppbe-data/ppbe.sqlite3)",
    )
    parser.add_argument("--scale", choices=sorted(PROGRAM_ELEMENT_COUNTS), default="small")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--reset", action="store_true", help="drop and recreate every table first")
    args = parser.parse_args(argv)
    try:
        db = Database(args.database_url) if args.database_url else Database.from_env()
    except DatabaseConfigurationError as exc:
        print(f"seed-db: {exc}", file=sys.stderr)
        return 2
    with db:
        try:
            summary = seed(db, scale=args.scale, seed=args.seed, reset=args.reset)
        except SeedError as exc:
            print(f"seed-db: {exc}", file=sys.stderr)
            return 1
    print(f"seeded {db.url.render_as_string(hide_password=True)}")
    print(summary.describe())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
