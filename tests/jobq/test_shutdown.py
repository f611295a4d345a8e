"""Graceful shutdown, BaseException in processors, and riding out a server restart.

A stopping worker lets running jobs finish within the grace period and hands
the rest back at once (no attempt spent, a new fencing token), so they do not
wait for their leases to run out. Whatever a processor raises, its job never
stays active.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from jobq import Backoff, Job, JobFailedError, JobOptions, Queue, QueueEvent, Worker, WorkerOptions
from jobq.server import RedisServerProcess
from tests.conftest import QueueFactory, WorkerFactory
from tests.jobq._worker_proc import WorkerProcess

HANDED_BACK = "handed back by a stopping worker"


# -- helpers -------------------------------------------------------------------------


async def job_events(queue: Queue, job_id: str) -> list[QueueEvent]:
    """The events of one job, oldest first, read straight from the stream."""
    raw: Any = await queue.client.xrange(queue.keys.events)
    events = [e for sid, fields in raw for e in QueueEvent.from_entry(sid, fields)]
    return [e for e in events if e.job_id == job_id]


async def stored_token(queue: Queue, job_id: str) -> int:
    raw: Any = await queue.client.hget(queue.keys.job(job_id), "tk")
    return int(raw)


async def assert_handed_back(queue: Queue, job_id: str, token: str | None) -> None:
    """The job is waiting again, no attempt spent, its old token fenced off."""
    assert await queue.get_job_state(job_id) == "waiting"
    assert await queue.get_job_ids("active") == []
    stored = await queue.get_job(job_id)
    assert stored is not None
    assert stored.attempts_started == 0  # as before its claim
    assert stored.attempts_made == 0
    assert token is not None
    assert await stored_token(queue, job_id) == int(token) + 1
    waiting = [e for e in await job_events(queue, job_id) if e.event == "waiting"]
    assert [e.fields.get("reason") for e in waiting] == [HANDED_BACK]


# -- in-process graceful shutdown ----------------------------------------------------


async def test_close_finishes_short_jobs_and_hands_long_ones_back_at_once(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    started = {"short": asyncio.Event(), "long": asyncio.Event()}
    short_may_finish = asyncio.Event()
    long_cancelled = asyncio.Event()
    seen: dict[str, Job] = {}

    async def processor(j: Job) -> str:
        seen[j.name] = j
        started[j.name].set()
        if j.name == "short":
            await short_may_finish.wait()
            return "short done"
        try:
            await asyncio.Event().wait()  # never set
        except asyncio.CancelledError:
            long_cancelled.set()
            raise
        return "unreachable"

    # A 30 s lease: a job found waiting right after close was handed back, not expired.
    worker = await start_worker(processor, options=WorkerOptions(concurrency=2))
    short = await queue.add("short")
    long = await queue.add("long")
    unclaimed = await queue.get_job(long.id)
    assert unclaimed is not None
    assert unclaimed.attempts_started == 0
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started.values())), 10)
    assert seen["long"].attempts_started == 1

    t0 = time.monotonic()
    closing = asyncio.create_task(worker.close(grace=0.5))
    await asyncio.sleep(0)  # close() has begun
    assert worker.closing
    short_may_finish.set()  # well within the grace period
    await asyncio.wait_for(closing, 10)
    elapsed = time.monotonic() - t0

    assert 0.45 <= elapsed < 3.0, elapsed  # the long job had its full grace period
    assert await queue.get_job_state(short.id) == "completed"
    assert (await short.refresh()).return_value == "short done"
    assert long_cancelled.is_set()
    await assert_handed_back(queue, long.id, seen["long"].token)
    assert worker.running == 0


async def test_close_hands_back_the_job_of_a_plain_def_processor(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    started = threading.Event()
    release = threading.Event()
    returned = threading.Event()
    seen: list[Job] = []

    def blocking(j: Job) -> str:
        seen.append(j)
        started.set()
        release.wait(30)
        returned.set()
        return "too late"

    try:
        worker = await start_worker(blocking)
        job = await queue.add("blocking")
        assert await asyncio.to_thread(started.wait, 10)
        t0 = time.monotonic()
        await asyncio.wait_for(worker.close(grace=0.3), 10)
        elapsed = time.monotonic() - t0
        assert 0.25 <= elapsed < 3.0, elapsed
        [running] = seen
        await assert_handed_back(queue, job.id, running.token)
    finally:
        release.set()
    # The thread ends after the hand-back; what it returns is thrown away.
    assert await asyncio.to_thread(returned.wait, 10)
    await asyncio.sleep(0.05)  # let a (wrong) late report reach the server
    assert await queue.get_job_state(job.id) == "waiting"
    assert (await job.refresh()).return_value is None


# -- a real process stopped by signals -----------------------------------------------


async def test_sigterm_hands_the_running_job_back_within_the_grace_period(
    queue: Queue, queue_name: str, redis_url: str
) -> None:
    job = await queue.add("long")
    grace = 1.0
    async with WorkerProcess(redis_url, queue_name, grace_ms=int(grace * 1000)) as child:
        await child.expect(f"started {job.id}")
        claimed = await stored_token(queue, job.id)
        t0 = time.monotonic()
        child.signal(signal.SIGTERM)
        code = await child.wait(grace + 10)
        elapsed = time.monotonic() - t0
        output = await child.read_rest()
    assert code == 0, output
    assert grace - 0.05 <= elapsed < grace + 2.5, (elapsed, output)
    assert f"cancelled {job.id}" in output
    assert "exited" in output.splitlines()
    await assert_handed_back(queue, job.id, str(claimed))


async def test_second_sigterm_cuts_the_grace_period_short(
    queue: Queue, queue_name: str, redis_url: str
) -> None:
    job = await queue.add("long")
    async with WorkerProcess(redis_url, queue_name, grace_ms=60_000) as child:
        await child.expect(f"started {job.id}")
        claimed = await stored_token(queue, job.id)
        child.signal(signal.SIGTERM)
        await child.expect("closing")
        assert await queue.get_job_state(job.id) == "active"  # still within its grace
        t0 = time.monotonic()
        child.signal(signal.SIGTERM)
        code = await child.wait(20)
        elapsed = time.monotonic() - t0
        output = await child.read_rest()
    assert code == 0, output
    assert elapsed < 5.0, (elapsed, output)  # not the 60 s grace period
    assert "second SIGTERM" in output
    await assert_handed_back(queue, job.id, str(claimed))


async def test_two_stop_signals_arriving_together_cut_the_grace_period_short(
    queue: Queue, queue_name: str, redis_url: str
) -> None:
    job = await queue.add("long")
    async with WorkerProcess(redis_url, queue_name, grace_ms=60_000) as child:
        await child.expect(f"started {job.id}")
        # Stopped, the child collects both signals; resumed, its event loop reads
        # them from its wakeup fd together (a Ctrl-C right after a kill, say).
        child.signal(signal.SIGSTOP)
        child.signal(signal.SIGTERM)
        child.signal(signal.SIGINT)
        child.signal(signal.SIGCONT)
        code = await child.wait(8)
        output = await child.read_rest()
    assert code == 0, output
    await assert_handed_back(queue, job.id, str(await stored_token(queue, job.id) - 1))


# -- BaseException raised by processors ------------------------------------------------

Scenario = Callable[[], Coroutine[Any, Any, dict[str, Any]]]


def _run_contained(scenario: Scenario) -> tuple[dict[str, Any] | None, BaseException | None]:
    """Run ``scenario`` on a fresh event loop (in this thread) and catch whatever escapes.

    A KeyboardInterrupt or SystemExit that escaped the worker would otherwise
    stop the test session's event loop instead of failing one test.
    """
    try:
        return asyncio.run(scenario()), None
    except BaseException as exc:
        return None, exc


async def run_contained(scenario: Scenario) -> dict[str, Any]:
    result, escaped = await asyncio.to_thread(_run_contained, scenario)
    assert escaped is None, f"{escaped!r} escaped the worker's event loop"
    assert result is not None
    return result


def worker_stops_itself(
    redis_url: str, queue_name: str, processor: Any, options: JobOptions | None
) -> Scenario:
    """A scenario: add one job, run a worker whose processor raises, observe."""

    async def scenario() -> dict[str, Any]:
        async with Queue(queue_name, connection=redis_url) as queue:
            job = await queue.add("doomed", None, options)
            worker = Worker(
                queue_name, processor, connection=redis_url, install_signal_handlers=False
            )
            run = asyncio.create_task(worker.run())
            try:
                # The worker must stop by itself; nobody calls close().
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(run), 15)
                returned = run.done() and not run.cancelled() and run.exception() is None
            finally:
                if not run.done():
                    await worker.close(grace=0)
                    with contextlib.suppress(BaseException):
                        await run
            stored = await job.refresh()
            return {
                "returned": returned,
                "closing": worker.closing,
                "state": await queue.get_job_state(job.id),
                "active": await queue.get_job_ids("active"),
                "job": stored,
            }

    return scenario


def _raise_keyboard_interrupt(j: Job) -> None:
    raise KeyboardInterrupt


def _raise_system_exit(j: Job) -> None:
    raise SystemExit("the processor asked to exit")


async def _async_keyboard_interrupt(j: Job) -> None:
    raise KeyboardInterrupt


async def _async_system_exit(j: Job) -> None:
    raise SystemExit("the processor asked to exit")


INTERRUPTS = [
    pytest.param(
        _async_keyboard_interrupt, "KeyboardInterrupt", "KeyboardInterrupt", id="async-KI"
    ),
    pytest.param(
        _async_system_exit, "SystemExit", "the processor asked to exit", id="async-SystemExit"
    ),
    pytest.param(_raise_keyboard_interrupt, "KeyboardInterrupt", "KeyboardInterrupt", id="def-KI"),
    pytest.param(
        _raise_system_exit, "SystemExit", "the processor asked to exit", id="def-SystemExit"
    ),
]


@pytest.mark.parametrize(("processor", "exc_type", "reason"), INTERRUPTS)
async def test_interrupt_in_processor_fails_the_job_and_stops_the_worker(
    redis_url: str, queue_name: str, processor: Any, exc_type: str, reason: str
) -> None:
    seen = await run_contained(worker_stops_itself(redis_url, queue_name, processor, None))
    assert seen["returned"]
    assert seen["closing"]
    assert seen["state"] == "failed"
    assert seen["active"] == []
    job: Job = seen["job"]
    assert job.attempts_made == 1
    assert job.failed_reason == reason
    assert [e.type for e in job.errors] == [exc_type]


@pytest.mark.parametrize(("processor", "exc_type", "reason"), INTERRUPTS)
async def test_interrupt_in_processor_with_attempts_left_puts_the_job_back(
    redis_url: str, queue_name: str, processor: Any, exc_type: str, reason: str
) -> None:
    opts = JobOptions(attempts=3)
    seen = await run_contained(worker_stops_itself(redis_url, queue_name, processor, opts))
    assert seen["returned"]
    assert seen["state"] == "waiting"  # for a retry; the stopping worker did not rerun it
    assert seen["active"] == []
    job: Job = seen["job"]
    assert job.attempts_made == 1
    assert job.failed_reason == reason


@pytest.mark.parametrize(
    ("processor", "exc_type"),
    [
        pytest.param(_async_keyboard_interrupt, "KeyboardInterrupt", id="KI"),
        pytest.param(_async_system_exit, "SystemExit", id="SystemExit"),
    ],
)
async def test_interrupt_in_async_processor_of_a_job_with_a_timeout(
    redis_url: str, queue_name: str, processor: Any, exc_type: str
) -> None:
    opts = JobOptions(timeout=30_000)
    seen = await run_contained(worker_stops_itself(redis_url, queue_name, processor, opts))
    assert seen["returned"]
    assert seen["state"] == "failed"
    job: Job = seen["job"]
    assert job.attempts_made == 1
    assert [e.type for e in job.errors] == [exc_type]


async def test_cancelled_error_raised_by_processor_fails_the_attempt_only(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    async def processor(j: Job) -> str:
        if j.name == "cancels-itself":
            raise asyncio.CancelledError
        return "fine"

    worker = await start_worker(processor)
    once = await queue.add("cancels-itself")
    with pytest.raises(JobFailedError, match="CancelledError"):
        await once.wait_until_finished(timeout=10)
    assert await queue.get_job_state(once.id) == "failed"
    failed = await once.refresh()
    assert failed.attempts_made == 1
    assert failed.failed_reason == "CancelledError"
    assert [e.type for e in failed.errors] == ["CancelledError"]

    retried = await queue.add(
        "cancels-itself", None, JobOptions(attempts=2, backoff=Backoff.fixed(60_000))
    )
    deadline = time.monotonic() + 10
    while await queue.get_job_state(retried.id) != "delayed":
        assert time.monotonic() < deadline, await queue.get_job_state(retried.id)
        await asyncio.sleep(0.01)
    assert (await retried.refresh()).attempts_made == 1

    # The worker is not shutting down: it goes on with the next job.
    assert not worker.closing
    after = await queue.add("ordinary")
    assert await after.wait_until_finished(timeout=10) == "fine"
    assert await queue.get_job_ids("active") == []


# -- the server restarts under a running worker --------------------------------------


async def test_worker_reconnects_by_itself_after_the_server_restarts(
    queue_name: str, make_queue: QueueFactory
) -> None:
    server = RedisServerProcess(config={"appendonly": "yes", "appendfsync": "always"})
    server.start()
    processed: list[str] = []

    async def processor(j: Job) -> str:
        processed.append(j.id)
        return f"done {j.id}"

    worker = Worker(
        queue_name,
        processor,
        connection=server.url,
        install_signal_handlers=False,
        options=WorkerOptions(block_timeout=2_000),
    )
    run = asyncio.create_task(worker.run())
    try:
        async with Queue(queue_name, connection=server.url) as before:
            first = await before.add("first")
            assert await first.wait_until_finished(timeout=10) == f"done {first.id}"

        server.kill()
        cpu0 = time.process_time()
        await asyncio.sleep(2.0)  # the outage
        outage_cpu = time.process_time() - cpu0
        assert not run.done()
        server.restart()

        async with Queue(queue_name, connection=server.url) as after:
            assert await after.get_job_state(first.id) == "completed"  # the data survived
            second = await after.add("second")
            assert await second.wait_until_finished(timeout=15) == f"done {second.id}"
        assert processed == [first.id, second.id]
        assert worker.jobs_processed == 2
        assert not run.done()
        # Reconnecting backs off: no busy loop while the server is gone.
        assert outage_cpu < 0.5, outage_cpu
    finally:
        if not run.done():
            await worker.close(grace=0)
        with contextlib.suppress(BaseException):
            await run
        server.stop()


async def test_worker_started_before_redis_waits_for_it(queue_name: str) -> None:
    """A worker whose server is not up yet keeps trying, then works once it is."""
    from jobq import Queue, Worker
    from jobq.server import RedisServerProcess

    server = RedisServerProcess(tcp=True)
    server.start()
    url = server.url
    server.kill()  # the port is known, nothing listens on it
    done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def process(job: Job) -> str:
        done.set_result(job.name)
        return "ok"

    loop = asyncio.get_running_loop()
    retrying = asyncio.Event()

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "reconnecting" in record.getMessage():
                loop.call_soon_threadsafe(retrying.set)

    handler = Seen()
    logging.getLogger("jobq.worker").addHandler(handler)
    worker = Worker(queue_name, process, connection=url, install_signal_handlers=False)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(retrying.wait(), 20)  # it met the dead port and waits
        assert not task.done()
        server.restart()
        async with Queue(queue_name, connection=url) as q:
            await q.add("after-start")
        assert await asyncio.wait_for(done, 20) == "after-start"
    finally:
        logging.getLogger("jobq.worker").removeHandler(handler)
        await worker.close(grace=0)
        await task
        server.stop()
