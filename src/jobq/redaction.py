"""Redaction of sensitive payload fields before job data is shown or indexed.

A field is named once (``"ssn"``, ``"password"``) and matched case-insensitively
at any depth of the job's data: in nested objects and in objects inside lists.
Its value, whatever its type, becomes ``"[redacted]"``. The dashboard, its
search index and the ``jobq`` command apply the same rule, so a secret is
neither displayed, nor findable, nor stored outside the job itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["DEFAULT_REDACTED_FIELDS", "REDACTED", "Redactor"]

REDACTED = "[redacted]"

#: Redacted unless configured otherwise: names that hold secrets in most payloads.
DEFAULT_REDACTED_FIELDS: tuple[str, ...] = (
    "password",
    "passwd",
    "secret",
    "api_key",
    "apikey",
    "access_token",
    "refresh_token",
    "authorization",
    "ssn",
)

_MAX_DEPTH = 64


class Redactor:
    """Replace the values of the configured field names in a JSON-like value."""

    __slots__ = ("fields",)

    def __init__(self, fields: Iterable[str] = DEFAULT_REDACTED_FIELDS) -> None:
        self.fields = frozenset(f.strip().lower() for f in fields if f and f.strip())

    def __bool__(self) -> bool:
        return bool(self.fields)

    def __call__(self, value: Any) -> Any:
        """A redacted copy of ``value`` (the original is left untouched)."""
        if not self.fields:
            return value
        return self._walk(value, 0)

    def _walk(self, value: Any, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            return REDACTED  # deeper than any real payload: hide rather than recurse
        if isinstance(value, dict):
            return {
                k: REDACTED
                if isinstance(k, str) and k.lower() in self.fields
                else self._walk(v, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._walk(v, depth + 1) for v in value]
        return value
