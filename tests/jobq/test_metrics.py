"""Metrics, health and readiness: values checked after a known workload, on a real server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from jobq import (
    Job,
    JobFailedError,
    JobOptions,
    PayloadError,
    Queue,
    UnrecoverableError,
    serialization,
)
from jobq.connection import server_time_ms
from jobq.errors import ConfigurationError
from jobq.metrics import (
    JOB_BUCKETS,
    STATES,
    QueueCollector,
    WorkerMetrics,
    health,
    instrument,
    instrument_producer,
    readiness,
    render_latest,
)
from tests.conftest import QueueFactory, WorkerFactory

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: CollectorRegistry) -> Samples:
    """Render the registry as an HTTP endpoint would, and parse it back."""
    body, content_type = render_latest(registry)
    assert content_type.startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait for a state, polling (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_job_counts_per_state_are_exact(queue: Queue) -> None:
    registry = CollectorRegistry()
    collector = QueueCollector([queue], registry=registry)
    await queue.add("a")
    await queue.add("b")
    await queue.add("c", options=JobOptions(priority=1))
    await queue.add("d", options=JobOptions(delay=60_000))
    await collector.refresh()
    s = scrape(registry)
    # The engine counts prioritised jobs in waiting too (get_job_counts).
    expected = dict.fromkeys(STATES, 0) | {"waiting": 3, "prioritized": 1, "delayed": 1}
    for state, n in expected.items():
        assert value(s, "jobq_queue_jobs", queue=queue.name, state=state) == n, state
    assert value(s, "jobq_workers_alive", queue=queue.name) == 0

    await queue.pause()
    await collector.refresh()
    s = scrape(registry)
    assert value(s, "jobq_queue_jobs", queue=queue.name, state="paused") == 3
    assert value(s, "jobq_queue_jobs", queue=queue.name, state="waiting") == 0


async def test_nothing_is_exposed_before_the_first_refresh(queue: Queue) -> None:
    registry = CollectorRegistry()
    QueueCollector([queue], registry=registry)
    await queue.add("a")
    s = scrape(registry)
    assert not [k for k in s if k[0] == "jobq_queue_jobs"]
    assert value(s, "jobq_metrics_refreshed_timestamp_seconds") == 0


async def test_oldest_waiting_age(queue: Queue) -> None:
    registry = CollectorRegistry()
    collector = QueueCollector([queue], registry=registry)
    await collector.refresh()
    assert value(scrape(registry), "jobq_oldest_waiting_age_seconds", queue=queue.name) == 0

    # A delayed job is not waiting.
    await queue.add("later", options=JobOptions(delay=60_000))
    await collector.refresh()
    assert value(scrape(registry), "jobq_oldest_waiting_age_seconds", queue=queue.name) == 0

    job = await queue.add("now")
    await until(lambda: _server_clock_past(queue, job.timestamp + 5))
    before = time.time()
    snap = await collector.refresh()
    elapsed = time.time() - before
    age = value(scrape(registry), "jobq_oldest_waiting_age_seconds", queue=queue.name)
    assert age == snap.queues[0].oldest_waiting_age_seconds
    assert 0.005 <= age < 5 + elapsed
    assert snap.taken_at >= before
    assert value(scrape(registry), "jobq_metrics_refreshed_timestamp_seconds") == snap.taken_at


async def _server_clock_past(queue: Queue, ms: int) -> bool:
    return await server_time_ms(queue.client) > ms


async def test_failure_rate_and_finished_per_minute(
    queue: Queue, start_worker: WorkerFactory, redis_client: Redis
) -> None:
    registry = CollectorRegistry()
    collector = QueueCollector([queue], registry=registry)
    await collector.refresh()
    assert value(scrape(registry), "jobq_failure_rate", queue=queue.name) == 0.0  # idle: not NaN

    async def process(job: Job) -> str:
        if job.data["fail"]:
            raise UnrecoverableError("no")
        return "ok"

    await start_worker(process)
    good = await queue.add("good", {"fail": False})
    bad = await queue.add("bad", {"fail": True})
    assert await good.wait_until_finished(10) == "ok"
    with pytest.raises(JobFailedError):
        await bad.wait_until_finished(10)
    await until(lambda: _alive(queue))

    # The last *full* minute: written directly, as the finish script would have.
    prev_minute = str(await server_time_ms(redis_client) // 60_000 - 1)
    await redis_client.hset(queue.keys.metrics_completed, prev_minute, "7")
    await redis_client.hset(queue.keys.metrics_failed, prev_minute, "3")

    await collector.refresh()
    s = scrape(registry)
    # Over 60 minutes: 1 + 7 completed, 1 + 3 failed.
    assert value(s, "jobq_failure_rate", queue=queue.name) == pytest.approx(4 / 12)
    per_min = "jobq_jobs_finished_per_minute"
    assert value(s, per_min, queue=queue.name, outcome="completed") == 7
    assert value(s, per_min, queue=queue.name, outcome="failed") == 3
    assert value(s, "jobq_workers_alive", queue=queue.name) == 1
    assert value(s, "jobq_queue_jobs", queue=queue.name, state="completed") == 1
    assert value(s, "jobq_queue_jobs", queue=queue.name, state="failed") == 1


async def test_failure_rate_is_one_half_after_one_success_and_one_failure(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    async def process(job: Job) -> None:
        if job.data["fail"]:
            raise RuntimeError("boom")

    await start_worker(process)
    ok = await queue.add("ok", {"fail": False})
    bad = await queue.add("bad", {"fail": True})
    await ok.wait_until_finished(10)
    with pytest.raises(JobFailedError):
        await bad.wait_until_finished(10)
    registry = CollectorRegistry()
    collector = QueueCollector([queue], registry=registry)
    await collector.refresh()
    assert value(scrape(registry), "jobq_failure_rate", queue=queue.name) == 0.5


async def _alive(queue: Queue) -> bool:
    return await queue.workers_alive() > 0


async def test_names_mode_opens_and_closes_its_queues(
    make_queue: QueueFactory, redis_url: str
) -> None:
    q1 = await make_queue()
    q2 = await make_queue(f"{q1.name}-b")
    await q1.add("x")
    await q2.add("y")
    await q2.add("z")
    names = [q1.name]
    registry = CollectorRegistry()
    collector = QueueCollector(lambda: names, registry=registry, connection=redis_url)
    try:
        await collector.refresh()
        s = scrape(registry)
        assert value(s, "jobq_queue_jobs", queue=q1.name, state="waiting") == 1
        assert ("jobq_queue_jobs", frozenset({("queue", q2.name), ("state", "waiting")})) not in s
        names.append(q2.name)  # queues appear at the next refresh
        await collector.refresh()
        assert value(scrape(registry), "jobq_queue_jobs", queue=q2.name, state="waiting") == 2
    finally:
        await collector.aclose()


async def test_run_refreshes_in_the_background(queue: Queue) -> None:
    collector = QueueCollector([queue])
    await queue.add("a")
    task = asyncio.create_task(collector.run(0.01))
    try:

        async def refreshed() -> bool:
            return bool(collector.latest.queues)

        await until(refreshed)
        assert collector.latest.queues[0].counts["waiting"] == 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_instrumented_worker_counts_outcomes_and_times_jobs(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    attempts: dict[str, int] = {}

    async def process(job: Job) -> int:
        attempts[job.id] = attempts.get(job.id, 0) + 1
        if job.data == "flaky" and attempts[job.id] == 1:
            raise RuntimeError("first attempt fails")
        if job.data == "bad":
            raise UnrecoverableError("never")
        return 1

    worker = await start_worker(process, concurrency=3)
    instrument(worker, metrics)
    jobs = [await queue.add("ok", "fine") for _ in range(3)]
    flaky = await queue.add("flaky", "flaky", JobOptions(attempts=2))
    bad = await queue.add("bad", "bad", JobOptions(attempts=5))
    for j in [*jobs, flaky]:
        assert await j.wait_until_finished(10) == 1
    with pytest.raises(JobFailedError):
        await bad.wait_until_finished(10)

    s = scrape(registry)
    q = queue.name
    assert value(s, "jobq_jobs_total", queue=q, outcome="completed") == 4
    assert value(s, "jobq_jobs_total", queue=q, outcome="retried") == 1
    assert value(s, "jobq_jobs_total", queue=q, outcome="failed") == 1
    runs = sum(attempts.values())
    assert runs == 6
    assert value(s, "jobq_job_duration_seconds_count", queue=q) == runs
    assert value(s, "jobq_job_wait_seconds_count", queue=q) == 5  # first attempts only
    assert value(s, "jobq_job_latency_seconds_count", queue=q) == 4  # completed jobs
    assert value(s, "jobq_job_latency_seconds_sum", queue=q) > 0
    assert value(s, "jobq_worker_slots", queue=q, kind="total") == 3
    assert value(s, "jobq_worker_slots", queue=q, kind="busy") == 0
    top = JOB_BUCKETS[-1]
    assert value(s, "jobq_job_duration_seconds_bucket", queue=q, le=str(top)) == runs


async def test_busy_slots_are_read_at_scrape_time(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    started = asyncio.Event()
    release = asyncio.Event()

    async def process(job: Job) -> None:
        started.set()
        await release.wait()

    worker = await start_worker(process, concurrency=2)
    instrument(worker, metrics)
    job = await queue.add("hold")
    await asyncio.wait_for(started.wait(), 10)
    assert value(scrape(registry), "jobq_worker_slots", queue=queue.name, kind="busy") == 1
    release.set()
    await job.wait_until_finished(10)
    assert value(scrape(registry), "jobq_worker_slots", queue=queue.name, kind="busy") == 0


async def test_plain_def_processor_stays_in_a_thread(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    import threading

    main = threading.get_ident()
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)

    def process(job: Job) -> bool:
        return threading.get_ident() != main

    worker = await start_worker(process)
    instrument(worker, metrics)
    job = await queue.add("sync")
    assert await job.wait_until_finished(10) is True
    s = scrape(registry)
    assert value(s, "jobq_jobs_total", queue=queue.name, outcome="completed") == 1
    assert value(s, "jobq_job_duration_seconds_count", queue=queue.name) == 1


async def test_no_label_value_is_a_job_id(
    queue: Queue, start_worker: WorkerFactory, redis_url: str
) -> None:
    # Worker and queue metrics in one registry must render side by side.
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    collector = QueueCollector([queue], registry=registry)

    async def process(job: Job) -> None:
        if job.data == "fail":
            raise UnrecoverableError("x")

    worker = await start_worker(process)
    instrument(worker, metrics)
    jobs = [await queue.add("n", "fail" if i % 2 else "ok") for i in range(6)]
    jobs.append(await queue.add("custom", "ok", JobOptions(job_id="my-own-id")))
    for j in jobs:
        with contextlib.suppress(JobFailedError):
            await j.wait_until_finished(10)
    await queue.add("waiting", options=JobOptions(delay=60_000))
    await collector.refresh()
    s = scrape(registry)
    ids = {j.id for j in jobs}
    label_values = {v for _, labels in s for _, v in labels}
    assert not label_values & ids
    assert not label_values & {worker.id}
    allowed = {queue.name, *STATES, "completed", "failed", "retried", "dead_lettered"}
    allowed |= {"busy", "total"}
    buckets = {k for k in label_values if k not in allowed}
    assert all(_is_float(b) for b in buckets), buckets
    assert value(s, "jobq_jobs_total", queue=queue.name, outcome="failed") == 3
    assert value(s, "jobq_queue_jobs", queue=queue.name, state="failed") == 3


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


async def test_observe_rejects_unknown_outcomes() -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    with pytest.raises(ConfigurationError, match="outcome"):
        metrics.observe("q", "exploded")  # type: ignore[arg-type]
    metrics.observe("q", "dead_lettered", duration=0.2, wait=-1.0)
    s = scrape(metrics.registry)
    assert value(s, "jobq_jobs_total", queue="q", outcome="dead_lettered") == 1
    assert value(s, "jobq_job_wait_seconds_sum", queue="q") == 0  # clock skew clamped


async def test_instrument_refuses_process_workers(redis_url: str, queue_name: str) -> None:
    from jobq import Worker, WorkerOptions

    w = Worker(
        queue_name,
        _identity,
        connection=redis_url,
        options=WorkerOptions(processes=1),
        install_signal_handlers=False,
    )
    with pytest.raises(ConfigurationError, match="child processes"):
        instrument(w, WorkerMetrics(CollectorRegistry()))


def _identity(job: object) -> object:
    return job


async def test_health_and_readiness(
    make_queue: QueueFactory, queue: Queue, start_worker: WorkerFactory
) -> None:
    idle = await make_queue(f"{queue.name}-idle")
    h = await health(idle)
    assert h["redis"] is True
    assert h["ok"] is False
    assert h["workers_alive"] == 0
    assert "start a worker" in h["error"]

    async def process(job: Job) -> None:
        return None

    await start_worker(process)
    await until(lambda: _alive(queue))
    h = await health(queue)
    assert h == h | {"ok": True, "redis": True, "workers_alive": 1, "error": None}
    assert h["ping_ms"] >= 0

    ok, details = await readiness([queue, idle])
    assert ok is False
    assert details[queue.name]["ok"] is True
    assert details[idle.name]["ok"] is False
    ok, details = await readiness([queue])
    assert ok is True
    assert set(details) == {queue.name}


async def test_producer_counts_enqueued_jobs_after_a_known_workload(queue: Queue) -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    instrument_producer(queue, metrics)
    await queue.add("a", {})
    await queue.add_bulk([("b", {}), ("c", {})])
    with pytest.raises(PayloadError):
        await queue.add("too-big", "x" * (serialization.DEFAULT_LIMIT + 1))
    labels = {"queue": queue.name}
    assert registry.get_sample_value("jobq_jobs_enqueued_total", labels) == 3.0
    assert (await queue.get_job_counts()).waiting == 3
