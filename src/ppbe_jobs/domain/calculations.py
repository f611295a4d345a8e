"""Budget calculations: escalation, FYDP roll-ups, execution, variance, Anti-Deficiency checks.

Pure functions over frozen dataclasses, ``Decimal`` end to end. Nothing here
touches a database, a queue or the clock: the budget-calculation job loads a
:class:`CalculationInputs`, calls :func:`run_calculation` and stores the
JSON-friendly result. ``docs/calculations.md`` gives the formulas, the tables
and worked examples.

=====================  ==========================================================
kind                   function
=====================  ==========================================================
``escalation``         :func:`escalate_lines`, :func:`escalate_series`,
                       :func:`to_then_year`, :func:`to_constant`
``fydp-rollup``        :func:`fydp_rollup`
``execution-rates``    :func:`execution_rates` (against :data:`DEFAULT_BENCHMARKS`)
``burn-rate``          :func:`burn_rate`
``variance``           :func:`variance`
``ada-check``          :func:`ada_check` (rules in :class:`AdaRules`)
``full``               all of the above
=====================  ==========================================================

This module is the public face: it holds :class:`CalculationInputs`, the
dispatcher and its result, and re-exports every public name of the modules
that do the work, one concept a module:

==================================  ================================================
module                              holds
==================================  ================================================
:mod:`ppbe_jobs.domain.money`       decimal context, rounding, fiscal calendar,
                                    validation, :class:`Color`, :class:`BudgetLine`,
                                    :class:`ExecutionEntry`; the units and the
                                    rounding rules every result follows
:mod:`ppbe_jobs.domain.escalation`  :class:`DeflatorTable` and the escalation
:mod:`ppbe_jobs.domain.rollup`      the FYDP roll-up
:mod:`ppbe_jobs.domain.execution`   benchmarks, execution rates, burn rate, variance
:mod:`ppbe_jobs.domain.ada`         :class:`AdaRules` and the Anti-Deficiency checks
==================================  ================================================

Amounts are thousands of dollars; fiscal month 1 is October. Every result is
computed in one explicit 50-digit ``ROUND_HALF_EVEN`` context and rounded once:
money to 3 places, rates, percentages and months to 4 (rules in
:mod:`ppbe_jobs.domain.money`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from .ada import (
    DEFAULT_ADA_RULES,
    DEFAULT_AVAILABILITY_YEARS,
    DEFAULT_PROGRAM_ELEMENT_COLORS,
    DEFAULT_PURPOSE_RULES,
    AdaFinding,
    AdaReport,
    AdaRules,
    PurposeRule,
    RuleName,
    Severity,
    ada_check,
)
from .escalation import (
    DeflatorTable,
    Direction,
    EscalatedAmount,
    EscalationReport,
    escalate_lines,
    escalate_series,
    to_constant,
    to_then_year,
)
from .execution import (
    DEFAULT_BENCHMARKS,
    DEFAULT_TOLERANCE,
    Benchmark,
    BenchmarkCurve,
    BurnRate,
    BurnReport,
    ExecutionRate,
    ExecutionReport,
    Measure,
    RateCheck,
    Status,
    Variance,
    VarianceReport,
    burn_rate,
    execution_rates,
    variance,
)
from .money import (
    MONEY_PLACES,
    PRECISION,
    RATE_PLACES,
    BudgetLine,
    Color,
    ExecutionEntry,
    _choice,
    _coerce_decimal,
    _int,
    _month,
    _Report,
    _year,
    _year_month,
    decimal_context,
    round_money,
    round_rate,
)
from .rollup import FydpRollup, RollupRow, fydp_rollup

__all__ = [
    "CALCULATION_KINDS",
    "DEFAULT_ADA_RULES",
    "DEFAULT_AVAILABILITY_YEARS",
    "DEFAULT_BENCHMARKS",
    "DEFAULT_PROGRAM_ELEMENT_COLORS",
    "DEFAULT_PURPOSE_RULES",
    "DEFAULT_TOLERANCE",
    "MONEY_PLACES",
    "PRECISION",
    "RATE_PLACES",
    "AdaFinding",
    "AdaReport",
    "AdaRules",
    "Benchmark",
    "BenchmarkCurve",
    "BudgetLine",
    "BurnRate",
    "BurnReport",
    "CalculationInputs",
    "CalculationResult",
    "Color",
    "DeflatorTable",
    "Direction",
    "EscalatedAmount",
    "EscalationReport",
    "ExecutionEntry",
    "ExecutionRate",
    "ExecutionReport",
    "FydpRollup",
    "Measure",
    "PurposeRule",
    "RateCheck",
    "RollupRow",
    "RuleName",
    "Severity",
    "Status",
    "Variance",
    "VarianceReport",
    "ada_check",
    "burn_rate",
    "decimal_context",
    "escalate_lines",
    "escalate_series",
    "execution_rates",
    "fydp_rollup",
    "round_money",
    "round_rate",
    "run_calculation",
    "to_constant",
    "to_then_year",
    "variance",
]


@dataclass(frozen=True, kw_only=True)
class CalculationInputs:
    """Everything a calculation reads: lines, execution, plan and the reference tables.

    Validated on construction: line ids are unique and every execution or plan
    entry names a line; errors name the offending field (``execution[3].line_id``).
    It is what :class:`~ppbe_jobs.domain.execution.ExecutionData` and
    :class:`~ppbe_jobs.domain.ada.AdaData` describe.
    """

    lines: Sequence[BudgetLine] = ()
    execution: Sequence[ExecutionEntry] = ()
    plan: Sequence[ExecutionEntry] = ()
    deflators: DeflatorTable | None = None
    benchmarks: Mapping[Color, Benchmark] = field(default_factory=lambda: DEFAULT_BENCHMARKS)
    ada_rules: AdaRules = DEFAULT_ADA_RULES

    def __post_init__(self) -> None:
        seen: set[str] = set()
        lines = self._tuple("lines", BudgetLine)
        for i, line in enumerate(lines):
            if line.line_id in seen:
                raise ValueError(f"lines[{i}].line_id: duplicate line id {line.line_id!r}")
            seen.add(line.line_id)
        for name in ("execution", "plan"):
            for i, entry in enumerate(self._tuple(name, ExecutionEntry)):
                if entry.line_id not in seen:
                    raise ValueError(f"{name}[{i}].line_id: no budget line {entry.line_id!r}")
        if self.deflators is not None and not isinstance(self.deflators, DeflatorTable):
            raise ValueError("deflators: expected a DeflatorTable or None")
        if not isinstance(self.benchmarks, Mapping):
            raise ValueError("benchmarks: expected a mapping of color to Benchmark")
        benchmarks: dict[Color, Benchmark] = {}
        for color, benchmark in self.benchmarks.items():
            if not isinstance(benchmark, Benchmark):
                raise ValueError(f"benchmarks[{color!r}]: expected a Benchmark")
            benchmarks[Color.parse(color, "benchmarks")] = benchmark
        object.__setattr__(self, "benchmarks", MappingProxyType(benchmarks))
        if not isinstance(self.ada_rules, AdaRules):
            raise ValueError("ada_rules: expected an AdaRules")

    def _tuple(self, name: str, kind: type[Any]) -> tuple[Any, ...]:
        value = getattr(self, name)
        if isinstance(value, str | bytes) or not isinstance(value, Iterable):
            raise ValueError(f"{name}: expected a sequence of {kind.__name__}")
        items = tuple(value)
        for i, item in enumerate(items):
            if not isinstance(item, kind):
                raise ValueError(f"{name}[{i}]: expected a {kind.__name__}, got {item!r}")
        object.__setattr__(self, name, items)
        return items


@dataclass(frozen=True, kw_only=True)
class CalculationResult:
    """What :func:`run_calculation` returns: per kind, a JSON-friendly dict (or ``None``)."""

    kind: str
    results: Mapping[str, dict[str, Any] | None]

    def to_dict(self) -> dict[str, Any]:
        """The result as a job return value, with the rounding it was computed under."""
        return {
            "kind": self.kind,
            "units": "thousands of dollars",
            "rounding": {
                "mode": "ROUND_HALF_EVEN",
                "money_places": MONEY_PLACES,
                "rate_places": RATE_PLACES,
            },
            "results": dict(self.results),
        }


# ----------------------------------------------------------------------------- dispatcher

CALCULATION_KINDS: Final = (
    "escalation",
    "fydp-rollup",
    "execution-rates",
    "burn-rate",
    "variance",
    "ada-check",
    "full",
)
"""The ``kind`` values :func:`run_calculation` accepts."""

_AS_OF: Final = frozenset({"fiscal_year", "fiscal_month"})
_PARAMETERS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "escalation": frozenset({"direction", "base_year"}),
        "fydp-rollup": frozenset({"fydp_start", "years"}),
        "execution-rates": _AS_OF | {"tolerance"},
        "burn-rate": _AS_OF | {"months"},
        "variance": _AS_OF | {"measure"},
        "ada-check": _AS_OF,
    }
)


def _as_of(params: Mapping[str, Any], data: CalculationInputs) -> tuple[int, int]:
    """The as-of month from params, else the latest month with execution data."""
    year, month = params.get("fiscal_year"), params.get("fiscal_month")
    if year is None and month is None:
        if not data.execution:
            raise ValueError(
                "params.fiscal_year: give fiscal_year and fiscal_month; there is no execution "
                "data to take the latest month from"
            )
        return _year_month(max(entry.position for entry in data.execution))
    if year is None or month is None:
        missing = "fiscal_year" if year is None else "fiscal_month"
        raise ValueError(f"params.{missing}: give fiscal_year and fiscal_month together")
    return _year(year, "params.fiscal_year"), _month(month, "params.fiscal_month")


def _optional_params_as_of(params: Mapping[str, Any]) -> tuple[int | None, int | None]:
    year, month = params.get("fiscal_year"), params.get("fiscal_month")
    if year is not None:
        _year(year, "params.fiscal_year")
    if month is not None:
        _month(month, "params.fiscal_month")
    if (year is None) != (month is None):
        missing = "fiscal_year" if year is None else "fiscal_month"
        raise ValueError(f"params.{missing}: give fiscal_year and fiscal_month together")
    return year, month


def _run_escalation(params: Mapping[str, Any], data: CalculationInputs) -> _Report:
    if data.deflators is None:
        raise ValueError("data.deflators: the escalation needs a deflator table")
    direction = _choice(
        params.get("direction", "to-then-year"), "params.direction", ("to-then-year", "to-constant")
    )
    base = params.get("base_year")
    return escalate_lines(
        data.lines,
        data.deflators,
        direction="to-constant" if direction == "to-constant" else "to-then-year",
        base_year=None if base is None else _year(base, "params.base_year"),
    )


def _run_rollup(params: Mapping[str, Any], data: CalculationInputs) -> _Report:
    start = params.get("fydp_start")
    if start is None and params.get("years") is not None:
        raise ValueError("params.years: give params.fydp_start too (the window's first year)")
    return fydp_rollup(
        data.lines,
        fydp_start=None if start is None else _year(start, "params.fydp_start"),
        years=_int(params.get("years", 5), "params.years", 1, 30, "a number of years"),
    )


def _run_rates(params: Mapping[str, Any], data: CalculationInputs) -> _Report:
    year, month = _as_of(params, data)
    tolerance = _coerce_decimal(params.get("tolerance", DEFAULT_TOLERANCE), "params.tolerance")
    if tolerance < 0:
        raise ValueError("params.tolerance: must not be negative")
    return execution_rates(data, fiscal_year=year, fiscal_month=month, tolerance=tolerance)


def _run_burn(params: Mapping[str, Any], data: CalculationInputs) -> _Report:
    year, month = _as_of(params, data)
    months = _int(params.get("months", 3), "params.months", 1, 120, "a number of months")
    return burn_rate(data, fiscal_year=year, fiscal_month=month, months=months)


def _run_variance(params: Mapping[str, Any], data: CalculationInputs) -> _Report:
    year, month = _optional_params_as_of(params)
    measure = _choice(
        params.get("measure", "obligations"), "params.measure", ("obligations", "expenditures")
    )
    return variance(
        data,
        measure="expenditures" if measure == "expenditures" else "obligations",
        fiscal_year=year,
        fiscal_month=month,
    )


def _run_ada(params: Mapping[str, Any], data: CalculationInputs) -> _Report:
    year, month = _optional_params_as_of(params)
    return ada_check(data, fiscal_year=year, fiscal_month=month)


_RUNNERS: Final[Mapping[str, Callable[[Mapping[str, Any], CalculationInputs], _Report]]] = (
    MappingProxyType(
        {
            "escalation": _run_escalation,
            "fydp-rollup": _run_rollup,
            "execution-rates": _run_rates,
            "burn-rate": _run_burn,
            "variance": _run_variance,
            "ada-check": _run_ada,
        }
    )
)


def run_calculation(
    kind: str, params: Mapping[str, Any], data: CalculationInputs
) -> CalculationResult:
    """Run the calculation ``kind`` (one of :data:`CALCULATION_KINDS`) over ``data``.

    ``params`` by kind (all optional): escalation ``direction``
    ("to-then-year" | "to-constant"), ``base_year``; fydp-rollup
    ``fydp_start``, ``years`` (5); execution-rates ``fiscal_year`` and
    ``fiscal_month`` (default: the latest month with execution data),
    ``tolerance`` (5 percentage points); burn-rate the as-of month and
    ``months`` (3); variance an optional as-of month and ``measure``
    ("obligations" | "expenditures"); ada-check an optional as-of month.
    ``full`` accepts them all and runs every kind; its escalation is ``None``
    when ``data`` has no deflator table.

    Raises :class:`ValueError` naming the unknown kind, or the parameter or
    input field that is wrong (``params.fiscal_month: 13 is outside 1..12``).
    """
    if not isinstance(kind, str) or kind not in CALCULATION_KINDS:
        raise ValueError(
            f"unknown calculation kind {kind!r}; expected one of {', '.join(CALCULATION_KINDS)}"
        )
    if not isinstance(params, Mapping):
        raise ValueError(f"params: expected a mapping, got {type(params).__name__}")
    if not isinstance(data, CalculationInputs):
        raise ValueError(f"data: expected CalculationInputs, got {type(data).__name__}")
    kinds = tuple(_RUNNERS) if kind == "full" else (kind,)
    allowed = frozenset().union(*(_PARAMETERS[k] for k in kinds))
    for key in params:
        if key not in allowed:
            raise ValueError(
                f"params.{key}: not a parameter of {kind!r}; expected {', '.join(sorted(allowed))}"
            )
    results: dict[str, dict[str, Any] | None] = {}
    for name in kinds:
        if name == "escalation" and kind == "full" and data.deflators is None:
            results[name] = None
            continue
        results[name] = _RUNNERS[name](params, data).to_dict()
    return CalculationResult(kind=kind, results=results)
