"""QueueEvents: follow what happens in a queue, from any process.

Every state change appends to the queue's capped Redis stream
(``events_max_len`` entries, default 10,000). Events: added, delayed, waiting,
active, progress, completed, failed, retried, stalled, rate-limited, removed,
paused, resumed, drained, error, deduplicated and debounced (an add absorbed by
the job holding its deduplication key; ``id`` is that job, ``dk`` the key).
A call that handles many jobs at once writes its ``added``, ``active`` or
``completed`` events as one stream entry; :meth:`QueueEvent.from_entry` and
the readers here give one event per job all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from ._eventwire import expand
from .queue import ConnectionLike, Queue

__all__ = ["QueueEvent", "QueueEvents"]

log = logging.getLogger("jobq.events")

EventCallback = Callable[["QueueEvent"], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class QueueEvent:
    """One event of a queue's stream."""

    event: str
    job_id: str | None
    fields: dict[str, str]
    stream_id: str

    @property
    def timestamp_ms(self) -> int:
        """Server time of the event in ms (from the stream id)."""
        return int(self.stream_id.split("-", 1)[0])

    @classmethod
    def from_entry(cls, stream_id: bytes | str, raw: dict[bytes, bytes]) -> list[QueueEvent]:
        """The events of one stream entry, in order.

        An entry is one event, or the same event of many jobs written by one
        batch call (a bulk add, a claim, a batch of completions); those share
        the entry's ``stream_id``. Raises ValueError for a malformed batch entry.
        """
        sid = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
        out = []
        for event in expand(raw):
            fields = {k.decode(): v.decode("utf-8", "replace") for k, v in event.items()}
            out.append(cls(fields.pop("e", ""), fields.pop("id", None), fields, sid))
        return out


class QueueEvents:
    """Reads a queue's event stream.

    ``async for event in events`` yields events as they happen (from the
    moment :meth:`open` ran, or from ``last_id``). Or register callbacks with
    :meth:`on` and call :meth:`start` to dispatch them in the background.
    """

    def __init__(
        self,
        name: str,
        *,
        connection: ConnectionLike = None,
        prefix: str | None = None,
        last_id: str = "$",
        block_ms: int = 5_000,
    ) -> None:
        self.queue = Queue(name, connection=connection, prefix=prefix)
        self.name = name
        self._last_id = last_id
        self._block_ms = block_ms
        self._callbacks: dict[str, list[EventCallback]] = defaultdict(list)
        self._reader: Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def open(self) -> QueueEvents:
        """Connect and fix the starting point of the stream."""
        await self.queue.open()
        self._reader = self.queue.blocking_client(self._block_ms / 1000)
        if self._last_id == "$":
            client: Any = self.queue.client
            last = await client.xrevrange(self.queue.keys.events, "+", "-", count=1)
            self._last_id = last[0][0].decode() if last else "0-0"
        return self

    async def close(self) -> None:
        """Stop reading and disconnect."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._reader is not None:
            await self._reader.aclose()
            self._reader = None
        await self.queue.close()

    async def __aenter__(self) -> QueueEvents:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def on(self, event: str, callback: EventCallback) -> None:
        """Call ``callback`` for every ``event`` ('*' for all)."""
        self._callbacks[event].append(callback)

    async def read(self, count: int = 100) -> list[QueueEvent]:
        """Block up to ``block_ms`` for the next events; [] when none came."""
        if self._reader is None:
            raise RuntimeError("QueueEvents is not open: use 'async with QueueEvents(...)'")
        reply: Any = await self._reader.xread(
            {self.queue.keys.events: self._last_id}, block=self._block_ms, count=count
        )
        out: list[QueueEvent] = []
        for stream_id, raw in reply[0][1] if reply else []:
            self._last_id = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
            try:
                out.extend(QueueEvent.from_entry(stream_id, raw))
            except ValueError as exc:
                log.warning("queue %s: event %s skipped: %s", self.name, self._last_id, exc)
        return out

    async def __aiter__(self) -> AsyncIterator[QueueEvent]:
        while not self._closed:
            for ev in await self.read():
                yield ev

    async def start(self) -> None:
        """Dispatch events to the registered callbacks in a background task."""
        if self._task is None:
            self._task = asyncio.create_task(self._dispatch())

    async def _dispatch(self) -> None:
        async for ev in self:
            for cb in (*self._callbacks.get(ev.event, ()), *self._callbacks.get("*", ())):
                try:
                    result = cb(ev)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("QueueEvents callback for %r raised", ev.event)
