"""jobq on a three-master Redis Cluster: every feature, no CROSSSLOT, a master restart."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest
import redis.exceptions
from redis.asyncio.cluster import RedisCluster

from jobq import (
    Backoff,
    DeadLetters,
    Deduplication,
    FlowJob,
    FlowProducer,
    Job,
    JobOptions,
    Queue,
    UnrecoverableError,
    Worker,
    WorkerOptions,
)
from jobq import metrics as jobq_metrics
from jobq.connection import ConnectionSettings, create_client, is_cluster
from jobq.dashboard._backend import Backend
from jobq.discovery import discover_queues
from jobq.keys import QueueKeys
from jobq.scripts import script_source
from tests.scale._servers import Cluster
from tests.scale.conftest import unique

pytestmark = pytest.mark.scale


def names_on_each_master(cluster: Cluster, count: int = 3, prefix: str = "jobq") -> list[str]:
    """``count`` fresh queue names whose hash tags land on different masters."""
    by_port: dict[int, str] = {}
    while len(by_port) < count:
        name = unique()
        port = cluster.node_for(QueueKeys(prefix, name).wait).port
        assert port is not None
        by_port.setdefault(port, name)
    return list(by_port.values())


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        await worker.close(grace=0)
        with contextlib.suppress(asyncio.CancelledError):
            await task


def worker(url: str, name: str, fn: Callable[[Job], Any], **kw: Any) -> Worker:
    kw.setdefault("install_signal_handlers", False)
    return Worker(name, fn, connection=url, **kw)


async def test_client_is_a_cluster_client_and_names_land_on_different_masters(
    cluster: Cluster,
) -> None:
    settings = ConnectionSettings.from_url(cluster.url)
    assert settings.topology == "cluster"
    assert len(settings.nodes) == 3
    client: Any = create_client(settings)
    try:
        assert isinstance(client, RedisCluster)
        assert is_cluster(client)
        cc = cast(Any, client)
        await cc.initialize()
        names = names_on_each_master(cluster)
        # The client routes each queue's keys to a different master, as the server says.
        owners = {cc.get_node_from_key(QueueKeys("jobq", n).wait).port for n in names}
        assert None not in owners
        assert owners == set(cluster.ports)
        slots = {await cc.cluster_keyslot(QueueKeys("jobq", n).meta) for n in names}
        assert len(slots) == 3
    finally:
        await client.aclose()


async def test_add_claim_finish_delay_priority_retry_dedup(cluster: Cluster) -> None:
    url = cluster.url
    name = unique()
    order: list[str] = []
    attempts: dict[str, int] = {}

    async def proc(job: Job) -> str:
        attempts[job.name] = attempts.get(job.name, 0) + 1
        if job.name == "flaky" and attempts[job.name] < 3:
            raise RuntimeError("not yet")
        order.append(job.name)
        return job.name.upper()

    async with Queue(name, connection=url) as q:
        assert is_cluster(q.client)
        # Added while no worker runs, so the priorities decide the order.
        low = await q.add("low", options=JobOptions(priority=5))
        high = await q.add("high", options=JobOptions(priority=1))
        delayed = await q.add("delayed", options=JobOptions(delay=300))
        flaky = await q.add(
            "flaky", options=JobOptions(attempts=3, backoff=Backoff(type="fixed", delay=10))
        )
        dd = JobOptions(deduplication=Deduplication(key="once"))
        first = await q.add("dedup", {"n": 1}, dd)
        again = await q.add("dedup", {"n": 2}, dd)
        assert again.id == first.id
        assert await q.get_deduplication_job_id("once") == first.id
        bulk = await q.add_bulk([("bulk", {"i": i}) for i in range(5)])
        counts = await q.get_job_counts()
        assert (counts.prioritized, counts.delayed, counts.waiting) == (
            2,
            1,
            9,
        )  # waiting counts the prioritized too
        started = time.monotonic()
        async with running(worker(url, name, proc)):
            assert await high.wait_until_finished(10) == "HIGH"
            assert await low.wait_until_finished(10) == "LOW"
            assert await flaky.wait_until_finished(10) == "FLAKY"
            assert await delayed.wait_until_finished(10) == "DELAYED"
            assert time.monotonic() - started >= 0.25
            for j in [first, *bulk]:
                await j.wait_until_finished(10)
        assert order[:2] == ["high", "low"]
        assert attempts["flaky"] == 3
        assert order.count("dedup") == 1
        assert (await q.get_job_counts()).completed == 10
        assert await q.remove_deduplication_key("once") is False  # released on completion


async def test_flow_across_three_masters(cluster: Cluster) -> None:
    url = cluster.url
    reports, calcs, checks = names_on_each_master(cluster)

    async def calc(job: Job) -> int:
        return int(job.data["n"]) * 10

    async def report(job: Job) -> list[int]:
        return sorted(int(v) for v in (await job.get_children_values()).values())

    async with FlowProducer(connection=url) as flows:
        node = await flows.add(
            FlowJob(
                name="report",
                queue=reports,
                children=[
                    FlowJob(name="calc", queue=calcs, data={"n": 1}),
                    FlowJob(
                        name="check",
                        queue=checks,
                        data={"n": 2},
                        children=[FlowJob(name="calc", queue=calcs, data={"n": 3})],
                    ),
                ],
            )
        )
        async with (
            running(worker(url, reports, report)),
            running(worker(url, calcs, calc)),
            running(worker(url, checks, calc)),
        ):
            assert await node.job.wait_until_finished(15) == [10, 20]
        async with Queue(checks, connection=url) as q:
            assert (await q.get_job_counts()).completed == 1


async def test_scheduler_groups_and_dead_letters(cluster: Cluster) -> None:
    url = cluster.url
    name, dlq, _ = names_on_each_master(cluster)
    seen: list[str] = []
    running_groups: dict[str, int] = {}
    max_seen: dict[str, int] = {}

    async def proc(job: Job) -> None:
        if job.name == "bad":
            raise UnrecoverableError("broken input")
        if job.name == "grouped":
            g = job.data["g"]
            running_groups[g] = running_groups.get(g, 0) + 1
            max_seen[g] = max(max_seen.get(g, 0), running_groups[g])
            await asyncio.sleep(0.02)
            running_groups[g] -= 1
        seen.append(job.name)

    async with Queue(name, connection=url) as q:
        await q.set_dead_letter_queue(dlq)
        await q.set_group_limits("a", concurrency=1)
        await q.upsert_scheduler("tick", every=100, limit=3, name="tick")
        assert [s.id for s in await q.list_schedulers()] == ["tick"]
        grouped = [await q.add("grouped", {"g": g}, JobOptions(group=g)) for g in "aaab"]
        bad = await q.add("bad")
        async with running(worker(url, name, proc, concurrency=4)):
            for j in grouped:
                await j.wait_until_finished(10)
            async with DeadLetters(connection=url, name=dlq) as dl:
                await asyncio.wait_for(_until(lambda: dl.count(), 1), 10)
                [entry] = await dl.list()
                assert entry.job_id == bad.id
                assert entry.queue == name
            await asyncio.wait_for(_until(lambda: _count(seen, "tick"), 3), 10)
        assert max_seen["a"] == 1
        assert await q.get_job(bad.id) is None  # moved to the dead-letter queue


async def _until(read: Callable[[], Any], want: int) -> None:
    delay = 0.02
    while await read() < want:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)


async def _count(items: list[str], what: str) -> int:
    return items.count(what)


async def test_readers_and_discovery_see_every_master(cluster: Cluster) -> None:
    url = cluster.url
    names = names_on_each_master(cluster)

    async def proc(job: Job) -> int:
        return 1

    queues = [await Queue(n, connection=url).open() for n in names]
    try:
        for q in queues:
            await q.add_bulk([("x", i) for i in range(3)])
            await q.pause()
            await q.resume()
        async with running(worker(url, names[0], proc)) as w:
            await asyncio.wait_for(_until(lambda: _completed(queues[0]), 3), 10)
            workers = await queues[0].get_workers()
            assert [i.id for i in workers] == [w.id]
        series = await queues[0].get_time_series(5)
        assert sum(p.completed for p in series) == 3
        snap = await jobq_metrics.snapshot(queues)
        assert {s.queue: s.counts["waiting"] for s in snap.queues} == {
            names[0]: 0,
            names[1]: 3,
            names[2]: 3,
        }
        assert [j.name for j in await queues[1].get_jobs("waiting")] == ["x"] * 3
        # SCAN visits every master: queues on all three are found.
        found = await discover_queues(queues[0].client, "jobq")
        assert set(names) <= set(found)
        backend = Backend(url, None, 100)
        try:
            assert set(names) <= set(await backend.discover())
            assert await backend.exists(names[2])
            dash = await backend.snapshot(names)
            assert len(dash.queues) == 3
        finally:
            await backend.aclose()
        assert await queues[1].obliterate(force=True) > 0
        assert names[1] not in await discover_queues(queues[0].client, "jobq")
    finally:
        for q in queues:
            await q.close()


async def _completed(q: Queue) -> int:
    return (await q.get_job_counts()).completed


async def test_worker_survives_a_master_restart(cluster: Cluster) -> None:
    """SIGKILL the master that owns the queue's slot, start it again at the same
    address with its nodes.conf and AOF: the running worker and producer go on."""
    url = cluster.url
    name = unique()
    node = cluster.node_for(QueueKeys("jobq", name).wait)
    done: set[int] = set()

    async def proc(job: Job) -> int:
        done.add(int(job.data))
        return int(job.data)

    async with (
        Queue(name, connection=url) as q,
        running(worker(url, name, proc, concurrency=2)) as w,
    ):
        before = await q.add_bulk([("n", i) for i in range(20)])
        await before[-1].wait_until_finished(10)
        node.kill()
        down_at = time.monotonic()
        added_during: list[int] = []
        restart = asyncio.get_running_loop().run_in_executor(None, cluster.restart, node)
        # Producers keep trying while the slot's master is away.
        i = 100
        while not restart.done() or not added_during:
            with contextlib.suppress(ConnectionError, OSError, Exception):
                await q.add("n", i)
                added_during.append(i)
            i += 1
            await asyncio.sleep(0.05)
        await restart
        after = await q.add_bulk([("n", i) for i in range(1000, 1010)])
        for j in after:
            await j.wait_until_finished(20)
        recovered_s = time.monotonic() - down_at
        assert set(range(20)) <= done
        assert set(range(1000, 1010)) <= done
        assert set(added_during) <= done
        assert not w._closing  # the same worker, never restarted
        print(f"cluster master restart: jobs flowing again {recovered_s:.1f} s after the kill")
        client: Any = q.client
        owner = client.get_node_from_key(q.keys.wait)
        assert owner.port == node.port
        # The restart emptied the node's script cache (SCRIPT LOAD is not in the AOF):
        # the add script is there again because EVALSHA met NOSCRIPT and reloaded it.
        sha = script_source("add")[1]
        assert await client.execute_command("SCRIPT EXISTS", sha, target_nodes=owner) == [True]


async def test_durable_adds_on_a_cluster_without_replicas_report_zero(cluster: Cluster) -> None:
    from jobq import NotReplicatedError

    settings = ConnectionSettings.from_url(cluster.url, durable_adds=1, durable_timeout=0.1)
    async with Queue(unique(), connection=settings) as q:
        with pytest.raises(NotReplicatedError) as info:
            await q.add("x")
        assert info.value.replicas == 0
        assert info.value.wanted == 1
        assert len(info.value.job_ids) == 1
        # Written on the primary all the same.
        assert await q.get_job(info.value.job_ids[0]) is not None


async def _add_retrying(q: Queue, data: int, timeout: float = 15) -> Job:
    """Add, retrying connection errors (a producer that outlives a failover)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await q.add("n", data)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_worker_follows_a_failover_to_the_replica(cluster_with_replicas: Cluster) -> None:
    """SIGKILL the master of the queue's slot and promote its replica: the worker
    (main and blocking clients) and the producer follow the slot to its new owner;
    durable adds acknowledged before the kill are all there."""
    c = cluster_with_replicas
    url = c.url
    name = unique()
    master = c.node_for(QueueKeys("jobq", name).wait)
    replica = c.replica_of(master)
    done: set[int] = set()

    async def proc(job: Job) -> int:
        done.add(int(job.data))
        return int(job.data)

    durable = ConnectionSettings.from_url(url, durable_adds=1, durable_timeout=2)
    async with (
        Queue(name, connection=durable) as q,
        running(worker(url, name, proc, options=WorkerOptions(block_timeout=2_000))) as w,
    ):
        acked = [await q.add("n", i) for i in range(20)]  # each on the replica when it returns
        await acked[-1].wait_until_finished(10)
        idle = await _add_retrying(q, 19_999)  # leaves the worker blocked on its marker
        await idle.wait_until_finished(10)
        master.kill()
        down_at = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, c.take_over, replica)
        plain = await Queue(name, connection=url).open()
        try:
            after = [await _add_retrying(plain, i) for i in range(1000, 1010)]
            for j in after:
                await j.wait_until_finished(20)
            recovered_s = time.monotonic() - down_at
            client: Any = plain.client
            assert client.get_node_from_key(plain.keys.wait).port == replica.port
            for j in acked:
                assert await plain.get_job(j.id) is not None  # durable: none lost
        finally:
            await plain.close()
        assert set(range(1000, 1010)) <= done
        assert not w._closing
        print(f"cluster failover to replica: jobs flowing again {recovered_s:.1f} s after the kill")
