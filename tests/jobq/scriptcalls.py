"""Claim and finish through the Lua scripts directly, as a worker would, for tests.

Tests that need a job in a given state without running a worker use these, so
the script arguments a worker sends are written down once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from redis.asyncio import Redis

from jobq.scripts import ClaimReply, FinishItem, QueueScripts


async def job_hash(client: Redis, key: str) -> dict[bytes, bytes]:
    """A stored hash as raw bytes (HGETALL on a client without decoding)."""
    return cast(dict[bytes, bytes], await client.hgetall(key))


async def claim(
    scripts: QueueScripts,
    *,
    count: int = 1,
    worker_id: str = "test",
    lease_ms: int = 30_000,
    max_stalled: int = 1,
    limiter_max: int = 0,
    limiter_ms: int = 0,
    events_max_len: int = 1000,
) -> ClaimReply:
    """Claim up to ``count`` jobs."""
    return await scripts.claim(
        count=count,
        lease_ms=lease_ms,
        max_stalled=max_stalled,
        limiter_max=limiter_max,
        limiter_ms=limiter_ms,
        worker_id=worker_id,
        events_max_len=events_max_len,
    )


async def finish(
    scripts: QueueScripts,
    items: Sequence[FinishItem],
    *,
    worker_id: str = "test",
    lease_ms: int = 30_000,
    events_max_len: int = 1000,
) -> list[int]:
    """Report outcomes, claiming nothing; the per-item codes."""
    codes, reply = await scripts.finish(
        items,
        claim_count=0,
        lease_ms=lease_ms,
        max_stalled=1,
        limiter_max=0,
        limiter_ms=0,
        worker_id=worker_id,
        events_max_len=events_max_len,
        metrics_minutes=60,
    )
    assert reply is None
    return codes
