"""bench.compare adapter for BullMQ's Python port (``bullmq`` on PyPI).

Concurrency model: asyncio tasks in one process (``Worker(..., {"concurrency": C})``
with an ``async def`` processor); sleeping tasks use ``asyncio.sleep``.
Results: every job is added with ``removeOnComplete: True`` (no completed
jobs or return values kept). Bulk API: ``Queue.addBulk`` (documented as the
faster way to add many jobs). Delays: the ``delay`` job option (ms). Unix
sockets: yes (the connection is a redis-py URL).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from bullmq import Queue, Worker  # type: ignore[import-not-found, unused-ignore]

from bench.peers import _proto

_NAME = "noop"


def _opts(delay_s: float = 0.0) -> dict[str, Any]:
    opts: dict[str, Any] = {"removeOnComplete": True}
    if delay_s > 0:
        opts["delay"] = round(delay_s * 1000)
    return opts


async def _open_queue(args: argparse.Namespace) -> Queue:
    queue = Queue(args.queue, {"connection": _proto.redis_py_url(args.url)})
    await queue.client.ping()  # connect before the clock starts
    return queue


async def enqueue_single(args: argparse.Namespace) -> None:
    queue = await _open_queue(args)
    opts = _opts()
    try:
        t0 = time.perf_counter()
        for i in range(args.n):
            await queue.add(_NAME, _proto.payload(i), opts)
        seconds = time.perf_counter() - t0
    finally:
        await queue.close()
    _proto.emit_result(_proto.timed_result(args.n, seconds))


async def enqueue_bulk(args: argparse.Namespace) -> None:
    queue = await _open_queue(args)
    opts = _opts(args.delay_s)
    try:
        t0 = time.perf_counter()
        for batch in _proto.batches(args.n, args.batch):
            await queue.addBulk(
                [{"name": _NAME, "data": _proto.payload(i), "opts": opts} for i in batch]
            )
        seconds = time.perf_counter() - t0
    finally:
        await queue.close()
    _proto.emit_result(_proto.timed_result(args.n, seconds))


async def produce(args: argparse.Namespace) -> None:
    queue = await _open_queue(args)
    opts = _opts()
    try:
        t0 = time.perf_counter()
        async for i in _proto.apaced(args.n, args.rate):
            await queue.add(_NAME, _proto.payload(i, stamp=True), opts)
        seconds = time.perf_counter() - t0
    finally:
        await queue.close()
    _proto.emit_result(_proto.timed_result(args.n, seconds))


async def _close(worker: Any, grace: float = 2.0) -> None:
    """``Worker.close()``, forced if it has not returned after ``grace`` seconds.

    A fetch already under way when ``close()`` runs can start its blocking
    wait for new jobs after ``close()`` cancelled the current one; the plain
    close then waits on it, at times for minutes (seen in W6, where the other
    processes drain the queue). The target is reached, so forcing is safe.
    """
    closing = asyncio.ensure_future(worker.close())
    done, _ = await asyncio.wait({closing}, timeout=grace)
    if not done:
        _proto.log(f"bullmq_py: Worker.close() still waiting after {grace:.1f} s; forcing")
        await worker.close(force=True)
    await closing


async def work(args: argparse.Namespace) -> None:
    counter = _proto.Counter.from_args(args)
    sleep_ms = args.sleep_ms

    async def process(job: Any, token: str) -> None:
        await counter.run_async(job.data, sleep_ms)

    worker = Worker(
        args.queue,
        process,
        {
            "connection": _proto.redis_py_url(args.url),
            "concurrency": args.concurrency,
            "autorun": False,
        },
    )
    await worker.client.ping()  # connect before READY
    await worker.bclient.ping()
    counter.go()
    runner = asyncio.ensure_future(worker.run())
    reached = asyncio.ensure_future(counter.wait_async())
    await asyncio.wait({runner, reached}, return_when=asyncio.FIRST_COMPLETED)
    if runner.done():
        reached.cancel()
        runner.result()  # raises if the worker crashed
        raise RuntimeError("the worker stopped before the target was reached")
    await _close(worker)
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


async def main(args: argparse.Namespace) -> None:
    """Play ``args.role``."""
    await _ROLES[args.role](args)


if __name__ == "__main__":
    sys.exit(_proto.main_guard(main))
