"""Worker: processing, retries, backoff, limits, progress and events, on a real server."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
import redis.exceptions
from redis.asyncio import Redis

from jobq import (
    Backoff,
    Job,
    JobFailedError,
    JobOptions,
    KeepJobs,
    Queue,
    QueueEvents,
    RateLimit,
    RateLimitedError,
    UnrecoverableError,
    WaitTimeoutError,
    Worker,
    WorkerOptions,
)
from jobq.scripts import QueueScripts, script_source
from tests.conftest import WorkerFactory
from tests.jobq import _procs


async def test_async_processor_result_and_timestamps(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    async def process(job: Job) -> dict[str, Any]:
        return {"doubled": job.data["n"] * 2}

    await start_worker(process)
    job = await queue.add("double", {"n": 21})
    assert await job.wait_until_finished(10) == {"doubled": 42}
    done = await job.refresh()
    assert await done.get_state() == "completed"
    assert done.return_value == {"doubled": 42}
    assert done.attempts_made == 1
    assert done.processed_on is not None
    assert done.finished_on is not None
    assert done.timestamp <= done.processed_on <= done.finished_on


async def test_plain_def_processor_runs_in_a_thread_with_progress_and_logs(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    import threading

    main = threading.get_ident()

    def process(job: Job) -> int:
        assert threading.get_ident() != main
        job.update_progress_sync(50)
        job.log_sync("half way")
        job.update_progress_sync({"done": 2, "total": 2})
        return int(job.data["n"]) + 1

    await start_worker(process)
    job = await queue.add("inc", {"n": 1})
    assert await job.wait_until_finished(10) == 2
    done = await job.refresh()
    assert done.progress == {"done": 2, "total": 2}
    assert await done.get_logs() == ["half way"]


async def test_events_follow_a_job_through_its_life(
    queue: Queue, start_worker: WorkerFactory, redis_url: str
) -> None:
    async with QueueEvents(queue.name, connection=redis_url, block_ms=200) as events:

        async def process(job: Job) -> str:
            await job.update_progress(100)
            return "ok"

        job = await queue.add("evented")
        await start_worker(process)
        seen: list[str] = []
        async for ev in events:
            if ev.job_id == job.id:
                seen.append(ev.event)
            if ev.event == "completed":
                break
        assert seen == ["added", "active", "progress", "completed"]


async def test_retries_wait_the_fixed_backoff(queue: Queue, start_worker: WorkerFactory) -> None:
    starts: list[float] = []

    async def flaky(job: Job) -> str:
        starts.append(time.monotonic())
        if len(starts) < 3:
            raise RuntimeError(f"boom {len(starts)}")
        return "third time lucky"

    await start_worker(flaky)
    job = await queue.add("flaky", None, JobOptions(attempts=3, backoff=Backoff.fixed(150)))
    assert await job.wait_until_finished(10) == "third time lucky"
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(0.145 <= g < 0.4 for g in gaps), gaps
    done = await job.refresh()
    assert done.attempts_made == 3
    assert [e.reason for e in done.errors] == ["boom 1", "boom 2"]
    assert "RuntimeError" in done.errors[0].stacktrace


async def test_exponential_backoff_doubles(queue: Queue, start_worker: WorkerFactory) -> None:
    starts: list[float] = []

    async def failing(job: Job) -> None:
        starts.append(time.monotonic())
        raise RuntimeError("always")

    await start_worker(failing)
    job = await queue.add("exp", None, JobOptions(attempts=3, backoff=Backoff.exponential(100)))
    with pytest.raises(JobFailedError, match="always"):
        await job.wait_until_finished(10)
    g1, g2 = starts[1] - starts[0], starts[2] - starts[1]
    assert 0.095 <= g1 < 0.3
    assert 0.195 <= g2 < 0.45
    done = await job.refresh()
    assert await done.get_state() == "failed"
    assert done.attempts_made == 3
    assert len(done.errors) == 3


async def test_custom_backoff_strategy_registered_on_worker(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    calls: list[tuple[int, str]] = []
    starts: list[float] = []

    def strategy(attempts: int, err: BaseException, job: Job) -> int:
        calls.append((attempts, str(err)))
        return 120

    async def failing_once(job: Job) -> str:
        starts.append(time.monotonic())
        if len(starts) == 1:
            raise ValueError("first")
        return "ok"

    await start_worker(failing_once, backoff_strategies={"mine": strategy})
    job = await queue.add("custom", None, JobOptions(attempts=2, backoff=Backoff.custom("mine")))
    assert await job.wait_until_finished(10) == "ok"
    assert calls == [(1, "first")]
    assert starts[1] - starts[0] >= 0.115


async def test_unrecoverable_error_fails_at_once_and_runs_the_failed_hook(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    handled: asyncio.Queue[tuple[Job, BaseException]] = asyncio.Queue()
    runs = 0

    async def process(job: Job) -> None:
        nonlocal runs
        runs += 1
        raise UnrecoverableError("bad fiscal year")

    async def dead_letter(job: Job, err: BaseException) -> None:
        await handled.put((job, err))

    await start_worker(process, failed_job_handler=dead_letter)
    job = await queue.add("unrecoverable", {"fy": 1999}, JobOptions(attempts=5))
    got, err = await asyncio.wait_for(handled.get(), 10)
    assert got.id == job.id
    assert got.data == {"fy": 1999}
    assert isinstance(err, UnrecoverableError)
    assert runs == 1
    assert await queue.get_job_state(job.id) == "failed"
    failed = await queue.get_jobs("failed")
    assert [j.failed_reason for j in failed] == ["bad fiscal year"]


async def test_worker_serves_priorities_before_plain_jobs(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    order: list[str] = []
    await queue.pause()
    await queue.add("plain-1")
    await queue.add("low", None, JobOptions(priority=50))
    await queue.add("high", None, JobOptions(priority=1))
    await queue.add("plain-2")
    last = await queue.add("mid", None, JobOptions(priority=10))

    async def process(job: Job) -> None:
        order.append(job.name)

    await start_worker(process, concurrency=1)
    await queue.resume()
    await (await queue.get_jobs("paused"))[-1].wait_until_finished(10)
    assert last.id
    assert order == ["high", "mid", "low", "plain-1", "plain-2"]


async def test_delayed_job_runs_on_time(queue: Queue, start_worker: WorkerFactory) -> None:
    started = asyncio.get_running_loop().create_future()

    async def process(job: Job) -> None:
        started.set_result(time.monotonic())

    await start_worker(process)
    t0 = time.monotonic()
    await queue.add("later", None, JobOptions(delay=300))
    t1 = await asyncio.wait_for(started, 5)
    assert 0.295 <= t1 - t0 < 0.4


async def test_timeout_fails_the_attempt(queue: Queue, start_worker: WorkerFactory) -> None:
    async def slow(job: Job) -> None:
        await asyncio.sleep(30)

    await start_worker(slow)
    job = await queue.add("slow", None, JobOptions(timeout=100))
    with pytest.raises(JobFailedError, match="timeout of 100 ms"):
        await job.wait_until_finished(10)


async def test_rate_limit_is_shared_by_two_workers(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    starts: list[float] = []
    limit = RateLimit(max=4, duration=400)

    async def process(job: Job) -> None:
        starts.append(time.monotonic())

    await start_worker(process, concurrency=4, limiter=limit)
    await start_worker(process, concurrency=4, limiter=limit)
    jobs = await queue.add_bulk([("limited", {"i": i}) for i in range(12)])
    for j in jobs:
        await j.wait_until_finished(10)
    starts.sort()
    # 12 jobs at 4 per window need three windows: at least two full windows pass.
    assert starts[-1] - starts[0] >= 0.75
    # No more than 2 * max start in any window (fixed windows meet at a boundary).
    for i, t in enumerate(starts):
        assert sum(1 for u in starts[i:] if u - t < 0.38) <= 8


async def test_processor_signalled_rate_limit_spends_no_attempt(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    starts: list[float] = []

    async def process(job: Job) -> str:
        starts.append(time.monotonic())
        if len(starts) == 1:
            raise RateLimitedError(250, "upstream said 429")
        return "done"

    await start_worker(process)
    job = await queue.add("upstream", None, JobOptions(attempts=1))
    assert await job.wait_until_finished(10) == "done"
    assert starts[1] - starts[0] >= 0.245
    done = await job.refresh()
    assert done.attempts_made == 1
    assert done.attempts_started == 1


async def test_concurrency_runs_jobs_at_once(queue: Queue, start_worker: WorkerFactory) -> None:
    running = 0
    peak = 0
    all_in = asyncio.Event()

    async def process(job: Job) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 10:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), 10)
        running -= 1

    await start_worker(process, concurrency=10)
    jobs = await queue.add_bulk([("c", {"i": i}) for i in range(10)])
    for j in jobs:
        await j.wait_until_finished(10)
    assert peak == 10


async def test_corrupt_record_fails_that_job_only(
    queue: Queue, start_worker: WorkerFactory, redis_client: Redis
) -> None:
    await redis_client.hset(
        queue.keys.job("corrupt-1"), mapping={"n": "x", "d": b"{not json", "t": 1}
    )
    await redis_client.lpush(queue.keys.wait, "corrupt-1")

    async def process(job: Job) -> str:
        return "fine"

    await start_worker(process)
    good = await queue.add("good")
    assert await good.wait_until_finished(10) == "fine"
    with pytest.raises(JobFailedError, match="corrupt record"):
        await queue.wait_for_job("corrupt-1", 10)


async def test_unstorable_return_value_fails_the_job(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    async def process(job: Job) -> object:
        return object()

    await start_worker(process)
    job = await queue.add("returns-junk", None, JobOptions(attempts=3))
    with pytest.raises(JobFailedError, match="return value cannot be stored"):
        await job.wait_until_finished(10)
    assert (await job.refresh()).attempts_made == 1


async def test_retention_remove_on_complete_and_keep_last_n(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    async def process(job: Job) -> int:
        return 1

    await start_worker(process)
    gone = await queue.add("gone", None, JobOptions(remove_on_complete=True))
    assert await gone.wait_until_finished(10) == 1
    assert await queue.get_job(gone.id) is None
    kept = await queue.add_bulk(
        [("kept", {"i": i}, JobOptions(remove_on_complete=KeepJobs(count=2))) for i in range(5)]
    )
    # Jobs run in order (concurrency 1); the older ones are trimmed away.
    await kept[-1].wait_until_finished(10)
    completed = await queue.get_job_ids("completed")
    assert len(completed) == 2
    assert set(completed) <= {j.id for j in kept}
    assert await queue.get_metrics("completed", minutes=2) != [0, 0]
    assert sum(await queue.get_metrics("completed", minutes=2)) == 6


async def test_retry_failed_jobs_one_and_all(queue: Queue, start_worker: WorkerFactory) -> None:
    fail = True

    async def process(job: Job) -> str:
        if fail:
            raise RuntimeError("down")
        return "up"

    await start_worker(process)
    jobs = await queue.add_bulk([("r", {"i": i}) for i in range(3)])
    for j in jobs:
        with pytest.raises(JobFailedError):
            await j.wait_until_finished(10)
    fail = False
    await queue.retry(jobs[0].id)
    assert await jobs[0].wait_until_finished(10) == "up"
    assert await queue.retry_all_failed() == 2
    for j in jobs[1:]:
        assert await j.wait_until_finished(10) == "up"
    assert (await queue.get_job_counts()).failed == 0


async def test_wait_until_finished_times_out(queue: Queue) -> None:
    job = await queue.add("never")
    with pytest.raises(WaitTimeoutError):
        await job.wait_until_finished(0.2)


async def test_worker_registers_as_alive(queue: Queue, start_worker: WorkerFactory) -> None:
    async def process(job: Job) -> None:
        return None

    w = await start_worker(process)
    job = await queue.add("x")
    await job.wait_until_finished(10)
    assert await queue.workers_alive() == 1
    await w.close()
    assert await queue.workers_alive() == 0


async def test_process_pool_keeps_the_lease_while_the_child_computes(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    await start_worker(
        _procs.cpu_square, options=WorkerOptions(processes=1, lease=300, concurrency=2)
    )
    job = await queue.add("square", {"n": 12, "seconds": 1.0})
    assert await job.wait_until_finished(30) == {"square": 144, "pid_differs": 1}
    done = await job.refresh()
    assert done.stalls == 0
    assert done.attempts_started == 1


async def test_process_pool_error_in_child_fails_the_job(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    await start_worker(_procs.fails, options=WorkerOptions(processes=1))
    job = await queue.add("fails", {"n": 7})
    with pytest.raises(JobFailedError, match="bad input 7"):
        await job.wait_until_finished(30)
    assert "ValueError" in (await job.refresh()).errors[0].stacktrace


async def test_a_wake_up_during_a_claim_call_is_not_lost(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    """A job that arrives while the worker's claim call is in flight (whose reply
    says "nothing") still runs at once, not at the next heartbeat (lease / 3):
    the marker loop's pick-up, blocked beside the call, claims it."""
    ran = asyncio.Event()

    async def work(job: Job) -> None:
        ran.set()

    # Four slots: the pick-up holds two, the main loop's claim may ask for the others.
    worker = await start_worker(work, options=WorkerOptions(lease=60_000, concurrency=4))
    warm = await queue.add("warm-up", {})
    await queue.wait_for_job(warm.id, timeout=5)
    await _idle(worker)
    assert worker._pickup_want == 2
    ran.clear()
    in_flight, release = asyncio.Event(), asyncio.Event()
    real = worker._report_and_claim

    async def slow_claim(*args: Any) -> Any:
        reply = await real(*args)  # computed before the job below exists
        in_flight.set()
        await release.wait()
        return reply

    worker._report_and_claim = slow_claim  # type: ignore[method-assign,assignment]
    worker._maybe_work = True
    worker._wake.set()
    await in_flight.wait()
    await queue.add("arrives-mid-claim", {})
    try:
        await asyncio.wait_for(ran.wait(), 5)  # while the stale claim is still held
    finally:
        worker._report_and_claim = real  # type: ignore[method-assign]
        release.set()


async def test_jobs_claimed_while_the_reply_was_lost_are_handed_back_at_once(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    """The server runs a claim but the reply is lost (the network fails after the
    call reached Redis): the worker finds the job that names it and hands it back,
    instead of leaving it to a 60 s lease and a stall."""
    ran = asyncio.Event()
    runs: list[str] = []

    async def work(job: Job) -> None:
        runs.append(job.id)
        ran.set()

    # Waiting before the worker starts: its first claim is the main loop's, not a pick-up.
    job = await queue.add("x", {})
    worker = await start_worker(work, options=WorkerOptions(lease=60_000))
    real = worker._report_and_claim
    lost: list[str] = []

    async def lossy(*args: Any) -> Any:
        reply = await real(*args)
        if reply is not None and reply.jobs and not lost:
            lost.extend(cj.id for cj in reply.jobs)
            raise redis.exceptions.ConnectionError("reply lost on the way back")
        return reply

    worker._report_and_claim = lossy  # type: ignore[method-assign,assignment]
    await asyncio.wait_for(ran.wait(), 10)
    assert lost == [job.id]  # the first claim did take it, and its reply was dropped
    assert runs == [job.id]
    assert await queue.wait_for_job(job.id, timeout=5) is None
    stored = await queue.get_job(job.id)
    assert stored is not None
    assert stored.stalls == 0
    assert stored.attempts_made == 1


async def _idle(worker: Worker) -> None:
    """Until the worker's marker loop blocks with a claim behind its pop."""
    for _ in range(500):
        if worker._pickup_want and not worker._wake.is_set() and not worker._running:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the worker never went idle")


async def test_an_idle_worker_gets_a_new_job_with_its_wake_up(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    """The claim rides behind the marker's pop: no separate claim call between the
    add and the job's start."""
    claims_before_start: list[int] = []
    calls = 0

    async def work(job: Job) -> None:
        claims_before_start.append(calls)

    worker = await start_worker(work)
    real = worker._report_and_claim

    async def counted(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        return await real(*args)

    await _idle(worker)
    worker._report_and_claim = counted  # type: ignore[method-assign,assignment]
    job = await queue.add("x", {})
    assert await queue.wait_for_job(job.id, timeout=5) is None
    assert claims_before_start == [0]


async def test_a_pick_up_whose_reply_is_lost_hands_its_jobs_back(
    queue: Queue, start_worker: WorkerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pop and its claim ran, the reply never came: the worker hands the job back
    once it reaches Redis again, and runs it without a stall."""
    runs: list[str] = []
    ran = asyncio.Event()

    async def work(job: Job) -> None:
        runs.append(job.id)
        ran.set()

    real = QueueScripts.pop_then_claim
    lost: list[str] = []

    async def lossy(self: QueueScripts, *args: Any, **kwargs: Any) -> Any:
        popped, reply = await real(self, *args, **kwargs)
        if reply is not None and reply.jobs and not lost:
            lost.extend(cj.id for cj in reply.jobs)
            raise redis.exceptions.ConnectionError("reply lost on the way back")
        return popped, reply

    monkeypatch.setattr(QueueScripts, "pop_then_claim", lossy)
    worker = await start_worker(work, options=WorkerOptions(lease=60_000))
    await _idle(worker)
    job = await queue.add("x", {})
    await asyncio.wait_for(ran.wait(), 10)
    assert lost == [job.id]
    assert runs == [job.id]
    assert await queue.wait_for_job(job.id, timeout=5) is None
    stored = await queue.get_job(job.id)
    assert stored is not None
    assert (stored.stalls, stored.attempts_made) == (0, 1)


async def test_a_pick_up_cut_by_shutdown_hands_its_jobs_back(
    queue: Queue, start_worker: WorkerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closing while a pick-up's claim has run but its reply is not in: the job goes
    back to waiting, not to a 60 s lease and a stall."""
    real = QueueScripts.pop_then_claim
    claimed = asyncio.Event()

    async def reply_never_comes(self: QueueScripts, *args: Any, **kwargs: Any) -> Any:
        popped, reply = await real(self, *args, **kwargs)
        if reply is not None and reply.jobs:
            claimed.set()
            await asyncio.Event().wait()  # cancelled by close()
        return popped, reply

    monkeypatch.setattr(QueueScripts, "pop_then_claim", reply_never_comes)
    worker = await start_worker(lambda job: None, options=WorkerOptions(lease=60_000))
    await _idle(worker)
    job = await queue.add("x", {})
    await asyncio.wait_for(claimed.wait(), 5)
    assert (await queue.get_job_counts()).active == 1
    await asyncio.wait_for(worker.close(), 10)
    counts = await queue.get_job_counts()
    assert (counts.active, counts.waiting) == (0, 1)
    stored = await queue.get_job(job.id)
    assert stored is not None
    assert (stored.stalls, stored.attempts_made) == (0, 0)


@pytest.mark.parametrize("prefetch", [0, 4])
async def test_prefetch_holds_claimed_jobs_beyond_the_slots_only_when_asked(
    queue: Queue, start_worker: WorkerFactory, prefetch: int
) -> None:
    """Short jobs (1-50 ms) let a worker hold up to ``prefetch`` claimed jobs ready to
    start; with 0 the queue never shows more active jobs than the worker's slots."""
    peak_active = 0

    async def process(job: Job) -> None:
        nonlocal peak_active
        peak_active = max(peak_active, (await queue.get_job_counts()).active)
        await asyncio.sleep(0.005)

    await start_worker(process, options=WorkerOptions(concurrency=2, prefetch=prefetch))
    jobs = await queue.add_bulk([("short", {"i": i}) for i in range(60)])
    for j in jobs:
        await j.wait_until_finished(20)
    if prefetch == 0:
        assert peak_active <= 2
    else:
        assert 2 < peak_active <= 2 + prefetch


async def test_a_one_slot_worker_holds_no_job_beyond_the_one_it_runs(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    """With concurrency 1 (isolation: a job that kills its worker takes no other job
    with it, and no innocent job uses up its stall allowance) nothing is prefetched,
    even for short jobs."""
    peak_active = 0

    async def process(job: Job) -> None:
        nonlocal peak_active
        peak_active = max(peak_active, (await queue.get_job_counts()).active)
        await asyncio.sleep(0.005)

    await start_worker(process, options=WorkerOptions(concurrency=1))
    jobs = await queue.add_bulk([("short", {"i": i}) for i in range(40)])
    for j in jobs:
        await j.wait_until_finished(20)
    assert peak_active == 1


async def test_prefetched_jobs_are_handed_back_at_shutdown_and_none_is_lost(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    seen: list[int] = []
    many_in = asyncio.Event()

    async def process(job: Job) -> None:
        seen.append(job.data["i"])
        if len(seen) >= 30:
            many_in.set()
        await asyncio.sleep(0.005)

    worker = await start_worker(process, options=WorkerOptions(concurrency=2, prefetch=6))
    await queue.add_bulk([("short", {"i": i}) for i in range(200)])
    await asyncio.wait_for(many_in.wait(), 20)
    await worker.close(grace=5)
    counts = await queue.get_job_counts()
    assert counts.active == 0  # held jobs went back to the queue, none kept a lease
    first_pass = len(set(seen))
    assert counts.waiting == 200 - counts.completed
    assert counts.completed <= first_pass
    await start_worker(process, options=WorkerOptions(concurrency=2, prefetch=6))
    for _ in range(2000):
        if (await queue.get_job_counts()).completed == 200:
            break
        await asyncio.sleep(0.01)
    assert sorted(set(seen)) == list(range(200))


def test_prefetch_must_not_be_negative() -> None:
    from jobq.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="prefetch"):
        WorkerOptions(prefetch=-1)


async def test_connect_registers_the_worker_and_claims_nothing_until_run(
    queue: Queue, redis_url: str
) -> None:
    seen: list[str] = []

    async def process(job: Job) -> None:
        seen.append(job.id)

    job = await queue.add("early", None)
    worker = Worker(queue.name, process, connection=redis_url, install_signal_handlers=False)
    await worker.connect()
    assert [w.id for w in await queue.get_workers()] == [worker.id]
    assert await job.get_state() == "waiting"  # registered, nothing claimed
    await worker.connect()  # again: nothing more
    runner = asyncio.create_task(worker.run())
    try:
        await job.wait_until_finished(10)
        assert seen == [job.id]
    finally:
        await worker.close()
        await runner
    assert await queue.get_workers() == []


async def test_connect_loads_the_scripts_a_worker_calls(
    queue: Queue, redis_url: str, redis_client: Redis
) -> None:
    shas = [script_source(name)[1] for name in ("claim", "finish", "extend")]
    await redis_client.script_flush()  # as a new or restarted server has none

    async def process(job: Job) -> None:
        raise AssertionError("never run")

    worker = Worker(queue.name, process, connection=redis_url, install_signal_handlers=False)
    await worker.connect()
    try:
        assert await redis_client.script_exists(*shas) == [True, True, True]
    finally:
        await worker.close()


async def test_a_worker_connected_then_closed_unregisters_without_running(
    queue: Queue, redis_url: str
) -> None:
    async def process(job: Job) -> None:
        raise AssertionError("never run")

    worker = Worker(queue.name, process, connection=redis_url, install_signal_handlers=False)
    await worker.connect()
    assert len(await queue.get_workers()) == 1
    await worker.close()
    assert await queue.get_workers() == []
    with pytest.raises(RuntimeError, match="is not open"):
        worker.queue.scripts  # noqa: B018 - the worker closed its queue and connections
