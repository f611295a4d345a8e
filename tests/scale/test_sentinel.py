"""jobq behind Sentinel: a primary, a replica, three sentinels, and a failover.

Runs in order in one deployment: the plain checks first, then durable adds,
then the failover (SIGKILL of the primary), which leaves the replica in charge.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.exceptions
from redis.asyncio.sentinel import SentinelConnectionPool

from jobq import Job, NotReplicatedError, Queue, Worker
from jobq.connection import ConnectionSettings, clone_client, create_client
from tests.scale._servers import SentinelGroup
from tests.scale.conftest import unique

pytestmark = pytest.mark.scale


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        await worker.close(grace=0)
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_url_gives_a_client_of_the_primary(sentinels: SentinelGroup) -> None:
    settings = ConnectionSettings.from_url(sentinels.url)
    assert settings.topology == "sentinel"
    assert settings.service_name == sentinels.service
    assert len(settings.nodes) == 3
    client: Any = create_client(settings)
    blocking: Any = create_client(settings, blocking=True, block_timeout=1)
    clone: Any = clone_client(client, block_timeout=1)
    try:
        assert isinstance(client.connection_pool, SentinelConnectionPool)
        role = await client.execute_command("ROLE")
        assert role[0] == b"master"
        pool: Any = client.connection_pool
        assert (await pool.get_master_address())[1] == sentinels.primary_port
        for c in (blocking, clone):
            assert await c.bzpopmin(f"{{{unique()}}}:empty", 0.1) is None
            assert isinstance(c.connection_pool, SentinelConnectionPool)
            assert c.connection_pool.max_connections == 1
    finally:
        for c in (clone, blocking, client):
            await c.aclose()


async def test_jobs_run_through_sentinel(sentinels: SentinelGroup) -> None:
    url = sentinels.url
    name = unique()

    async def proc(job: Job) -> int:
        return int(job.data) * 2

    async with Queue(name, connection=url) as q:
        jobs = await q.add_bulk([("x", i) for i in range(10)])
        w = Worker(name, proc, connection=url, install_signal_handlers=False)
        async with running(w):
            assert [await j.wait_until_finished(10) for j in jobs] == [i * 2 for i in range(10)]


async def test_durable_adds_wait_for_the_replica(sentinels: SentinelGroup) -> None:
    settings = ConnectionSettings.from_url(sentinels.url, durable_adds=1, durable_timeout=2)
    async with Queue(unique(), connection=settings) as q:
        job = await q.add("x", {"n": 1})
        jobs = await q.add_bulk([("x", i) for i in range(5)])
        # Acknowledged adds are on the replica already.
        replica = redis.asyncio.Redis(host="127.0.0.1", port=sentinels.replica_port)
        try:
            for j in [job, *jobs]:
                assert await replica.exists(q.keys.job(j.id)) == 1
        finally:
            await replica.aclose()
    # Asking for more replicas than exist fails after the timeout, naming the jobs.
    two = ConnectionSettings.from_url(sentinels.url, durable_adds=2, durable_timeout=0.1)
    async with Queue(unique(), connection=two) as q:
        with pytest.raises(NotReplicatedError) as info:
            await q.add("x")
        assert (info.value.replicas, info.value.wanted) == (1, 2)
        assert await q.get_job(info.value.job_ids[0]) is not None


async def test_failover_workers_and_producers_continue(sentinels: SentinelGroup) -> None:
    """SIGKILL the primary while a producer adds (plain and durable) and a worker
    runs; the sentinels promote the replica and both carry on without a restart."""
    url = sentinels.url
    name, durable_name = unique(), unique()
    processed: set[int] = set()
    progress = asyncio.Event()

    async def proc(job: Job) -> None:
        processed.add(int(job.data))
        progress.set()

    durable_settings = ConnectionSettings.from_url(url, durable_adds=1, durable_timeout=0.2)
    old_primary = sentinels.primary_port
    async with (
        Queue(name, connection=url) as q,
        Queue(durable_name, connection=durable_settings) as dq,
        running(Worker(name, proc, connection=url, install_signal_handlers=False)) as w,
    ):
        acked: list[tuple[str, int]] = []
        durable_acked: list[str] = []
        durable_refused = 0
        killed_at: float | None = None
        n = 0
        deadline = time.monotonic() + 40
        resumed_at: float | None = None
        while time.monotonic() < deadline:
            try:
                job = await q.add("x", n)
                acked.append((job.id, n))
                if killed_at is not None and resumed_at is None:
                    resumed_at = time.monotonic()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
                await asyncio.sleep(0.05)
            try:
                durable_acked.append((await dq.add("d", n)).id)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
                pass
            except NotReplicatedError:
                # Not acknowledged: the producer was told. After the failover the new
                # primary has no replica left, so every durable add ends here.
                durable_refused += 1
            n += 1
            if n == 200 and killed_at is None:
                assert sentinels.primary is not None
                sentinels.primary.kill()
                killed_at = time.monotonic()
            if resumed_at is not None and len(acked) >= 220:
                break
        assert killed_at is not None
        assert resumed_at is not None, "no add succeeded after the kill"
        address = sentinels.master_address()
        assert address is not None
        assert address[1] == sentinels.replica_port != old_primary
        # Every job acknowledged after the failover and still stored gets processed
        # by the same worker, never restarted.
        survivors = [i for job_id, i in acked if await q.get_job(job_id) is not None]
        want = set(survivors)

        async def all_done() -> None:
            while not want <= processed:
                progress.clear()
                await progress.wait()

        await asyncio.wait_for(all_done(), 20)
        assert not w._closing
        lost = len(acked) - len(survivors)
        durable_lost = 0
        for job_id in durable_acked:
            durable_lost += await dq.get_job(job_id) is None
        print(
            f"sentinel failover: adds resumed {resumed_at - killed_at:.1f} s after the kill; "
            f"{len(acked)} plain adds acknowledged, {lost} lost; "
            f"{len(durable_acked)} durable adds acknowledged, {durable_lost} lost, "
            f"{durable_refused} refused (NotReplicatedError)"
        )
        assert durable_lost == 0
