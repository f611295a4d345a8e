"""The closed vocabularies of the domain, stored as their string values.

Each is a :class:`enum.StrEnum`; the database holds ``.value`` (``"O&M"``,
``"Air Force"``, ``"in-app"``...) in a ``VARCHAR`` with a ``CHECK`` constraint,
the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import enum
from types import MappingProxyType

__all__ = [
    "AVAILABILITY_YEARS",
    "BudgetKind",
    "ColorOfMoney",
    "ImportMode",
    "ImportStatus",
    "IndexKind",
    "NotificationChannel",
    "NotificationStatus",
    "ReportFormat",
    "ReportStatus",
    "Service",
]


class Service(enum.StrEnum):
    """The military department or component that owns an organization or account."""

    ARMY = "Army"
    NAVY = "Navy"
    AIR_FORCE = "Air Force"
    MARINE_CORPS = "Marine Corps"
    SPACE_FORCE = "Space Force"
    DEFENSE_WIDE = "Defense-wide"


class ColorOfMoney(enum.StrEnum):
    """The kind of appropriation, which fixes what the money may buy and for how long.

    >>> ColorOfMoney.RDTE.availability_years
    2
    """

    OM = "O&M"
    MILPERS = "MILPERS"
    RDTE = "RDT&E"
    PROCUREMENT = "Procurement"
    MILCON = "MILCON"

    @property
    def availability_years(self) -> int:
        """Default period of availability for new obligations, in fiscal years."""
        return AVAILABILITY_YEARS[self]

    @classmethod
    def parse(cls, text: str) -> ColorOfMoney:
        """The color named by ``text``, in common spellings too (``"OM"``, ``"RDTE"``, ``"PROC"``).

        Raises :class:`ValueError` listing the accepted values.
        """
        key = "".join(ch for ch in text.upper() if ch.isalnum())
        found = _COLOR_ALIASES.get(key)
        if found is None:
            accepted = ", ".join(c.value for c in cls)
            raise ValueError(f"unknown color of money {text!r}; expected one of {accepted}")
        return found


AVAILABILITY_YEARS: MappingProxyType[ColorOfMoney, int] = MappingProxyType(
    {
        ColorOfMoney.OM: 1,
        ColorOfMoney.MILPERS: 1,
        ColorOfMoney.RDTE: 2,
        ColorOfMoney.PROCUREMENT: 3,
        ColorOfMoney.MILCON: 5,
    }
)
"""Default period of availability, in fiscal years, of each color of money."""

_COLOR_ALIASES: dict[str, ColorOfMoney] = {
    "OM": ColorOfMoney.OM,
    "OANDM": ColorOfMoney.OM,
    "OPERATIONANDMAINTENANCE": ColorOfMoney.OM,
    "MILPERS": ColorOfMoney.MILPERS,
    "MP": ColorOfMoney.MILPERS,
    "MILITARYPERSONNEL": ColorOfMoney.MILPERS,
    "RDTE": ColorOfMoney.RDTE,
    "RDTANDE": ColorOfMoney.RDTE,
    "PROCUREMENT": ColorOfMoney.PROCUREMENT,
    "PROC": ColorOfMoney.PROCUREMENT,
    "MILCON": ColorOfMoney.MILCON,
    "MC": ColorOfMoney.MILCON,
    "MILITARYCONSTRUCTION": ColorOfMoney.MILCON,
}


class BudgetKind(enum.StrEnum):
    """Which number a budget line holds for its fiscal year.

    ``plan`` is the programmed amount (POM/FYDP), ``request`` the President's
    Budget request, ``enacted`` the amount Congress appropriated.
    """

    PLAN = "plan"
    REQUEST = "request"
    ENACTED = "enacted"


class IndexKind(enum.StrEnum):
    """The two kinds of OSD Green Book price index a deflator row can hold.

    ``raw`` is raw inflation: the price level of the fiscal year itself.
    ``outlay-weighted`` (the Green Book's TOA deflators) averages the raw
    index over the years the money of that fiscal year is spent, weighted by
    the color's outlay profile; it is the one to escalate budget authority.
    """

    RAW = "raw"
    OUTLAY_WEIGHTED = "outlay-weighted"


class ReportFormat(enum.StrEnum):
    """File format of a generated report."""

    PDF = "pdf"
    XLSX = "xlsx"
    CSV = "csv"


class ReportStatus(enum.StrEnum):
    """Where a report request stands."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class NotificationChannel(enum.StrEnum):
    """How a notification reaches its recipient."""

    EMAIL = "email"
    IN_APP = "in-app"


class NotificationStatus(enum.StrEnum):
    """Delivery state of a notification; ``sent`` is final and never repeated."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class ImportMode(enum.StrEnum):
    """What an import does when some rows are invalid.

    ``all-or-nothing`` writes nothing if any row fails validation;
    ``valid-rows`` writes the valid rows and reports the others.
    """

    ALL_OR_NOTHING = "all-or-nothing"
    VALID_ROWS = "valid-rows"


class ImportStatus(enum.StrEnum):
    """Where an import batch stands; ``rejected`` means all-or-nothing found errors."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    REJECTED = "rejected"
    FAILED = "failed"
