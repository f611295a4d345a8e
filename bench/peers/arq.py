"""bench.compare adapter for arq (pinned in requirements/arq.txt).

Concurrency model: asyncio tasks in one process (``Worker(max_jobs=C)``);
sleeping tasks use ``asyncio.sleep``. Results: ``keep_result=0`` (not stored).
Defaults kept as arq ships them, notably ``poll_delay=0.5`` s: an idle arq
worker looks for new jobs twice a second, which shows in the pickup latency
(W3), and it caps short jobs (W4 at C=10: measured here, 30 jobs of 10 ms at
C=10 take 1.0 s with the default and 0.12 s with ``poll_delay=0.05``).
Bulk API: none (``enqueue-bulk`` reports unsupported; ``fill`` uses single
``enqueue_job`` calls). Unix sockets: yes (``RedisSettings`` with
``unix_socket_path``). Serializer: arq's default (pickle).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from datetime import timedelta
from typing import Any

from arq import Worker, create_pool
from arq.connections import RedisSettings

from bench.peers import _proto

_FUNC = "noop"


def _settings(url: str) -> Any:
    return RedisSettings.from_dsn(_proto.redis_py_url(url))


async def _pool(args: argparse.Namespace) -> Any:
    pool = await create_pool(_settings(args.url), default_queue_name=args.queue)
    await pool.ping()
    return pool


async def enqueue(args: argparse.Namespace, *, stamp: bool = False, paced: bool = False) -> None:
    pool = await _pool(args)
    defer = timedelta(seconds=args.delay_s) if args.delay_s > 0 else None
    try:
        t0 = time.perf_counter()
        if paced:
            async for i in _proto.apaced(args.n, args.rate):
                await pool.enqueue_job(_FUNC, _proto.payload(i, stamp=stamp))
        else:
            for i in range(args.n):
                await pool.enqueue_job(_FUNC, _proto.payload(i), _defer_by=defer)
        seconds = time.perf_counter() - t0
    finally:
        await pool.aclose()
    _proto.emit_result(_proto.timed_result(args.n, seconds))


async def work(args: argparse.Namespace) -> None:
    counter = _proto.Counter.from_args(args)
    sleep_ms = args.sleep_ms

    async def noop(ctx: dict[str, Any], data: dict[str, Any]) -> None:
        await counter.run_async(data, sleep_ms)

    noop.__qualname__ = _FUNC
    pool = await _pool(args)
    worker = Worker(
        functions=[noop],
        queue_name=args.queue,
        redis_pool=pool,
        max_jobs=args.concurrency,
        keep_result=0,
        handle_signals=False,
        log_results=False,
    )
    counter.go()
    runner = asyncio.create_task(worker.async_run())
    reached = asyncio.create_task(counter.wait_async())
    await asyncio.wait({runner, reached}, return_when=asyncio.FIRST_COMPLETED)
    if runner.done():
        reached.cancel()
        runner.result()
        raise RuntimeError("the arq worker stopped before the target was reached")
    # Stop polling, let the jobs in flight end (briefly), then close as arq does.
    if worker.main_task is not None:
        worker.main_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    pending = [t for t in worker.tasks.values() if not t.done()]
    if pending:
        await asyncio.wait(pending, timeout=5)
    with contextlib.suppress(asyncio.CancelledError):
        await worker.close()
    _proto.emit_result(
        counter.result(concurrency=args.concurrency, model="asyncio tasks (max_jobs)")
    )


async def main(args: argparse.Namespace) -> None:
    """Play ``args.role``."""
    logging.getLogger("arq").setLevel(logging.WARNING)
    if args.role == "enqueue-single":
        await enqueue(args)
    elif args.role == "enqueue-bulk":
        _proto.emit_unsupported("arq has no bulk enqueue API")
    elif args.role == "fill":
        await enqueue(args)
    elif args.role == "produce":
        await enqueue(args, stamp=True, paced=True)
    else:
        await work(args)


if __name__ == "__main__":
    sys.exit(_proto.main_guard(main))
