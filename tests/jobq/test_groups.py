"""Groups: round-robin fairness, per-group concurrency and rate limits."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from jobq import ConfigurationError, GroupLimits, Job, JobOptions, Queue, RateLimit
from tests.conftest import WorkerFactory
from tests.jobq import scriptcalls

PROC = str(Path(__file__).with_name("_group_proc.py"))


def in_group(group: str) -> JobOptions:
    return JobOptions(group=group)


async def test_a_flooding_tenant_cannot_starve_another(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    order: list[str] = []

    async def process(job: Job) -> None:
        order.append(job.options.group or "plain")

    await queue.pause()
    await queue.add_bulk([("export", {"i": i}, in_group("agency-a")) for i in range(200)])
    late = await queue.add("report", None, in_group("agency-b"))
    await queue.add("plain")
    counts = await queue.get_job_counts()
    assert counts.paused == 202
    await start_worker(process, concurrency=1)
    await queue.resume()
    await late.wait_until_finished(10)
    # agency-b's single report ran among the first few, not after 200 exports.
    assert order.index("agency-b") <= 3
    assert "plain" in order[:4]


async def test_group_concurrency_holds_across_workers_and_does_not_block_others(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    await queue.set_group_limits("agency-a", concurrency=1)
    assert await queue.get_group_limits("agency-a") == GroupLimits(1, None)
    running = {"agency-a": 0, "agency-b": 0}
    peak = {"agency-a": 0, "agency-b": 0}
    finished: list[str] = []

    async def process(job: Job) -> None:
        g = job.options.group or ""
        running[g] += 1
        peak[g] = max(peak[g], running[g])
        await asyncio.sleep(0.03)
        running[g] -= 1
        finished.append(g)

    await queue.pause()
    jobs = await queue.add_bulk(
        [("x", {"i": i}, in_group("agency-a")) for i in range(6)]
        + [("x", {"i": i}, in_group("agency-b")) for i in range(6)]
    )
    await start_worker(process, concurrency=4)
    await start_worker(process, concurrency=4)
    await queue.resume()
    for j in jobs:
        await j.wait_until_finished(20)
    assert peak["agency-a"] == 1
    assert peak["agency-b"] > 1
    # agency-b was not held behind agency-a's one-at-a-time jobs.
    assert finished.index("agency-b") < 3
    assert max(i for i, g in enumerate(finished) if g == "agency-b") < len(finished) - 1


async def test_group_rate_limit_across_two_worker_processes(
    queue: Queue, redis_url: str, redis_client: Redis
) -> None:
    await queue.set_group_limits("agency-a", rate=RateLimit(max=3, duration=500))
    log_key = queue.keys.base + ":test-starts"
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            PROC,
            redis_url,
            queue.name,
            log_key,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            assert (await asyncio.wait_for(p.stdout.readline(), 30)).strip() == b"ready"
        jobs = await queue.add_bulk(
            [("x", {"i": i}, in_group("agency-a")) for i in range(9)]
            + [("x", {"i": i}, in_group("agency-b")) for i in range(4)]
        )
        for j in jobs:
            await j.wait_until_finished(20)
        entries: list[Any] = await redis_client.lrange(log_key, 0, -1)
        raw = [x.decode().split(":") for x in entries]
        a = sorted(int(t) for g, t in raw if g == "agency-a")
        b = sorted(int(t) for g, t in raw if g == "agency-b")
        assert len(a) == 9
        # Three windows of 500 ms are needed for nine starts at three per window.
        assert a[-1] - a[0] >= 990
        # Fixed windows: at most 2 x max starts in any 500 ms (across a boundary).
        for i, t in enumerate(a):
            assert sum(1 for u in a[i:] if u - t < 500) <= 6
        # The other group was not held back by agency-a's limit.
        assert b[-1] - a[0] < 450
    finally:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            await asyncio.wait_for(p.wait(), 30)


async def test_groups_listing_and_removal_keep_counts_right(queue: Queue) -> None:
    jobs = await queue.add_bulk([("x", {"i": i}, in_group("g1")) for i in range(3)])
    await queue.add("y", None, in_group("g2"))
    assert [(g.name, g.waiting, g.state) for g in await queue.get_groups()] == [
        ("g1", 3, "ready"),
        ("g2", 1, "ready"),
    ]
    assert (await queue.get_job_counts()).waiting == 4
    assert len(await queue.get_job_ids("waiting")) == 4
    await queue.remove(jobs[0].id)
    assert (await queue.get_job_counts()).waiting == 3
    assert len(await queue.clean("waiting", grace=0, limit=1)) == 1
    assert (await queue.get_job_counts()).waiting == 2
    assert await queue.drain() == 2
    assert (await queue.get_job_counts()).waiting == 0
    assert await queue.get_groups() == []


async def test_grouped_job_retry_and_handback_stay_in_their_group(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    await queue.set_group_limits(concurrency=1)  # the default for every group
    attempts: list[int] = []

    async def flaky(job: Job) -> str:
        attempts.append(job.attempts_made)
        if job.attempts_made == 0:
            raise RuntimeError("first try fails")
        return "ok"

    await start_worker(flaky)
    job = await queue.add("x", None, JobOptions(group="g", attempts=2))
    assert await job.wait_until_finished(10) == "ok"
    assert attempts == [0, 1]
    groups = await queue.get_groups()
    assert groups == []  # nothing waiting, nothing running: the slot was given back


def test_group_with_priority_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="priority"):
        JobOptions(group="g", priority=3)
    with pytest.raises(ConfigurationError, match="group"):
        JobOptions(group="")


async def test_a_stalled_grouped_job_frees_its_group_slot(
    queue: Queue, redis_client: Redis
) -> None:
    await queue.set_group_limits("g", concurrency=1)
    first = await queue.add("x", None, in_group("g"))
    await queue.add("y", None, in_group("g"))
    reply = await scriptcalls.claim(queue.scripts, count=5, max_stalled=5)
    assert [j.id for j in reply.jobs] == [first.id]  # the group's one slot
    assert (await scriptcalls.claim(queue.scripts, count=5, max_stalled=5)).jobs == []
    # The worker dies: its lease runs out and the job goes back to its group.
    await redis_client.zadd(queue.keys.active, {first.id: 0}, xx=True)
    reply = await scriptcalls.claim(queue.scripts, count=5, max_stalled=5)
    assert [j.id for j in reply.jobs] == [first.id]
    assert [(g.name, g.active, g.waiting) for g in await queue.get_groups()] == [("g", 1, 1)]
