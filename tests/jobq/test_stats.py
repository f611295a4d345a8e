"""Worker registry and per-minute time series (jobq.stats), with real workers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

import jobq
from jobq import ConfigurationError, Job, JobOptions, Queue, UnrecoverableError, WorkerOptions
from jobq.metrics import QueueCollector, render_latest
from jobq.stats import LATENCY_BOUNDS_MS, MinutePoint, _quantile
from tests.conftest import WorkerFactory
from tests.jobq import _procs
from tests.jobq._worker_proc import WorkerProcess


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    """Wait for a state, polling (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def registered(queue: Queue, count: int = 1) -> None:
    async def check() -> bool:
        return len(await queue.get_workers()) == count

    await until(check)


async def stats_keys(client: Redis, queue: Queue, kind: str) -> list[bytes]:
    """Keys of the queue's ``:w:`` or ``:ts:`` family (SCAN on the private server)."""
    return [k async for k in client.scan_iter(match=f"{queue.keys.base}:{kind}:*", count=1000)]


def bucket_bounds(latency_ms: float) -> tuple[float, float]:
    """The bounds of the histogram bucket holding ``latency_ms``."""
    lower = 0.0
    for upper in LATENCY_BOUNDS_MS:
        if latency_ms <= upper:
            return lower, float(upper)
        lower = float(upper)
    return lower, float("inf")


def reported(points: list[MinutePoint]) -> list[MinutePoint]:
    """Minutes a worker reported figures for."""
    return [p for p in points if p.utilization is not None]


# -- worker registry ----------------------------------------------------------------


async def test_worker_info_shows_host_pid_slots_busy_and_outcomes(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    release = asyncio.Event()
    started: set[str] = set()

    async def process(job: Job) -> str:
        started.add(job.id)
        if job.data:
            raise UnrecoverableError("no")
        await release.wait()
        return "ok"

    w = await start_worker(process, concurrency=3)
    await registered(queue)
    [info] = await queue.get_workers()
    assert info.id == w.id
    assert info.queue == queue.name
    assert (info.host, info.pid) == (socket.gethostname(), os.getpid())
    assert (info.concurrency, info.slots, info.processes, info.batch_size) == (3, 3, 0, 0)
    assert (info.busy, info.completed, info.failed, info.retried) == (0, 0, 0, 0)
    assert info.version == jobq.__version__
    assert info.started_at is not None
    assert info.last_heartbeat is not None
    assert info.started_at <= info.last_heartbeat < info.alive_until

    a = await queue.add("a")
    b = await queue.add("b")

    async def both_running() -> bool:
        return {a.id, b.id} <= started

    await until(both_running)
    await w.flush_stats()
    [info] = await queue.get_workers()
    assert info.busy == 2

    release.set()
    await a.wait_until_finished(10)
    await b.wait_until_finished(10)
    bad = await queue.add("bad", {"fail": True})
    with pytest.raises(jobq.JobFailedError):
        await bad.wait_until_finished(10)
    await w.flush_stats()
    [later] = await queue.get_workers()
    assert (later.busy, later.completed, later.failed) == (0, 2, 1)
    assert later.started_at == info.started_at
    assert later.last_heartbeat is not None
    assert info.last_heartbeat is not None
    assert later.last_heartbeat >= info.last_heartbeat


async def test_worker_hash_goes_on_a_clean_stop(
    queue: Queue, start_worker: WorkerFactory, redis_client: Redis
) -> None:
    async def process(job: Job) -> None:
        return None

    w = await start_worker(process)
    await registered(queue)
    key = queue.keys.worker(w.id)
    assert await redis_client.exists(key) == 1
    # Expires by itself within one lease (three heartbeats) if the worker dies.
    assert 0 < await redis_client.pttl(key) <= w.options.lease_ms
    await w.close()
    assert await redis_client.exists(key) == 0
    assert await queue.get_workers() == []


async def test_a_killed_workers_hash_ages_out(
    queue: Queue, redis_url: str, redis_client: Redis
) -> None:
    async with WorkerProcess(redis_url, queue.name, lease_ms=300) as child:
        await child.expect("ready ")
        await registered(queue)
        [info] = await queue.get_workers()
        assert info.pid == child.pid
        key = queue.keys.worker(info.id)
        child.signal(signal.SIGKILL)
        assert await child.wait(10) == -signal.SIGKILL

    async def gone() -> bool:
        return await redis_client.exists(key) == 0 and await queue.get_workers() == []

    await until(gone, timeout=5)


async def test_a_worker_whose_registry_entry_expired_is_left_out(
    queue: Queue, redis_client: Redis, start_worker: WorkerFactory
) -> None:
    async def process(job: Job) -> None:
        return None

    w = await start_worker(process)
    await registered(queue)
    # A dead worker: its registry entry ran out, its hash did not (yet).
    await redis_client.zadd(queue.keys.workers, {"ghost:1:abc": 1_000})
    await redis_client.hset(queue.keys.worker("ghost:1:abc"), mapping={"host": "ghost", "busy": 5})
    assert [i.id for i in await queue.get_workers()] == [w.id]


# -- time series ----------------------------------------------------------------------


async def test_time_series_counts_latency_wait_and_utilization(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    seen: dict[str, int] = {}

    async def process(job: Job) -> str:
        seen[job.id] = seen.get(job.id, 0) + 1
        if job.data.get("fail"):
            raise UnrecoverableError("for good")
        if job.data.get("flaky") and seen[job.id] == 1:
            raise RuntimeError("once")
        await asyncio.sleep(0.08)
        return "ok"

    w = await start_worker(process, concurrency=12)
    await registered(queue)
    specs: list[tuple[dict[str, Any], JobOptions]] = [({}, JobOptions()) for _ in range(10)]
    specs += [({"fail": True}, JobOptions())] * 2
    specs += [({"flaky": True}, JobOptions(attempts=2))]
    jobs = [await queue.add("work", data, opts) for data, opts in specs]
    for job in jobs:
        with (
            pytest.raises(jobq.JobFailedError) if job.data.get("fail") else contextlib.nullcontext()
        ):
            await job.wait_until_finished(20)
    await w.flush_stats()

    finished = [await j.refresh() for j in jobs if not j.data.get("fail")]
    real = sorted(float((j.finished_on or 0) - j.timestamp) for j in finished)
    points = await queue.get_time_series(5)
    assert len(points) == 5
    assert sum(p.completed for p in points) == 11
    assert sum(p.failed for p in points) == 2
    assert sum(p.retried for p in points) == 1
    with_outcomes = [p for p in points if p.completed or p.failed]
    for p in with_outcomes:
        assert p.failure_rate == pytest.approx(p.failed / (p.completed + p.failed))
    latency = [p for p in points if p.latency_avg_ms is not None]
    assert latency
    slack = 15.0  # ms: the worker's clock offset and the report round trip
    for p in latency:
        assert p.latency_avg_ms is not None
        assert p.latency_p95_ms is not None
        assert real[0] - slack <= p.latency_avg_ms <= real[-1] + slack
        lo, _ = bucket_bounds(real[0] - slack)
        _, hi = bucket_bounds(real[-1] + slack)
        assert lo <= p.latency_p95_ms <= hi
        assert p.wait_avg_ms is not None
        assert p.wait_avg_ms >= 0
    busy = reported(points)
    assert busy
    assert all(p.utilization is not None and 0 <= p.utilization <= 1 for p in busy)
    assert any(p.utilization is not None and p.utilization > 0 for p in busy)
    # Minutes with nothing: counts 0, worker figures None.
    idle = points[0]
    if idle.completed == 0 and idle.utilization is None:
        assert idle.failure_rate is None
        assert idle.latency_avg_ms is None
        assert idle.depth is None


async def test_utilization_of_one_busy_slot_of_two(
    queue: Queue, start_worker: WorkerFactory, redis_client: Redis
) -> None:
    release = asyncio.Event()
    running = asyncio.Event()

    async def process(job: Job) -> None:
        running.set()
        await release.wait()

    w = await start_worker(process, concurrency=2)
    await registered(queue)
    await w.flush_stats()  # slot time counts from here
    job = await queue.add("hold")
    await running.wait()
    await w.flush_stats()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.3:  # a stretch of one busy slot of two
        await w.flush_stats()
    release.set()
    await job.wait_until_finished(10)
    await w.flush_stats()
    raw: list[dict[Any, Any]] = [
        await redis_client.hgetall(k) for k in await stats_keys(redis_client, queue, "ts")
    ]
    busy = sum(float(h.get(b"busy_ms", 0)) for h in raw)
    slots = sum(float(h.get(b"slot_ms", 0)) for h in raw)
    assert 0 < busy <= slots
    # One of two slots was busy for nearly the whole time measured after the claim.
    assert busy >= 0.3 * 1000
    assert busy / slots == pytest.approx(0.5, abs=0.2)


async def test_depth_is_sampled_on_the_heartbeat(queue: Queue, start_worker: WorkerFactory) -> None:
    release = asyncio.Event()
    running: set[str] = set()

    async def process(job: Job) -> None:
        running.add(job.id)
        await release.wait()

    w = await start_worker(process, concurrency=2)
    await registered(queue)
    held = [await queue.add("hold") for _ in range(2)]

    async def full() -> bool:
        return len(running) == 2

    await until(full)
    for _ in range(3):
        await queue.add("plain")
    await queue.add("urgent", options=JobOptions(priority=1))
    await w.flush_stats()
    points = await queue.get_time_series(2)
    assert [p.depth for p in points if p.depth is not None][-1] == 4
    assert max(p.depth_max or 0 for p in points) == 4
    release.set()
    for job in held:
        await job.wait_until_finished(10)


async def test_process_pool_outcomes_are_recorded(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    w = await start_worker(_procs.cpu_square, options=WorkerOptions(processes=1, concurrency=2))
    await registered(queue)
    jobs = [await queue.add("square", {"n": n, "seconds": 0}) for n in range(3)]
    for job in jobs:
        await job.wait_until_finished(60)
    await w.flush_stats()
    [info] = await queue.get_workers()
    assert (info.processes, info.completed, info.failed) == (1, 3, 0)
    points = await queue.get_time_series(3)
    assert sum(p.completed for p in points) == 3
    assert any(p.latency_avg_ms is not None for p in points)


async def test_batch_outcomes_are_recorded_job_by_job(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    async def process(jobs: list[Job]) -> list[Any]:
        return [ValueError("odd") if j.data["n"] % 2 else j.data["n"] for j in jobs]

    jobs = await queue.add_bulk(
        [jobq.BulkJob("n", {"n": n}, JobOptions(attempts=1)) for n in range(6)]
    )
    w = await start_worker(
        process, options=WorkerOptions(batch_size=3, batch_wait=50, concurrency=1)
    )
    for job in jobs:
        with pytest.raises(jobq.JobFailedError) if job.data["n"] % 2 else contextlib.nullcontext():
            await job.wait_until_finished(20)
    await w.flush_stats()
    [info] = await queue.get_workers()
    assert (info.slots, info.completed, info.failed) == (3, 3, 3)
    points = await queue.get_time_series(3)
    assert sum(p.completed for p in points) == 3
    assert sum(p.failed for p in points) == 3


async def test_time_series_shape_and_bad_arguments(queue: Queue) -> None:
    points = await queue.get_time_series(4)
    assert len(points) == 4
    steps = {(b.minute - a.minute).total_seconds() for a, b in itertools.pairwise(points)}
    assert steps == {60.0}
    now_minute = (await queue.client.time())[0] // 60
    assert int(points[-1].minute.timestamp()) // 60 in (now_minute, now_minute - 1)
    assert all(p.completed == 0 and p.utilization is None for p in points)
    assert len(await queue.get_time_series(24 * 60)) == 24 * 60
    for bad in (0, -1, 25 * 60 + 1):
        with pytest.raises(ConfigurationError, match="minutes"):
            await queue.get_time_series(bad)


def test_p95_estimate_stays_in_the_bucket_of_the_true_p95() -> None:
    buckets = [0] * len(LATENCY_BOUNDS_MS)
    buckets[3] = 90  # 50..150 ms
    buckets[5] = 10  # 500..1500 ms
    p95 = _quantile(buckets, 0.95)
    assert p95 is not None
    assert 500 <= p95 <= 1500
    p50 = _quantile(buckets, 0.5)
    assert p50 is not None
    assert 50 <= p50 <= 150
    assert _quantile([0] * len(LATENCY_BOUNDS_MS), 0.95) is None


# -- obliterate and Prometheus -------------------------------------------------------------


async def test_obliterate_removes_worker_hashes_and_minute_keys(
    queue: Queue, redis_url: str, redis_client: Redis, start_worker: WorkerFactory
) -> None:
    async def process(job: Job) -> None:
        return None

    w = await start_worker(process)
    await registered(queue)
    await (await queue.add("one")).wait_until_finished(10)
    await w.close()
    assert await stats_keys(redis_client, queue, "ts")
    # A worker that died leaves its hash until the lease runs out.
    async with WorkerProcess(redis_url, queue.name) as child:
        await child.expect("ready ")
        await registered(queue)

        async def hash_written() -> bool:  # written just after the registration
            return len(await stats_keys(redis_client, queue, "w")) == 1

        await until(hash_written)
        child.signal(signal.SIGKILL)
        await child.wait(10)
    assert len(await stats_keys(redis_client, queue, "w")) == 1

    await queue.obliterate()
    assert await stats_keys(redis_client, queue, "w") == []
    assert await stats_keys(redis_client, queue, "ts") == []


async def test_queue_collector_exposes_worker_slots(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    release = asyncio.Event()
    running = asyncio.Event()

    async def process(job: Job) -> None:
        running.set()
        await release.wait()

    w = await start_worker(process, concurrency=3)
    await registered(queue)
    job = await queue.add("hold")
    await running.wait()
    await w.flush_stats()
    registry = CollectorRegistry()
    collector = QueueCollector([queue], registry=registry)
    snap = await collector.refresh()
    assert (snap.queues[0].slots_busy, snap.queues[0].slots_total) == (1, 3)
    body, _ = render_latest(registry)
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.labels.get("queue") == queue.name
    }
    assert samples["jobq_worker_slots_busy"] == 1
    assert samples["jobq_worker_slots_total"] == 3
    release.set()
    await job.wait_until_finished(10)
