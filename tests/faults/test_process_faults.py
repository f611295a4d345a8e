"""Worker processes that die or are stopped: scenarios 1 (SIGKILL), 2 (SIGTERM), 3 (poison pill)."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from typing import Any

import pytest

from jobq import DeadLetters, JobOptions, Queue
from jobq.server import RedisServerProcess
from tests.faults._checker import ExecutionLog, Producer, add_row, analyse, scaled
from tests.faults._fault_worker import FaultWorker
from tests.faults.conftest import ServerFactory, WorkerSpawner

KEEP_ALL = JobOptions(remove_on_complete=False)


async def wait_for_count(
    queue: Queue, key: str, target: int, timeout: float, *, until: float | None = None
) -> bool:
    """Wait until ZSET ``key`` holds ``target`` members (True) or ``until`` (a
    ``time.monotonic()``) passes (False); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    client: Any = queue.client
    while True:
        if await client.zcard(key) >= target:
            return True
        now = time.monotonic()
        if until is not None and now >= until:
            return False
        assert now < deadline, f"{key}: {await client.zcard(key)} of {target} after {timeout} s"
        await asyncio.sleep(0.05)


# -- 1. SIGKILL a random worker every ~2 s ------------------------------------------


async def test_01_sigkill_random_worker_every_two_seconds(
    private_server: ServerFactory,
    spawn_worker: WorkerSpawner,
    execution_log: ExecutionLog,
    fault_queue: str,
) -> None:
    started = time.monotonic()
    server = private_server()
    lease_ms = 2_000
    n = scaled(5_000)
    # No prefetch: a recovered job held (not yet started) by the next victim would
    # die unseen with it, and its recovery be measured from the kill before.
    opts: dict[str, object] = {
        "lease_ms": lease_ms,
        "max_stalled": 20,
        "concurrency": 4,
        "prefetch": 0,
    }
    rng = random.Random(1)
    killed: dict[int, float] = {}
    async with Queue(fault_queue, connection=server.url) as queue:
        producer = Producer(queue)
        await producer.add_many(n, {"sleep": 0.04}, options=KEEP_ALL)
        workers = [await spawn_worker(server.url, **opts) for _ in range(4)]
        while not await wait_for_count(
            queue, queue.keys.completed, n, 120, until=time.monotonic() + 2.0
        ):
            victim = workers.pop(rng.randrange(len(workers)))
            victim.signal(signal.SIGKILL)
            killed[victim.pid] = time.monotonic()
            assert await victim.wait(10) == -signal.SIGKILL
            workers.append(await spawn_worker(server.url, wait_ready=False, **opts))
        report = await analyse(queue, producer.acked, execution_log, killed=killed)
    add_row(
        "1 SIGKILL a worker every 2 s",
        jobs=n,
        workers=4,
        faults=f"{len(killed)} SIGKILL",
        started=started,
        report=report,
    )
    assert len(killed) >= 3, "the run ended before enough kills to mean anything"
    assert report.lost == [], report.describe()
    assert report.wrong_state == {}, report.describe()
    assert report.unexplained == {}, report.describe()
    assert report.recovery, "no job was running in a killed worker"
    # The lease runs out at most lease after the kill (the last heartbeat renewed
    # it); another worker notices at its next claim or heartbeat (lease / 3).
    bound = lease_ms / 1000 * (1 + 1 / 3) + 1.0
    assert report.max_recovery <= bound, report.describe()


# -- 2. SIGTERM with short and long jobs ------------------------------------------------


async def test_02_sigterm_finishes_short_jobs_and_hands_long_ones_back_at_once(
    private_server: ServerFactory,
    spawn_worker: WorkerSpawner,
    execution_log: ExecutionLog,
    fault_queue: str,
) -> None:
    started = time.monotonic()
    server = private_server()
    lease_ms, grace_ms = 20_000, 1_500
    async with Queue(fault_queue, connection=server.url) as queue:
        producer = Producer(queue)
        first = await spawn_worker(server.url, lease_ms=lease_ms, grace_ms=grace_ms, concurrency=4)
        short = await producer.add_many(2, {"sleep": 0.5}, options=KEEP_ALL)
        long = await producer.add_many(2, {"sleep": 600}, options=KEEP_ALL)
        while len(execution_log.starts()) < 4:  # noqa: ASYNC110 - a file, nothing to await
            await asyncio.sleep(0.02)
        first.signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert await first.wait(grace_ms / 1000 + 5) == 0, first.output()
        exit_s = time.monotonic() - signalled
        assert first.said("exited"), first.output()
        # A fresh worker gets the long jobs at once, long before their leases run out.
        await spawn_worker(server.url, lease_ms=lease_ms, concurrency=4, max_sleep=0.05)
        await wait_for_count(queue, queue.keys.completed, 4, 30)
        pickup = max(
            runs[1].at - signalled
            for job_id, runs in execution_log.starts().items()
            if job_id in long
        )
        report = await analyse(queue, producer.acked, execution_log, killed={})
        states = {j: await queue.get_job_state(j) for j in short + long}
        by_first = {e.job_id for e in execution_log.read() if e.kind == "D" and e.pid == first.pid}
    add_row(
        "2 SIGTERM (2 short, 2 long jobs)",
        jobs=4,
        workers=2,
        faults="1 SIGTERM",
        started=started,
        report=report,
        explained=report.duplicate_count,  # the long jobs, handed back unfinished
        max_recovery_s=pickup,
    )
    assert states == dict.fromkeys(short + long, "completed")
    assert by_first == set(short), "the short jobs finish in the stopping worker"
    assert exit_s <= grace_ms / 1000 + 1.5, f"exit took {exit_s:.2f} s"
    # Handed back, not left to expire: picked up well before the 20 s lease.
    assert pickup < grace_ms / 1000 + 5, f"long jobs picked up {pickup:.2f} s after SIGTERM"
    assert report.lost == [], report.describe()
    # The long jobs ran twice (handed back unfinished): that is the promise, not a fault.
    assert set(report.duplicates) == set(long), report.describe()
    handed_back = [line for line in first.lines if "hands 2 unfinished job(s) back" in line]
    assert handed_back, first.output()


# -- 3. a poison pill, and a job that eats all memory ------------------------------------


async def _supervise(
    spawn_worker: WorkerSpawner,
    url: str,
    count: int,
    opts: dict[str, object],
    killed: dict[int, float],
    stop: asyncio.Event,
) -> list[FaultWorker]:
    """Keep ``count`` workers alive (restart each one that dies) until ``stop``."""
    workers = [await spawn_worker(url, **opts) for _ in range(count)]
    all_workers = list(workers)
    while not stop.is_set():
        waits = {asyncio.ensure_future(w.proc.wait()): w for w in workers}
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({*waits, stopper}, return_when="FIRST_COMPLETED")
        for fut in waits:
            if fut not in done:
                fut.cancel()
        stopper.cancel()
        for fut in done:
            dead = waits.get(fut)
            if dead is None:
                continue
            killed[dead.pid] = time.monotonic()
            workers.remove(dead)
            fresh = await spawn_worker(url, wait_ready=False, **opts)
            workers.append(fresh)
            all_workers.append(fresh)
    return all_workers


async def _poison_run(
    server: RedisServerProcess,
    spawn_worker: WorkerSpawner,
    execution_log: ExecutionLog,
    fault_queue: str,
    poison: dict[str, Any],
    extra_opts: dict[str, object],
) -> tuple[Any, str, str, int, dict[int, float]]:
    """Run 1 poison job among normal ones through 2 supervised workers; the report,
    the poison job's id, its dead-letter reason and how many times it ran."""
    max_stalled = 2
    opts: dict[str, object] = {
        "lease_ms": 1_000,
        "max_stalled": max_stalled,
        # One job at a time: a death then orphans the poison job alone (with more,
        # its neighbours die with it and may use up their own stall allowance).
        "concurrency": 1,
        **extra_opts,
    }
    killed: dict[int, float] = {}
    stop = asyncio.Event()
    n = scaled(300)
    async with Queue(fault_queue, connection=server.url) as queue:
        await queue.set_dead_letter_queue("dead-letter")
        producer = Producer(queue)
        await producer.add_many(n // 2, {"sleep": 0.01}, options=KEEP_ALL)
        [poison_id] = await producer.add_many(1, poison, options=KEEP_ALL)
        await producer.add_many(n - n // 2, {"sleep": 0.01}, options=KEEP_ALL)
        supervisor = asyncio.create_task(
            _supervise(spawn_worker, server.url, 2, opts, killed, stop)
        )
        async with DeadLetters(connection=server.url) as dl:
            entry_id = f"{fault_queue}:{poison_id}"
            deadline = time.monotonic() + 60
            while (entry := await dl.get(entry_id)) is None:
                if time.monotonic() > deadline:
                    job = await queue.get_job(poison_id)
                    raise AssertionError(
                        "the poison job never reached the dead letters: "
                        f"{await queue.get_job_state(poison_id)} "
                        f"{job and (job.failed_reason, job.stalls, job.attempts_made)}\n"
                        f"{[e for e in execution_log.read() if e.job_id == poison_id]}"
                    )
                assert not supervisor.done(), supervisor
                await asyncio.sleep(0.05)
        await wait_for_count(queue, queue.keys.completed, n, 60)
        stop.set()
        await supervisor
        report = await analyse(
            queue, producer.acked, execution_log, killed=killed, dead_letter_queue="dead-letter"
        )
    runs = len(execution_log.starts()[poison_id])
    return report, poison_id, entry.failed_reason or "", runs, killed


async def test_03a_poison_pill_that_kills_its_worker_is_dead_lettered(
    private_server: ServerFactory,
    spawn_worker: WorkerSpawner,
    execution_log: ExecutionLog,
    fault_queue: str,
) -> None:
    started = time.monotonic()
    report, poison_id, reason, runs, killed = await _poison_run(
        private_server(), spawn_worker, execution_log, fault_queue, {"die": True}, {}
    )
    add_row(
        "3a poison pill (os._exit)",
        jobs=report.jobs,
        workers=2,
        faults=f"{len(killed)} worker deaths",
        started=started,
        report=report,
    )
    assert runs == 3, f"max_stalled=2: the job may kill 3 workers, it ran {runs} times"
    assert len(killed) == 3
    assert "stalled more than the allowed 2 time(s)" in reason, reason
    assert report.dead_lettered == {poison_id}, report.describe()
    assert report.lost == [], report.describe()
    assert report.wrong_state == {}, report.describe()
    assert len(report.completed) == report.jobs - 1
    assert report.unexplained == {}, report.describe()


@pytest.mark.parametrize(
    ("eat", "row"),
    [
        # The hog lets go of its memory before raising.
        (True, "3b memory hog (RLIMIT_AS 256 MiB)"),
        # The hog's frames (and its memory) live on in the traceback while the worker
        # records the failure: formatting the stack may itself run out of memory, and
        # the heartbeat may meet MemoryError too; the failure is still recorded once.
        ("keep", "3c memory hog keeping its memory"),
    ],
    ids=["03b-lets-go", "03c-keeps-it"],
)
async def test_03b_job_that_exhausts_memory_fails_and_workers_live_on(
    private_server: ServerFactory,
    spawn_worker: WorkerSpawner,
    execution_log: ExecutionLog,
    fault_queue: str,
    eat: object,
    row: str,
) -> None:
    started = time.monotonic()
    # RLIMIT_AS in the child: the allocation fails there, never on the machine.
    report, poison_id, reason, runs, killed = await _poison_run(
        private_server(),
        spawn_worker,
        execution_log,
        fault_queue,
        {"eat": eat},
        {"rlimit_as_mb": 256},
    )
    add_row(
        row,
        jobs=report.jobs,
        workers=2,
        faults=f"1 job out of memory, {len(killed)} worker deaths",
        started=started,
        report=report,
    )
    # Python turns the failed allocation into MemoryError: the attempt fails with
    # that reason and the worker survives (a kernel OOM kill would be scenario 3a).
    assert "MemoryError" in reason, reason
    assert runs == 1, (runs, killed)
    assert killed == {}, (runs, killed)
    assert report.dead_lettered == {poison_id}, report.describe()
    assert report.lost == [], report.describe()
    assert report.wrong_state == {}, report.describe()
    assert len(report.completed) == report.jobs - 1
    assert report.unexplained == {}, report.describe()
