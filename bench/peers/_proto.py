"""The protocol every peer adapter of ``bench.compare`` speaks, and its helpers.

Standard library only: every adapter imports this module from its own
virtualenv.

Importing it, and the name clash: an adapter is named after its library
(``rq.py`` imports ``rq``), so ``bench/peers`` must NOT be on ``sys.path`` when
the library is imported, or the adapter imports itself. The harness therefore
runs ``<python> -P bench/peers/<lib>.py ...`` (``-P``: the script's directory
is not prepended) with ``PYTHONPATH`` = the repository root plus a directory
holding only a copy of this file. Both ``from bench.peers import _proto`` (the
form mypy resolves) and ``import _proto`` work. By hand:
``PYTHONPATH=. python -P bench/peers/rq.py work --url ...``.

usage of an adapter::

    <python> bench/peers/<lib>.py <role> --url URL --queue NAME [--n N]
        [--concurrency C] [--sleep-ms MS] [--rate R] [--delay-s S]
        [--counter PATH] [--record-latency]

URL is ``redis://host:port/0`` or ``unix:///path/to/sock?db=0``; see
:func:`parse_url` and :func:`redis_py_url` to turn it into what a library wants.

Roles:

``enqueue-single``
    enqueue N no-op jobs one call at a time -> ``{"jobs": N, "seconds": s}``.
``enqueue-bulk``
    enqueue N jobs with the library's bulk API in batches of :data:`BULK_BATCH`
    -> ``{"jobs": N, "seconds": s}``, or :func:`emit_unsupported` when the
    library has no documented bulk API.
``fill``
    enqueue N jobs as fast as the library allows (bulk if it has one); with
    ``--delay-s S`` every job is delayed by S seconds -> ``{"jobs": N, "seconds": s}``.
``work``
    build the worker, then :func:`wait_for_go` (prints ``READY``, reads one
    line from stdin); run no-op tasks (or sleep ``--sleep-ms``) through a
    :class:`Counter` until it reaches N; stop the worker cleanly and emit
    :meth:`Counter.result` (jobs_here, seconds, cpu_seconds, peak_rss_kb,
    t_go_wall, t_last_wall and, with ``--record-latency``, latencies_ms).
    Pass ``concurrency=`` (the C really used, when the library's model
    cannot honour ``--concurrency``) and ``model=`` to ``result()``: the
    harness reports both.
``produce``
    enqueue N stamped jobs (``payload(i, stamp=True)``) one at a time at a
    steady R jobs/s on an absolute schedule (:func:`paced` / :func:`apaced`)
    -> ``{"jobs": N, "seconds": s}``.

Every role prints exactly one final line ``RESULT <json>`` (:func:`emit_result`)
on stdout; progress and errors go to stderr; a failure exits non-zero
(:func:`main_guard`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import resource
import signal
import sys
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

#: The roles an adapter may be asked to play.
ROLES = ("enqueue-single", "enqueue-bulk", "fill", "work", "produce")
#: Batch size of ``enqueue-bulk`` and of ``fill`` when the library has a bulk API.
BULK_BATCH = 1_000
#: Length of the ``pad`` string: ``{"i":12345,"t":0,"pad":"xx..."}`` is ~100 bytes.
PAD_LEN = 78
#: How often a file counter looks at the shared file for other processes' work (s).
WATCH_INTERVAL = 0.005

_PR_SET_PDEATHSIG = 1


# --- arguments -----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    """The adapter command line (see the module docstring).

    Attributes: role, url, queue, n, concurrency, sleep_ms, rate, delay_s,
    counter (path or None), record_latency, batch.
    """
    p = argparse.ArgumentParser(prog=prog, description="bench.compare peer adapter")
    p.add_argument("role", choices=ROLES)
    p.add_argument("--url", required=True, help="redis://host:port/0 or unix:///sock?db=0")
    p.add_argument("--queue", required=True, help="queue name")
    p.add_argument("--n", type=int, default=1_000, help="jobs to enqueue / to wait for")
    p.add_argument("--concurrency", type=int, default=1, help="worker concurrency")
    p.add_argument("--sleep-ms", type=float, default=0.0, help="task duration (0: no-op)")
    p.add_argument("--rate", type=float, default=200.0, help="produce: jobs per second")
    p.add_argument("--delay-s", type=float, default=0.0, help="fill: delay every job by S s")
    p.add_argument("--counter", default=None, help="shared O_APPEND counter file (W6)")
    p.add_argument("--record-latency", action="store_true", help="work: record pickup latency")
    p.add_argument("--batch", type=int, default=BULK_BATCH, help="bulk batch size")
    args = p.parse_args(argv)
    if args.n < 0 or args.concurrency < 1 or args.batch < 1:
        p.error("--n must be >= 0, --concurrency and --batch >= 1")
    return args


@dataclass(frozen=True, slots=True)
class UrlParts:
    """A parsed bench URL: TCP (host, port) or unix socket (path), and a db number."""

    scheme: str
    host: str | None
    port: int | None
    path: str | None
    db: int

    @property
    def is_unix(self) -> bool:
        """True for a unix socket."""
        return self.scheme == "unix"


def parse_url(url: str) -> UrlParts:
    """Split ``redis://host:port/db`` or ``unix:///path?db=N``."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if parts.scheme == "unix":
        return UrlParts("unix", None, None, parts.path, int(query.get("db", "0") or 0))
    if parts.scheme not in ("redis", "rediss", "valkey"):
        raise ValueError(f"unsupported URL scheme in {url!r}")
    db_text = parts.path.lstrip("/") or query.get("db", "0")
    return UrlParts(
        "redis", parts.hostname or "127.0.0.1", parts.port or 6379, None, int(db_text or 0)
    )


def redis_py_url(url: str) -> str:
    """The URL in the form redis-py's ``from_url`` reads (``unix:///p?db=N`` / ``redis://h:p/N``)."""
    u = parse_url(url)
    if u.is_unix:
        return f"unix://{u.path}?db={u.db}"
    return f"redis://{u.host}:{u.port}/{u.db}"


def tcp_url(url: str) -> str:
    """The URL as ``redis://host:port/db``; raises ValueError for a unix socket."""
    u = parse_url(url)
    if u.is_unix:
        raise ValueError(f"this library needs TCP; run the harness with --tcp (got {url!r})")
    return f"redis://{u.host}:{u.port}/{u.db}"


# --- payload --------------------------------------------------------------------------------


def payload(i: int, stamp: bool = False) -> dict[str, Any]:
    """``{"i": i, "t": time.time() or 0, "pad": "x" * PAD_LEN}``, ~100 bytes as compact JSON."""
    return {"i": i, "t": time.time() if stamp else 0, "pad": "x" * PAD_LEN}


def batches(n: int, size: int = BULK_BATCH) -> Iterator[range]:
    """``range`` objects of at most ``size`` covering 0..n-1."""
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


# --- output ---------------------------------------------------------------------------------


def emit_result(result: dict[str, Any]) -> None:
    """Print the one ``RESULT <json>`` line on stdout and flush."""
    sys.stdout.write("RESULT " + json.dumps(result, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def emit_unsupported(why: str) -> None:
    """Report a role the library cannot play (for example no bulk API)."""
    emit_result({"unsupported": why})


def log(text: str) -> None:
    """A progress or diagnostic line on stderr."""
    print(text, file=sys.stderr, flush=True)


def timed_result(n: int, seconds: float, **extra: Any) -> dict[str, Any]:
    """The result of an enqueue role: ``{"jobs": n, "seconds": s, ...}``."""
    return {"jobs": n, "seconds": seconds, **extra}


# --- process hygiene --------------------------------------------------------------------------


def tie_to_parent() -> None:
    """Get SIGKILLed when the harness dies (Linux), so no worker outlives it."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    expected = os.environ.get("BENCH_PARENT_PID")
    if expected is not None and os.getppid() != int(expected):
        os._exit(3)


def main_guard(
    main: Callable[[argparse.Namespace], object], argv: Sequence[str] | None = None
) -> int:
    """Parse arguments, tie to the parent, run ``main(args)``; 1 with a traceback on error.

    ``main`` may be a coroutine function: it is then run by ``asyncio.run``.
    Usage at the bottom of an adapter: ``sys.exit(main_guard(main))``.
    """
    args = parse_args(argv)
    tie_to_parent()
    try:
        out = main(args)
        if asyncio.iscoroutine(out):
            asyncio.run(out)
    except Exception:
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
        return 1
    return 0


# --- the go signal and resource readings ------------------------------------------------------


def wait_for_go() -> float:
    """Print ``READY``, block until the harness sends a line, return ``time.perf_counter()``.

    Also records the wall-clock time of the go in :func:`go_wall` (for
    cross-process spans in W6).
    """
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    line = sys.stdin.readline()
    if not line:
        raise RuntimeError("stdin closed before the go signal")
    _go_wall[0] = time.time()
    return time.perf_counter()


_go_wall = [0.0]


def go_wall() -> float:
    """``time.time()`` at the go signal (0 before it)."""
    return _go_wall[0]


def cpu_seconds() -> float:
    """user + system CPU seconds of this process AND its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def peak_rss_kb(pid: int | str = "self") -> int | None:
    """VmHWM (peak resident set) of a process in kB, from /proc; None where unavailable."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    if pid == "self":  # not Linux: getrusage gives the peak in kB on Linux, bytes on macOS
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss // 1024 if sys.platform == "darwin" else rss
    return None


# --- the completion counter ---------------------------------------------------------------------


class Counter:
    """Counts finished tasks toward the target N and tells the worker when to stop.

    Local (``path=None``): this process's own count. Shared (``path``): every
    finished task appends one byte to the file (``O_APPEND``, atomic across
    processes) and the target is reached when the file holds N bytes; a
    watcher thread notices when OTHER processes finish the last jobs.

    Thread-safe. Async adapters await :meth:`wait_async`; thread adapters
    call :meth:`wait`; both return once the target is reached. Callbacks
    added with :meth:`on_reached` run once, in the thread that noticed.
    """

    def __init__(self, n: int, path: str | None = None, record_latency: bool = False) -> None:
        self.n = n
        self.path = path
        self.record_latency = record_latency
        self.jobs_here = 0
        self.extra = 0  # tasks that finished after the target was reached
        self.latencies_ms: list[float] = []
        self.t_last = 0.0  # perf_counter of this process's last finished task
        self.t_last_wall = 0.0
        self._lock = threading.Lock()
        self._reached = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._fd: int | None = None
        self._watcher: threading.Thread | None = None
        self.t_go = 0.0
        self.cpu0 = 0.0
        if path is not None:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if n <= 0:
            self._reached.set()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Counter:
        """A counter for ``--n``, ``--counter`` and ``--record-latency``."""
        return cls(args.n, args.counter, args.record_latency)

    # -- the run

    def go(self) -> float:
        """:func:`wait_for_go`, then start the clock, the CPU reading and the file watcher."""
        self.t_go = wait_for_go()
        self.cpu0 = cpu_seconds()
        if self._fd is not None and not self._reached.is_set():
            self._watcher = threading.Thread(target=self._watch, name="counter-watch", daemon=True)
            self._watcher.start()
        return self.t_go

    def start(self, stamp: Any = None) -> None:
        """Call when a task starts: records its pickup latency (``--record-latency``).

        ``stamp``: the producer's ``payload["t"]`` (or the whole payload dict).
        """
        if not self.record_latency:
            return
        if isinstance(stamp, dict):
            stamp = stamp.get("t")
        if stamp:
            lat = (time.time() - float(stamp)) * 1000.0
            with self._lock:
                self.latencies_ms.append(lat)

    def hit(self) -> bool:
        """Call when a task finishes; True once the target is reached.

        Tasks finishing after the target was reached count as ``extra`` only.
        """
        now = time.perf_counter()
        wall = time.time()
        with self._lock:
            if self._reached.is_set():
                # Past the target (jobs already in flight when it was reached): not
                # counted, so they move neither the clock nor the shared file.
                self.extra += 1
                return True
            self.jobs_here += 1
            self.t_last = now
            self.t_last_wall = wall
            if self._fd is not None:
                os.write(self._fd, b".")
                done = os.fstat(self._fd).st_size >= self.n
            else:
                done = self.jobs_here >= self.n
        if done:
            self._set_reached()
        return done

    def run_sync(self, data: Any, sleep_ms: float = 0.0) -> bool:
        """A whole task for thread/process workers: start, time.sleep, hit."""
        self.start(data)
        if sleep_ms > 0:
            time.sleep(sleep_ms / 1000.0)
        return self.hit()

    async def run_async(self, data: Any, sleep_ms: float = 0.0) -> bool:
        """A whole task for asyncio workers: start, asyncio.sleep, hit."""
        self.start(data)
        if sleep_ms > 0:
            await asyncio.sleep(sleep_ms / 1000.0)
        return self.hit()

    # -- stopping

    @property
    def reached(self) -> bool:
        """True once the target is reached (here or, with a file, anywhere)."""
        return self._reached.is_set()

    def on_reached(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once when the target is reached (at once if it already is)."""
        with self._lock:
            if not self._reached.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the target is reached; False on timeout."""
        return self._reached.wait(timeout)

    async def wait_async(self) -> None:
        """Wait, without blocking the event loop, until the target is reached."""
        if self._reached.is_set():
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def resolve() -> None:
            if not fut.done():
                fut.set_result(None)

        def wake() -> None:
            loop.call_soon_threadsafe(resolve)

        self.on_reached(wake)
        await fut

    def _set_reached(self) -> None:
        with self._lock:
            if self._reached.is_set():
                return
            self._reached.set()
            callbacks, self._callbacks = self._callbacks, []
        for cb in callbacks:
            try:
                cb()
            except Exception:
                traceback.print_exc(file=sys.stderr)

    def _watch(self) -> None:
        assert self._fd is not None
        while not self._reached.is_set():
            try:
                if os.fstat(self._fd).st_size >= self.n:
                    self._set_reached()
                    return
            except OSError:
                return
            time.sleep(WATCH_INTERVAL)

    def close(self) -> None:
        """Close the counter file."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    # -- the report

    def result(self, **extra: Any) -> dict[str, Any]:
        """The ``work`` result: call after the worker has stopped.

        ``seconds`` runs from the go to this process's last finished task
        (0 if it finished none); ``cpu_seconds`` from the go to now.
        """
        cpu = cpu_seconds() - self.cpu0
        out: dict[str, Any] = {
            "jobs_here": self.jobs_here,
            "seconds": max(0.0, self.t_last - self.t_go) if self.jobs_here else 0.0,
            "cpu_seconds": cpu,
            "peak_rss_kb": peak_rss_kb(),
            "t_go_wall": go_wall(),
            "t_last_wall": self.t_last_wall,
            "reached": self.reached,
            "extra": self.extra,
        }
        if self.record_latency:
            out["latencies_ms"] = [round(x, 3) for x in self.latencies_ms]
        out.update(extra)
        self.close()
        return out


# --- pacing for ``produce`` ----------------------------------------------------------------------


def paced(n: int, rate: float) -> Iterator[int]:
    """Yield 0..n-1, the i-th at ``t0 + i / rate`` (absolute schedule: no drift)."""
    interval = 1.0 / rate
    t0 = time.perf_counter()
    for i in range(n):
        delay = t0 + i * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield i


async def apaced(n: int, rate: float) -> AsyncIterator[int]:
    """:func:`paced` for asyncio producers."""
    interval = 1.0 / rate
    t0 = time.perf_counter()
    for i in range(n):
        delay = t0 + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        yield i


__all__ = [
    "BULK_BATCH",
    "PAD_LEN",
    "ROLES",
    "Counter",
    "UrlParts",
    "apaced",
    "batches",
    "cpu_seconds",
    "emit_result",
    "emit_unsupported",
    "go_wall",
    "log",
    "main_guard",
    "paced",
    "parse_args",
    "parse_url",
    "peak_rss_kb",
    "redis_py_url",
    "tcp_url",
    "tie_to_parent",
    "timed_result",
    "wait_for_go",
]
