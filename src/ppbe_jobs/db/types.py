"""Column types that behave the same on SQLite and PostgreSQL.

* :class:`ExactDecimal` (and :data:`Money`, :data:`IndexFactor`): ``NUMERIC(p, s)``
  that takes and returns :class:`~decimal.Decimal` only. A ``float`` is refused
  (money never passes through binary floating point in this code), as is a
  value with more decimals than the column keeps, so nothing is rounded
  silently. SQLite has no decimal type and keeps numbers as 64-bit floats,
  which hold 15 significant digits exactly; values up to that size come back
  exactly (read back to the column's scale), larger ones are refused on SQLite.
* :class:`UTCDateTime`: timezone-aware datetimes in UTC. A naive datetime is
  refused; values come back aware, in UTC, on both databases.
* :data:`JSONDocument`: ``JSON`` on SQLite, ``JSONB`` on PostgreSQL. Values must
  be JSON-native (write a Decimal as its string); others are refused with
  :class:`TypeError` naming where they sit (``$.total``).
"""

from __future__ import annotations

import operator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, Numeric
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "SQLITE_EXACT_DIGITS",
    "ExactDecimal",
    "IndexFactor",
    "JSONDocument",
    "JSONDocumentType",
    "Money",
    "UTCDateTime",
    "utcnow",
]

SQLITE_EXACT_DIGITS = 15
"""Significant decimal digits SQLite's 64-bit REAL keeps exactly."""


_ARITHMETIC = frozenset(
    {operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv, operator.mod}
)


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class ExactDecimal(TypeDecorator[Decimal]):
    """``NUMERIC(precision, scale)`` holding :class:`~decimal.Decimal`, never ``float``.

    Accepts ``Decimal`` and ``int``. Raises :class:`TypeError` for ``float``
    (and anything else), :class:`ValueError` for NaN/infinity, for more
    decimals than ``scale``, or for more digits than the column (or, on
    SQLite, :data:`SQLITE_EXACT_DIGITS`) holds.
    """

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int, scale: int) -> None:
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self.precision = precision
        self.scale = scale
        self._quantum = Decimal(1).scaleb(-scale)

    @property
    def python_type(self) -> type[Decimal]:
        """Always :class:`~decimal.Decimal`."""
        return Decimal

    def process_bind_param(self, value: Any, dialect: Dialect) -> Decimal | None:
        """Check a value on its way in and bring it to the column's scale."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, Decimal | int):
            raise TypeError(
                f"NUMERIC({self.precision},{self.scale}) takes Decimal or int, got "
                f"{type(value).__name__} {value!r}; write Decimal('...') so no float "
                "rounding happens"
            )
        number = Decimal(value)
        if not number.is_finite():
            raise ValueError(f"{number} cannot be stored in NUMERIC({self.precision},{self.scale})")
        scaled = number.quantize(self._quantum)
        if scaled != number:
            raise ValueError(
                f"{number} has more than {self.scale} decimal places; round it explicitly "
                f"before storing it in NUMERIC({self.precision},{self.scale})"
            )
        digits = self.precision
        if dialect.name == "sqlite":
            digits = min(digits, SQLITE_EXACT_DIGITS)
        if abs(scaled) >= Decimal(10) ** (digits - self.scale):
            raise ValueError(
                f"{number} has more than {digits} significant digits, more than "
                f"NUMERIC({self.precision},{self.scale}) on {dialect.name} holds exactly"
            )
        return scaled

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        """Values come back as Decimal at the column's scale."""
        if value is None:
            return None
        if isinstance(value, Decimal):
            return value
        # Defensive: NUMERIC's own processing already hands back Decimal.
        return Decimal(str(value)).quantize(self._quantum)

    def coerce_compared_value(self, op: Any, value: Any) -> TypeEngine[Any]:
        """Literals in comparisons are checked like stored values; in arithmetic they are not.

        ``amount_k > 5`` binds 5 as this type; ``amount_k * Decimal("1.0234")``
        binds the factor as a plain ``NUMERIC``, since it need not fit this column.
        """
        if op in _ARITHMETIC:
            return Numeric(asdecimal=True)
        return self


Money = ExactDecimal(18, 3)
"""Amounts in thousands of dollars with three decimals (whole dollars): ``NUMERIC(18,3)``."""

IndexFactor = ExactDecimal(12, 6)
"""Price index factors such as Green Book deflators (1.0000 in the base year): ``NUMERIC(12,6)``."""


class UTCDateTime(TypeDecorator[datetime]):
    """A point in time: timezone-aware on the way in, aware UTC on the way out.

    PostgreSQL stores ``timestamp with time zone``; SQLite stores the UTC time as
    text (which sorts chronologically). Raises :class:`ValueError` for a naive
    datetime, since its zone would be a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        """Always :class:`~datetime.datetime`."""
        return datetime

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes; convert aware ones to UTC."""
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__} {value!r}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"naive datetime {value.isoformat()} refused: pass a timezone-aware "
                "datetime, e.g. datetime.now(UTC)"
            )
        moment: datetime = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return moment.replace(tzinfo=None)
        return moment

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Aware UTC datetimes on every database."""
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        moment: datetime = value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


def _check_json(value: Any, path: str) -> None:
    """Raise TypeError naming the first non-JSON value (and where it sits) in ``value``."""
    if value is None or isinstance(value, str | int | float | bool):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: key {key!r} is not text; JSON object keys are strings")
            _check_json(item, f"{path}.{key}")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json(item, f"{path}[{index}]")
        return
    raise TypeError(
        f"{path}: {type(value).__name__} {value!r} is not JSON; store JSON-native values "
        "(write a Decimal or datetime as a string)"
    )


class JSONDocumentType(TypeDecorator[Any]):
    """A JSON document: ``JSONB`` on PostgreSQL, ``JSON`` (text) on SQLite; ``None`` is SQL NULL.

    Values are checked on the way in, so a Decimal or datetime hidden in a
    document fails the same way on both databases, naming where it is.
    """

    impl = JSON
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(none_as_null=True)

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """JSONB on PostgreSQL, JSON elsewhere."""
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB(none_as_null=True))
        return dialect.type_descriptor(JSON(none_as_null=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """Refuse values JSON cannot hold."""
        _check_json(value, "$")
        return value


JSONDocument = JSONDocumentType()
"""The JSON column type of the models (see :class:`JSONDocumentType`)."""
