"""Volume without and with retention: scenario 7 (exactly once, no faults), 10 (memory bounds)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jobq import JobOptions, KeepJobs, Queue
from tests.faults._checker import ExecutionLog, Producer, add_row, analyse, scaled
from tests.faults.conftest import ServerFactory, WorkerSpawner
from tests.faults.test_process_faults import wait_for_count

# -- 7. no faults, many workers -------------------------------------------------------


async def test_07_no_faults_many_workers_run_every_job_exactly_once(
    private_server: ServerFactory,
    spawn_worker: WorkerSpawner,
    execution_log: ExecutionLog,
    fault_queue: str,
) -> None:
    started = time.monotonic()
    server = private_server()
    n = scaled(20_000)  # JOBQ_FAULTS_SCALE=5: 100,000
    workers = 8
    keep_all = JobOptions(remove_on_complete=False)
    async with Queue(fault_queue, connection=server.url) as queue:
        producer = Producer(queue)
        for _ in range(workers):
            await spawn_worker(server.url, concurrency=8, wait_ready=False)
        await producer.add_many(n, {"k": 1}, options=keep_all, batch=2_000)
        await wait_for_count(queue, queue.keys.completed, n, 180)
        report = await analyse(queue, producer.acked, execution_log, killed={})
        runs = execution_log.starts()
    add_row(
        "7 no faults",
        jobs=n,
        workers=workers,
        faults="none",
        started=started,
        report=report,
    )
    assert len(report.completed) == n, report.describe()
    assert report.lost == [], report.describe()
    assert report.wrong_state == {}, report.describe()
    assert report.duplicates == {}, report.describe()
    assert {len(r) for r in runs.values()} == {1}
    assert len(runs) == n
    assert len({r[0].pid for r in runs.values()}) == workers, "every worker took part"


# -- 10. memory stays bounded under retention ---------------------------------------------


async def wait_drained(queue: Queue, timeout: float) -> None:
    """Wait until nothing is waiting or active."""
    client: Any = queue.client
    deadline = time.monotonic() + timeout
    while await client.llen(queue.keys.wait) or await client.zcard(queue.keys.active):
        assert time.monotonic() < deadline, "the queue did not drain"
        await asyncio.sleep(0.02)


KEEP = 1_000
EVENTS_MAX = 1_000
BATCH = 2_000
#: Generous upper bounds per kept job hash and per stream entry (measured: a kept
#: job is about 250-400 bytes with MEMORY USAGE, an event about 30-100).
JOB_BYTES = 1_024
EVENT_BYTES = 256
#: Allocator fragmentation, per-minute metric hashes, the worker registry, scripts.
SLACK = 4 * 1024 * 1024
#: XADD MAXLEN ~ trims whole stream nodes (100 entries each by default).
XLEN_SLACK = 100


async def test_10_memory_and_event_stream_stay_bounded_with_retention(
    private_server: ServerFactory,
    spawn_worker: WorkerSpawner,
    execution_log: ExecutionLog,
    fault_queue: str,
) -> None:
    started = time.monotonic()
    server = private_server()
    n = scaled(100_000)
    keep = JobOptions(remove_on_complete=KeepJobs(count=KEEP))
    async with Queue(fault_queue, connection=server.url, events_max_len=EVENTS_MAX) as queue:
        client: Any = queue.client
        for _ in range(2):
            await spawn_worker(server.url, concurrency=8, events_max_len=EVENTS_MAX)
        baseline = int((await client.info("memory"))["used_memory"])
        # At most one batch waits at a time: what is bounded is what stays behind.
        bound = baseline + (KEEP + BATCH) * JOB_BYTES + EVENTS_MAX * EVENT_BYTES + SLACK
        producer = Producer(queue)
        peak, xlen_peak, done = baseline, 0, 0
        while done < n:
            size = min(BATCH, n - done)
            await producer.add_many(size, {"k": 1}, options=keep, batch=size)
            done += size
            await wait_drained(queue, 60)
            peak = max(peak, int((await client.info("memory"))["used_memory"]))
            xlen_peak = max(xlen_peak, int(await client.xlen(queue.keys.events)))
        kept = int(await client.zcard(queue.keys.completed))
        sample = await client.zrange(queue.keys.completed, -1, -1)
        job_bytes = int(await client.memory_usage(queue.keys.job(sample[0].decode())))
        report = await analyse(queue, producer.acked, execution_log, killed={})
    add_row(
        "10 retention: keep 1,000, events 1,000",
        jobs=n,
        workers=2,
        faults="none (memory)",
        started=started,
        report=report,
    )
    print(
        f"used_memory: baseline {baseline / 2**20:.2f} MiB, peak {peak / 2**20:.2f} MiB, "
        f"bound {bound / 2**20:.2f} MiB; XLEN peak {xlen_peak}; a kept job {job_bytes} B"
    )
    assert kept == min(n, KEEP)
    assert job_bytes <= JOB_BYTES, "the per-job bound is too small: recompute it"
    assert peak <= bound, f"used_memory {peak} > bound {bound}"
    assert xlen_peak <= EVENTS_MAX + XLEN_SLACK
    assert report.lost == [], report.describe()
    assert report.duplicates == {}, report.describe()
