"""Groups: per-tenant fairness, rate limits and concurrency.

A job with ``JobOptions(group="agency-17")`` waits in its group's own list.
Claims serve the groups round-robin (plain jobs take turns as one more
group), so one tenant's 100,000 exports cannot starve another tenant's single
report. Limits are stored in Redis and enforced inside the claim script, so
they hold across every worker of the queue:

    await queue.set_group_limits(concurrency=2, rate=RateLimit(max=10, duration=1000))
    await queue.set_group_limits("agency-17", concurrency=5)   # an override

A group at its concurrency limit, or out of its rate budget, is parked and
skipped; the others go on. It returns to the round when one of its jobs
finishes, or when its rate window ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError
from .options import RateLimit

if TYPE_CHECKING:
    from .queue import Queue

__all__ = ["GroupInfo", "GroupLimits", "get_group_limits", "list_groups", "set_group_limits"]

DEFAULT = "*"


@dataclass(frozen=True, slots=True)
class GroupLimits:
    """Limits of one group (or the default for all): None means unlimited."""

    concurrency: int | None
    rate: RateLimit | None

    def encode(self) -> str:
        """The stored form "concurrency,max,window_ms" (0 = no limit)."""
        rate = self.rate
        return (
            f"{self.concurrency or 0},{rate.max if rate else 0},{rate.duration_ms if rate else 0}"
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> GroupLimits:
        """Parse the stored form."""
        text = raw.decode() if isinstance(raw, bytes) else raw
        conc, max_, dur = (int(x) for x in text.split(","))
        return cls(conc or None, RateLimit(max=max_, duration=dur) if max_ else None)


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A group's waiting and running jobs, and whether it is parked."""

    name: str
    waiting: int
    active: int
    state: str  # 'ready' | 'at-concurrency-limit' | 'rate-limited' | 'idle'


_STATES = {b"r": "ready", b"c": "at-concurrency-limit", b"l": "rate-limited"}


async def set_group_limits(
    queue: Queue, group: str | None, concurrency: int | None, rate: RateLimit | None
) -> None:
    """Store the limits of ``group`` (None: the default for every group)."""
    if group is not None and (not group or group == DEFAULT):
        raise ConfigurationError(f"group must be a non-empty name other than '*', got {group!r}")
    if concurrency is not None and (isinstance(concurrency, bool) or concurrency < 1):
        raise ConfigurationError(f"group concurrency must be >= 1, got {concurrency!r}")
    field = DEFAULT if group is None else group
    client: Any = queue.client
    if concurrency is None and rate is None:
        await client.hdel(queue.keys.group_config, field)
    else:
        await client.hset(queue.keys.group_config, field, GroupLimits(concurrency, rate).encode())


async def get_group_limits(queue: Queue, group: str | None) -> GroupLimits:
    """The limits that apply to ``group`` (its own, else the default)."""
    client: Any = queue.client
    fields = [DEFAULT] if group is None else [group, DEFAULT]
    for raw in await client.hmget(queue.keys.group_config, fields):
        if raw is not None:
            return GroupLimits.decode(raw)
    return GroupLimits(None, None)


async def list_groups(queue: Queue) -> list[GroupInfo]:
    """Every group with waiting or running jobs."""
    client: Any = queue.client
    states: dict[bytes, bytes] = await client.hgetall(queue.keys.group_state)
    active: dict[bytes, bytes] = await client.hgetall(queue.keys.group_active)
    names = sorted(set(states) | set(active))
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.llen(queue.keys.group(name.decode()))
        lengths = await pipe.execute()
    return [
        GroupInfo(
            name=name.decode(),
            waiting=int(length),
            active=int(active.get(name, 0)),
            state=_STATES.get(states.get(name, b""), "idle"),
        )
        for name, length in zip(names, lengths, strict=True)
    ]


async def waiting_group_job_ids(queue: Queue) -> list[str]:
    """Ids of the jobs waiting in groups, group by group, each in run order."""
    client: Any = queue.client
    out: list[str] = []
    for name in sorted(await client.hkeys(queue.keys.group_state)):
        ids = await client.lrange(queue.keys.group(name.decode()), 0, -1)
        out.extend(x.decode() for x in reversed(ids))
    return out
