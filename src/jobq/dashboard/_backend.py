"""The dashboard's view of Redis: one client, open queues, queue discovery."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from jobq.audit import AuditLog
from jobq.connection import ConnectionSettings, create_client, resolve
from jobq.deadletter import DeadLetters
from jobq.discovery import discover_queues
from jobq.errors import ConfigurationError
from jobq.metrics import MetricsSnapshot, snapshot
from jobq.queue import ConnectionLike, Queue


class Backend:
    """The Redis client and open queues, bound to the event loop that made them.

    A ``redis.asyncio`` client belongs to one event loop; a server normally has
    one, but a test client may run each request on a new one, so the client is
    rebuilt when the loop changes.
    """

    def __init__(self, connection: ConnectionLike, prefix: str | None, audit_max: int) -> None:
        self._connection = connection
        self._prefix_arg = prefix
        self._client: Redis | None = None
        self._owns = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: dict[str, Queue] = {}
        self._dead: dict[str, DeadLetters] = {}
        self._audit_max = audit_max
        self.prefix = prefix or "jobq"
        if isinstance(connection, ConnectionSettings) and prefix is None:
            self.prefix = connection.prefix

    async def client(self) -> Redis:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is not loop:
            # The old loop may be gone; its connections cannot be closed from here.
            self._client, self._queues, self._dead = None, {}, {}
        if self._client is None:
            target = resolve(self._connection)
            if isinstance(target, ConnectionSettings):
                self._client, self._owns = create_client(target), True
                self.prefix = self._prefix_arg or target.prefix
            else:
                self._client, self._owns = target, False
                self.prefix = self._prefix_arg or "jobq"
            self._loop = loop
        return self._client

    async def queue(self, name: str) -> Queue:
        client = await self.client()
        q = self._queues.get(name)
        if q is None:
            q = await Queue(name, connection=client, prefix=self.prefix).open()
            self._queues[name] = q
        return q

    async def dead_letters(self, name: str) -> DeadLetters:
        client = await self.client()
        dl = self._dead.get(name)
        if dl is None:
            dl = await DeadLetters(connection=client, name=name, prefix=self.prefix).open()
            self._dead[name] = dl
        return dl

    async def audit(self) -> AuditLog:
        return AuditLog(await self.client(), self.prefix, max_entries=self._audit_max)

    async def exists(self, name: str) -> bool:
        """Whether ``name`` is a known queue (it has a ``meta`` or ``id`` key)."""
        try:
            q = await self.queue(name)
        except ConfigurationError:
            return False
        c: Any = q.client
        k = q.keys
        return bool(await c.exists(k.meta, k.id, k.schedulers, k.dead_letters, k.workers))

    async def discover(self) -> list[str]:
        """Queue names under the prefix (SCAN, as ``jobq info`` does)."""
        return await discover_queues(await self.client(), self.prefix)

    async def dead_letter_queues(self) -> list[str]:
        """Queues that hold dead-letter entries or are some queue's dead-letter target."""
        names = set(await discover_queues(await self.client(), self.prefix, ("dead-letters",)))
        for name in await self.discover():
            target = await (await self.queue(name)).get_dead_letter_queue()
            if target:
                names.add(target)
        return sorted(names)

    async def snapshot(self, names: list[str] | None = None) -> MetricsSnapshot:
        names = await self.discover() if names is None else names
        return await snapshot([await self.queue(n) for n in names])

    async def aclose(self) -> None:
        client, self._client, self._queues, self._dead = self._client, None, {}, {}
        if client is not None and self._owns and self._loop is asyncio.get_running_loop():
            await client.aclose()
