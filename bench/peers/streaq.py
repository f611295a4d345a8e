"""bench.compare adapter for streaq (Redis streams, coredis client).

Concurrency model: asyncio tasks in one process (streaq's ``Worker`` runs on
anyio's asyncio backend with ``concurrency=C`` consumers); sleeping tasks use
``asyncio.sleep``. The worker runs in-process (``Worker.run_async``) and is
stopped by cancelling its task group, which is what its own SIGINT/SIGTERM
handler does.
Results: the task is registered with ``ttl=0`` (streaq then stores no
result; it still publishes one on its per-task channel, which nobody
listens to) and ``silent=True`` (no log line per task). Serialization is
streaq's default (pickle).
Bulk API: ``Worker.enqueue_many`` (documented: one pipeline for many tasks).
Delays: ``task.start(delay=...)``. Unix sockets: yes (coredis ``unix://`` URL).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from datetime import timedelta
from typing import Any

from streaq import Worker  # type: ignore[import-not-found, unused-ignore]

from bench.peers import _proto

_NAME = "noop"


class _Bench:
    """The worker object and its one registered no-op task."""

    def __init__(self, args: argparse.Namespace, counter: _proto.Counter | None = None) -> None:
        self.worker: Any = Worker(
            redis_url=_proto.redis_py_url(args.url),
            queue_name=args.queue,
            concurrency=args.concurrency,
            handle_signals=False,
        )
        sleep_ms = args.sleep_ms

        async def noop(data: dict[str, Any]) -> None:
            if counter is not None:
                await counter.run_async(data, sleep_ms)

        self.task: Any = self.worker.task(name=_NAME, ttl=0, silent=True)(noop)

    def job(self, i: int, stamp: bool = False, delay_s: float = 0.0) -> Any:
        """A task object ready to be awaited (enqueued) or passed to ``enqueue_many``."""
        task = self.task.enqueue(_proto.payload(i, stamp))
        if delay_s > 0:
            task = task.start(delay=timedelta(seconds=delay_s))
        return task


async def enqueue_single(args: argparse.Namespace) -> None:
    bench = _Bench(args)
    async with bench.worker:
        await bench.worker.redis.ping()
        t0 = time.perf_counter()
        for i in range(args.n):
            await bench.job(i)
        seconds = time.perf_counter() - t0
    _proto.emit_result(_proto.timed_result(args.n, seconds))


async def enqueue_bulk(args: argparse.Namespace) -> None:
    bench = _Bench(args)
    async with bench.worker:
        await bench.worker.redis.ping()
        t0 = time.perf_counter()
        for batch in _proto.batches(args.n, args.batch):
            await bench.worker.enqueue_many([bench.job(i, delay_s=args.delay_s) for i in batch])
        seconds = time.perf_counter() - t0
    _proto.emit_result(_proto.timed_result(args.n, seconds))


async def produce(args: argparse.Namespace) -> None:
    bench = _Bench(args)
    async with bench.worker:
        await bench.worker.redis.ping()
        t0 = time.perf_counter()
        async for i in _proto.apaced(args.n, args.rate):
            await bench.job(i, stamp=True)
        seconds = time.perf_counter() - t0
    _proto.emit_result(_proto.timed_result(args.n, seconds))


async def work(args: argparse.Namespace) -> None:
    counter = _proto.Counter.from_args(args)
    bench = _Bench(args, counter)
    # streaq opens its connection inside run_async; a throwaway context here
    # pays the imports, DNS/socket setup and Lua load before READY.
    async with bench.worker:
        await bench.worker.redis.ping()
    counter.go()
    runner = asyncio.ensure_future(bench.worker.run_async())
    reached = asyncio.ensure_future(counter.wait_async())
    await asyncio.wait({runner, reached}, return_when=asyncio.FIRST_COMPLETED)
    if runner.done():
        reached.cancel()
        runner.result()  # raises if the worker crashed
        raise RuntimeError("the worker stopped before the target was reached")
    runner.cancel()  # what streaq's own signal handler does: cancel the task group
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    extra: dict[str, Any] = {"concurrency": args.concurrency, "model": "asyncio tasks (anyio)"}
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
