"""Transactional enqueue: the outbox relay, with Redis up, down and back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import select, update

from jobq.server import RedisServerProcess
from ppbe_jobs.config import load_settings
from ppbe_jobs.db import Database, OutboxMessage
from ppbe_jobs.manager import QueueManager
from ppbe_jobs.outbox import OutboxRelay, outbox_job_id, stage_job


@pytest.fixture
async def manager(redis_url: str) -> AsyncIterator[QueueManager]:
    async with QueueManager(load_settings({}), connection=redis_url) as m:
        yield m


def qname() -> str:
    return f"reports-{uuid.uuid4().hex[:8]}"


def pending(db: Database) -> list[OutboxMessage]:
    with db.session() as s:
        return list(s.scalars(select(OutboxMessage).where(OutboxMessage.relayed_at.is_(None))))


async def test_committed_row_is_enqueued_once_even_if_relayed_twice(
    sqlite_empty_db: Database, manager: QueueManager
) -> None:
    q = qname()
    with sqlite_empty_db.session() as s:
        msg = stage_job(s, q, "generate-report", {"reportId": "r-1"}, {"priority": 5}, actor="ana")
    relay = OutboxRelay(sqlite_empty_db, manager)
    assert await relay.relay_once() == 1
    assert pending(sqlite_empty_db) == []
    # The relay died after enqueueing and before marking: the row goes again.
    with sqlite_empty_db.session() as s:
        s.execute(update(OutboxMessage).values(relayed_at=None))
    assert await relay.relay_once() == 1
    metrics = await manager.get_queue_metrics(q)
    assert metrics.waiting == 1
    job = await (await manager.queue(f"{q}.critical")).get_job(outbox_job_id(msg.id))
    assert job is not None
    assert job.data == {"reportId": "r-1"}


async def test_rolled_back_transaction_enqueues_nothing(
    sqlite_empty_db: Database, manager: QueueManager
) -> None:
    q = qname()

    def submit_and_fail() -> None:
        with sqlite_empty_db.session() as s:
            stage_job(s, q, "generate-report", {"reportId": "r-2"}, actor="ana")
            raise RuntimeError("the budget submission failed validation")

    with pytest.raises(RuntimeError):
        submit_and_fail()
    assert await OutboxRelay(sqlite_empty_db, manager).relay_once() == 0
    assert (await manager.get_queue_metrics(q)).waiting == 0


async def test_a_row_the_queue_refuses_is_settled_and_the_rest_go_on(
    sqlite_empty_db: Database, manager: QueueManager
) -> None:
    q = qname()
    with sqlite_empty_db.session() as s:
        bad = stage_job(s, q, "x", {}, {"priority": 500}, actor="ana")
        stage_job(s, q, "y", {}, actor="ana")
    assert await OutboxRelay(sqlite_empty_db, manager).relay_once() == 1
    with sqlite_empty_db.session() as s:
        row = s.get(OutboxMessage, bad.id)
        assert row is not None
        assert row.relayed_at is not None
        assert (row.last_error or "").startswith("refused: ")
        assert "priority" in (row.last_error or "")
    assert (await manager.get_queue_metrics(q)).waiting == 1


@pytest.fixture
def own_server() -> Iterator[RedisServerProcess]:
    server = RedisServerProcess(tcp=True, config={"appendonly": "yes", "appendfsync": "always"})
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_redis_down_at_commit_loses_nothing(
    sqlite_empty_db: Database, own_server: RedisServerProcess
) -> None:
    q = qname()
    async with QueueManager(load_settings({}), connection=own_server.url) as manager:
        relay = OutboxRelay(sqlite_empty_db, manager)
        own_server.kill()
        with sqlite_empty_db.session() as s:
            for i in range(3):
                stage_job(s, q, "generate-report", {"reportId": f"r-{i}"}, actor="ana")
        assert await relay.relay_once() == 0
        rows = pending(sqlite_empty_db)
        assert len(rows) == 3
        assert rows[0].attempts == 1
        assert rows[0].last_error
        own_server.restart()
        assert await relay.relay_once() == 3
        assert pending(sqlite_empty_db) == []
        assert (await manager.get_queue_metrics(q)).waiting == 3
