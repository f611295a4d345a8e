"""The table every report becomes before it is written as PDF, XLSX or CSV.

A :class:`ReportTable` is plain, frozen data: a title, typed columns, detail
rows in groups (each group may end with a subtotal row), an optional grand
total, footnotes, a classification banner and a timestamp. The builders in
:mod:`ppbe_jobs.render.reports` make them; the writers only lay them out, so
every figure a writer prints was computed once, exactly, in :class:`~decimal.Decimal`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from types import MappingProxyType

__all__ = [
    "CellValue",
    "Column",
    "ColumnKind",
    "ReportTable",
    "Row",
    "RowGroup",
    "RowKind",
]

CellValue = str | int | Decimal | None
"""What a cell may hold: text, a whole number, an exact decimal, or nothing (blank)."""

Row = Mapping[str, CellValue]
"""One row: column key to value. Keys left out are blank cells."""


class ColumnKind(enum.StrEnum):
    """How a column's values are typed and shown."""

    TEXT = "text"
    """``str``; left-aligned."""
    MONEY = "money"
    """``Decimal`` (thousands of dollars in these reports); shown ``#,##0.000``."""
    PERCENT = "percent"
    """``Decimal`` fraction (``0.8525`` is 85.25 %); shown with one decimal."""
    INT = "int"
    """``int``; shown ``#,##0``."""

    @property
    def numeric(self) -> bool:
        """True for the right-aligned kinds."""
        return self is not ColumnKind.TEXT


class RowKind(enum.StrEnum):
    """Where a row sits in the table; subtotals and totals are set in bold."""

    DETAIL = "detail"
    SUBTOTAL = "subtotal"
    TOTAL = "total"


@dataclass(frozen=True, kw_only=True, slots=True)
class Column:
    """One column: the key rows use, the header shown, and the kind of value."""

    key: str
    header: str
    kind: ColumnKind = ColumnKind.TEXT

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("a report column needs a non-empty key")
        object.__setattr__(self, "kind", ColumnKind(self.kind))


def _freeze(row: Row) -> Row:
    return MappingProxyType(dict(row))


@dataclass(frozen=True, slots=True)
class RowGroup:
    """Detail rows that belong together, optionally closed by a subtotal row.

    The subtotal row carries its own label (in a text column) and figures; the
    builders compute them, the writers never add anything up.
    """

    rows: tuple[Row, ...]
    subtotal: Row | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", tuple(_freeze(r) for r in self.rows))
        if self.subtotal is not None:
            object.__setattr__(self, "subtotal", _freeze(self.subtotal))


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True, slots=True)
class ReportTable:
    """A finished report, ready for any writer.

    Attributes:
        title: the report's name, e.g. ``"Budget Summary by Appropriation"``.
        subtitle: the budget cycle and units, e.g.
            ``"FY2027 President's Budget, $ in thousands"``.
        columns: the columns, left to right; keys are unique.
        groups: the body; a table without subtotals has one group.
        total: the grand total row, if any.
        footnotes: printed under the table (PDF, XLSX); not part of the CSV.
        classification: the banner printed at the top and bottom of every page.
        generated_at: when the figures were produced; must carry a time zone.

    Values are checked against their column's kind: money and percent cells
    take ``Decimal`` only (a ``float`` is refused, it is not exact), int cells
    take ``int``, text cells ``str``; ``None`` is a blank cell anywhere.
    """

    title: str
    subtitle: str = ""
    columns: tuple[Column, ...]
    groups: tuple[RowGroup, ...] = ()
    total: Row | None = None
    footnotes: tuple[str, ...] = ()
    classification: str = "UNCLASSIFIED"
    generated_at: datetime = field(default_factory=_now)

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "groups", tuple(self.groups))
        object.__setattr__(self, "footnotes", tuple(self.footnotes))
        if self.total is not None:
            object.__setattr__(self, "total", _freeze(self.total))
        if not self.columns:
            raise ValueError(f"report {self.title!r} has no columns")
        keys = [c.key for c in self.columns]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"report {self.title!r} has duplicate column keys: {dupes}")
        if self.generated_at.tzinfo is None:
            raise ValueError(
                f"report {self.title!r}: generated_at must be timezone-aware "
                "(use datetime.now(UTC))"
            )
        kinds = {c.key: c.kind for c in self.columns}
        for index, (_, row) in enumerate(self.lines()):
            for key, value in row.items():
                kind = kinds.get(key)
                if kind is None:
                    raise ValueError(
                        f"report {self.title!r}, row {index}: no column {key!r} "
                        f"(columns are {keys})"
                    )
                _check_value(self.title, index, key, kind, value)

    @property
    def rows(self) -> tuple[Row, ...]:
        """All detail rows, in order, without subtotals or the total."""
        return tuple(r for g in self.groups for r in g.rows)

    def lines(self) -> Iterator[tuple[RowKind, Row]]:
        """Every body row in print order, with its kind (details, subtotals, total)."""
        for group in self.groups:
            for row in group.rows:
                yield RowKind.DETAIL, row
            if group.subtotal is not None:
                yield RowKind.SUBTOTAL, group.subtotal
        if self.total is not None:
            yield RowKind.TOTAL, self.total

    @property
    def line_count(self) -> int:
        """How many body rows :meth:`lines` yields (for progress reporting)."""
        return sum(len(g.rows) + (g.subtotal is not None) for g in self.groups) + (
            self.total is not None
        )


def _check_value(title: str, index: int, key: str, kind: ColumnKind, value: CellValue) -> None:
    if value is None:
        return
    ok: bool
    if kind is ColumnKind.TEXT:
        ok = isinstance(value, str)
    elif kind is ColumnKind.INT:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, Decimal) and value.is_finite()
    if not ok:
        expected = {
            ColumnKind.TEXT: "str",
            ColumnKind.INT: "int",
            ColumnKind.MONEY: "a finite Decimal",
            ColumnKind.PERCENT: "a finite Decimal",
        }[kind]
        raise TypeError(
            f"report {title!r}, row {index}, column {key!r} ({kind}): expected {expected} "
            f"or None, got {type(value).__name__} {value!r}"
        )
