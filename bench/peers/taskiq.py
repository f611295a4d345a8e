"""bench.compare adapter for taskiq with the taskiq-redis broker.

Broker: ``RedisStreamBroker`` (Redis streams with consumer groups and acks),
the one taskiq-redis's README recommends; ``ListQueueBroker`` is the
no-acknowledgement alternative. ``consumer_id="0"`` so that a consumer
group created after ``fill`` still sees the pre-loaded jobs (the default
``"$"`` would skip them). Other broker settings are the defaults.
Concurrency model: asyncio tasks in one process: taskiq's ``Receiver`` run
in-process with ``max_async_tasks=C`` (the CLI worker's default is 100) and an
``async def`` task; sleeping tasks use ``asyncio.sleep``.
Results: no result backend (taskiq's default ``DummyResultBackend`` keeps
nothing). The stream keeps acknowledged entries (no ``maxlen``), as by default.
Bulk API: none (every ``kiq`` is one ``XADD``) -> ``enqueue-bulk`` is
unsupported and ``fill`` enqueues one at a time. Delays: taskiq-redis brokers
have none (delayed work needs taskiq's scheduler process and a schedule
source) -> ``fill --delay-s`` is unsupported. Unix sockets: yes (redis-py URL).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from taskiq.receiver import Receiver  # type: ignore[import-not-found, unused-ignore]
from taskiq_redis import RedisStreamBroker  # type: ignore[import-not-found, unused-ignore]

from bench.peers import _proto

_NAME = "noop"


class _Bench:
    """The broker and its one registered no-op task."""

    def __init__(self, args: argparse.Namespace, counter: _proto.Counter | None = None) -> None:
        self.broker: Any = RedisStreamBroker(
            _proto.redis_py_url(args.url), queue_name=args.queue, consumer_id="0"
        )
        sleep_ms = args.sleep_ms

        async def noop(data: dict[str, Any]) -> None:
            if counter is not None:
                await counter.run_async(data, sleep_ms)

        self.task: Any = self.broker.task(task_name=_NAME)(noop)


async def enqueue_single(args: argparse.Namespace) -> None:
    bench = _Bench(args)
    await bench.broker.startup()
    try:
        t0 = time.perf_counter()
        for i in range(args.n):
            await bench.task.kiq(_proto.payload(i))
        seconds = time.perf_counter() - t0
    finally:
        await bench.broker.shutdown()
    _proto.emit_result(_proto.timed_result(args.n, seconds))


async def enqueue_bulk(args: argparse.Namespace) -> None:
    _proto.emit_unsupported("taskiq has no bulk enqueue API (one kiq = one XADD)")


async def fill(args: argparse.Namespace) -> None:
    if args.delay_s > 0:
        _proto.emit_unsupported(
            "taskiq-redis brokers have no delayed delivery (needs the scheduler process)"
        )
        return
    await enqueue_single(args)


async def produce(args: argparse.Namespace) -> None:
    bench = _Bench(args)
    await bench.broker.startup()
    try:
        t0 = time.perf_counter()
        async for i in _proto.apaced(args.n, args.rate):
            await bench.task.kiq(_proto.payload(i, stamp=True))
        seconds = time.perf_counter() - t0
    finally:
        await bench.broker.shutdown()
    _proto.emit_result(_proto.timed_result(args.n, seconds))


async def _stop(runner: asyncio.Future[None], timeout: float) -> None:
    """Wait for the receiver to stop after the finish event.

    With ``RedisStreamBroker`` the receiver sometimes never returns: the
    cancellation of its pending ``XREADGROUP`` read is lost (the task stays
    "cancelling" while the broker's listen loop goes on polling the empty
    stream), and the receiver waits for that read, shielded. The target was
    reached, so the measurement is over: cancel such reads again.
    """
    for _ in range(3):
        done, _ = await asyncio.wait({runner}, timeout=timeout)
        if done:
            runner.result()
            return
        stuck = [t for t in asyncio.all_tasks() if t.cancelling() and not t.done()]
        _proto.log(f"taskiq: receiver still running after {timeout:.1f} s; re-cancelling {stuck}")
        for task in stuck:
            task.cancel()
    raise RuntimeError("the taskiq receiver did not stop")


async def work(args: argparse.Namespace) -> None:
    counter = _proto.Counter.from_args(args)
    bench = _Bench(args, counter)
    broker = bench.broker
    broker.is_worker_process = True  # as taskiq's CLI worker sets it
    await broker.startup()  # connection pool, consumer group: before READY
    finish = asyncio.Event()
    with ThreadPoolExecutor(max_workers=4) as executor:  # for sync tasks; unused here
        receiver = Receiver(
            broker,
            executor=executor,
            max_async_tasks=args.concurrency,
            run_startup=False,
        )
        counter.go()
        runner = asyncio.ensure_future(receiver.listen(finish))
        reached = asyncio.ensure_future(counter.wait_async())
        await asyncio.wait({runner, reached}, return_when=asyncio.FIRST_COMPLETED)
        if runner.done():
            reached.cancel()
            runner.result()  # raises if the receiver crashed
            raise RuntimeError("the receiver stopped before the target was reached")
        finish.set()  # taskiq's own graceful stop: no new deliveries, finish running tasks
        await _stop(runner, 1.0)
    await broker.shutdown()
    extra: dict[str, Any] = {"concurrency": args.concurrency, "model": "asyncio tasks"}
    _proto.emit_result(counter.result(**extra))


_ROLES = {
    "enqueue-single": enqueue_single,
    "enqueue-bulk": enqueue_bulk,
    "fill": fill,
    "work": work,
    "produce": produce,
}


async def main(args: argparse.Namespace) -> None:
    """Play ``args.role``."""
    await _ROLES[args.role](args)


if __name__ == "__main__":
    sys.exit(_proto.main_guard(main))
