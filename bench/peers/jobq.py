"""bench.compare adapter for jobq (this project), run with the project's own interpreter.

Concurrency model: asyncio tasks in one process (``Worker(concurrency=C)``
with an ``async def`` processor); sleeping tasks use ``asyncio.sleep``.
Results: jobs are removed on completion (``remove_on_complete=True``), the
equivalent of the peers' "no result storage"; the ``completed`` event stream
and per-minute metrics that jobq always keeps are part of what is measured.
Bulk API: ``Queue.add_bulk`` (one atomic round trip per batch). Unix sockets:
yes. Event loop: ``jobq.eventloop`` (asyncio with precise timers), the one
``jobq worker`` runs on.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from bench.peers import _proto
from jobq import Job, JobOptions, Queue, Worker, eventloop

_NAME = "noop"


def _options(delay_s: float = 0.0) -> JobOptions:
    return JobOptions(remove_on_complete=True, delay=round(delay_s * 1000))


async def enqueue_single(args: argparse.Namespace) -> None:
    opts = _options()
    async with Queue(args.queue, connection=args.url) as queue:
        await queue.client.ping()
        t0 = time.perf_counter()
        for i in range(args.n):
            await queue.add(_NAME, _proto.payload(i), opts)
        seconds = time.perf_counter() - t0
    _proto.emit_result(_proto.timed_result(args.n, seconds))


async def enqueue_bulk(args: argparse.Namespace) -> None:
    opts = _options(args.delay_s)
    async with Queue(args.queue, connection=args.url) as queue:
        await queue.client.ping()
        t0 = time.perf_counter()
        for batch in _proto.batches(args.n, args.batch):
            await queue.add_bulk([(_NAME, _proto.payload(i), opts) for i in batch])
        seconds = time.perf_counter() - t0
    _proto.emit_result(_proto.timed_result(args.n, seconds))


async def produce(args: argparse.Namespace) -> None:
    opts = _options()
    async with Queue(args.queue, connection=args.url) as queue:
        await queue.client.ping()
        t0 = time.perf_counter()
        async for i in _proto.apaced(args.n, args.rate):
            await queue.add(_NAME, _proto.payload(i, stamp=True), opts)
        seconds = time.perf_counter() - t0
    _proto.emit_result(_proto.timed_result(args.n, seconds))


async def work(args: argparse.Namespace) -> None:
    counter = _proto.Counter.from_args(args)
    sleep_ms = args.sleep_ms

    async def process(job: Job) -> None:
        await counter.run_async(job.data, sleep_ms)

    worker = Worker(
        args.queue,
        process,
        connection=args.url,
        concurrency=args.concurrency,
        install_signal_handlers=False,
    )
    await worker.connect()  # connect and register before READY (BullMQ: waitUntilReady)
    counter.go()
    runner = asyncio.create_task(worker.run(), name="bench-jobq-worker")
    reached = asyncio.create_task(counter.wait_async())
    await asyncio.wait({runner, reached}, return_when=asyncio.FIRST_COMPLETED)
    if runner.done():
        reached.cancel()
        runner.result()  # raises if the worker crashed
        raise RuntimeError("the worker stopped before the target was reached")
    await worker.close(grace=5.0)
    await runner
    extra: dict[str, Any] = {"concurrency": args.concurrency, "model": "asyncio tasks"}
    _proto.emit_result(counter.result(**extra))


_ROLES = {
    "enqueue-single": enqueue_single,
    "enqueue-bulk": enqueue_bulk,
    "fill": enqueue_bulk,
    "work": work,
    "produce": produce,
}


def main(args: argparse.Namespace) -> None:
    """Play ``args.role`` on jobq's event loop (``jobq.eventloop``, as ``jobq worker`` runs)."""
    eventloop.run(_ROLES[args.role](args))


if __name__ == "__main__":
    sys.exit(_proto.main_guard(main))
