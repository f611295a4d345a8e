"""bench.compare adapter for SAQ (pinned in requirements/saq.txt), Redis queue.

Concurrency model: asyncio tasks in one process (``Worker(concurrency=C)``:
C dequeue-and-run loops); sleeping tasks use ``asyncio.sleep``. Results:
``ttl=-1`` on every job, so SAQ deletes it on completion (no result kept).
Bulk API: none (``Queue.map`` enqueues many jobs but also waits for their
results: not a bulk enqueue), so ``enqueue-bulk`` reports unsupported and
``fill`` uses single ``enqueue`` calls. Delayed jobs (W7) use
``scheduled=<epoch s>``. Unix sockets: yes (redis-py URL).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from typing import Any

from saq import Worker
from saq.queue.redis import RedisQueue

from bench.peers import _proto

_FUNC = "noop"


async def _queue(args: argparse.Namespace) -> Any:
    # RedisQueue directly: saq.Queue.from_url only accepts redis:// URLs, not unix://.
    queue = RedisQueue.from_url(_proto.redis_py_url(args.url), name=args.queue)
    await queue.connect()
    await queue.redis.ping()
    return queue


async def enqueue(args: argparse.Namespace, *, stamp: bool = False, paced: bool = False) -> None:
    queue = await _queue(args)
    extra: dict[str, Any] = {"ttl": -1}
    try:
        t0 = time.perf_counter()
        if paced:
            async for i in _proto.apaced(args.n, args.rate):
                await queue.enqueue(_FUNC, data=_proto.payload(i, stamp=stamp), **extra)
        else:
            if args.delay_s > 0:
                extra["scheduled"] = int(time.time() + args.delay_s)
            for i in range(args.n):
                await queue.enqueue(_FUNC, data=_proto.payload(i), **extra)
        seconds = time.perf_counter() - t0
    finally:
        await queue.disconnect()
    _proto.emit_result(_proto.timed_result(args.n, seconds))


async def work(args: argparse.Namespace) -> None:
    counter = _proto.Counter.from_args(args)
    sleep_ms = args.sleep_ms

    async def noop(ctx: dict[str, Any], *, data: dict[str, Any]) -> None:
        await counter.run_async(data, sleep_ms)

    noop.__qualname__ = _FUNC
    queue = await _queue(args)
    worker = Worker(queue, functions=[noop], concurrency=args.concurrency)
    counter.go()
    runner = asyncio.create_task(worker.start())
    reached = asyncio.create_task(counter.wait_async())
    await asyncio.wait({runner, reached}, return_when=asyncio.FIRST_COMPLETED)
    if runner.done():
        reached.cancel()
        runner.result()
        raise RuntimeError("the SAQ worker stopped before the target was reached")
    await worker.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    await queue.disconnect()
    _proto.emit_result(counter.result(concurrency=args.concurrency, model="asyncio tasks"))


async def main(args: argparse.Namespace) -> None:
    """Play ``args.role``."""
    logging.getLogger("saq").setLevel(logging.WARNING)
    if args.role == "enqueue-single":
        await enqueue(args)
    elif args.role == "enqueue-bulk":
        _proto.emit_unsupported("SAQ has no bulk enqueue API (Queue.map also awaits results)")
    elif args.role == "fill":
        await enqueue(args)
    elif args.role == "produce":
        await enqueue(args, stamp=True, paced=True)
    else:
        await work(args)


if __name__ == "__main__":
    sys.exit(_proto.main_guard(main))
