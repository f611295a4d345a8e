"""Batches: a processor gets up to N jobs at once, with an outcome per job."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jobq import (
    Job,
    JobFailedError,
    JobOptions,
    Queue,
    QueueEvents,
    UnrecoverableError,
    WorkerOptions,
)
from tests.conftest import WorkerFactory


async def test_batch_with_mixed_outcomes(queue: Queue, start_worker: WorkerFactory) -> None:
    sizes: list[int] = []
    seen: dict[str, int] = {}

    async def process(jobs: list[Job]) -> list[Any]:
        sizes.append(len(jobs))
        out: list[Any] = []
        for job in jobs:
            seen[job.id] = seen.get(job.id, 0) + 1
            n = job.data["n"]
            if n % 3 == 0 and job.attempts_made == 0:
                out.append(RuntimeError(f"transient {n}"))
            elif n == 4:
                out.append(UnrecoverableError("bad row 4"))
            else:
                out.append(n * 10)
        return out

    await queue.pause()
    jobs = await queue.add_bulk([("row", {"n": n}, JobOptions(attempts=2)) for n in range(1, 9)])
    await start_worker(process, options=WorkerOptions(batch_size=4, batch_wait=50))
    await queue.resume()
    results: dict[int, Any] = {}
    for job in jobs:
        try:
            results[job.data["n"]] = await job.wait_until_finished(10)
        except JobFailedError as exc:
            results[job.data["n"]] = exc.reason
    assert results == {
        1: 10,
        2: 20,
        3: 30,
        4: "bad row 4",
        5: 50,
        6: 60,
        7: 70,
        8: 80,
    }
    assert sizes[:2] == [4, 4]
    # The transient failures (3 and 6) ran twice; the others once.
    assert seen[jobs[2].id] == 2
    assert seen[jobs[5].id] == 2
    assert seen[jobs[0].id] == 1
    done = await jobs[2].refresh()
    assert done.attempts_made == 2
    assert [e.reason for e in done.errors] == ["transient 3"]


async def test_partial_batch_runs_after_the_wait(queue: Queue, start_worker: WorkerFactory) -> None:
    sizes: list[int] = []
    loop = asyncio.get_running_loop()
    started = loop.create_future()

    async def process(jobs: list[Job]) -> list[int]:
        sizes.append(len(jobs))
        if not started.done():
            started.set_result(loop.time())
        return [1] * len(jobs)

    await start_worker(process, options=WorkerOptions(batch_size=10, batch_wait=200))
    t0 = loop.time()
    jobs = await queue.add_bulk([("x", {"i": i}) for i in range(3)])
    for j in jobs:
        await j.wait_until_finished(10)
    assert sizes == [3]
    assert 0.19 <= await started - t0 < 1.0


async def test_batch_processor_raising_fails_every_job_of_the_batch(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    def process(jobs: list[Job]) -> list[int]:  # a plain def, in a thread
        raise RuntimeError("warehouse offline")

    await start_worker(process, options=WorkerOptions(batch_size=5))
    jobs = await queue.add_bulk([("x", {"i": i}) for i in range(2)])
    for j in jobs:
        with pytest.raises(JobFailedError, match="warehouse offline"):
            await j.wait_until_finished(10)


async def test_wrong_number_of_outcomes_is_a_failure(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    async def process(jobs: list[Job]) -> list[int]:
        return []

    await start_worker(process, options=WorkerOptions(batch_size=2))
    job = await queue.add("x")
    with pytest.raises(JobFailedError, match="one outcome per job"):
        await job.wait_until_finished(10)


async def test_close_hands_back_jobs_waiting_for_their_batch(
    queue: Queue, start_worker: WorkerFactory, redis_url: str
) -> None:
    async def process(jobs: list[Job]) -> list[int]:
        return [1] * len(jobs)

    async with QueueEvents(queue.name, connection=redis_url, block_ms=200) as events:
        worker = await start_worker(
            process, options=WorkerOptions(batch_size=10, batch_wait=60_000)
        )
        job = await queue.add("x")
        async for ev in events:  # claimed: it now waits for its batch to fill
            if ev.event == "active" and ev.job_id == job.id:
                break
    # The event can arrive before the worker has read the claim's reply.
    async with asyncio.timeout(10):
        while worker.running != 1:  # noqa: ASYNC110 - no event marks this state
            await asyncio.sleep(0.005)
    await worker.close()
    assert await queue.get_job_state(job.id) == "waiting"
    assert (await job.refresh()).attempts_started == 0
