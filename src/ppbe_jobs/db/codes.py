"""Program element codes: seven digits and a component suffix, e.g. ``0603502N``.

The digits: the first two are the Major Force Program (``01``-``12``; ``06`` is
Research and Development); for RDT&E program elements the next two usually
name the budget activity (``0601`` basic research ... ``0606`` management
support), then three digits number the program. The suffix names the
component: ``A`` Army, ``N`` Navy, ``M`` Marine Corps, ``F`` Air Force, and
multi-character suffixes such as ``SF`` (Space Force), ``D8Z`` (OSD),
``BB`` (SOCOM), ``E`` (DARPA) or ``C`` (MDA) for the others. A suffix is one
letter, optionally followed by up to two letters or digits.
"""

from __future__ import annotations

import re
from types import MappingProxyType

from .enums import Service

__all__ = [
    "PE_CODE_PATTERN",
    "SERVICE_PE_SUFFIXES",
    "InvalidProgramElementCodeError",
    "budget_activity_hint",
    "is_valid_pe_code",
    "validate_pe_code",
]

PE_CODE_PATTERN = re.compile(r"^(?P<mfp>\d{2})(?P<rest>\d{5})(?P<suffix>[A-Z][A-Z0-9]{0,2})$")
"""Seven digits, then a component suffix of one letter and up to two letters or digits."""

SERVICE_PE_SUFFIXES: MappingProxyType[Service, tuple[str, ...]] = MappingProxyType(
    {
        Service.ARMY: ("A",),
        Service.NAVY: ("N",),
        Service.MARINE_CORPS: ("M",),
        Service.AIR_FORCE: ("F",),
        Service.SPACE_FORCE: ("SF",),
        Service.DEFENSE_WIDE: ("D8Z", "E", "C", "BB", "K", "S", "J"),
    }
)
"""The suffixes each service's program elements carry (defense-wide: OSD, DARPA, MDA, ...)."""


class InvalidProgramElementCodeError(ValueError):
    """A program element code does not have the form ``0603502N``."""


def validate_pe_code(code: str) -> str:
    """Return ``code`` if it is a well-formed program element code, else raise.

    Surrounding blanks are dropped and letters upper-cased (``" 0603502n"`` ->
    ``"0603502N"``). Raises :class:`InvalidProgramElementCodeError` naming the
    code and saying what is expected.
    """
    if not isinstance(code, str):
        raise InvalidProgramElementCodeError(
            f"program element code must be text, got {type(code).__name__}"
        )
    text = code.strip().upper()
    match = PE_CODE_PATTERN.match(text)
    if match is None:
        raise InvalidProgramElementCodeError(
            f"invalid program element code {code!r}: expected 7 digits and a component "
            "suffix such as 0603502N, 1206601SF or 0603000D8Z"
        )
    if not 1 <= int(match.group("mfp")) <= 12:
        raise InvalidProgramElementCodeError(
            f"invalid program element code {code!r}: the first two digits are the Major "
            "Force Program and must be 01..12"
        )
    return text


def is_valid_pe_code(code: str) -> bool:
    """Whether :func:`validate_pe_code` accepts ``code``."""
    try:
        validate_pe_code(code)
    except InvalidProgramElementCodeError:
        return False
    return True


def budget_activity_hint(code: str) -> int | None:
    """The RDT&E budget activity the digits suggest (``0603502N`` -> 3), or None.

    Only a hint: ``06`` codes carry ``01``-``07`` in digits three and four by
    convention, but the R-1 exhibit is the authority (many ``0603`` program
    elements are budget activity 4), and operational systems development
    (budget activity 7) uses other Major Force Programs.
    """
    text = validate_pe_code(code)
    if text[:2] != "06" or text[2] != "0" or text[3] not in "1234567":
        return None
    return int(text[3])
