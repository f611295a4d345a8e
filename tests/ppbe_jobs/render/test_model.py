"""The report table refuses values a writer could not show exactly."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from ppbe_jobs.render import Column, ColumnKind, ReportTable, RowGroup, RowKind

from .data import GENERATED_AT

COLUMNS = (
    Column(key="label", header="Label"),
    Column(key="amount", header="Amount", kind=ColumnKind.MONEY),
    Column(key="count", header="Count", kind=ColumnKind.INT),
)


def _table(*rows: dict[str, object], **kw: object) -> ReportTable:
    return ReportTable(
        title="t",
        columns=COLUMNS,
        groups=(RowGroup(rows=rows),),  # type: ignore[arg-type]
        generated_at=kw.pop("generated_at", GENERATED_AT),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def test_lines_yield_details_subtotals_and_total_in_order() -> None:
    table = ReportTable(
        title="t",
        columns=COLUMNS,
        groups=(
            RowGroup(rows=({"label": "a"}, {"label": "b"}), subtotal={"label": "sub 1"}),
            RowGroup(rows=({"label": "c"},)),
        ),
        total={"label": "total"},
        generated_at=GENERATED_AT,
    )
    assert [(k, r["label"]) for k, r in table.lines()] == [
        (RowKind.DETAIL, "a"),
        (RowKind.DETAIL, "b"),
        (RowKind.SUBTOTAL, "sub 1"),
        (RowKind.DETAIL, "c"),
        (RowKind.TOTAL, "total"),
    ]
    assert table.line_count == 5
    assert [r["label"] for r in table.rows] == ["a", "b", "c"]
    assert table.classification == "UNCLASSIFIED"


def test_rows_are_copied_so_later_changes_do_not_leak_in() -> None:
    row: dict[str, object] = {"label": "a", "amount": Decimal(1)}
    table = _table(row)
    row["amount"] = Decimal(2)
    assert table.rows[0]["amount"] == Decimal(1)


def test_float_money_is_refused() -> None:
    with pytest.raises(TypeError, match=r"row 0, column 'amount' \(money\).*got float 0\.1"):
        _table({"label": "a", "amount": 0.1})


def test_bool_is_not_an_int() -> None:
    with pytest.raises(TypeError, match="column 'count'"):
        _table({"count": True})


def test_non_finite_decimal_is_refused() -> None:
    with pytest.raises(TypeError, match="finite Decimal"):
        _table({"amount": Decimal("NaN")})


def test_unknown_column_is_named() -> None:
    with pytest.raises(ValueError, match="no column 'amnt'"):
        _table({"amnt": Decimal(1)})


def test_duplicate_column_keys_are_refused() -> None:
    with pytest.raises(ValueError, match=r"duplicate column keys: \['a'\]"):
        ReportTable(
            title="t",
            columns=(Column(key="a", header="A"), Column(key="a", header="A again")),
            generated_at=GENERATED_AT,
        )


def test_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        _table(generated_at=datetime(2026, 3, 31, 12, 0))


def test_column_kind_accepts_its_string_value() -> None:
    assert Column(key="x", header="X", kind="percent").kind is ColumnKind.PERCENT  # type: ignore[arg-type]
