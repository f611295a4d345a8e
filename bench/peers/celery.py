"""bench.compare adapter for Celery with the Redis broker (kombu's redis transport).

Concurrency model: the default prefork pool (``app.Worker(pool="prefork",
concurrency=C)``: C forked child processes; the main process fetches and
dispatches); sleeping tasks use ``time.sleep``. For no-op tasks the pool is
capped at the CPU count (Celery's default pool size; the result reports
``concurrency`` used and ``concurrency_asked``); sleeping tasks get C children.
The worker is started programmatically in this process; mingle, gossip and
heartbeats are off (single worker, no events); prefetch multiplier and acks
are the defaults.
Results: ``task_ignore_result`` and no result backend.
Bulk API: none (``group`` and ``chunks`` are canvas primitives, not a bulk
enqueue: ``group`` still publishes one message per task) -> ``enqueue-bulk``
is unsupported and ``fill`` publishes one ``apply_async`` at a time.
Delays: ``apply_async(countdown=S)`` (an ETA the worker holds in memory).
Unix sockets: yes (``redis+socket://``).

Counting across prefork children: tasks run in the children, so the target
counter is ALWAYS the ``O_APPEND`` file of ``_proto`` (``--counter PATH``, or
a private temporary file when there is none) and the main process watches it;
each child also appends one line per task (its ``perf_counter``, wall time and
pickup latency) to a private stats file that the main process reads at the
end for ``jobs_here``, ``seconds`` and ``latencies_ms``. ``cpu_seconds``
includes the pool children (``RUSAGE_CHILDREN`` once they are reaped);
``peak_rss_kb`` is the main process's, ``peak_rss_kb_children`` the sum over
the children. The go signal is taken in a consumer bootstep that runs after
the pool is forked and the task consumer is set up but before the event loop
starts fetching, so the pool start-up is not in the measured time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from celery import Celery, bootsteps  # type: ignore[import-not-found, unused-ignore]
from celery.worker import state as worker_state  # type: ignore[import-not-found, unused-ignore]

from bench.peers import _proto

_NAME = "noop"

# Celery warns on stderr when a worker runs as root; the bench may run as root.
warnings.filterwarnings("ignore", message="You're running the worker with superuser")


def _broker_url(url: str) -> str:
    u = _proto.parse_url(url)
    if u.is_unix:
        return f"redis+socket://{u.path}?virtual_host={u.db}"
    return f"redis://{u.host}:{u.port}/{u.db}"


class _Tally:
    """Task-side bookkeeping, shared by the pool children through files.

    Set up in the main process before the pool forks; every child opens the
    files itself on its first task (``O_APPEND``: atomic appends).
    """

    def __init__(self) -> None:
        self.n = 0
        self.sleep_ms = 0.0
        self.record_latency = False
        self.counter_path = ""
        self.stats_path = ""
        self._pid = -1
        self._counter_fd = -1
        self._stats_fd = -1

    def _open(self) -> None:
        self._pid = os.getpid()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        self._counter_fd = os.open(self.counter_path, flags, 0o644)
        self._stats_fd = os.open(self.stats_path, flags, 0o644)

    def run(self, data: dict[str, Any]) -> None:
        """One task: latency, sleep, then one byte to the counter and one stats line."""
        lat = ""
        if self.record_latency and data.get("t"):
            lat = repr((time.time() - float(data["t"])) * 1000.0)
        if self.sleep_ms > 0:
            time.sleep(self.sleep_ms / 1000.0)
        if self._pid != os.getpid():
            self._open()
        if os.fstat(self._counter_fd).st_size >= self.n:
            os.write(self._stats_fd, b"x\n")  # past the target: "extra", not counted
            return
        os.write(self._counter_fd, b".")
        os.write(self._stats_fd, f"{time.perf_counter()!r} {time.time()!r} {lat}\n".encode())

    def summary(self) -> dict[str, Any]:
        """jobs_here, last perf_counter/wall time, extra and latencies from the stats file."""
        jobs = extra = 0
        t_last = t_last_wall = 0.0
        lats: list[float] = []
        for line in Path(self.stats_path).read_text().splitlines():
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "x":
                extra += 1
                continue
            jobs += 1
            t_last = max(t_last, float(parts[0]))
            t_last_wall = max(t_last_wall, float(parts[1]))
            if len(parts) > 2:
                lats.append(float(parts[2]))
        return {
            "jobs_here": jobs,
            "t_last": t_last,
            "t_last_wall": t_last_wall,
            "extra": extra,
            "latencies_ms": lats,
        }


_TALLY = _Tally()


def _noop(data: dict[str, Any]) -> None:
    _TALLY.run(data)


def _make_app(args: argparse.Namespace) -> tuple[Celery, Any]:
    app = Celery("bench", broker=_broker_url(args.url), set_as_current=True)
    app.conf.update(
        task_ignore_result=True,
        result_backend=None,
        task_default_queue=args.queue,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,  # stdout carries the protocol
    )
    task = app.task(name=_NAME, ignore_result=True)(_noop)
    return app, task


def enqueue_single(args: argparse.Namespace) -> None:
    app, task = _make_app(args)
    with app.connection_for_write() as conn:
        conn.ensure_connection()
        t0 = time.perf_counter()
        for i in range(args.n):
            task.delay(_proto.payload(i))
        seconds = time.perf_counter() - t0
    _proto.emit_result(_proto.timed_result(args.n, seconds))


def enqueue_bulk(args: argparse.Namespace) -> None:
    _proto.emit_unsupported(
        "Celery has no bulk enqueue API (group/chunks are canvas primitives; "
        "group publishes one message per task)"
    )


def fill(args: argparse.Namespace) -> None:
    if args.delay_s <= 0:
        enqueue_single(args)
        return
    app, task = _make_app(args)
    with app.connection_for_write() as conn:
        conn.ensure_connection()
        t0 = time.perf_counter()
        for i in range(args.n):
            task.apply_async((_proto.payload(i),), countdown=args.delay_s)
        seconds = time.perf_counter() - t0
    _proto.emit_result(_proto.timed_result(args.n, seconds))


def produce(args: argparse.Namespace) -> None:
    app, task = _make_app(args)
    with app.connection_for_write() as conn:
        conn.ensure_connection()
        t0 = time.perf_counter()
        for i in _proto.paced(args.n, args.rate):
            task.delay(_proto.payload(i, stamp=True))
        seconds = time.perf_counter() - t0
    _proto.emit_result(_proto.timed_result(args.n, seconds))


def _children_peak_rss_kb() -> int | None:
    """Sum of VmHWM over this process's children (the pool), from /proc."""
    pid = os.getpid()
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    total = 0
    for kid in kids:
        total += _proto.peak_rss_kb(int(kid)) or 0
    return total


def _pool_size(args: argparse.Namespace) -> int:
    """The prefork pool size: as asked for sleeping tasks, else at most one per CPU.

    Celery's default (and the usual setting) for CPU-bound work is one child
    per CPU; more children than CPUs only add context switches and memory
    for no-op tasks. Tasks that sleep (W4) get the concurrency asked for.
    """
    if args.sleep_ms > 0:
        return int(args.concurrency)
    return max(1, min(int(args.concurrency), os.cpu_count() or 1))


def work(args: argparse.Namespace) -> None:
    tmp = tempfile.mkdtemp(prefix="bench-celery-")
    try:
        _TALLY.n = args.n
        _TALLY.sleep_ms = args.sleep_ms
        _TALLY.record_latency = args.record_latency
        _TALLY.counter_path = args.counter or os.path.join(tmp, "counter")
        _TALLY.stats_path = os.path.join(tmp, "stats")
        Path(_TALLY.stats_path).touch()
        counter = _proto.Counter(args.n, _TALLY.counter_path)
        children_rss: list[int | None] = [None]

        def stop() -> None:
            # What celery's SIGTERM handler does (warm shutdown), minus its line on stdout.
            children_rss[0] = _children_peak_rss_kb()
            worker_state.should_stop = 0  # EX_OK

        app, _task = _make_app(args)

        class GoGate(bootsteps.StartStopStep):  # type: ignore[misc, unused-ignore]
            """Takes the go signal once the consumer is set up, before the event loop."""

            requires = ("celery.worker.consumer.tasks:Tasks",)

            def start(self, parent: Any) -> None:
                if not counter.t_go:
                    counter.go()
                    counter.on_reached(stop)

        app.steps["consumer"].add(GoGate)
        concurrency = _pool_size(args)
        worker = app.Worker(
            hostname=f"bench-{os.getpid()}@localhost",
            pool_cls="prefork",
            concurrency=concurrency,
            loglevel="WARNING",
            quiet=True,
            without_mingle=True,
            without_gossip=True,
            without_heartbeat=True,
            queues=[args.queue],
        )
        worker.start()
        if not counter.reached:
            code = worker.exitcode
            raise RuntimeError(f"the worker stopped before the target (exit code {code})")
        tally = _TALLY.summary()
        lats = tally.pop("latencies_ms")
        t_last = tally.pop("t_last")
        extra: dict[str, Any] = {
            **tally,
            "seconds": max(0.0, t_last - counter.t_go) if tally["jobs_here"] else 0.0,
            "peak_rss_kb_children": children_rss[0],
            "concurrency": concurrency,
            "concurrency_asked": args.concurrency,
            "model": "prefork processes",
        }
        if args.record_latency:
            extra["latencies_ms"] = [round(x, 3) for x in lats]
        _proto.emit_result(counter.result(**extra))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_ROLES = {
    "enqueue-single": enqueue_single,
    "enqueue-bulk": enqueue_bulk,
    "fill": fill,
    "work": work,
    "produce": produce,
}


def main(args: argparse.Namespace) -> None:
    """Play ``args.role``."""
    _ROLES[args.role](args)


if __name__ == "__main__":
    sys.exit(_proto.main_guard(main))
