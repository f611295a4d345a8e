"""Redis itself fails: scenario 4 (SIGKILL and restart) and 5 (connections reset, black-holed)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jobq import JobOptions, Queue
from tests.faults._checker import ExecutionLog, Producer, add_row, analyse, scaled
from tests.faults._proxy import ChaosProxy
from tests.faults.conftest import ServerFactory, WorkerSpawner
from tests.faults.test_process_faults import wait_for_count

KEEP_ALL = JobOptions(remove_on_complete=False)


async def _produce(producer: Producer, stop: asyncio.Event, data: Any) -> None:
    """Add jobs one at a time until ``stop``; an add that raised is retried later."""
    while not stop.is_set():
        if await producer.add_one("work", data) is None:
            await asyncio.sleep(0.05)  # Redis is down: try again soon
        else:
            await asyncio.sleep(0.002)


# -- 4. Redis SIGKILLed and restarted on the same data --------------------------------


async def test_04_redis_sigkill_and_restart_loses_no_acknowledged_add(
    private_server: ServerFactory,
    spawn_worker: WorkerSpawner,
    execution_log: ExecutionLog,
    fault_queue: str,
) -> None:
    started = time.monotonic()
    server = private_server(config={"appendonly": "yes", "appendfsync": "always"})
    url = server.url  # a unix socket the restarted server listens on again
    lease_ms = 10_000
    async with Queue(fault_queue, connection=url, default_options=KEEP_ALL) as queue:
        producer = Producer(queue)
        workers = [await spawn_worker(url, lease_ms=lease_ms, concurrency=4) for _ in range(2)]
        stop = asyncio.Event()
        produce = asyncio.create_task(_produce(producer, stop, {"sleep": 0.01}))
        await wait_for_count(queue, queue.keys.completed, scaled(200), 30)
        server.kill()
        killed_at = time.monotonic()
        acked_before = len(producer.acked)
        await asyncio.sleep(1.0)  # the outage itself
        server.start()
        restarted = time.monotonic()
        # Workers resume by themselves: a job starts again after the restart.
        deadline = restarted + 15
        while not [e for e in execution_log.read() if e.kind == "S" and e.at > restarted]:
            assert time.monotonic() < deadline, [w.output() for w in workers]
            await asyncio.sleep(0.05)
        resumed_s = time.monotonic() - restarted
        await wait_for_count(queue, queue.keys.completed, len(producer.acked) + scaled(200), 30)
        stop.set()
        await produce
        await wait_for_count(queue, queue.keys.completed, len(producer.acked), 30)
        report = await analyse(queue, producer.acked, execution_log, killed={})
    add_row(
        "4 Redis SIGKILL + restart (AOF always)",
        jobs=report.jobs,
        workers=2,
        faults=f"1 Redis SIGKILL, {restarted - killed_at:.1f} s down",
        started=started,
        report=report,
        max_recovery_s=resumed_s,
    )
    assert acked_before > 0, "the outage did not hit the producer"
    assert producer.refused > 0, "the outage did not hit the producer"
    assert report.lost == [], report.describe()
    assert report.wrong_state == {}, report.describe()
    assert resumed_s < 8, f"workers resumed {resumed_s:.1f} s after the restart"
    for w in workers:
        assert w.said("lost Redis"), w.output()
        # A worker the other one left no work for may still be in its (jittered,
        # up to 5 s) reconnect pause: it says so when its next try gets through.
        await w.expect("reconnected after", timeout=15)
    # The outage (about 1 s) is far shorter than the lease: nothing runs twice.
    assert report.duplicates == {}, report.describe()


# -- 5. connections reset, then black-holed --------------------------------------------


async def test_05_connections_reset_and_blackholed_then_healed(
    private_server: ServerFactory,
    spawn_worker: WorkerSpawner,
    execution_log: ExecutionLog,
    fault_queue: str,
) -> None:
    started = time.monotonic()
    server = private_server(tcp=True)
    assert server.port is not None
    lease_ms = 8_000  # longer than every outage below: nothing may run twice
    # jobq's default is 10 s (measured the same way: detected after 10.0 s); 3 s
    # keeps the run short.
    socket_timeout = 3.0
    async with (
        ChaosProxy("127.0.0.1", server.port) as proxy,
        Queue(fault_queue, connection=server.url, default_options=KEEP_ALL) as queue,
    ):
        producer = Producer(queue)
        workers = [
            await spawn_worker(
                proxy.url, lease_ms=lease_ms, concurrency=4, socket_timeout=socket_timeout
            )
            for _ in range(2)
        ]
        total = 0

        async def batch_then(fraction: float) -> int:
            nonlocal total
            n = scaled(400)
            await producer.add_many(n, {"sleep": 0.05})
            total += n
            await wait_for_count(queue, queue.keys.completed, total - int(n * (1 - fraction)), 30)
            return n

        # (a) every connection reset
        await batch_then(0.25)
        await proxy.reset_all()
        await wait_for_count(queue, queue.keys.completed, total, 60)
        for w in workers:
            await w.expect("reconnected after", 10)

        # (b) a short black hole (2 s)
        await batch_then(0.25)
        proxy.blackhole()
        await asyncio.sleep(2.0)  # the outage itself
        proxy.heal()
        await wait_for_count(queue, queue.keys.completed, total, 60)

        # (c) a black hole longer than the socket timeout: detected, no spin, healed
        marks = [len(w.lines) for w in workers]
        await batch_then(0.1)
        cpu_before = [w.cpu_seconds() for w in workers]
        proxy.blackhole()
        holed = time.monotonic()
        for w, mark in zip(workers, marks, strict=True):
            await w.expect("lost Redis", socket_timeout + 5, start=mark)
        detected_s = time.monotonic() - holed
        await asyncio.sleep(max(0.0, holed + socket_timeout + 2 - time.monotonic()))
        outage_s = time.monotonic() - holed
        cpu = [w.cpu_seconds() - c for w, c in zip(workers, cpu_before, strict=True)]
        proxy.heal()
        healed = time.monotonic()
        for w, mark in zip(workers, marks, strict=True):
            await w.expect("reconnected after", 20, start=mark)
        reconnect_s = time.monotonic() - healed
        await wait_for_count(queue, queue.keys.completed, total, 60)
        drained_s = time.monotonic() - healed
        report = await analyse(queue, producer.acked, execution_log, killed={})
        client: Any = queue.client
        async with client.pipeline(transaction=False) as pipe:
            for job_id in producer.acked:
                pipe.hget(queue.keys.job(job_id), "s")
            stalls = await pipe.execute()
        # A claim sent just before the hole times out in the worker, reaches Redis at
        # the heal and claims jobs whose reply nobody reads: they stay active, unrun,
        # until their lease runs out, then come back as a stall.
        stranded = [j for j, s in zip(producer.acked, stalls, strict=True) if s and int(s) > 0]
    add_row(
        f"5 connections reset, black-holed 2 s and {outage_s:.0f} s (proxy)",
        jobs=report.jobs,
        workers=2,
        faults="1 reset of all connections, 2 black holes",
        started=started,
        report=report,
        max_recovery_s=drained_s,
    )
    print(
        f"black hole: detected after {detected_s:.1f} s, worker CPU over {outage_s:.1f} s "
        f"outage {', '.join(f'{c:.2f}' for c in cpu)} s, reconnected {reconnect_s:.1f} s "
        f"after the heal, all done {drained_s:.1f} s after it; {len(stranded)} job(s) "
        "claimed by a reply lost in the hole waited for their lease"
    )
    assert detected_s <= socket_timeout + 5
    assert max(cpu) < 0.1 * outage_s, f"CPU during the outage: {cpu} s in {outage_s:.1f} s"
    assert report.lost == [], report.describe()
    assert report.wrong_state == {}, report.describe()
    assert report.duplicates == {}, report.describe()
    # Stranded claims come back by lease expiry alone: within lease + a heartbeat.
    assert drained_s <= lease_ms / 1000 * (1 + 1 / 3) + 3, f"drained {drained_s:.1f} s after heal"
