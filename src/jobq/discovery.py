"""Finding the queues that exist under a key prefix (for operator tools).

A queue has no registry entry: it exists once one of its keys does. Its
``meta`` hash (pause flag, settings), ``id`` counter (any generated job id),
``schedulers`` set (a scheduler without jobs yet), ``dead-letters`` set (a
dead-letter queue) or ``workers`` set (a worker waiting for its first job)
marks it. The walk uses SCAN with a MATCH pattern, never
KEYS, so a big database is read in small steps without blocking the server.
"""

from __future__ import annotations

import re
from typing import Any

from redis.asyncio import Redis

from .keys import validate_name

__all__ = ["QUEUE_MARKERS", "discover_queues"]

#: Key suffixes whose presence means a queue exists.
QUEUE_MARKERS: tuple[str, ...] = ("meta", "id", "schedulers", "dead-letters", "workers")


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


async def discover_queues(
    client: Redis, prefix: str, markers: tuple[str, ...] = QUEUE_MARKERS
) -> list[str]:
    """Sorted names of the queues under ``prefix`` that have any of ``markers``."""
    validate_name(prefix, "prefix")
    pattern = re.compile(
        r"^\{" + re.escape(prefix) + r":([^{}]+)\}:(?:" + "|".join(map(re.escape, markers)) + ")$"
    )
    c: Any = client
    found: set[str] = set()
    for suffix in markers:
        match = "{" + _glob_escape(prefix) + ":*}:" + suffix
        async for raw in c.scan_iter(match=match, count=1000):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            m = pattern.match(key)
            if m:
                found.add(m.group(1))
    return sorted(found)
