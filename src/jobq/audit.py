"""The audit log of operator actions: who did what, to what, when, and how many.

Every action taken from the dashboard or the ``jobq`` command (retry, promote,
remove, retry-all, pause, resume, clean, drain, dead-letter replay and discard,
scheduler changes...) is appended to one capped Redis stream per key prefix,
``{prefix}:audit``. The stream id orders the entries and carries the server's
time, so entries from several dashboards and terminals interleave correctly.

::

    log = AuditLog(client, prefix="jobq")
    await log.record("alice", "retry-all", queue="reports", count=12)
    for entry in await log.entries(limit=50):
        print(entry.at, entry.actor, entry.action, entry.count)

Entries never hold job payloads: only ids, counts and short details an
operator typed (a filter, a state), each cut to a bounded length.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from .keys import validate_name

__all__ = ["AuditEntry", "AuditLog", "cli_actor"]

#: Entries kept (approximately: the stream is trimmed with ``MAXLEN ~``).
DEFAULT_MAX_ENTRIES = 10_000
_MAX_FIELD = 500


def _cut(value: str) -> str:
    return value if len(value) <= _MAX_FIELD else value[: _MAX_FIELD - 1] + "…"


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def cli_actor() -> str:
    """The actor name of the ``jobq`` command: ``cli:<operating-system user>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        user = "unknown"
    return f"cli:{user}"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One recorded action."""

    id: str
    at: datetime
    actor: str
    role: str
    action: str
    queue: str
    target: str
    count: int | None
    detail: str
    source: str

    @classmethod
    def from_stream(cls, entry_id: str, fields: Mapping[Any, Any]) -> AuditEntry:
        f = {_text(k): _text(v) for k, v in fields.items()}
        ms = int(entry_id.split("-", 1)[0])
        count = f.get("count", "")
        return cls(
            id=entry_id,
            at=datetime.fromtimestamp(ms / 1000, UTC),
            actor=f.get("actor", ""),
            role=f.get("role", ""),
            action=f.get("action", ""),
            queue=f.get("queue", ""),
            target=f.get("target", ""),
            count=int(count) if count.lstrip("-").isdigit() else None,
            detail=f.get("detail", ""),
            source=f.get("source", ""),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "role": self.role,
            "action": self.action,
            "queue": self.queue,
            "target": self.target,
            "count": self.count,
            "detail": self.detail,
            "source": self.source,
        }


class AuditLog:
    """Append to and read the audit stream of one key prefix."""

    def __init__(
        self, client: Redis, prefix: str = "jobq", *, max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        self.client = client
        self.key = "{" + validate_name(prefix, "prefix") + "}:audit"
        self.max_entries = max_entries

    async def record(
        self,
        actor: str,
        action: str,
        *,
        queue: str = "",
        target: str = "",
        count: int | None = None,
        detail: str = "",
        role: str = "",
        source: str = "",
    ) -> str:
        """Append one entry; returns its stream id (which holds the server time)."""
        fields: dict[str, str] = {
            "actor": _cut(actor or "anonymous"),
            "action": _cut(action),
            "queue": _cut(queue),
            "target": _cut(target),
            "count": "" if count is None else str(count),
            "detail": _cut(detail),
            "role": _cut(role),
            "source": _cut(source),
        }
        c: Any = self.client
        entry_id = await c.xadd(self.key, fields, maxlen=self.max_entries, approximate=True)
        return _text(entry_id)

    async def entries(
        self,
        *,
        limit: int = 50,
        before: str | None = None,
        queue: str | None = None,
        actor: str | None = None,
        action: str | None = None,
    ) -> list[AuditEntry]:
        """Newest first; ``before`` (an entry id) pages back; filters match exactly.

        Filtering walks back through the stream in pages, reading at most
        ``20 * limit`` entries, so a rare filter on a long log stays bounded.
        """
        limit = max(1, min(limit, 500))
        c: Any = self.client
        out: list[AuditEntry] = []
        high = "(" + before if before else "+"
        budget = 20 * limit
        while len(out) < limit and budget > 0:
            page = await c.xrevrange(self.key, max=high, min="-", count=min(200, budget))
            if not page:
                break
            budget -= len(page)
            for raw_id, fields in page:
                entry = AuditEntry.from_stream(_text(raw_id), fields)
                if queue is not None and entry.queue != queue:
                    continue
                if actor is not None and entry.actor != actor:
                    continue
                if action is not None and entry.action != action:
                    continue
                out.append(entry)
                if len(out) == limit:
                    break
            high = "(" + _text(page[-1][0])
        return out

    async def length(self) -> int:
        """Entries currently kept."""
        c: Any = self.client
        return int(await c.xlen(self.key))
