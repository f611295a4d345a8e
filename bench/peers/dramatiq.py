"""bench.compare adapter for Dramatiq (pinned in requirements/dramatiq.txt), RedisBroker.

Concurrency model: threads. ``Worker(broker, worker_threads=C)`` runs in
this process (its consumer thread fetches messages with RedisBroker's Lua
script and hands them to C worker threads). Sleeping tasks use
``time.sleep``. Defaults kept: an idle RedisBroker consumer polls with an
exponential backoff up to ``worker_timeout`` (1 s), which shows in the
pickup latency (W3) of a worker that has been idle. Results: no Results
middleware (otherwise Dramatiq's default middleware: AgeLimit, TimeLimit,
ShutdownNotifications, Callbacks, Pipelines, Retries). Bulk API: none
(``group`` composes messages for pipelines and results, it is not a bulk
enqueue), so ``enqueue-bulk`` reports unsupported and ``fill`` sends one
message at a time. Delayed messages (W7): ``send_with_options(delay=ms)``
(Dramatiq's delay queue). Unix sockets: yes (redis-py URL). Serializer:
Dramatiq's default (JSON).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.peers import _proto


class _Bench:
    counter: _proto.Counter | None = None
    sleep_ms = 0.0


def _actor(args: argparse.Namespace) -> tuple[Any, Any]:
    broker = RedisBroker(url=_proto.redis_py_url(args.url))
    broker.client.ping()
    dramatiq.set_broker(broker)

    def noop(data: dict[str, Any]) -> None:
        assert _Bench.counter is not None
        _Bench.counter.run_sync(data, _Bench.sleep_ms)

    actor = dramatiq.actor(noop, actor_name="noop", queue_name=args.queue, broker=broker)
    return broker, actor


def enqueue(args: argparse.Namespace, *, paced: bool = False) -> None:
    broker, actor = _actor(args)
    t0 = time.perf_counter()
    if paced:
        for i in _proto.paced(args.n, args.rate):
            actor.send(_proto.payload(i, stamp=True))
    elif args.delay_s > 0:
        delay_ms = round(args.delay_s * 1000)
        for i in range(args.n):
            actor.send_with_options(args=(_proto.payload(i),), delay=delay_ms)
    else:
        for i in range(args.n):
            actor.send(_proto.payload(i))
    seconds = time.perf_counter() - t0
    broker.close()
    _proto.emit_result(_proto.timed_result(args.n, seconds))


def work(args: argparse.Namespace) -> None:
    _Bench.counter = counter = _proto.Counter.from_args(args)
    _Bench.sleep_ms = args.sleep_ms
    broker, _ = _actor(args)
    worker = dramatiq.Worker(broker, worker_threads=args.concurrency)
    counter.go()
    worker.start()
    counter.wait()
    worker.stop(timeout=10_000)
    broker.close()
    _proto.emit_result(counter.result(concurrency=args.concurrency, model="threads"))


def main(args: argparse.Namespace) -> None:
    """Play ``args.role``."""
    logging.getLogger("dramatiq").setLevel(logging.WARNING)
    if args.role == "enqueue-bulk":
        _proto.emit_unsupported("Dramatiq has no bulk enqueue API (group is for composition)")
    elif args.role in ("enqueue-single", "fill"):
        enqueue(args)
    elif args.role == "produce":
        enqueue(args, paced=True)
    else:
        work(args)


if __name__ == "__main__":
    sys.exit(_proto.main_guard(main))
