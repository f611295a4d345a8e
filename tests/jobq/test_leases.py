"""Leases and fencing tokens: a dead worker's job comes back, a stale worker is refused.

The killed workers here are real processes (tests/jobq/_worker_proc.py) that
get SIGKILL in the middle of a job, so nothing of theirs runs after the kill.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

import pytest

from jobq import (
    Job,
    JobFailedError,
    JobStalledError,
    LeaseLostError,
    Queue,
    QueueEvent,
    QueueEvents,
    WorkerOptions,
    serialization,
)
from jobq.scripts import ClaimReply, FinishItem
from tests.conftest import WorkerFactory
from tests.jobq import scriptcalls
from tests.jobq._worker_proc import WorkerProcess

EVENTS_MAX = 10_000


# -- helpers -------------------------------------------------------------------------


async def job_events(queue: Queue, job_id: str) -> list[QueueEvent]:
    """The events of one job, oldest first, read straight from the stream."""
    raw: Any = await queue.client.xrange(queue.keys.events)
    events = [e for sid, fields in raw for e in QueueEvent.from_entry(sid, fields)]
    return [e for e in events if e.job_id == job_id]


async def claim(
    queue: Queue, worker_id: str, *, lease_ms: int = 30_000, count: int = 1, max_stalled: int = 1
) -> ClaimReply:
    """Claim through the script, as a worker named ``worker_id`` would."""
    return await scriptcalls.claim(
        queue.scripts,
        count=count,
        worker_id=worker_id,
        lease_ms=lease_ms,
        max_stalled=max_stalled,
        events_max_len=EVENTS_MAX,
    )


async def finish(queue: Queue, *items: FinishItem) -> list[int]:
    """Report outcomes through the script, claiming nothing."""
    return await scriptcalls.finish(
        queue.scripts, items, worker_id="reporter", events_max_len=EVENTS_MAX
    )


async def job_hash(queue: Queue, job_id: str) -> dict[bytes, bytes]:
    raw: Any = await queue.client.hgetall(queue.keys.job(job_id))
    return dict(raw)


async def collect_events_until(
    events: QueueEvents, job_id: str, last: str, timeout: float
) -> list[QueueEvent]:
    """This job's events from ``events`` until (and with) the first ``last`` event."""
    seen: list[QueueEvent] = []

    async def follow() -> None:
        async for ev in events:
            if ev.job_id == job_id:
                seen.append(ev)
                if ev.event == last:
                    return

    await asyncio.wait_for(follow(), timeout)
    return seen


# -- a SIGKILLed worker ----------------------------------------------------------------


async def test_job_of_sigkilled_worker_runs_again_after_its_lease_expires(
    queue: Queue, queue_name: str, redis_url: str, start_worker: WorkerFactory
) -> None:
    job = await queue.add("crunch", {"n": 1})
    async with QueueEvents(queue_name, connection=redis_url, last_id="0-0", block_ms=500) as ev:
        async with WorkerProcess(redis_url, queue_name, lease_ms=600) as child:
            assert await child.expect("started ") == f"started {job.id}"
            child_pid = child.pid
            child.signal(signal.SIGKILL)
            assert await child.wait(10) == -signal.SIGKILL
        assert await queue.get_job_state(job.id) == "active"  # nobody has noticed yet

        seen_by_second: list[Job] = []

        async def second(j: Job) -> dict[str, str]:
            seen_by_second.append(j)
            return {"by": "second"}

        worker = await start_worker(second)
        assert await job.wait_until_finished(timeout=15) == {"by": "second"}
        events = await collect_events_until(ev, job.id, "completed", timeout=10)

    names = [e.event for e in events]
    assert names == ["added", "active", "stalled", "active", "completed"], names
    first_active, second_active = events[1], events[3]
    assert f":{child_pid}:" in first_active.fields["w"]
    assert second_active.fields["w"] == worker.id

    [running] = seen_by_second
    assert running.stalls == 1
    assert running.attempts_made == 0
    assert running.attempts_started == 2

    done = await job.refresh()
    assert await queue.get_job_state(job.id) == "completed"
    assert done.return_value == {"by": "second"}
    assert done.stalls == 1
    assert done.attempts_made == 1  # the stalled run is not a made attempt
    assert done.attempts_started == 2
    assert await queue.get_job_ids("active") == []


async def test_job_of_sigkilled_worker_fails_as_stalled_when_max_stalled_is_zero(
    queue: Queue, queue_name: str, redis_url: str, start_worker: WorkerFactory
) -> None:
    job = await queue.add("crunch", {"n": 1})
    async with WorkerProcess(redis_url, queue_name, lease_ms=600, max_stalled=0) as child:
        await child.expect(f"started {job.id}")
        child.signal(signal.SIGKILL)
        assert await child.wait(10) == -signal.SIGKILL

    handled: asyncio.Future[tuple[Job, BaseException]] = asyncio.get_running_loop().create_future()
    ran: list[Job] = []

    async def handler(j: Job, exc: BaseException) -> None:
        if not handled.done():
            handled.set_result((j, exc))

    async def must_not_run(j: Job) -> None:
        ran.append(j)

    await start_worker(
        must_not_run, options=WorkerOptions(max_stalled=0), failed_job_handler=handler
    )
    failed_job, exc = await asyncio.wait_for(handled, 15)

    assert isinstance(exc, JobStalledError)
    assert "stalled" in str(exc)
    assert failed_job.id == job.id
    assert ran == []
    assert await queue.get_job_state(job.id) == "failed"
    with pytest.raises(JobFailedError, match="stalled"):
        await job.wait_until_finished(timeout=5)
    stored = await job.refresh()
    assert stored.failed_reason is not None
    assert "stalled" in stored.failed_reason
    assert stored.stalls == 1
    assert stored.attempts_made == 1
    names = [e.event for e in await job_events(queue, job.id)]
    assert names == ["added", "active", "failed"], names


async def test_heartbeat_keeps_a_job_longer_than_its_lease(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    tokens: list[str | None] = []

    async def slow(j: Job) -> str:
        tokens.append(j.token)
        started.set()
        await release.wait()
        return "done"

    await start_worker(slow, options=WorkerOptions(lease=300))
    job = await queue.add("slow")
    await asyncio.wait_for(started.wait(), 10)
    # For four leases, keep looking for expired leases the way other workers do.
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline:
        reply = await claim(queue, "other-worker", count=0)
        assert reply.stalled_failed == []
        assert await queue.get_job_state(job.id) == "active"
        await asyncio.sleep(0.05)
    release.set()
    assert await job.wait_until_finished(timeout=10) == "done"
    stored = await job.refresh()
    assert stored.stalls == 0
    assert stored.attempts_started == 1
    assert tokens == [(await job_hash(queue, job.id))[b"tk"].decode()]
    assert "stalled" not in [e.event for e in await job_events(queue, job.id)]


# -- fencing tokens ------------------------------------------------------------------


async def test_stale_token_is_refused_and_the_new_owner_result_stands(queue: Queue) -> None:
    job = await queue.add("report", {"id": "r-1"})
    [first] = (await claim(queue, "worker-a", lease_ms=1)).jobs
    assert first.id == job.id

    # Worker b keeps claiming until it recovers the expired lease and gets the job.
    deadline = time.monotonic() + 10
    while True:
        second_jobs = (await claim(queue, "worker-b")).jobs
        if second_jobs:
            break
        assert time.monotonic() < deadline, "the 1 ms lease was never recovered"
        await asyncio.sleep(0.005)
    [second] = second_jobs
    assert second.id == job.id
    assert int(second.token) > int(first.token)
    assert second.stalls == 1

    # While b holds the job, every outcome a reports with its old token is refused.
    before = await job_hash(queue, job.id)
    stale = [
        FinishItem(job.id, first.token, "c", serialization.encode("from a")),
        FinishItem(job.id, first.token, "f", "a failed", b"[]"),
        FinishItem(job.id, first.token, "r", "a retries", b"[]", 0),
        FinishItem(job.id, first.token, "l", b"", b"", 1000),
        FinishItem(job.id, first.token, "h"),
    ]
    for item in stale:
        assert await finish(queue, item) == [-2], item.kind
    assert await job_hash(queue, job.id) == before
    assert await queue.get_job_state(job.id) == "active"
    assert await queue.client.exists(queue.keys.limiter) == 0  # 'l' held nothing

    # Nor may a renew its lease or write progress.
    renewed, _ = await queue.scripts.extend(
        [(job.id, first.token), (job.id, second.token)],
        lease_ms=30_000,
        max_stalled=1,
        worker_id="worker-a",
        events_max_len=EVENTS_MAX,
    )
    assert renewed == [False, True]
    assert await queue.scripts.progress(job.id, first.token, b"50", events_max_len=EVENTS_MAX) == -2

    assert await finish(
        queue, FinishItem(job.id, second.token, "c", serialization.encode("from b"))
    ) == [1]
    # After b completed it, a's late report is refused all the same.
    assert await finish(
        queue, FinishItem(job.id, first.token, "c", serialization.encode("from a"))
    ) == [-2]

    done = await job.refresh()
    assert await queue.get_job_state(job.id) == "completed"
    assert done.return_value == "from b"
    assert done.attempts_made == 1
    assert done.progress == 0
    names = [e.event for e in await job_events(queue, job.id)]
    assert names == ["added", "active", "stalled", "active", "completed"], names


class _Refusals(logging.Handler):
    """Sets an event when the worker logs that an outcome was refused."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.refused = asyncio.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.messages.append(message)
        if "refused" in message:
            self.refused.set()


async def test_worker_whose_lease_was_taken_over_cannot_report_or_write_progress(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    started = asyncio.Event()
    go_on = asyncio.Event()
    progress_errors: list[BaseException] = []
    seen: list[Job] = []

    async def slow(j: Job) -> str:
        seen.append(j)
        started.set()
        await go_on.wait()
        try:
            await j.update_progress(50)
        except LeaseLostError as exc:
            progress_errors.append(exc)
        return "from the first worker"

    refusals = _Refusals()
    worker_log = logging.getLogger("jobq.worker")
    worker_log.addHandler(refusals)
    try:
        # A 30 s lease: the heartbeat (every 10 s) stays out of the way of this test.
        await start_worker(slow)
        job = await queue.add("report")
        await asyncio.wait_for(started.wait(), 10)
        [running] = seen
        # The lease runs out (as if the worker had hung); another claim takes the job.
        await queue.client.zadd(queue.keys.active, {job.id: 0})
        [taken] = (await claim(queue, "thief")).jobs
        assert taken.id == job.id
        assert running.token is not None
        assert int(taken.token) > int(running.token)
        assert await finish(
            queue, FinishItem(job.id, taken.token, "c", serialization.encode("from the thief"))
        ) == [1]

        go_on.set()
        await asyncio.wait_for(refusals.refused.wait(), 10)
    finally:
        worker_log.removeHandler(refusals)

    [err] = progress_errors
    assert job.id in str(err)
    assert running.lease_lost
    stored = await job.refresh()
    assert await queue.get_job_state(job.id) == "completed"
    assert stored.return_value == "from the thief"
    assert stored.progress == 0
    assert stored.attempts_made == 1
    assert stored.stalls == 1
    assert any(job.id in m and "refused" in m for m in refusals.messages)


async def test_heartbeat_outlives_an_error_in_one_of_its_steps(
    queue: Queue, start_worker: WorkerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A heartbeat step that raises (here the dead-letter refresh) is logged and the
    next beat renews the leases: the job is not stalled and runs once."""
    started, release = asyncio.Event(), asyncio.Event()
    runs: list[str] = []

    async def slow(j: Job) -> str:
        runs.append(j.id)
        started.set()
        await release.wait()
        return "done"

    worker = await start_worker(slow, options=WorkerOptions(lease=300))
    broken = {"left": 3}
    real_refresh = worker._dead_letters.refresh

    async def refresh() -> None:
        if broken["left"] > 0:
            broken["left"] -= 1
            raise RuntimeError("maintenance step broke")
        await real_refresh()

    job = await queue.add("slow")
    await asyncio.wait_for(started.wait(), 10)
    worker._dead_letters.refresh = refresh  # type: ignore[method-assign]
    deadline = time.monotonic() + 1.5  # five leases
    while time.monotonic() < deadline:
        reply = await claim(queue, "other-worker", count=0)
        assert reply.stalled_failed == []
        assert await queue.get_job_state(job.id) == "active"
        await asyncio.sleep(0.05)
    assert broken["left"] == 0  # the step did fail, three times
    release.set()
    assert await job.wait_until_finished(timeout=10) == "done"
    assert runs == [job.id]
    assert "heartbeat of worker" in caplog.text
