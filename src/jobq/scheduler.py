"""Job schedulers: recurring jobs on a fixed interval (``every``) or a cron expression.

State, per queue (key names in :mod:`jobq.keys`):

- ``…:schedulers``, a sorted set: scheduler id → its next tick (server ms);
- ``…:sch:<id>``, a hash per scheduler: the spec (JSON), the job template
  (name, data, options), the next and last tick and how many ticks it produced;
- ``…:sch-changes``, a capped stream that wakes :class:`Scheduler` processes
  when a scheduler is upserted or removed.

Each live scheduler has exactly one pending *tick job*, with the deterministic
id ``sched:<id>:<tick ms>``, delayed until the tick. Once the tick is reached
the schedule is *advanced* by whoever gets there first: the worker that claims
the tick job, a worker's heartbeat, or a :class:`Scheduler` process. Advancing
is a compare-and-set on the next tick (``advance_scheduler.lua``), so each tick
produces exactly one job however many processes race for it.

Catch-up policy: the next tick is never in the past. After downtime (no
worker, no scheduler process), the one overdue tick job that already exists
runs once, late; the ticks missed in between are skipped, not fired in a
burst, and the schedule goes on from the first tick after the server's now.

Times come from the server's clock; the tick arithmetic (:func:`next_tick`) is
pure, so it can be tested with any "now". Cron expressions follow cron's
daylight-saving behaviour (via ``cronsim``): a daily job at 02:30 runs at 03:00
on the day clocks spring forward, and once (not twice) on the day they fall back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import signal
import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from cronsim import CronSim

from . import serialization
from .connection import NETWORK_ERRORS as _NETWORK_ERRORS
from .connection import server_time_ms
from .errors import ConfigurationError, JobNotFoundError
from .job import Job
from .keys import validate_name
from .options import Duration, JobOptions, to_ms

if TYPE_CHECKING:
    from .queue import ConnectionLike, Queue

__all__ = [
    "ScheduleSpec",
    "Scheduler",
    "SchedulerInfo",
    "advance",
    "get",
    "list_all",
    "maintain",
    "next_tick",
    "on_tick_claimed",
    "remove",
    "run_now",
    "tick_job_id",
    "upsert",
]

log = logging.getLogger("jobq.scheduler")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAINTAIN_BATCH = 500


def _to_dt(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _from_dt(value: datetime, field: str) -> int:
    if not isinstance(value, datetime):
        raise ConfigurationError(f"{field} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigurationError(
            f"{field} must be a timezone-aware datetime (e.g. datetime(..., tzinfo=UTC)), "
            f"got the naive {value.isoformat()}"
        )
    return (value - _EPOCH) // timedelta(milliseconds=1)


def _s(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def tick_job_id(scheduler_id: str, tick_ms: int) -> str:
    """The id of the job a scheduler produces for one tick."""
    return f"sched:{scheduler_id}:{tick_ms}"


# -- the schedule ------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ScheduleSpec:
    """When a scheduler ticks: every ``every`` ms, or at the times of ``cron`` in ``tz``.

    ``start``/``end`` (server ms) bound the ticks; ``limit`` caps how many
    ticks it produces. ``every`` ticks fall on ``start + k * every`` (on
    multiples of ``every`` since the Unix epoch without a start), so the same
    spec always yields the same ticks.
    """

    every: int | None = None
    cron: str | None = None
    tz: str = "UTC"
    start: int | None = None
    end: int | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if (self.every is None) == (self.cron is None):
            raise ConfigurationError("a scheduler takes exactly one of every= or cron=")
        if self.every is not None and (
            isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1
        ):
            raise ConfigurationError(f"every must be >= 1 ms, got {self.every!r}")
        try:
            zone = ZoneInfo(self.tz)
        except Exception as exc:  # ZoneInfoNotFoundError, ValueError, TypeError
            raise ConfigurationError(
                f"tz {self.tz!r} is not a known time zone (use an IANA name such as "
                f"'America/New_York'): {exc}"
            ) from exc
        if self.cron is not None:
            if not isinstance(self.cron, str) or not self.cron.strip():
                raise ConfigurationError(f"cron must be a cron expression, got {self.cron!r}")
            try:
                CronSim(self.cron, datetime(2000, 1, 1, tzinfo=zone))
            except Exception as exc:  # CronSimError, and anything odd input provokes
                raise ConfigurationError(
                    f"cron {self.cron!r} is not a valid cron expression: {exc}"
                ) from exc
        if self.limit is not None and (
            isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1
        ):
            raise ConfigurationError(f"limit must be an integer >= 1, got {self.limit!r}")
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ConfigurationError("end must not be before start")

    @classmethod
    def build(
        cls,
        *,
        every: Duration | None = None,
        cron: str | None = None,
        tz: str = "UTC",
        start: datetime | None = None,
        end: datetime | None = None,
        limit: int | None = None,
    ) -> ScheduleSpec:
        """A spec from the public arguments (durations, aware datetimes)."""
        return cls(
            every=None if every is None else to_ms(every, "every", minimum=1),
            cron=cron,
            tz=tz,
            start=None if start is None else _from_dt(start, "start"),
            end=None if end is None else _from_dt(end, "end"),
            limit=limit,
        )

    def to_json(self) -> str:
        """Canonical JSON: equal specs give equal text (the scripts compare it)."""
        out: dict[str, Any] = {}
        if self.every is not None:
            out["every"] = self.every
        else:
            out["cron"] = self.cron
            out["tz"] = self.tz
        for name in ("start", "end", "limit"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return json.dumps(out, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> ScheduleSpec:
        """Rebuild a spec from :meth:`to_json`."""
        d = json.loads(raw)
        return cls(
            every=d.get("every"),
            cron=d.get("cron"),
            tz=d.get("tz", "UTC"),
            start=d.get("start"),
            end=d.get("end"),
            limit=d.get("limit"),
        )


def _next_cron(expr: str, tz: str, after_ms: int) -> int | None:
    it = CronSim(expr, _to_dt(after_ms).astimezone(ZoneInfo(tz)))
    # In the repeated hour after clocks fall back, cronsim can name the first
    # (already past) instance of a wall time; step on to a tick after `after`.
    for _ in range(10_000):
        try:
            when = next(it)
        except StopIteration:  # no match within 50 years
            return None
        tick = _from_dt(when, "cron tick")
        if tick > after_ms:
            return tick
    return None


def next_tick(spec: ScheduleSpec, after_ms: int) -> int | None:
    """The first tick of ``spec`` strictly after ``after_ms`` (ms), or None when none is left.

    Pure: the caller supplies "now" (or the previous tick). ``limit`` is not
    applied here, since it depends on how many ticks were produced.
    """
    low = after_ms if spec.start is None else max(after_ms, spec.start - 1)
    tick: int | None
    if spec.every is not None:
        anchor = spec.start if spec.start is not None else 0
        tick = anchor if low < anchor else anchor + ((low - anchor) // spec.every + 1) * spec.every
    else:
        assert spec.cron is not None
        tick = _next_cron(spec.cron, spec.tz, low)
    if tick is None or (spec.end is not None and tick > spec.end):
        return None
    return tick


# -- what a scheduler looks like from outside ---------------------------------------------


@dataclass(frozen=True, slots=True)
class SchedulerInfo:
    """A job scheduler: its schedule, its job template and where it stands.

    ``every`` is in ms (None for a cron scheduler). ``next_run`` and
    ``last_run`` are the next and the latest tick (UTC, server clock);
    ``count`` is how many ticks it has produced (ticks whose job came due),
    not counting :meth:`~jobq.Queue.run_scheduler_now` runs. ``ended`` is True
    once ``limit`` or ``end`` is reached (then ``next_run`` is None).
    """

    id: str
    every: int | None
    cron: str | None
    tz: str
    start: datetime | None
    end: datetime | None
    limit: int | None
    next_run: datetime | None
    last_run: datetime | None
    count: int
    ended: bool
    name: str
    data: Any
    options: JobOptions

    @classmethod
    def from_hash(cls, scheduler_id: str, h: dict[bytes, bytes]) -> SchedulerInfo:
        """Build the info from the scheduler's hash."""
        spec = ScheduleSpec.from_json(h[b"spec"])
        nxt, last = h.get(b"next"), h.get(b"last")
        opts = Job.decode_options(h.get(b"o") or None, _int_or_none(h.get(b"p")), 0)
        return cls(
            id=scheduler_id,
            every=spec.every,
            cron=spec.cron,
            tz=spec.tz,
            start=None if spec.start is None else _to_dt(spec.start),
            end=None if spec.end is None else _to_dt(spec.end),
            limit=spec.limit,
            next_run=None if not nxt else _to_dt(int(nxt)),
            last_run=None if not last else _to_dt(int(last)),
            count=int(h.get(b"count") or 0),
            ended=h.get(b"ended") == b"1",
            name=_s(h.get(b"n", b"")),
            data=serialization.decode(h.get(b"d", b"null"), what=f"scheduler {scheduler_id} data"),
            options=opts,
        )

    @property
    def next_tick_ms(self) -> int | None:
        """The next tick in server ms (the number in its job's id)."""
        return None if self.next_run is None else _from_dt(self.next_run, "next_run")

    @property
    def last_tick_ms(self) -> int | None:
        """The latest tick in server ms."""
        return None if self.last_run is None else _from_dt(self.last_run, "last_run")


def _int_or_none(value: bytes | None) -> int | None:
    return int(value) if value else None


# -- operations (Queue's scheduler methods delegate here) ------------------------------


async def upsert(
    queue: Queue,
    scheduler_id: str,
    *,
    every: Duration | None = None,
    cron: str | None = None,
    tz: str = "UTC",
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int | None = None,
    name: str,
    data: Any = None,
    options: JobOptions | None = None,
) -> SchedulerInfo:
    """Create or replace a scheduler (see :meth:`jobq.Queue.upsert_scheduler`)."""
    validate_name(scheduler_id, "scheduler id")
    spec = ScheduleSpec.build(every=every, cron=cron, tz=tz, start=start, end=end, limit=limit)
    if options is not None and (options.job_id is not None or options.delay_ms):
        raise ConfigurationError(
            f"scheduler {scheduler_id!r}: options.job_id and options.delay cannot be set, "
            "the scheduler gives each job its id and due time"
        )
    _, tname, payload, raw_opts, prio, _delay, lifo = queue._prepare(name, data, options)
    first = next_tick(spec, await server_time_ms(queue.client))
    await queue.scripts.upsert_scheduler(
        scheduler_id,
        spec.to_json(),
        first,
        (tname, payload, raw_opts, prio, lifo),
        events_max_len=queue.events_max_len,
    )
    info = await get(queue, scheduler_id)
    if info is None:  # removed by someone else in between
        raise JobNotFoundError(
            f"scheduler {scheduler_id!r} of queue {queue.name!r} was removed while being upserted"
        )
    return info


async def remove(queue: Queue, scheduler_id: str) -> bool:
    """Delete a scheduler and its pending tick job; False if there was none."""
    return await queue.scripts.remove_scheduler(scheduler_id, events_max_len=queue.events_max_len)


async def get(queue: Queue, scheduler_id: str) -> SchedulerInfo | None:
    """One scheduler (live or ended), or None."""
    client: Any = queue.client
    h = await client.hgetall(queue.keys.scheduler(scheduler_id))
    return SchedulerInfo.from_hash(scheduler_id, h) if h.get(b"spec") else None


async def list_all(queue: Queue) -> list[SchedulerInfo]:
    """The live schedulers of a queue, soonest next tick first."""
    client: Any = queue.client
    ids = [_s(x) for x in await client.zrange(queue.keys.schedulers, 0, -1)]
    if not ids:
        return []
    async with client.pipeline(transaction=False) as pipe:
        for sid in ids:
            pipe.hgetall(queue.keys.scheduler(sid))
        hashes = await pipe.execute()
    return [SchedulerInfo.from_hash(i, h) for i, h in zip(ids, hashes, strict=True) if h]


async def run_now(queue: Queue, scheduler_id: str) -> Job:
    """Add one extra job from the scheduler's template now; the schedule is not moved."""
    info = await get(queue, scheduler_id)
    if info is None:
        raise JobNotFoundError(
            f"scheduler {scheduler_id!r} of queue {queue.name!r}: no such scheduler "
            "(create it with upsert_scheduler)"
        )
    now = await server_time_ms(queue.client)
    opts = replace(info.options, job_id=f"sched:{scheduler_id}:now:{now}", delay=0)
    return await queue.add(info.name, info.data, opts)


async def advance(queue: Queue, scheduler_id: str, tick: int) -> bool:
    """Move a scheduler past ``tick`` if that is still its next tick; True if this call did.

    The next tick is the first one after both ``tick`` and the server's now, so
    ticks missed during downtime are skipped (see the module docstring).
    """
    client: Any = queue.client
    async with client.pipeline(transaction=False) as pipe:
        pipe.zscore(queue.keys.schedulers, scheduler_id)
        pipe.hmget(queue.keys.scheduler(scheduler_id), ["spec", "count"])
        pipe.execute_command("TIME")  # pipe.time() is refused by a cluster pipeline
        score, (raw_spec, raw_count), (sec, usec) = await pipe.execute()
    if score is None or int(score) != tick:
        return False  # advanced already (the usual case for all but one caller)
    if raw_spec is None:
        # An id in the set without its hash (deleted by hand): the script drops it.
        await queue.scripts.advance_scheduler(
            scheduler_id, tick, None, "", events_max_len=queue.events_max_len
        )
        return False
    spec = ScheduleSpec.from_json(raw_spec)
    now = int(sec) * 1000 + int(usec) // 1000
    produced = int(raw_count or 0) + 1
    nxt = None
    if spec.limit is None or produced < spec.limit:
        nxt = next_tick(spec, max(tick, now))
    return await queue.scripts.advance_scheduler(
        scheduler_id, tick, nxt, _s(raw_spec), events_max_len=queue.events_max_len
    )


async def maintain(queue: Queue, now_ms: int | None = None) -> int:
    """Advance every scheduler whose next tick is due (at ``now_ms``, default the server's now).

    Returns how many this call advanced. A scheduler that cannot be advanced
    (say, its stored spec names a time zone this host does not know) is logged
    and skipped; network errors propagate.
    """
    client: Any = queue.client
    keys = queue.keys
    if now_ms is None:
        async with client.pipeline(transaction=False) as pipe:
            pipe.execute_command("TIME")  # pipe.time() is refused by a cluster pipeline
            pipe.zrange(keys.schedulers, 0, 0, withscores=True)
            (sec, usec), head = await pipe.execute()
        now_ms = int(sec) * 1000 + int(usec) // 1000
        if not head or head[0][1] > now_ms:
            return 0  # the common case, in one round trip
    due = await client.zrangebyscore(
        keys.schedulers, "-inf", now_ms, start=0, num=_MAINTAIN_BATCH, withscores=True
    )
    advanced = 0
    for raw_id, score in due:
        sid = _s(raw_id)
        try:
            if await advance(queue, sid, int(score)):
                advanced += 1
        except _NETWORK_ERRORS:
            raise
        except Exception:
            log.exception("scheduler %r of queue %r could not be advanced", sid, queue.name)
    return advanced


async def on_tick_claimed(queue: Queue, extra: bytes | str) -> None:
    """A worker claimed a job whose extra fields are ``extra``: if it is a scheduler's
    tick job, move that scheduler on. Never raises (it runs as a background task)."""
    try:
        x = json.loads(extra)
        sid, tick = x.get("sid"), x.get("tick")
        if isinstance(sid, str) and isinstance(tick, int):
            await advance(queue, sid, tick)
    except Exception as exc:
        # Maintenance (heartbeats, Scheduler processes) advances it instead.
        log.warning("could not advance the scheduler of a claimed job in %r: %s", queue.name, exc)


# -- the Scheduler process ------------------------------------------------------------


class Scheduler:
    """Keeps the job schedulers of one queue moving, without running jobs.

    Workers advance schedules themselves (when they claim a tick job, and on
    their heartbeat), so a Scheduler is optional: run one or more where
    schedules must keep producing jobs while no worker is up, or in
    deployments with dedicated scheduler processes. Any number may run; each
    tick still produces exactly one job.

    It sleeps until the earliest next tick (by the server's clock), wakes
    early when a scheduler is upserted or removed, and at least every
    ``max_idle`` seconds. ``await Scheduler("reports").run()`` runs until
    :meth:`close` or SIGTERM/SIGINT; ``async with Scheduler(...)`` runs it in
    the background.
    """

    def __init__(
        self,
        name: str,
        *,
        connection: ConnectionLike = None,
        prefix: str | None = None,
        max_idle: float = 60.0,
        install_signal_handlers: bool = True,
    ) -> None:
        from .queue import Queue  # the queue module imports this one

        if not max_idle > 0:
            raise ConfigurationError(f"max_idle must be > 0 seconds, got {max_idle!r}")
        self.queue = Queue(name, connection=connection, prefix=prefix)
        self.name = name
        self.max_idle = max_idle
        self.install_signal_handlers = install_signal_handlers
        self.ticks_advanced = 0
        self._stop = asyncio.Event()
        self._closed = asyncio.Event()
        self._started = False
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Keep the schedules moving until closed or signalled."""
        if self._started:
            raise RuntimeError(f"scheduler process for queue {self.name!r} was already started")
        self._started = True
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        blocker: Any = None
        try:
            await self.queue.open()
            blocker = self.queue.blocking_client(self.max_idle + 5)
            installed = self._install_signals(loop)
            log.info("scheduler process started on queue %r", self.name)
            await self._loop(blocker)
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            if blocker is not None:
                with contextlib.suppress(*_NETWORK_ERRORS):
                    await blocker.aclose()
            await self.queue.close()
            self._closed.set()
            log.info("scheduler process on queue %r stopped", self.name)

    async def close(self) -> None:
        """Stop, and wait until :meth:`run` has returned."""
        self._stop.set()
        if self._started:
            await self._closed.wait()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def __aenter__(self) -> Scheduler:
        self._task = asyncio.create_task(self.run(), name=f"jobq-scheduler-{self.name}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _loop(self, blocker: Any) -> None:
        client: Any = self.queue.client
        keys = self.queue.keys
        last = await client.xrevrange(keys.scheduler_changes, "+", "-", count=1)
        last_id: bytes | str = last[0][0] if last else "0-0"
        failures = 0
        while not self._stop.is_set():
            try:
                now = await server_time_ms(client)
                self.ticks_advanced += await maintain(self.queue, now)
                # The earliest tick after `now`: due ones maintain could not
                # advance are retried on the next wake, not in a tight loop.
                async with client.pipeline(transaction=False) as pipe:
                    pipe.zrangebyscore(
                        keys.schedulers, f"({now}", "+inf", start=0, num=1, withscores=True
                    )
                    pipe.execute_command("TIME")  # pipe.time() is refused by a cluster pipeline
                    head, (sec, usec) = await pipe.execute()
                wait_ms = int(self.max_idle * 1000)
                if head:
                    wait_ms = min(wait_ms, int(head[0][1]) - (int(sec) * 1000 + int(usec) // 1000))
                if wait_ms > 0:
                    last_id = await self._wait_for_change(blocker, last_id, wait_ms)
                failures = 0
            except _NETWORK_ERRORS as exc:
                if failures == 0:
                    log.warning("scheduler process on %r lost Redis (%s)", self.name, exc)
                delay = random.uniform(0, min(5.0, 0.05 * (2**failures)))
                failures += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)

    async def _wait_for_change(self, blocker: Any, last_id: bytes | str, wait_ms: int) -> Any:
        """Block up to ``wait_ms`` for an upsert/removal or :meth:`close`; the last entry seen."""
        read = asyncio.ensure_future(
            blocker.xread({self.queue.keys.scheduler_changes: last_id}, block=wait_ms, count=100)
        )
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (read, stop):
                if not fut.done():
                    fut.cancel()
                    with contextlib.suppress(asyncio.CancelledError, *_NETWORK_ERRORS):
                        await fut
        if read.done() and not read.cancelled():
            reply = read.result()  # raises a network error for the loop to handle
            if reply:
                last_id = reply[0][1][-1][0]
        return last_id

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[signal.Signals]:
        in_main = threading.current_thread() is threading.main_thread()
        if not self.install_signal_handlers or not in_main:
            return []
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._stop.set)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
                continue
            installed.append(sig)
        return installed
