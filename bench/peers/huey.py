"""bench.compare adapter for huey (pinned in requirements/huey.txt), Redis storage.

Concurrency model: threads. ``RedisHuey(results=False)`` and its consumer
run in this process through huey's API (``huey.create_consumer(workers=C,
worker_type="thread", periodic=False)``, ``consumer.start()`` /
``consumer.stop(graceful=True)``): C worker threads, each blocking in BRPOP
(``blocking=True``, huey's default ``read_timeout=1`` s), plus huey's
scheduler thread (``scheduler_interval=1`` s, it moves due delayed tasks).
Sleeping tasks use ``time.sleep``. Results: off (``results=False``).
Bulk API: none (``Task.map`` enqueues one by one), so ``enqueue-bulk``
reports unsupported and ``fill`` enqueues one at a time. Delayed tasks (W7):
``task.schedule(delay=S)``. Unix sockets: yes (redis-py URL).
Serializer: huey's default (pickle).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

from huey import RedisHuey

from bench.peers import _proto


class _Bench:
    counter: _proto.Counter | None = None
    sleep_ms = 0.0


def _huey(args: argparse.Namespace) -> tuple[Any, Any]:
    huey = RedisHuey(args.queue, results=False, url=_proto.redis_py_url(args.url))
    huey.storage.conn.ping()

    def noop(data: dict[str, Any]) -> None:
        assert _Bench.counter is not None
        _Bench.counter.run_sync(data, _Bench.sleep_ms)

    return huey, huey.task(name="noop")(noop)


def enqueue(args: argparse.Namespace, *, paced: bool = False) -> None:
    _, noop = _huey(args)
    t0 = time.perf_counter()
    if paced:
        for i in _proto.paced(args.n, args.rate):
            noop(_proto.payload(i, stamp=True))
    elif args.delay_s > 0:
        for i in range(args.n):
            noop.schedule(args=(_proto.payload(i),), delay=args.delay_s)
    else:
        for i in range(args.n):
            noop(_proto.payload(i))
    _proto.emit_result(_proto.timed_result(args.n, time.perf_counter() - t0))


def work(args: argparse.Namespace) -> None:
    _Bench.counter = counter = _proto.Counter.from_args(args)
    _Bench.sleep_ms = args.sleep_ms
    huey, _ = _huey(args)
    consumer = huey.create_consumer(workers=args.concurrency, worker_type="thread", periodic=False)
    counter.go()
    consumer.start()
    counter.wait()
    consumer.stop(graceful=True)
    _proto.emit_result(counter.result(concurrency=args.concurrency, model="threads"))


def main(args: argparse.Namespace) -> None:
    """Play ``args.role``."""
    logging.getLogger("huey").setLevel(logging.WARNING)
    if args.role == "enqueue-bulk":
        _proto.emit_unsupported("huey has no bulk enqueue API (Task.map enqueues one by one)")
    elif args.role in ("enqueue-single", "fill"):
        enqueue(args)
    elif args.role == "produce":
        enqueue(args, paced=True)
    else:
        work(args)


if __name__ == "__main__":
    sys.exit(_proto.main_guard(main))
