"""bench.compare adapter for RQ (pinned in requirements/rq.txt).

Concurrency model: ``SimpleWorker``, one job at a time in the worker's own
process and thread; ``--concurrency`` above 1 is NOT honoured (the result
says ``concurrency: 1``). Fairness note: RQ's default ``Worker`` forks a
work horse per job, which costs milliseconds per job and would measure
``fork()`` rather than the queue; ``SimpleWorker`` is RQ's documented no-fork
worker, so it is the fastest honest RQ setup. RQ scales by running more
worker processes: that is W6. Sleeping tasks use ``time.sleep``.
Results: ``result_ttl=0`` (deleted at once). Bulk API: ``Queue.enqueue_many``
(documented "bulk job enqueueing", one pipeline per batch). Delayed jobs
(W7): ``enqueue_in``, one call per job. Unix sockets: yes (redis-py URL).
Serializer: RQ's default (pickle).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from datetime import timedelta
from typing import Any

from redis import Redis
from rq import Queue, SimpleWorker

from bench.peers import _proto

# Jobs name the task by import path; running as a script, this module is
# __main__, which RQ refuses, so main() also registers it under this name.
_TASK = "bench.peers.rq.noop"
_counter: _proto.Counter | None = None
_sleep_ms = 0.0


def noop(data: dict[str, Any]) -> None:
    """The task: count it (or sleep first) and ask the worker to stop at the target."""
    assert _counter is not None
    _counter.run_sync(data, _sleep_ms)


def _queue(args: argparse.Namespace) -> Any:
    conn = Redis.from_url(_proto.redis_py_url(args.url))
    conn.ping()
    return Queue(args.queue, connection=conn)


def enqueue_single(args: argparse.Namespace) -> None:
    queue = _queue(args)
    t0 = time.perf_counter()
    for i in range(args.n):
        queue.enqueue(_TASK, _proto.payload(i), result_ttl=0)
    _proto.emit_result(_proto.timed_result(args.n, time.perf_counter() - t0))


def enqueue_bulk(args: argparse.Namespace) -> None:
    queue = _queue(args)
    if args.delay_s > 0:  # enqueue_many has no delay option
        delay = timedelta(seconds=args.delay_s)
        t0 = time.perf_counter()
        for i in range(args.n):
            queue.enqueue_in(delay, _TASK, _proto.payload(i), result_ttl=0)
        _proto.emit_result(_proto.timed_result(args.n, time.perf_counter() - t0))
        return
    t0 = time.perf_counter()
    for batch in _proto.batches(args.n, args.batch):
        queue.enqueue_many(
            [Queue.prepare_data(_TASK, (_proto.payload(i),), result_ttl=0) for i in batch]
        )
    _proto.emit_result(_proto.timed_result(args.n, time.perf_counter() - t0))


def produce(args: argparse.Namespace) -> None:
    queue = _queue(args)
    t0 = time.perf_counter()
    for i in _proto.paced(args.n, args.rate):
        queue.enqueue(_TASK, _proto.payload(i, stamp=True), result_ttl=0)
    _proto.emit_result(_proto.timed_result(args.n, time.perf_counter() - t0))


def work(args: argparse.Namespace) -> None:
    global _counter, _sleep_ms
    _counter = counter = _proto.Counter.from_args(args)
    _sleep_ms = args.sleep_ms
    queue = _queue(args)
    worker = SimpleWorker([queue], connection=queue.connection)
    # RQ's own warm-shutdown signal: stops after the running job, or at once
    # when it waits in BLPOP (also when another process reached a W6 target).
    pid = os.getpid()
    counter.on_reached(lambda: os.kill(pid, signal.SIGTERM))
    counter.go()
    worker.work(logging_level="WARNING")
    _proto.emit_result(counter.result(concurrency=1, model="SimpleWorker (1 job at a time)"))


def main(args: argparse.Namespace) -> None:
    """Play ``args.role``."""
    sys.modules.setdefault("bench.peers.rq", sys.modules[__name__])
    {
        "enqueue-single": enqueue_single,
        "enqueue-bulk": enqueue_bulk,
        "fill": enqueue_bulk,
        "work": work,
        "produce": produce,
    }[args.role](args)


if __name__ == "__main__":
    sys.exit(_proto.main_guard(main))
