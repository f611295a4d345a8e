"""Job options in the spec's shape, so payloads from the TypeScript system port as they are.

``add_job`` takes a :class:`jobq.JobOptions` or a dict such as::

    {"priority": 5, "attempts": 3, "backoff": {"type": "exponential", "delay": 2000},
     "removeOnComplete": True, "delay": 86400000, "repeat": {"cron": "0 2 * * *"}}

camelCase (BullMQ) and snake_case keys are both accepted; an unknown key is an
error that names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobq import Backoff, ConfigurationError, Deduplication, JobOptions, KeepJobs

__all__ = ["ParsedOptions", "Repeat", "parse_options"]

_ALIASES = {
    "jobId": "job_id",
    "removeOnComplete": "remove_on_complete",
    "removeOnFail": "remove_on_fail",
}
_KNOWN = {
    "job_id",
    "priority",
    "delay",
    "attempts",
    "backoff",
    "lifo",
    "timeout",
    "remove_on_complete",
    "remove_on_fail",
    "repeat",
    "deduplication",
    "group",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Repeat:
    """A recurring job: ``cron`` (with ``tz``) or ``every`` ms, optionally bounded."""

    cron: str | None = None
    every: int | None = None
    tz: str = "UTC"
    limit: int | None = None
    start: datetime | None = None
    end: datetime | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Repeat:
        """Accept BullMQ's ``repeat`` object (``pattern`` is cron's other name)."""
        keys = {"cron", "pattern", "every", "tz", "limit", "startDate", "endDate", "start", "end"}
        unknown = set(raw) - keys
        if unknown:
            raise ConfigurationError(f"options.repeat has unknown keys: {sorted(unknown)}")
        cron = raw.get("cron", raw.get("pattern"))
        every = raw.get("every")
        if (cron is None) == (every is None):
            raise ConfigurationError("options.repeat needs exactly one of 'cron' and 'every'")

        def when(key: str, alt: str) -> datetime | None:
            v = raw.get(key, raw.get(alt))
            if v is None or isinstance(v, datetime):
                return v
            try:
                return datetime.fromisoformat(str(v))
            except ValueError as exc:
                raise ConfigurationError(f"options.repeat.{key}: not a date: {v!r}") from exc

        return cls(
            cron=None if cron is None else str(cron),
            every=None if every is None else int(every),
            tz=str(raw.get("tz", "UTC")),
            limit=None if raw.get("limit") is None else int(raw["limit"]),
            start=when("startDate", "start"),
            end=when("endDate", "end"),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class ParsedOptions:
    """What the caller asked for; None where the queue or tier default applies."""

    fields: dict[str, Any]
    repeat: Repeat | None = None

    @property
    def priority(self) -> int | None:
        """The explicit priority, if any."""
        p = self.fields.get("priority")
        return None if p is None else int(p)


def parse_options(options: JobOptions | Mapping[str, Any] | None) -> ParsedOptions:
    """Normalise options given as JobOptions or a spec-shaped dict."""
    if options is None:
        return ParsedOptions(fields={})
    if isinstance(options, JobOptions):
        given = {
            name: getattr(options, name)
            for name in options.__dataclass_fields__
            if getattr(options, name) != JobOptions.__dataclass_fields__[name].default
        }
        return ParsedOptions(fields=given)
    if not isinstance(options, Mapping):
        raise ConfigurationError(
            f"options must be JobOptions or a dict, got {type(options).__name__}"
        )
    fields: dict[str, Any] = {}
    for key, value in options.items():
        name = _ALIASES.get(key, key)
        if name not in _KNOWN:
            raise ConfigurationError(
                f"options.{key} is not a known job option; known: {', '.join(sorted(_KNOWN))}"
            )
        fields[name] = value
    repeat_raw = fields.pop("repeat", None)
    repeat = None
    if repeat_raw is not None:
        if not isinstance(repeat_raw, Mapping):
            raise ConfigurationError(
                "options.repeat must be an object such as {'cron': '0 2 * * *'}"
            )
        repeat = Repeat.from_mapping(repeat_raw)
    if "backoff" in fields and fields["backoff"] is not None:
        fields["backoff"] = Backoff.from_value(fields["backoff"])
    for key in ("remove_on_complete", "remove_on_fail"):
        if key in fields and fields[key] is not None:
            fields[key] = KeepJobs.from_value(fields[key], key)
    if fields.get("deduplication") is not None:
        fields["deduplication"] = Deduplication.from_value(fields["deduplication"])
    return ParsedOptions(fields=fields, repeat=repeat)
