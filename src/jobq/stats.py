"""Worker registry and per-minute time series, for dashboards and charts.

Two kinds of keys, both under the queue's hash tag (names built in
:mod:`jobq.keys`):

``{q}:w:<worker id>``  HASH, one per live worker
    host, pid, queue, started (server ms), concurrency, processes, batch_size,
    slots, busy, completed, failed, retried, version, heartbeat (server ms),
    lease (ms). Written when the worker starts and on every heartbeat, with a
    PEXPIRE of one lease (three heartbeats); deleted on a clean stop. A worker
    counts as alive while its ``{q}:workers`` entry is current; a hash without
    one is ignored.

``{q}:ts:<minute>``  HASH, one per server minute (``ms // 60000``), 25 h TTL
    completed, failed, retried    attempts ended by workers, by outcome
    lat_sum, lat_n, lat_b<i>      creation to completion of completed jobs
                                  (ms): sum, count, histogram (LATENCY_BOUNDS_MS)
    wait_sum, wait_n              claim minus due time (ms), first attempts
    busy_ms, slot_ms              slot-milliseconds busy and available
    depth_last                    waiting + prioritized jobs, last sample
    dmax:<worker id>              that worker's largest sample in the minute

Every figure is added up in the worker (:class:`WorkerStats`) and written on
its heartbeat, a few commands per worker and minute: the job's own Lua calls
stay as they were, and recording an outcome costs a few dict and float
operations. Minutes come from the server's clock: each heartbeat measures the
offset between it and this host's monotonic clock.

Busy time is integrated exactly: a flush credits every running job from the
later of its claim and the previous flush, an outcome the rest; slot time is
the worker's capacity (``concurrency`` times ``batch_size``) over the time
between flushes. So ``busy_ms <= slot_ms`` in every minute and utilization
stays within 0..1.
"""

from __future__ import annotations

import bisect
import logging
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import ResponseError

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .job import Job
    from .queue import Queue

__all__ = [
    "LATENCY_BOUNDS_MS",
    "MAX_MINUTES",
    "MinutePoint",
    "WorkerInfo",
    "WorkerStats",
    "delete_stats_keys",
    "get_time_series",
    "get_workers",
    "slot_totals",
    "worker_ids",
]

LATENCY_BOUNDS_MS: tuple[int, ...] = (
    5,
    15,
    50,
    150,
    500,
    1_500,
    5_000,
    15_000,
    60_000,
    300_000,
    900_000,
    3_600_000,
)
"""Upper bounds (ms) of the latency histogram; the last bucket also holds anything longer."""

STATS_TTL_S = 25 * 3600
MAX_MINUTES = 25 * 60
"""The longest series :func:`get_time_series` reads (the minute keys live 25 h)."""

_LAST_BUCKET = len(LATENCY_BOUNDS_MS) - 1
_BUCKET_FIELDS = tuple(f"lat_b{i}" for i in range(len(LATENCY_BOUNDS_MS)))
_MINUTE_MS = 60_000

log = logging.getLogger("jobq.stats")


class RunLike(Protocol):
    """What :meth:`WorkerStats.record` needs of a running job (the worker's ``_Running``)."""

    @property
    def job(self) -> Job: ...

    @property
    def started(self) -> float: ...  # time.monotonic() at the claim

    @property
    def abandoned(self) -> bool: ...


class _Minute:
    """One minute's sums, as this worker has seen them since its last flush."""

    __slots__ = (
        "buckets",
        "busy_ms",
        "completed",
        "failed",
        "lat_n",
        "lat_sum",
        "retried",
        "slot_ms",
        "wait_n",
        "wait_sum",
    )

    def __init__(self) -> None:
        self.completed = 0
        self.failed = 0
        self.retried = 0
        self.lat_sum = 0.0
        self.lat_n = 0
        self.buckets = [0] * len(LATENCY_BOUNDS_MS)
        self.wait_sum = 0.0
        self.wait_n = 0
        self.busy_ms = 0.0
        self.slot_ms = 0.0

    def merge(self, other: _Minute) -> None:
        """Add ``other`` in (a flush that failed gives its figures back)."""
        self.completed += other.completed
        self.failed += other.failed
        self.retried += other.retried
        self.lat_sum += other.lat_sum
        self.lat_n += other.lat_n
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        self.wait_sum += other.wait_sum
        self.wait_n += other.wait_n
        self.busy_ms += other.busy_ms
        self.slot_ms += other.slot_ms


class WorkerStats:
    """The per-worker aggregator: outcomes and slot time by server minute, and the
    worker's hash. One per :class:`~jobq.Worker`; used only on its event loop.

    ``running`` is the worker's live map of running jobs (read at every flush),
    ``capacity`` the jobs it holds at once.
    """

    def __init__(
        self,
        queue: Queue,
        worker_id: str,
        running: Mapping[str, RunLike],
        *,
        capacity: int,
        concurrency: int,
        processes: int,
        batch_size: int,
        lease_ms: int,
    ) -> None:
        from . import __version__  # the package is fully imported by the time a worker exists

        self._queue = queue
        self._running = running
        self._capacity = capacity
        self.worker_id = worker_id
        self._static: dict[str, str | int] = {
            "queue": queue.name,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "concurrency": concurrency,
            "processes": processes,
            "batch_size": batch_size,
            "slots": capacity,
            "version": __version__,
            "lease": lease_ms,
        }
        self._lease_ms = lease_ms
        # server ms = monotonic s * 1000 + offset; a wall-clock guess until measured
        self._offset_ms = (time.time() - time.monotonic()) * 1000.0
        self._flushed_at: float | None = None  # monotonic time of the last flush
        self._started_ms: int | None = None
        self._minutes: dict[int, _Minute] = {}
        self._dmax_minute = -1
        self._dmax = 0
        self.completed = 0
        self.failed = 0
        self.retried = 0

    # -- the hot path ------------------------------------------------------------
    def _minute(self, minute: int) -> _Minute:
        m = self._minutes.get(minute)
        if m is None:
            m = self._minutes[minute] = _Minute()
        return m

    def _credit_busy(self, since: float, until: float) -> None:
        """Add busy slot time between two monotonic instants, split by minute."""
        a = since * 1000.0 + self._offset_ms
        b = until * 1000.0 + self._offset_ms
        while b > a:
            minute = int(a // _MINUTE_MS)
            end = min(b, (minute + 1) * _MINUTE_MS)
            self._minute(minute).busy_ms += end - a
            a = end

    def record(self, kind: str, run: RunLike) -> None:
        """One attempt ended with ``kind`` (c completed, f failed for good, r retry,
        l rate limited and put back)."""
        off = self._offset_ms
        now_ms = time.monotonic() * 1000.0 + off
        minute = int(now_ms // _MINUTE_MS)
        m = self._minutes.get(minute)
        if m is None:
            m = self._minutes[minute] = _Minute()
        flushed = self._flushed_at
        started = run.started
        since_ms = (started if flushed is None or started > flushed else flushed) * 1000.0 + off
        if since_ms >= minute * _MINUTE_MS:
            m.busy_ms += now_ms - since_ms
        else:  # the slot was held across a minute's start
            self._credit_busy((since_ms - off) / 1000.0, (now_ms - off) / 1000.0)
        if kind == "l":
            return
        job = run.job
        if kind == "c":
            self.completed += 1
            m.completed += 1
            latency = now_ms - job.timestamp
            if latency < 0.0:
                latency = 0.0
            m.lat_sum += latency
            m.lat_n += 1
            i = bisect.bisect_left(LATENCY_BOUNDS_MS, latency)
            m.buckets[i if i < _LAST_BUCKET else _LAST_BUCKET] += 1
        elif kind == "f":
            self.failed += 1
            m.failed += 1
        else:
            self.retried += 1
            m.retried += 1
        if job.attempts_made == 0 and job.stalls == 0:
            wait = started * 1000.0 + off - job.timestamp - job.options.delay_ms
            m.wait_sum += wait if wait > 0.0 else 0.0
            m.wait_n += 1

    # -- flushing ----------------------------------------------------------------
    def _integrate(self, now: float) -> None:
        """Credit running jobs and all slots from the previous flush until ``now``."""
        since = self._flushed_at
        if since is not None and now <= since:
            return  # an overlapping flush got further already
        self._flushed_at = now
        if since is None:
            return
        for run in self._running.values():
            if not run.abandoned:
                self._credit_busy(run.started if run.started > since else since, now)
        a = since * 1000.0 + self._offset_ms
        b = now * 1000.0 + self._offset_ms
        while b > a:
            minute = int(a // _MINUTE_MS)
            end = min(b, (minute + 1) * _MINUTE_MS)
            self._minute(minute).slot_ms += (end - a) * self._capacity
            a = end

    async def flush(self, *, final: bool = False) -> None:
        """Write the worker's hash and the minutes since the last flush.

        Two round trips: the server's clock and the queue depth, then one
        transaction with every write. ``final`` deletes the worker's hash instead
        (a clean stop). On a failure the figures are kept for the next flush;
        connection errors propagate (the heartbeat retries), an error reply from
        the server is logged: statistics must never stop a worker.
        """
        try:
            await self._flush(final)
        except ResponseError as exc:
            log.warning(
                "worker %s could not write its statistics to queue %r: %s",
                self.worker_id,
                self._queue.name,
                exc,
            )

    async def _flush(self, final: bool) -> None:
        client: Any = self._queue.client
        k = self._queue.keys
        t0 = time.monotonic()
        async with client.pipeline(transaction=False) as pipe:
            pipe.execute_command("TIME")  # pipe.time() is refused by a cluster pipeline
            pipe.llen(k.wait)
            pipe.zcard(k.prio)
            (sec, usec), n_wait, n_prio = await pipe.execute()
        t1 = time.monotonic()
        server_ms = int(sec) * 1000 + int(usec) // 1000
        # The reply was made about halfway through the round trip.
        self._offset_ms = server_ms - (t0 + t1) * 500.0
        if self._started_ms is None:
            self._started_ms = server_ms
        # From here to the write nothing awaits: record() cannot interleave.
        self._integrate(t1)
        minutes, self._minutes = self._minutes, {}
        depth = int(n_wait) + int(n_prio)
        depth_minute = server_ms // _MINUTE_MS
        if depth_minute != self._dmax_minute:
            self._dmax_minute, self._dmax = depth_minute, depth
        elif depth > self._dmax:
            self._dmax = depth
        wkey = k.worker(self.worker_id)
        try:
            async with client.pipeline(transaction=True) as pipe:
                for minute, m in minutes.items():
                    key = k.stats_minute(minute)
                    _write_minute(pipe, key, m)
                    pipe.expire(key, STATS_TTL_S)
                key = k.stats_minute(depth_minute)
                pipe.hset(
                    key,
                    mapping={"depth_last": depth, f"dmax:{self.worker_id}": self._dmax},
                )
                pipe.expire(key, STATS_TTL_S)
                if final:
                    pipe.delete(wkey)
                else:
                    pipe.hset(wkey, mapping=self._worker_fields(server_ms))
                    pipe.pexpire(wkey, self._lease_ms)
                await pipe.execute()
        except BaseException:
            for minute, m in minutes.items():
                self._minute(minute).merge(m)
            raise

    def _worker_fields(self, server_ms: int) -> dict[str, str | int]:
        busy = sum(1 for r in self._running.values() if not r.abandoned)
        return {
            **self._static,
            "started": self._started_ms or server_ms,
            "heartbeat": server_ms,
            "busy": busy,
            "completed": self.completed,
            "failed": self.failed,
            "retried": self.retried,
        }


def _write_minute(pipe: Any, key: str, m: _Minute) -> None:
    for name, count in (
        ("completed", m.completed),
        ("failed", m.failed),
        ("retried", m.retried),
        ("lat_n", m.lat_n),
        ("wait_n", m.wait_n),
    ):
        if count:
            pipe.hincrby(key, name, count)
    for name, amount in (
        ("lat_sum", m.lat_sum),
        ("wait_sum", m.wait_sum),
        ("busy_ms", m.busy_ms),
        ("slot_ms", m.slot_ms),
    ):
        if amount:
            pipe.hincrbyfloat(key, name, round(amount, 3))
    for name, count in zip(_BUCKET_FIELDS, m.buckets, strict=True):
        if count:
            pipe.hincrby(key, name, count)


# -- readers ------------------------------------------------------------------------
def _dt(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One live worker of a queue, as of its last heartbeat.

    ``slots`` is the number of jobs it holds at once (``concurrency``, times
    ``batch_size`` in batch mode); ``busy`` how many it held at the heartbeat.
    ``completed``, ``failed`` (for good) and ``retried`` count the attempts it
    ended since it started. A live worker that has not written its hash (an
    older jobq) shows zeros and ``None`` for what only the hash tells.
    """

    id: str
    queue: str
    host: str
    pid: int | None
    concurrency: int
    processes: int
    batch_size: int
    slots: int
    busy: int
    completed: int
    failed: int
    retried: int
    started_at: datetime | None
    last_heartbeat: datetime | None
    alive_until: datetime
    version: str | None


def _int(raw: Mapping[bytes, bytes], name: str, default: int = 0) -> int:
    value = raw.get(name.encode())
    try:
        return default if value is None else int(value)
    except ValueError:
        return default


def _worker_info(
    queue: Queue, worker_id: str, alive_ms: float, raw: Mapping[bytes, bytes]
) -> WorkerInfo:
    host, _, rest = worker_id.partition(":")
    pid_text = rest.partition(":")[0]
    started = _int(raw, "started", -1)
    heartbeat = _int(raw, "heartbeat", -1)
    version = raw.get(b"version")
    return WorkerInfo(
        id=worker_id,
        queue=queue.name,
        host=raw[b"host"].decode() if b"host" in raw else host,
        pid=_int(raw, "pid") if b"pid" in raw else (int(pid_text) if pid_text.isdigit() else None),
        concurrency=_int(raw, "concurrency"),
        processes=_int(raw, "processes"),
        batch_size=_int(raw, "batch_size"),
        slots=_int(raw, "slots"),
        busy=_int(raw, "busy"),
        completed=_int(raw, "completed"),
        failed=_int(raw, "failed"),
        retried=_int(raw, "retried"),
        started_at=None if started < 0 else _dt(started),
        last_heartbeat=None if heartbeat < 0 else _dt(heartbeat),
        alive_until=_dt(alive_ms),
        version=None if version is None else version.decode(),
    )


async def _live_workers(queue: Queue) -> tuple[int, list[tuple[str, float]]]:
    """(server ms, [(worker id, alive until)]) of the workers with a current entry."""
    client: Any = queue.client
    async with client.pipeline(transaction=False) as pipe:
        pipe.execute_command("TIME")  # pipe.time() is refused by a cluster pipeline
        pipe.zrange(queue.keys.workers, 0, -1, withscores=True)
        (sec, usec), members = await pipe.execute()
    now = int(sec) * 1000 + int(usec) // 1000
    return now, [(m.decode(), float(s)) for m, s in members if float(s) >= now]


async def get_workers(queue: Queue) -> list[WorkerInfo]:
    """The live workers of ``queue`` (two round trips), oldest first."""
    _, alive = await _live_workers(queue)
    if not alive:
        return []
    client: Any = queue.client
    async with client.pipeline(transaction=False) as pipe:
        for worker_id, _ in alive:
            pipe.hgetall(queue.keys.worker(worker_id))
        hashes = await pipe.execute()
    infos = [
        _worker_info(queue, worker_id, until, raw)
        for (worker_id, until), raw in zip(alive, hashes, strict=True)
    ]
    epoch = datetime.fromtimestamp(0, tz=UTC)
    infos.sort(key=lambda w: (w.started_at or epoch, w.id))
    return infos


async def slot_totals(queue: Queue, now_ms: int) -> tuple[int, int]:
    """(busy, total) slots summed over the workers alive at ``now_ms`` (server ms)."""
    client: Any = queue.client
    ids = await client.zrangebyscore(queue.keys.workers, now_ms, "+inf")
    if not ids:
        return 0, 0
    async with client.pipeline(transaction=False) as pipe:
        for raw_id in ids:
            pipe.hmget(queue.keys.worker(raw_id.decode()), ["busy", "slots"])
        rows = await pipe.execute()
    busy = sum(int(b) for b, _ in rows if b is not None)
    total = sum(int(s) for _, s in rows if s is not None)
    return busy, total


@dataclass(frozen=True, slots=True)
class MinutePoint:
    """One server minute of a queue (``minute`` is its start, UTC).

    ``completed`` and ``failed`` (for good) are the server's own counts (the
    same as :meth:`~jobq.Queue.get_metrics`); ``failure_rate`` is failed over
    both, None when nothing finished. Latency is creation to completion and
    ``latency_p95_ms`` an estimate from a histogram (within its bucket, see
    :data:`LATENCY_BOUNDS_MS`); wait is claim minus due time of first attempts.
    ``utilization`` is busy over available worker slot time, None when no
    worker ran; ``depth`` the waiting and prioritized jobs at the minute's last
    worker heartbeat, ``depth_max`` the largest such sample. Figures from the
    workers are None for a minute none of them reported.
    """

    minute: datetime
    completed: int
    failed: int
    retried: int
    failure_rate: float | None
    latency_avg_ms: float | None
    latency_p95_ms: float | None
    wait_avg_ms: float | None
    utilization: float | None
    depth: int | None
    depth_max: int | None


def _quantile(buckets: list[int], q: float) -> float | None:
    """Estimate a quantile from histogram counts, geometric within the bucket."""
    total = sum(buckets)
    if total == 0:
        return None
    target = q * total
    seen = 0
    for i, count in enumerate(buckets):
        if count and seen + count >= target:
            upper = float(LATENCY_BOUNDS_MS[i])
            frac = (target - seen) / count
            if i == 0:
                return upper * frac
            lower = float(LATENCY_BOUNDS_MS[i - 1])
            return float(lower * (upper / lower) ** frac)
        seen += count
    return float(LATENCY_BOUNDS_MS[-1])  # pragma: no cover - the loop always returns


def _float(raw: Mapping[bytes, bytes], name: str) -> float:
    value = raw.get(name.encode())
    return 0.0 if value is None else float(value)


def _point(minute: int, done: int, fail: int, raw: Mapping[bytes, bytes]) -> MinutePoint:
    lat_n = _int(raw, "lat_n")
    wait_n = _int(raw, "wait_n")
    slot_ms = _float(raw, "slot_ms")
    busy_ms = _float(raw, "busy_ms")
    buckets = [_int(raw, name) for name in _BUCKET_FIELDS]
    depth = _int(raw, "depth_last", -1)
    maxes = [int(v) for f, v in raw.items() if f.startswith(b"dmax:")]
    return MinutePoint(
        minute=_dt(minute * _MINUTE_MS),
        completed=done,
        failed=fail,
        retried=_int(raw, "retried"),
        failure_rate=fail / (done + fail) if done + fail else None,
        latency_avg_ms=_float(raw, "lat_sum") / lat_n if lat_n else None,
        latency_p95_ms=_quantile(buckets, 0.95),
        wait_avg_ms=_float(raw, "wait_sum") / wait_n if wait_n else None,
        utilization=min(1.0, busy_ms / slot_ms) if slot_ms > 0 else None,
        depth=None if depth < 0 else depth,
        depth_max=max(maxes) if maxes else None,
    )


async def get_time_series(queue: Queue, minutes: int = 60) -> list[MinutePoint]:
    """The last ``minutes`` server minutes of ``queue``, oldest first, the current
    (still filling) minute last. Two round trips: the clock, then every read."""
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_MINUTES:
        raise ConfigurationError(
            f"minutes must be a whole number from 1 to {MAX_MINUTES}, got {minutes!r}"
        )
    client: Any = queue.client
    k = queue.keys
    sec, usec = await client.time()
    now_minute = (int(sec) * 1000 + int(usec) // 1000) // _MINUTE_MS
    wanted = list(range(now_minute - minutes + 1, now_minute + 1))
    names = [str(m) for m in wanted]
    async with client.pipeline(transaction=False) as pipe:
        pipe.hmget(k.metrics_completed, names)
        pipe.hmget(k.metrics_failed, names)
        for m in wanted:
            pipe.hgetall(k.stats_minute(m))
        done_raw, fail_raw, *hashes = await pipe.execute()
    return [
        _point(m, int(d or 0), int(f or 0), raw)
        for m, d, f, raw in zip(wanted, done_raw, fail_raw, hashes, strict=True)
    ]


async def worker_ids(queue: Queue) -> list[str]:
    """Every worker id in the queue's registry, live or not."""
    client: Any = queue.client
    return [w.decode() for w in await client.zrange(queue.keys.workers, 0, -1)]


async def delete_stats_keys(queue: Queue, worker_ids: list[str]) -> None:
    """Delete the queue's minute hashes (every minute a key can still live in) and
    the hashes of ``worker_ids``; part of :meth:`~jobq.Queue.obliterate`."""
    client: Any = queue.client
    sec, _ = await client.time()
    now_minute = int(sec) // 60
    # A minute key lives 25 h after its last write; a few minutes of slack either side.
    keys = [queue.keys.stats_minute(m) for m in range(now_minute - MAX_MINUTES - 5, now_minute + 5)]
    keys += [queue.keys.worker(w) for w in worker_ids]
    async with client.pipeline(transaction=False) as pipe:
        for i in range(0, len(keys), 500):
            pipe.delete(*keys[i : i + 500])
        await pipe.execute()
