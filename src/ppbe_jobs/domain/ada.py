"""Anti-Deficiency Act checks: the amount, time and purpose rules, and their tables.

:func:`ada_check` reports obligations beyond a line's authority (31 U.S.C.
1341), outside its period of availability (31 U.S.C. 1502) or for a purpose
its appropriation does not cover (31 U.S.C. 1301), by the tables of an
:class:`AdaRules`. It reads the parts of the inputs named by :class:`AdaData`,
which :class:`ppbe_jobs.domain.calculations.CalculationInputs` provides.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Final, Literal, Protocol

from .money import (
    _CONTEXT,
    _ZERO,
    BudgetLine,
    Color,
    ExecutionEntry,
    _decimal,
    _int,
    _money_sum,
    _month_label,
    _optional_as_of,
    _position,
    _Report,
    _sub,
    _text,
    _year_month,
    round_money,
)

__all__ = [
    "DEFAULT_ADA_RULES",
    "DEFAULT_AVAILABILITY_YEARS",
    "DEFAULT_PROGRAM_ELEMENT_COLORS",
    "DEFAULT_PURPOSE_RULES",
    "AdaData",
    "AdaFinding",
    "AdaReport",
    "AdaRules",
    "PurposeRule",
    "RuleName",
    "Severity",
    "ada_check",
]

RuleName = Literal["amount", "time", "purpose"]
"""The Anti-Deficiency rule a finding comes from."""
Severity = Literal["violation", "warning"]
"""How sure a finding is: a violation, or a warning to look at before it becomes one."""


DEFAULT_AVAILABILITY_YEARS: Final[Mapping[Color, int]] = MappingProxyType(
    {Color.MILPERS: 1, Color.OM: 1, Color.PROCUREMENT: 3, Color.RDTE: 2, Color.MILCON: 5}
)
"""Years an appropriation is available for new obligations, from the start of its fiscal year."""

DEFAULT_PROGRAM_ELEMENT_COLORS: Final[Mapping[str, frozenset[Color]]] = MappingProxyType(
    {"06": frozenset({Color.RDTE})}
)
"""PE code prefix to the colors it may carry: ``06`` is Major Force Program 6, R&D."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PurposeRule:
    """An obligation for ``purpose`` larger than ``threshold`` is chargeable only to ``colors``.

    The size compared is the entry's ``unit_cost`` when given, else its
    obligation amount (thousands of dollars); ``threshold=None`` means any size.
    """

    purpose: str
    colors: frozenset[Color]
    threshold: Decimal | None = None
    citation: str = "31 U.S.C. 1301(a)"
    description: str = ""

    def __post_init__(self) -> None:
        where = f"PurposeRule[{_text(self.purpose, 'PurposeRule.purpose')!r}]"
        object.__setattr__(self, "purpose", self.purpose.strip().lower())
        colors = frozenset(Color.parse(color, f"{where}.colors") for color in self.colors)
        if not colors:
            raise ValueError(f"{where}.colors: name at least one color")
        object.__setattr__(self, "colors", colors)
        if self.threshold is not None and _decimal(self.threshold, f"{where}.threshold") < 0:
            raise ValueError(f"{where}.threshold: must not be negative")


DEFAULT_PURPOSE_RULES: Final[tuple[PurposeRule, ...]] = (
    PurposeRule(
        purpose="investment",
        colors=frozenset({Color.PROCUREMENT, Color.RDTE}),
        threshold=Decimal("250"),
        citation="31 U.S.C. 1301(a); 10 U.S.C. 2245a; DoD FMR Vol. 2A, Ch. 1, 010201",
        description="an investment item above the expense/investment threshold is Procurement"
        " (RDT&E for development and test articles), not O&M",
    ),
    PurposeRule(
        purpose="construction",
        colors=frozenset({Color.MILCON}),
        threshold=Decimal("4000"),
        citation="31 U.S.C. 1301(a); 10 U.S.C. 2805(c)",
        description="construction above the O&M minor-construction limit needs MILCON",
    ),
    PurposeRule(
        purpose="military-pay",
        colors=frozenset({Color.MILPERS}),
        description="pay and allowances of military members are MILPERS",
    ),
    PurposeRule(
        purpose="research",
        colors=frozenset({Color.RDTE}),
        description="research, development, test and evaluation efforts are RDT&E",
    ),
)
"""Default purpose rules (thresholds in thousands of dollars; check them against current law)."""


@dataclass(frozen=True, kw_only=True)
class AdaRules:
    """The tables behind :func:`ada_check`; every field has a documented default."""

    availability_years: Mapping[Color, int] = field(
        default_factory=lambda: DEFAULT_AVAILABILITY_YEARS
    )
    program_element_colors: Mapping[str, frozenset[Color]] = field(
        default_factory=lambda: DEFAULT_PROGRAM_ELEMENT_COLORS
    )
    purpose_rules: tuple[PurposeRule, ...] = DEFAULT_PURPOSE_RULES

    def __post_init__(self) -> None:
        years = {
            Color.parse(color, "AdaRules.availability_years"): _int(
                n, f"AdaRules.availability_years[{color!r}]", 1, 30, "a number of years"
            )
            for color, n in self.availability_years.items()
        }
        object.__setattr__(self, "availability_years", MappingProxyType(years))
        prefixes = {
            _text(prefix, "AdaRules.program_element_colors"): frozenset(
                Color.parse(c, f"AdaRules.program_element_colors[{prefix!r}]") for c in colors
            )
            for prefix, colors in self.program_element_colors.items()
        }
        object.__setattr__(self, "program_element_colors", MappingProxyType(prefixes))
        rules = tuple(self.purpose_rules)
        for i, rule in enumerate(rules):
            if not isinstance(rule, PurposeRule):
                raise ValueError(f"AdaRules.purpose_rules[{i}]: expected a PurposeRule")
        object.__setattr__(self, "purpose_rules", rules)

    def colors_for(self, program_element: str) -> tuple[str, frozenset[Color]] | None:
        """The longest prefix of ``program_element`` in the table and its colors, if any."""
        matches = [p for p in self.program_element_colors if program_element.startswith(p)]
        if not matches:
            return None
        prefix = max(matches, key=len)
        return prefix, self.program_element_colors[prefix]


DEFAULT_ADA_RULES: Final = AdaRules()
"""The default Anti-Deficiency tables."""


class AdaData(Protocol):
    """The inputs :func:`ada_check` reads.

    :class:`ppbe_jobs.domain.calculations.CalculationInputs` is the one to
    pass: ``lines`` with their TOA, monthly ``execution`` entries and the
    ``ada_rules`` tables.
    """

    @property
    def lines(self) -> Sequence[BudgetLine]: ...
    @property
    def execution(self) -> Sequence[ExecutionEntry]: ...
    @property
    def ada_rules(self) -> AdaRules: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class AdaFinding(_Report):
    """A possible Anti-Deficiency Act problem on a line.

    ``rule`` is ``"amount"``, ``"time"`` or ``"purpose"``; ``severity`` is
    ``"violation"`` or ``"warning"``; ``amount`` is the money at issue;
    ``recorded_*`` is when the offending obligation was recorded, if one was.
    """

    rule: RuleName
    severity: Severity
    line_id: str
    program_element: str
    appropriation: Color
    fiscal_year: int
    message: str
    citation: str
    amount: Decimal | None
    recorded_fiscal_year: int | None
    recorded_fiscal_month: int | None


@dataclass(frozen=True, kw_only=True, slots=True)
class AdaReport(_Report):
    """All findings, with counts per rule; ``clean`` when there are none."""

    fiscal_year: int | None
    fiscal_month: int | None
    findings: tuple[AdaFinding, ...]
    counts: Mapping[str, int]
    clean: bool


# ----------------------------------------------------------------------------- ADA checks


def ada_check(
    data: AdaData, *, fiscal_year: int | None = None, fiscal_month: int | None = None
) -> AdaReport:
    """Anti-Deficiency Act findings on the obligations recorded through the as-of month.

    * amount (31 U.S.C. 1341(a)(1)(A)): cumulative obligations on a line, month
      by month, exceed its TOA; reported at the first month it happened, with
      the peak excess, even when a later deobligation brought it back.
    * time (31 U.S.C. 1502(a), 1341(a)(1)(B)): a positive obligation recorded
      after the period of availability ended (bona fide need) or before it began.
    * purpose (31 U.S.C. 1301(a)): a line whose PE prefix allows other colors
      (a violation once obligated, a warning before), and obligations whose
      purpose and size call for another color (:class:`PurposeRule`).
    """
    upto = _optional_as_of(fiscal_year, fiscal_month)
    rules = data.ada_rules
    entries: dict[str, list[ExecutionEntry]] = defaultdict(list)
    for entry in data.execution:
        if upto is None or entry.position <= upto:
            entries[entry.line_id].append(entry)
    findings: list[AdaFinding] = []
    for line in sorted(data.lines, key=lambda ln: ln.line_id):
        mine = sorted(entries[line.line_id], key=lambda e: e.position)
        findings.extend(_amount_findings(line, mine))
        findings.extend(_time_findings(line, mine, rules))
        findings.extend(_purpose_findings(line, mine, rules))
    counts = {
        rule: sum(1 for f in findings if f.rule == rule) for rule in ("amount", "time", "purpose")
    }
    return AdaReport(
        fiscal_year=fiscal_year,
        fiscal_month=fiscal_month,
        findings=tuple(findings),
        counts=counts,
        clean=not findings,
    )


def _finding(
    line: BudgetLine,
    rule: RuleName,
    severity: Severity,
    message: str,
    citation: str,
    amount: Decimal | None,
    position: int | None,
) -> AdaFinding:
    recorded = _year_month(position) if position is not None else (None, None)
    return AdaFinding(
        rule=rule,
        severity=severity,
        line_id=line.line_id,
        program_element=line.program_element,
        appropriation=line.appropriation,
        fiscal_year=line.fiscal_year,
        message=message,
        citation=citation,
        amount=amount,
        recorded_fiscal_year=recorded[0],
        recorded_fiscal_month=recorded[1],
    )


def _amount_findings(line: BudgetLine, entries: list[ExecutionEntry]) -> list[AdaFinding]:
    authority = round_money(line.amount)
    by_month: dict[int, Decimal] = defaultdict(Decimal)
    for entry in entries:
        by_month[entry.position] = _CONTEXT.add(
            by_month[entry.position], round_money(entry.obligations)
        )
    running, first, peak = _ZERO, None, _ZERO
    for position in sorted(by_month):
        running = _CONTEXT.add(running, by_month[position])
        excess = _sub(running, authority)
        if excess > 0:
            if first is None:
                first = (position, running, excess)
            peak = max(peak, excess)
    if first is None:
        return []
    position, at_breach, excess = first
    message = (
        f"line {line.line_id} ({line.program_element}, FY{line.fiscal_year} "
        f"{line.appropriation.value}): cumulative obligations of {at_breach} exceeded the "
        f"{authority} available by {excess} in {_month_label(position)}"
    )
    if peak != excess:
        message += f"; the excess peaked at {peak}"
    if running <= authority:
        message += (
            f"; obligations now stand at {running}, but a later deobligation does not undo it"
        )
    return [
        _finding(line, "amount", "violation", message, "31 U.S.C. 1341(a)(1)(A)", peak, position)
    ]


def _time_findings(
    line: BudgetLine, entries: list[ExecutionEntry], rules: AdaRules
) -> list[AdaFinding]:
    years = rules.availability_years.get(line.appropriation)
    if years is None:
        raise ValueError(f"ada_rules.availability_years: no period for {line.appropriation.value}")
    start = _position(line.fiscal_year, 1)
    end = start + years * 12 - 1
    found: list[AdaFinding] = []
    what = f"FY{line.fiscal_year} {line.appropriation.value}"
    for entry in entries:
        amount = round_money(entry.obligations)
        if amount <= 0 or start <= entry.position <= end:
            continue
        doc = f" ({entry.reference})" if entry.reference else ""
        if entry.position < start:
            message = (
                f"line {line.line_id}: obligation of {amount}{doc} recorded in "
                f"{_month_label(entry.position)}, before {what} became available on "
                f"1 Oct {line.fiscal_year - 1}"
            )
            citation = "31 U.S.C. 1341(a)(1)(B)"
        else:
            message = (
                f"line {line.line_id}: obligation of {amount}{doc} recorded in "
                f"{_month_label(entry.position)}, after {what} ({years}-year money) expired on "
                f"30 Sep {line.fiscal_year + years - 1}; expired funds take no new obligations "
                "(bona fide need): charge current funds, or record it as an in-scope "
                "adjustment of an obligation made in time"
            )
            citation = "31 U.S.C. 1502(a); 31 U.S.C. 1341(a)(1)(A)"
        found.append(_finding(line, "time", "violation", message, citation, amount, entry.position))
    return found


def _purpose_findings(
    line: BudgetLine, entries: list[ExecutionEntry], rules: AdaRules
) -> list[AdaFinding]:
    found: list[AdaFinding] = []
    color = line.appropriation
    match = rules.colors_for(line.program_element)
    if match is not None and color not in match[1]:
        prefix, allowed = match
        obligated = _money_sum(round_money(e.obligations) for e in entries)
        names = " or ".join(sorted(c.value for c in allowed))
        message = (
            f"line {line.line_id}: program element {line.program_element} (prefix {prefix!r}) "
            f"is funded from {names}, but the line is {color.value}"
        )
        if obligated.is_zero():
            message += "; nothing is obligated yet, so correct the line before obligating"
        else:
            message += f"; {obligated} is obligated against it"
        severity: Severity = "warning" if obligated.is_zero() else "violation"
        found.append(
            _finding(line, "purpose", severity, message, "31 U.S.C. 1301(a)", obligated, None)
        )
    for entry in entries:
        amount = round_money(entry.obligations)
        if entry.purpose is None or amount <= 0:
            continue
        size = round_money(entry.unit_cost) if entry.unit_cost is not None else amount
        for rule in rules.purpose_rules:
            if rule.purpose != entry.purpose or color in rule.colors:
                continue
            if rule.threshold is not None and size <= rule.threshold:
                continue
            names = " or ".join(sorted(c.value for c in rule.colors))
            limit = "" if rule.threshold is None else f" above {round_money(rule.threshold)}"
            unit = f" (unit cost {size})" if entry.unit_cost is not None else ""
            doc = f" {entry.reference}" if entry.reference else ""
            message = (
                f"line {line.line_id}: {entry.purpose} obligation{doc} of {amount}{unit} "
                f"in {_month_label(entry.position)} is chargeable to {names}{limit}, "
                f"not {color.value}"
            )
            if rule.description:
                message += f": {rule.description}"
            found.append(
                _finding(
                    line, "purpose", "violation", message, rule.citation, amount, entry.position
                )
            )
    return found
