"""Workers that misbehave while alive: scenario 6 (a blocked event loop), 8 (skewed clocks)."""

from __future__ import annotations

import time
from typing import Any

from jobq import JobOptions, Queue, QueueEvent
from tests.faults._checker import ExecutionLog, Producer, add_row, analyse, scaled
from tests.faults.conftest import ServerFactory, WorkerSpawner
from tests.faults.test_process_faults import wait_for_count

KEEP_ALL = JobOptions(remove_on_complete=False)


async def events_of(queue: Queue, job_id: str) -> list[QueueEvent]:
    """The stream's events of one job, oldest first."""
    raw: Any = await queue.client.xrange(queue.keys.events)
    return [e for sid, f in raw for e in QueueEvent.from_entry(sid, f) if e.job_id == job_id]


# -- 6. a processor that blocks the event loop longer than the lease ----------------


async def test_06_blocked_event_loop_loses_the_lease_and_its_late_result_is_refused(
    private_server: ServerFactory,
    spawn_worker: WorkerSpawner,
    execution_log: ExecutionLog,
    fault_queue: str,
) -> None:
    """What happens today: the heartbeat runs on the blocked loop, so the lease is
    NOT renewed; another worker recovers and re-runs the job, and the blocked
    worker's late completion is refused by its fencing token. One result stands."""
    started = time.monotonic()
    server = private_server()
    lease_ms = 1_000
    async with Queue(fault_queue, connection=server.url, default_options=KEEP_ALL) as queue:
        producer = Producer(queue)
        blocked = await spawn_worker(server.url, lease_ms=lease_ms)
        [job_id] = await producer.add_many(1, {"block": 3 * lease_ms / 1000})
        while job_id not in execution_log.starts():
            await wait_for_count(queue, queue.keys.active, 1, 10)
        healthy = await spawn_worker(server.url, lease_ms=lease_ms)
        await wait_for_count(queue, queue.keys.completed, 1, 20)
        await blocked.expect(f"job {job_id} of queue {fault_queue!r}: outcome 'c' refused", 20)
        events = [e.event for e in await events_of(queue, job_id)]
        job = await queue.get_job(job_id)
        assert job is not None
        runs = execution_log.starts()[job_id]
        report = await analyse(queue, producer.acked, execution_log, killed={})
    add_row(
        "6 event loop blocked 3x the lease",
        jobs=1,
        workers=2,
        faults="1 blocking processor",
        started=started,
        report=report,
        explained=report.duplicate_count,  # explained by the lost lease, no kill
    )
    assert [r.pid for r in runs] == [blocked.pid, healthy.pid]
    assert events.count("completed") == 1, events  # one accepted result
    assert events == ["added", "active", "stalled", "active", "completed"], events
    assert job.return_value == {"pid": healthy.pid}  # the re-run's result stands
    assert job.stalls == 1
    assert report.lost == [], report.describe()


# -- 8. workers whose clocks are minutes off -----------------------------------------


async def test_08_skewed_worker_clocks_keep_server_time_and_steal_no_lease(
    private_server: ServerFactory,
    spawn_worker: WorkerSpawner,
    execution_log: ExecutionLog,
    fault_queue: str,
) -> None:
    started = time.monotonic()
    server = private_server()
    lease_ms = 1_000
    async with Queue(fault_queue, connection=server.url, default_options=KEEP_ALL) as queue:
        producer = Producer(queue)
        healthy = await spawn_worker(server.url, lease_ms=lease_ms)
        # A job 3.5 leases long: only heartbeats keep it with the healthy worker.
        [long_id] = await producer.add_many(1, {"sleep": 3.5 * lease_ms / 1000})
        while long_id not in execution_log.starts():
            await wait_for_count(queue, queue.keys.active, 1, 10)
        ahead = await spawn_worker(server.url, lease_ms=lease_ms, concurrency=4, clock_skew=300)
        behind = await spawn_worker(server.url, lease_ms=lease_ms, concurrency=4, clock_skew=-300)
        delay_ms = 1_500
        added = time.monotonic()
        delayed_job = await queue.add("work", {"sleep": 0.01}, JobOptions(delay=delay_ms))
        producer.acked.append(delayed_job.id)
        # Skewed workers keep claiming (each claim also looks for expired leases).
        n = scaled(300)
        await producer.add_many(n, {"sleep": 0.01})
        await wait_for_count(queue, queue.keys.completed, n + 2, 30)
        starts = execution_log.starts()
        long_events = [e.event for e in await events_of(queue, long_id)]
        report = await analyse(queue, producer.acked, execution_log, killed={})
    [delayed_run] = starts[delayed_job.id]
    fired_after = delayed_run.at - added
    add_row(
        "8 worker clocks +/-5 min",
        jobs=report.jobs,
        workers=3,
        faults="2 workers skewed +300 s / -300 s",
        started=started,
        report=report,
    )
    print(f"delayed job ({delay_ms} ms) started after {fired_after:.3f} s")
    assert delayed_run.pid in (ahead.pid, behind.pid)
    assert delay_ms / 1000 - 0.05 <= fired_after <= delay_ms / 1000 + 1.0, fired_after
    assert [r.pid for r in starts[long_id]] == [healthy.pid], "a lease was stolen"
    assert "stalled" not in long_events, long_events
    assert {r.pid for runs in starts.values() for r in runs} >= {ahead.pid, behind.pid}
    assert report.lost == [], report.describe()
    assert report.duplicates == {}, report.describe()
