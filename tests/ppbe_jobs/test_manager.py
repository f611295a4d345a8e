"""QueueManager: the spec's API, tiers, metrics and health, on a real server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jobq import (
    Backoff,
    ConfigurationError,
    DeadLetters,
    Job,
    JobOptions,
    KeepJobs,
    QueueEvents,
    UnrecoverableError,
)
from ppbe_jobs.config import load_settings
from ppbe_jobs.manager import QueueManager


@pytest.fixture
async def manager(redis_url: str) -> AsyncIterator[QueueManager]:
    # Unique queue names per test: the spec's names with a suffix.
    settings = load_settings({"QUEUE_HEALTH_MAX_WAITING": "3"})
    async with QueueManager(settings, connection=redis_url) as m:
        yield m


def qname(base: str = "reports") -> str:
    return f"{base}-{uuid.uuid4().hex[:8]}"


async def test_priority_picks_the_tier_and_tier_defaults_apply(manager: QueueManager) -> None:
    q = qname()
    critical = await manager.add_job(q, "approve", {"id": 1}, {"priority": 1})
    standard = await manager.add_job(q, "report", {"id": 2}, {"priority": 20})
    bulk = await manager.add_job(q, "export", {"id": 3}, {"priority": 100})
    assert critical.queue_name == f"{q}.critical"
    assert standard.queue_name == f"{q}.standard"
    assert bulk.queue_name == f"{q}.bulk"
    assert (critical.options.attempts, standard.options.attempts, bulk.options.attempts) == (
        5,
        3,
        1,
    )
    # The spec's default backoff: exponential from QUEUE_BACKOFF_DELAY.
    assert critical.options.backoff == Backoff.exponential(2000)


async def test_queue_default_priority_and_explicit_options_override(
    manager: QueueManager,
) -> None:
    job = await manager.add_job("maintenance-" + uuid.uuid4().hex[:6], "cleanup", {})
    assert job.queue_name.endswith(".standard")  # unknown queue: default priority 20
    manager.queue_priorities["exports-x"] = 60
    exp = await manager.add_job("exports-x", "export", {}, JobOptions(attempts=4))
    assert exp.queue_name == "exports-x.bulk"
    assert exp.options.attempts == 4


@pytest.mark.parametrize("priority", [0, 101, -5])
async def test_priority_outside_1_to_100_is_a_clear_error(
    manager: QueueManager, priority: int
) -> None:
    with pytest.raises(ConfigurationError, match="priority"):
        await manager.add_job(qname(), "x", {}, {"priority": priority})


async def test_spec_shaped_options_port_as_they_are(manager: QueueManager) -> None:
    job = await manager.add_job(
        qname(),
        "generate-budget-report",
        {"reportId": "report-123"},
        {
            "priority": 5,
            "attempts": 3,
            "backoff": {"type": "exponential", "delay": 2000},
            "removeOnComplete": True,
            "removeOnFail": {"age": 3600, "count": 10},
            "jobId": "report-123",
        },
    )
    assert job.id == "report-123"
    assert job.options.attempts == 3
    assert job.options.remove_on_complete == KeepJobs(count=0)
    assert job.options.remove_on_fail == KeepJobs(count=10, age=3_600_000)
    with pytest.raises(ConfigurationError, match="removeOnCompleted"):
        await manager.add_job(qname(), "x", {}, {"removeOnCompleted": True})


async def test_repeat_cron_makes_one_recurring_schedule(manager: QueueManager) -> None:
    q = qname("maintenance")
    first = await manager.add_job(
        q, "cleanup-old-data", {"olderThan": 90}, {"repeat": {"cron": "0 2 * * *"}}
    )
    again = await manager.add_job(
        q, "cleanup-old-data", {"olderThan": 90}, {"repeat": {"cron": "0 2 * * *"}}
    )
    assert first.id == again.id
    assert await first.get_state() == "delayed"
    physical = await manager.queue(first.queue_name)
    assert [s.cron for s in await physical.list_schedulers()] == ["0 2 * * *"]


async def test_processors_run_per_tier_and_metrics_add_up(manager: QueueManager) -> None:
    q = qname()

    async def process(job: Job) -> dict[str, Any]:
        return {"ok": job.data["n"]}

    manager.register_processor(q, process, concurrency=2)
    await manager.start_workers()
    jobs = [
        await manager.add_job(q, "r", {"n": n}, {"priority": p})
        for n, p in enumerate([1, 30, 90, 5])
    ]
    for j in jobs:
        assert (await j.wait_until_finished(10))["ok"] in range(4)
    metrics = await manager.get_queue_metrics(q)
    assert metrics.completed == 4
    assert metrics.by_tier["critical"]["completed"] == 2
    assert metrics.by_tier["bulk"]["completed"] == 1


async def test_bulk_work_cannot_starve_critical_work(manager: QueueManager) -> None:
    q = qname()
    release = asyncio.Event()

    async def process(job: Job) -> str:
        if job.name == "bulk":
            await release.wait()
        return job.name

    manager.register_processor(q, process)
    await manager.start_workers()
    for i in range(20):
        await manager.add_job(q, "bulk", {"i": i}, {"priority": 90})
    critical = await manager.add_job(q, "pay", {}, {"priority": 1})
    # The bulk tier is saturated and its queue long; the critical job still runs.
    assert await critical.wait_until_finished(10) == "pay"
    metrics = await manager.get_queue_metrics(q)
    assert metrics.by_tier["bulk"]["active"] == 2
    assert metrics.by_tier["bulk"]["waiting"] == 18
    release.set()


async def test_health_rules_and_no_division_by_zero(manager: QueueManager) -> None:
    q = qname()
    idle = await manager.check_health([q])
    assert idle.healthy
    assert idle.queues[0].failure_rate is None
    for i in range(4):
        await manager.add_job(q, "x", {"i": i})
    backed_up = await manager.check_health([q])
    assert not backed_up.healthy
    assert "4 jobs waiting" in backed_up.problems[0]


async def test_failure_rate_over_threshold_is_unhealthy_and_dead_letters_fill(
    manager: QueueManager, redis_url: str
) -> None:
    q = qname()
    handled: list[str] = []

    async def process(job: Job) -> str:
        if job.data["fail"]:
            raise UnrecoverableError("ledger rejected the line")
        return "ok"

    async def on_failed(job: Job, error: BaseException) -> None:
        handled.append(str(error))

    manager.register_processor(q, process, failed_job_handler=on_failed)
    await manager.start_workers()
    async with QueueEvents("dead-letter", connection=redis_url, block_ms=200) as dead:
        good = await manager.add_job(q, "x", {"fail": False})
        bad = await manager.add_job(q, "x", {"fail": True})
        await good.wait_until_finished(10)
        async for ev in dead:
            if ev.event == "added" and ev.job_id == f"{bad.queue_name}:{bad.id}":
                break
    async with DeadLetters(connection=redis_url) as dlq:
        entries = await dlq.list(queue=bad.queue_name)
    assert [(e.job_id, e.failed_reason) for e in entries] == [(bad.id, "ledger rejected the line")]
    assert handled == ["ledger rejected the line"]
    health = await manager.check_health([q])
    assert health.queues[0].failure_rate == 0.5
    assert not health.healthy


def test_bad_environment_stops_start_up_naming_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="QUEUE_CONCURRENCY"):
        load_settings({"QUEUE_CONCURRENCY": "many"})
    with pytest.raises(ConfigurationError, match="REDIS_QUEUE_DB"):
        load_settings({"REDIS_HOST": "localhost", "REDIS_QUEUE_DB": "-1"})
    with pytest.raises(ConfigurationError, match="QUEUE_HEALTH_MAX_FAILURE_RATE"):
        load_settings({"QUEUE_HEALTH_MAX_FAILURE_RATE": "2"})
