"""Bad input and a bad server setting: scenario 9 (bad data) and 11 (an evicting server)."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

from jobq import DeadLetters, JobOptions, PayloadError, Queue
from tests.faults._checker import ExecutionLog, Producer, add_row, analyse, scaled
from tests.faults.conftest import ServerFactory, WorkerSpawner
from tests.faults.test_process_faults import wait_for_count

KEEP_ALL = JobOptions(remove_on_complete=False)


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


#: (what, payload, a pattern the refusal must contain)
REFUSED: list[tuple[str, Any, str]] = [
    ("oversize", {"blob": "x" * (600 * 1024)}, r"over the limit of 524288 bytes"),
    ("a set", {"tags": {1, 2}}, r'\["tags"\]: object of type set'),
    ("an object", {"obj": object()}, r'\["obj"\]: object of type object'),
    ("NaN", {"x": float("nan")}, r'\["x"\]: float NaN is not allowed'),
    ("deep nesting", {"deep": _nested(300)}, r"nested deeper than 200 levels"),
    ("invalid UTF-8", {"text": "a\udc80b"}, r'\["text"\]: string contains a lone surrogate'),
]


# -- 9. bad input ----------------------------------------------------------------------


async def test_09_bad_input_is_refused_or_dead_lettered_and_workers_live_on(
    private_server: ServerFactory,
    spawn_worker: WorkerSpawner,
    execution_log: ExecutionLog,
    fault_queue: str,
) -> None:
    started = time.monotonic()
    server = private_server()
    async with Queue(fault_queue, connection=server.url, default_options=KEEP_ALL) as queue:
        client: Any = queue.client
        await queue.set_dead_letter_queue("dead-letter")
        worker = await spawn_worker(server.url, dispatch=True, concurrency=2)
        producer = Producer(queue)
        # Refused at enqueue, naming the problem; nothing written.
        for what, payload, pattern in REFUSED:
            with pytest.raises(PayloadError) as info:
                await queue.add("work", payload)
            assert re.search(pattern, str(info.value)), (what, str(info.value))
        assert await client.get(queue.keys.id) is None, "a refused add wrote something"

        before = await producer.add_many(scaled(50), {"sleep": 0.01})
        # A record corrupted in Redis: garbage in the data field, pushed to wait.
        corrupt_id = "corrupt-1"
        await client.hset(
            queue.keys.job(corrupt_id),
            mapping={"n": "work", "d": b"\xff\xfe{not json", "o": "", "t": 0},
        )
        await client.lpush(queue.keys.wait, corrupt_id)
        await client.zadd(queue.keys.marker, {"0": 0})
        producer.acked.append(corrupt_id)
        [unknown_id] = await producer.add_many(1, {"sleep": 0.01}, name="no-such-job")
        after = await producer.add_many(scaled(50), {"sleep": 0.01})
        await wait_for_count(queue, queue.keys.completed, len(before) + len(after), 30)
        async with DeadLetters(connection=server.url) as dl:
            deadline = time.monotonic() + 15
            while await dl.count() < 2:
                assert time.monotonic() < deadline, await dl.count()
                await asyncio.sleep(0.05)
            corrupt = await dl.get(f"{fault_queue}:{corrupt_id}")
            unknown = await dl.get(f"{fault_queue}:{unknown_id}")
        report = await analyse(
            queue, producer.acked, execution_log, killed={}, dead_letter_queue="dead-letter"
        )
    add_row(
        "9 bad input",
        jobs=report.jobs,
        workers=1,
        faults=f"{len(REFUSED)} refused adds, 1 corrupt record, 1 unknown name",
        started=started,
        report=report,
    )
    assert corrupt is not None
    assert unknown is not None
    assert corrupt.failed_reason is not None
    assert "corrupt record" in corrupt.failed_reason
    assert unknown.failed_reason == (
        "unknown job name 'no-such-job': this worker serves ('work', 'sleep')"
    )
    assert report.dead_lettered == {corrupt_id, unknown_id}, report.describe()
    assert report.lost == [], report.describe()
    assert report.wrong_state == {}, report.describe()
    assert worker.proc.returncode is None, "the worker died"
    assert report.completed == set(before + after)


# -- 11. a server that may evict keys ----------------------------------------------


async def test_11_worker_warns_at_start_on_an_evicting_server(
    private_server: ServerFactory,
    spawn_worker: WorkerSpawner,
    execution_log: ExecutionLog,
    fault_queue: str,
) -> None:
    started = time.monotonic()
    server = private_server(config={"maxmemory-policy": "allkeys-lru"})
    worker = await spawn_worker(server.url)
    line = await worker.expect("log jobq jobq: ", 10)  # the jobq logger's warning
    await worker.expect("started on queue", 10)  # a warning, not a refusal
    add_row(
        "11 maxmemory-policy allkeys-lru",
        jobs=0,
        workers=1,
        faults="evicting server",
        started=started,
    )
    assert f"queue {fault_queue!r}: the server at " in line, line
    assert "has maxmemory-policy 'allkeys-lru'" in line, line
    assert "Redis may evict job data and lose jobs" in line, line
    assert "Set it to 'noeviction'" in line, line
