"""The Queue: add jobs, read them back, and steer the queue."""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from redis.asyncio import Redis

from . import groups as _groups
from . import scheduler as _scheduler
from . import security as _security
from . import serialization
from . import stats as _stats
from . import tracing as _tracing
from ._eventwire import job_event
from .connection import (
    ConnectionSettings,
    check_server,
    clone_client,
    create_client,
    resolve,
    server_time_ms,
)
from .errors import (
    ConfigurationError,
    ConnectionSetupError,
    JobFailedError,
    JobNotFoundError,
    PayloadError,
    WaitTimeoutError,
    raise_for_code,
)
from .groups import GroupInfo, GroupLimits
from .job import Job, JobState
from .keys import QueueKeys
from .options import Duration, JobOptions, RateLimit, to_ms
from .scheduler import SchedulerInfo
from .scripts import QueueScripts
from .signing import JobSigner

__all__ = ["BulkJob", "JobCounts", "Queue"]

ConnectionLike = str | ConnectionSettings | Redis | None

# Clients whose server was already checked (version, eviction policy): once is enough.
_CHECKED: weakref.WeakSet[Redis] = weakref.WeakSet()
ListState = Literal[
    "waiting",
    "prioritized",
    "active",
    "delayed",
    "completed",
    "failed",
    "paused",
    "waiting-children",
]
CleanState = Literal["completed", "failed", "delayed", "waiting"]


@dataclass(frozen=True, slots=True)
class JobCounts:
    """Jobs per state. While a queue is paused its waiting jobs count as ``paused``."""

    waiting: int
    active: int
    completed: int
    failed: int
    delayed: int
    paused: int
    prioritized: int
    waiting_children: int = 0

    def to_dict(self) -> dict[str, int]:
        """The counts as a plain dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class BulkJob:
    """One job for :meth:`Queue.add_bulk`."""

    name: str
    data: Any = None
    options: JobOptions | None = None


def _bulk_item_error(exc: Exception, index: int, name: str) -> Exception:
    """``exc`` again, naming the add_bulk item it is about."""
    return type(exc)(f"add_bulk item {index} ({name!r}): {exc}")


class Queue:
    """A named queue on Redis.

    ``connection`` takes a URL, :class:`~jobq.connection.ConnectionSettings` or
    a ``redis.asyncio.Redis`` client (which jobq then does not close). Left
    out, jobq reads ``REDIS_URL`` (or ``REDIS_HOST``/``REDIS_PORT``/...), and
    with nothing configured starts the embedded Valkey server.

    Use it as ``async with Queue("reports") as queue: ...``.

    ``signing``: a :class:`~jobq.signing.JobSigner` seals every job this queue
    adds (workers given the same keys refuse jobs without a good signature);
    left out, ``JOBQ_SIGNING_KEYS`` configures it; False turns it off.
    """

    def __init__(
        self,
        name: str,
        *,
        connection: ConnectionLike = None,
        prefix: str | None = None,
        max_payload_bytes: int | None = serialization.DEFAULT_LIMIT,
        events_max_len: int = 10_000,
        log_max_lines: int = 1_000,
        default_options: JobOptions | None = None,
        signing: JobSigner | Literal[False] | None = None,
    ) -> None:
        self._connection = connection
        self._prefix_arg = prefix
        self.name = name
        self.keys = QueueKeys(prefix or "jobq", name)  # checks the name now, not at open
        if max_payload_bytes is not None and max_payload_bytes < 1:
            raise ConfigurationError(f"max_payload_bytes must be >= 1, got {max_payload_bytes}")
        if events_max_len < 0:
            raise ConfigurationError(f"events_max_len must be >= 0, got {events_max_len}")
        self.max_payload_bytes = max_payload_bytes
        self.events_max_len = events_max_len
        self.log_max_lines = log_max_lines
        self.default_options = default_options or JobOptions()
        self.signer = JobSigner.from_env() if signing is None else signing or None
        self._client: Redis | None = None
        self._owns_client = False
        self._settings: ConnectionSettings | None = None
        self._scripts: QueueScripts | None = None
        self._last_options: tuple[JobOptions, bytes, str, str, int, bool] | None = None

    # -- lifecycle ---------------------------------------------------------
    async def open(self) -> Queue:
        """Connect (idempotent)."""
        if self._client is not None:
            return self
        _tracing.detect()  # switches tracing on if a tracer provider is configured
        target = resolve(self._connection)
        if isinstance(target, ConnectionSettings):
            self._settings = target
            self._client = create_client(target)
            self._owns_client = True
            prefix = self._prefix_arg or target.prefix
        else:
            self._client = target
            prefix = self._prefix_arg or "jobq"
        self.keys = QueueKeys(prefix, self.name)
        # A queue that made its own client keeps one of its connections for script
        # calls (the add hot path): see QueueScripts.
        self._scripts = QueueScripts(
            self._client, self.keys, dedicated_connection=self._owns_client
        )
        if self._settings is not None and self._settings.durable_adds:
            timeout_ms = max(1, int(self._settings.durable_timeout * 1000))
            self._scripts.durable = (self._settings.durable_adds, timeout_ms)
        if self._client not in _CHECKED:
            try:
                await check_server(self._client, queue_name_for_messages=self.name)
            except ConnectionSetupError as exc:
                if self._settings is not None:
                    # Say which URL (and user) was refused; the password stays out.
                    exc.args = (f"{exc} (URL {self._settings.redacted_url})",)
                raise
            await _security.check_permissions(self._client, self.keys)
            _CHECKED.add(self._client)
        return self

    async def close(self) -> None:
        """Close the connection if this queue opened it."""
        client, self._client, scripts, self._scripts = self._client, None, self._scripts, None
        if scripts is not None:
            await scripts.close()
        if client is not None and self._owns_client:
            await client.aclose()

    async def __aenter__(self) -> Queue:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def client(self) -> Redis:
        """The Redis client (the queue must be open)."""
        if self._client is None:
            raise RuntimeError(
                f"queue {self.name!r} is not open: use 'async with Queue(...)' or await open()"
            )
        return self._client

    @property
    def scripts(self) -> QueueScripts:
        """The queue's Lua scripts (the queue must be open)."""
        if self._scripts is None:
            raise RuntimeError(
                f"queue {self.name!r} is not open: use 'async with Queue(...)' or await open()"
            )
        return self._scripts

    def blocking_client(self, block_timeout: float) -> Redis:
        """A new client for blocking reads of up to ``block_timeout`` seconds."""
        if self._settings is not None:
            return create_client(self._settings, blocking=True, block_timeout=block_timeout)
        return clone_client(self.client, block_timeout=block_timeout)

    # -- adding ------------------------------------------------------------
    def _prepare(
        self, name: str, data: Any, options: JobOptions | None
    ) -> tuple[str, str, bytes, bytes, str, int, bool]:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"job name must be a non-empty string, got {name!r}")
        opts = options if options is not None else self.default_options
        payload = serialization.encode(data, limit=self.max_payload_bytes, what="data")
        if _tracing.enabled:  # the one check tracing costs when off
            stored = opts.to_json()
            _tracing.inject(stored)
            raw_opts = json.dumps(stored, separators=(",", ":")).encode() if stored else b""
            prio = "" if opts.priority is None else str(opts.priority)
            fixed = (opts, raw_opts, opts.job_id or "", prio, opts.delay_ms, opts.lifo)
        else:
            fixed = self._encoded_options(opts)
        _, raw_opts, job_id, prio, delay, lifo = fixed
        if self.signer is not None:
            raw_opts = self.signer.seal(self.keys.prefix, self.name, name, payload, raw_opts)
        return (job_id, name, payload, raw_opts, prio, delay, lifo)

    def _encoded_options(self, opts: JobOptions) -> tuple[JobOptions, bytes, str, str, int, bool]:
        """(opts, options JSON, job id, priority, delay ms, lifo), kept for the last ``opts``.

        A producer usually passes the same options object to add after add; it
        is frozen, so its stored form is computed once for as long as it is
        passed again.
        """
        last = self._last_options
        if last is not None and last[0] is opts:
            return last
        stored = opts.to_json()
        raw_opts = json.dumps(stored, separators=(",", ":")).encode() if stored else b""
        prio = "" if opts.priority is None else str(opts.priority)
        last = (opts, raw_opts, opts.job_id or "", prio, opts.delay_ms, opts.lifo)
        self._last_options = last
        return last

    def _dedup_spec(self, options: JobOptions | None) -> tuple[str, int, bool] | None:
        dd = (options if options is not None else self.default_options).dedup
        return None if dd is None else (dd.key, dd.ttl_ms or 0, dd.debounce)

    async def add(self, name: str, data: Any = None, options: JobOptions | None = None) -> Job:
        """Add one job. With ``options.job_id`` of an existing job, return that job instead.

        With ``options.deduplication`` whose key a pending job holds, return
        that job (updated, if the add debounced it) and add nothing.
        """
        if _tracing.enabled:
            job: Job = await _tracing.publish(self.name, self._add(name, data, options))
            return job
        return await self._add(name, data, options)

    async def _add(self, name: str, data: Any, options: JobOptions | None) -> Job:
        prepared = self._prepare(name, data, options)
        [(job_id, created)] = await self.scripts.add(
            self.events_max_len, [prepared], [self._dedup_spec(options)]
        )
        if not created:
            existing = await self.get_job(job_id)
            if existing is not None:
                return existing
        opts = options if options is not None else self.default_options
        return Job(self, job_id, name, data, opts, timestamp=int(time.time() * 1000))

    async def add_bulk(
        self, jobs: Iterable[BulkJob | tuple[str, Any] | tuple[str, Any, JobOptions | None]]
    ) -> list[Job]:
        """Add many jobs in one round trip, atomically: all are written or none.

        Every payload is checked before anything is sent, so one bad job
        refuses the whole batch with an error naming its index.
        """
        if _tracing.enabled:
            jobs_added: list[Job] = await _tracing.publish(
                self.name, self._add_bulk(jobs), bulk=True
            )
            return jobs_added
        return await self._add_bulk(jobs)

    async def _add_bulk(
        self, jobs: Iterable[BulkJob | tuple[str, Any] | tuple[str, Any, JobOptions | None]]
    ) -> list[Job]:
        items: list[tuple[str, Any, JobOptions | None]] = []
        for j in jobs:
            if type(j) is tuple and len(j) == 3:
                items.append(j)
            else:
                b = j if isinstance(j, BulkJob) else BulkJob(*j)
                items.append((b.name, b.data, b.options))
        if not items:
            return []
        alike = self._alike(items)
        if alike is not None:
            return await self._add_alike(items, *alike)
        prepared = []
        prepare = self._prepare
        for i, (name, data, options) in enumerate(items):
            try:
                prepared.append(prepare(name, data, options))
            except (ConfigurationError, PayloadError) as exc:
                raise _bulk_item_error(exc, i, name) from exc
        dedup = [self._dedup_spec(options) for _, _, options in items]
        result = await self.scripts.add(self.events_max_len, prepared, dedup)
        now = int(time.time() * 1000)
        # Items that added nothing (existing id, deduplicated) get the stored job.
        found = {j.id: j for j in await self._jobs_by_ids([i for i, c in result if not c])}
        out = []
        default = self.default_options
        for (name, data, options), (job_id, created) in zip(items, result, strict=True):
            if not created and job_id in found:
                out.append(found[job_id])
                continue
            opts = options if options is not None else default
            out.append(Job(self, job_id, name, data, opts, timestamp=now))
        return out

    def _alike(
        self, items: list[tuple[str, Any, JobOptions | None]]
    ) -> tuple[str, JobOptions] | None:
        """(name, options) when every item has them, as the same objects, and
        adds nothing but a new job with them (no id, deduplication, signature
        or trace to add per job): the usual bulk add."""
        name, _, options = items[0]
        for item in items:
            if item[0] is not name or item[2] is not options:
                return None
        opts = options if options is not None else self.default_options
        if opts.job_id is not None or opts.dedup is not None or self.signer is not None:
            return None
        if _tracing.enabled or not isinstance(name, str) or not name:
            return None  # the general path traces, or names the bad name
        return name, opts

    async def _add_alike(
        self, items: list[tuple[str, Any, JobOptions | None]], name: str, opts: JobOptions
    ) -> list[Job]:
        limit = self.max_payload_bytes
        payloads = serialization.encode_flat_batch([item[1] for item in items], limit)
        if payloads is None:
            encode = serialization.encode
            payloads = []
            try:
                for _, data, _ in items:
                    payloads.append(encode(data, limit=limit, what="data"))
            except PayloadError as exc:
                raise _bulk_item_error(exc, len(payloads), name) from exc
        _, raw_opts, _, prio, delay, lifo = self._encoded_options(opts)
        ids = await self.scripts.add_alike(
            self.events_max_len, (name, raw_opts, prio, delay, lifo), payloads
        )
        now = int(time.time() * 1000)
        return [
            Job(self, job_id, name, item[1], opts, timestamp=now)
            for job_id, item in zip(ids, items, strict=True)
        ]

    # -- deduplication -----------------------------------------------------
    async def get_deduplication_job_id(self, key: str) -> str | None:
        """The id of the job holding deduplication ``key``, or None if it is free."""
        client: Any = self.client
        raw = await client.get(self.keys.dedup(key))
        return None if raw is None else raw.decode()

    async def remove_deduplication_key(self, key: str) -> bool:
        """Free deduplication ``key`` now (its job, if any, is left alone).

        The next add with this key creates a new job. True if the key was held.
        """
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.dedup(key))
            pipe.zrem(self.keys.dedup_index, key)
            deleted, _ = await pipe.execute()
        return bool(deleted)

    # -- reading -----------------------------------------------------------
    async def get_job(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        client: Any = self.client
        h = await client.hgetall(self.keys.job(job_id))
        return Job.from_hash(self, job_id, h) if h else None

    async def _jobs_by_ids(self, ids: Sequence[str]) -> list[Job]:
        if not ids:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self.keys.job(job_id))
            hashes = await pipe.execute()
        return [Job.from_hash(self, i, h) for i, h in zip(ids, hashes, strict=True) if h]

    async def get_job_ids(self, state: ListState, start: int = 0, end: int = -1) -> list[str]:
        """Ids in ``state``: waiting in the order they will run, finished newest first."""
        c: Any = self.client
        k = self.keys
        if state in ("waiting", "paused"):
            return await self._waiting_ids(start, end)
        if state == "prioritized":
            raw = await c.zrange(k.prio, start, end)
        elif state == "active":
            raw = await c.zrange(k.active, start, end)
        elif state == "delayed":
            raw = await c.zrange(k.delayed, start, end)
        elif state == "completed":
            raw = await c.zrevrange(k.completed, start, end)
        elif state == "failed":
            raw = await c.zrevrange(k.failed, start, end)
        elif state == "waiting-children":
            raw = await c.zrange(k.waiting_children, start, end)
        else:
            raise ConfigurationError(
                "state must be one of waiting, prioritized, active, delayed, completed, "
                f"failed, paused; got {state!r}"
            )
        return [x.decode() for x in raw]

    async def _waiting_ids(self, start: int, end: int) -> list[str]:
        """Waiting ids in run order (prioritised, plain, then grouped), reading only the
        requested slice of each part, so a page stays cheap under a huge backlog."""
        c: Any = self.client
        k = self.keys
        if start < 0 or end < -1:
            raise ConfigurationError(f"start must be >= 0 and end >= -1, got {start}, {end}")
        async with c.pipeline(transaction=False) as pipe:
            pipe.zcard(k.prio)
            pipe.llen(k.wait)
            n_prio, n_plain = await pipe.execute()
        stop = (n_prio + n_plain) if end == -1 else end + 1  # exclusive, over prio + plain
        out: list[str] = []
        if start < n_prio and stop > start:
            raw = await c.zrange(k.prio, start, min(stop, n_prio) - 1)
            out.extend(x.decode() for x in raw)
        lo, hi = max(start - n_prio, 0), min(stop - n_prio, n_plain)
        if hi > lo:
            # The plain list is consumed from its right end: run order j is index -(j+1).
            raw = await c.lrange(k.wait, -hi, -(lo + 1))
            out.extend(x.decode() for x in reversed(raw))
        if end == -1 or end + 1 > n_prio + n_plain:
            grouped = await _groups.waiting_group_job_ids(self)
            g_start = max(start - n_prio - n_plain, 0)
            g_stop = None if end == -1 else end + 1 - n_prio - n_plain
            out.extend(grouped[g_start:g_stop])
        return out

    async def get_jobs(self, state: ListState, start: int = 0, end: int = -1) -> list[Job]:
        """Jobs in ``state`` (see :meth:`get_job_ids` for the order)."""
        return await self._jobs_by_ids(await self.get_job_ids(state, start, end))

    async def get_job_counts(self) -> JobCounts:
        """Jobs per state, read atomically."""
        return JobCounts(*await self.scripts.counts())

    async def get_job_state(self, job_id: str) -> JobState:
        """One job's state: waiting, prioritized, paused, delayed, active, completed, failed,
        or 'unknown' when there is no such job."""
        return await self.scripts.state(job_id)

    async def get_metrics(
        self, kind: Literal["completed", "failed"], minutes: int = 60
    ) -> list[int]:
        """Jobs completed (or failed for good) in each of the last ``minutes`` minutes,
        oldest first, by the server's clock."""
        key = self.keys.metrics_completed if kind == "completed" else self.keys.metrics_failed
        client: Any = self.client
        now_minute = await server_time_ms(client) // 60_000
        wanted = [str(now_minute - i) for i in range(minutes - 1, -1, -1)]
        raw = await client.hmget(key, wanted)
        return [int(x) if x is not None else 0 for x in raw]

    async def workers_alive(self) -> int:
        """Workers whose heartbeat is current."""
        now = await server_time_ms(self.client)
        return int(await self.client.zcount(self.keys.workers, now, "+inf"))

    async def get_workers(self) -> list[_stats.WorkerInfo]:
        """The live workers of this queue as of their last heartbeat: host, pid,
        slots, busy, outcomes since start... (see :class:`jobq.stats.WorkerInfo`)."""
        return await _stats.get_workers(self)

    async def get_time_series(self, minutes: int = 60) -> list[_stats.MinutePoint]:
        """Per-minute throughput, failure rate, latency (avg, p95), wait, worker
        utilization and depth of the last ``minutes`` server minutes (up to 25 h),
        oldest first (see :class:`jobq.stats.MinutePoint`)."""
        return await _stats.get_time_series(self, minutes)

    # -- steering ----------------------------------------------------------
    async def pause(self) -> bool:
        """Stop workers claiming jobs (running jobs go on). True if it was running."""
        return await self.scripts.pause(True, events_max_len=self.events_max_len)

    async def resume(self) -> bool:
        """Let workers claim again. True if it was paused."""
        return await self.scripts.pause(False, events_max_len=self.events_max_len)

    async def is_paused(self) -> bool:
        """Whether the queue is paused."""
        return bool(await self.client.hexists(self.keys.meta, "paused"))

    async def set_dead_letter_queue(self, name: str | None) -> None:
        """Route this queue's jobs that fail for good to the dead-letter queue ``name``
        (same prefix; ``"dead-letter"`` by convention), or stop routing with None.

        Stored in Redis, so every worker of the queue follows it (each reads it at
        start and with every heartbeat). See :mod:`jobq.deadletter`.
        """
        if name is None:
            await self.client.hdel(self.keys.meta, "dlq")
            return
        QueueKeys(self.keys.prefix, name)  # checks the name, naming the field if bad
        if name == self.name:
            raise ConfigurationError(
                f"queue {self.name!r} cannot be its own dead-letter queue; pick another name"
            )
        await self.client.hset(self.keys.meta, "dlq", name)

    async def get_dead_letter_queue(self) -> str | None:
        """The dead-letter queue this queue's failed jobs go to, or None."""
        raw = await self.client.hget(self.keys.meta, "dlq")
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)

    async def promote(self, job_id: str) -> None:
        """Run a delayed job now."""
        code = await self.scripts.promote(job_id, events_max_len=self.events_max_len)
        raise_for_code(code, queue=self.name, job_id=job_id, action="promote: job is not delayed")

    async def retry(self, job_id: str) -> None:
        """Put one failed job back to waiting, its attempts reset."""
        code = await self.scripts.retry(job_id, 0, events_max_len=self.events_max_len)
        raise_for_code(code, queue=self.name, job_id=job_id, action="retry: job has not failed")

    async def retry_all_failed(self, batch: int = 1_000) -> int:
        """Put every failed job back to waiting; returns how many."""
        total = 0
        while True:
            n = await self.scripts.retry("", batch, events_max_len=self.events_max_len)
            total += n
            if n < batch:
                return total

    async def find_failed(
        self,
        *,
        name: str | None = None,
        error_contains: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        batch: int = 500,
    ) -> list[str]:
        """Ids of failed jobs matching every filter given, newest failure first.

        ``since``/``until`` bound the failure time (read from the index by
        score); ``name`` matches the job name exactly; ``error_contains`` is
        text in the failure reason or any attempt's error (case-sensitive).
        Jobs are read ``batch`` at a time, so memory stays bounded.
        """
        c: Any = self.client
        hi: Any = "+inf" if until is None else int(until.timestamp() * 1000)
        lo: Any = "-inf" if since is None else int(since.timestamp() * 1000)
        found: list[str] = []
        offset = 0
        while True:
            raw = await c.zrevrangebyscore(self.keys.failed, hi, lo, start=offset, num=batch)
            if not raw:
                return found
            offset += len(raw)
            ids = [x.decode() for x in raw]
            if name is None and error_contains is None:
                found.extend(ids)
                continue
            async with c.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hmget(self.keys.job(job_id), "n", "fr", "er")
                rows = await pipe.execute()
            for job_id, (n, fr, er) in zip(ids, rows, strict=True):
                if name is not None and (n or b"").decode("utf-8", "replace") != name:
                    continue
                if error_contains is not None:
                    text = (fr or b"").decode("utf-8", "replace") + "\n"
                    text += (er or b"").decode("utf-8", "replace")
                    if error_contains not in text:
                        continue
                found.append(job_id)

    async def clean_count(self, state: CleanState, grace: Duration = 0) -> int:
        """How many jobs :meth:`clean` would delete in ``state`` with this ``grace``."""
        c: Any = self.client
        if state in ("completed", "failed"):
            key = self.keys.completed if state == "completed" else self.keys.failed
            cutoff = await server_time_ms(c) - to_ms(grace, "grace")
            return int(await c.zcount(key, "-inf", cutoff))
        counts = await self.get_job_counts()
        if state == "delayed":
            return counts.delayed
        return counts.waiting + counts.paused + counts.prioritized

    async def remove(self, job_id: str) -> None:
        """Delete a job that is not running."""
        code = await self.scripts.remove(job_id, events_max_len=self.events_max_len)
        raise_for_code(code, queue=self.name, job_id=job_id, action="remove: job is running")

    async def drain(self, *, delayed: bool = False, batch: int = 1_000) -> int:
        """Delete every waiting job (and delayed ones if asked); returns how many."""
        total = 0
        while True:
            n = await self.scripts.drain(delayed, batch, events_max_len=self.events_max_len)
            total += n
            if n == 0:
                return total

    async def clean(self, state: CleanState, grace: Duration = 0, limit: int = 1_000) -> list[str]:
        """Delete up to ``limit`` jobs in ``state`` older than ``grace``; returns their ids."""
        if state not in ("completed", "failed", "delayed", "waiting"):
            raise ConfigurationError(
                f"clean takes state completed, failed, delayed or waiting; got {state!r}"
            )
        return await self.scripts.clean(
            state, to_ms(grace, "grace"), limit, events_max_len=self.events_max_len
        )

    async def obliterate(self, *, force: bool = False, batch: int = 1_000) -> int:
        """Delete the queue with all its jobs. Refuses while jobs run unless ``force``."""
        total = 0
        workers = await _stats.worker_ids(self)  # the script deletes the registry at the end
        while True:
            n = await self.scripts.obliterate(force, batch)
            raise_for_code(n, queue=self.name, action="obliterate")
            total += n
            if n == 0:
                await _stats.delete_stats_keys(self, workers)
                return total

    # -- groups --------------------------------------------------------------
    async def set_group_limits(
        self,
        group: str | None = None,
        *,
        concurrency: int | None = None,
        rate: RateLimit | None = None,
    ) -> None:
        """Limit how many jobs of a group run at once and start per window, across
        all workers. ``group=None`` sets the default for every group; leaving both
        limits out removes the setting. See :mod:`jobq.groups`."""
        await _groups.set_group_limits(self, group, concurrency, rate)

    async def get_group_limits(self, group: str | None = None) -> GroupLimits:
        """The limits that apply to ``group`` (its own, else the default)."""
        return await _groups.get_group_limits(self, group)

    async def get_groups(self) -> list[GroupInfo]:
        """Every group with waiting or running jobs, with its counts and state."""
        return await _groups.list_groups(self)

    # -- schedulers ----------------------------------------------------------
    async def upsert_scheduler(
        self,
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
        """Create or replace a job scheduler: a job ``name`` with ``data`` every
        ``every`` ms, or at the times of ``cron`` in time zone ``tz``.

        ``start``/``end`` (aware datetimes) bound the ticks, ``limit`` caps
        their number. Upserting the same spec again changes nothing (a new
        template applies from the pending tick on); a changed spec replaces the
        schedule and its pending job. See docs/schedulers.md.
        """
        return await _scheduler.upsert(
            self,
            scheduler_id,
            every=every,
            cron=cron,
            tz=tz,
            start=start,
            end=end,
            limit=limit,
            name=name,
            data=data,
            options=options,
        )

    async def remove_scheduler(self, scheduler_id: str) -> bool:
        """Delete a job scheduler and its pending job; False if there was none."""
        return await _scheduler.remove(self, scheduler_id)

    async def get_scheduler(self, scheduler_id: str) -> SchedulerInfo | None:
        """One job scheduler (also an ended one), or None."""
        return await _scheduler.get(self, scheduler_id)

    async def list_schedulers(self) -> list[SchedulerInfo]:
        """The live job schedulers, soonest next run first."""
        return await _scheduler.list_all(self)

    async def run_scheduler_now(self, scheduler_id: str) -> Job:
        """Add one extra job from a scheduler's template now; its schedule is not moved."""
        return await _scheduler.run_now(self, scheduler_id)

    # -- waiting for results ---------------------------------------------
    async def wait_for_job(self, job_id: str, timeout: float | None = None) -> Any:
        """Wait until a job finishes: its return value, or JobFailedError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        client: Any = self.client
        last = await client.xrevrange(self.keys.events, "+", "-", count=1)
        last_id: bytes | str = last[0][0] if last else "0-0"
        done = await self._finished_result(job_id)
        if done is not None:
            return done[0]
        want = job_id.encode()
        step = 2.0
        blocker: Any = self.blocking_client(step)
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise WaitTimeoutError(
                        f"job {job_id!r} in queue {self.name!r} did not finish within {timeout} s"
                    )
                block = step if remaining is None else min(step, remaining)
                reply: Any = await blocker.xread(
                    {self.keys.events: last_id}, block=max(1, int(block * 1000)), count=500
                )
                if not reply:
                    # Events may be off or trimmed past us: look at the job itself.
                    done = await self._finished_result(job_id)
                    if done is not None:
                        return done[0]
                    continue
                for entry_id, entry in reply[0][1]:
                    last_id = entry_id
                    fields = job_event(entry, want)
                    if fields is None:
                        continue
                    event = fields.get(b"e")
                    if event == b"completed":
                        rv = fields.get(b"rv")
                        if rv is not None:
                            return serialization.decode(rv, what=f"job {job_id} return value")
                        done = await self._finished_result(job_id)
                        return None if done is None else done[0]
                    if event == b"failed":
                        done = await self._finished_result(job_id)
                        if done is not None:
                            return done[0]
                        reason = fields.get(b"reason", b"").decode("utf-8", "replace")
                        raise JobFailedError(job_id, reason)
        finally:
            await blocker.aclose()

    async def _outcome_from_events(self, job_id: str) -> tuple[Any]:
        client: Any = self.client
        entries = await client.xrevrange(self.keys.events, "+", "-", count=self.events_max_len)
        want = job_id.encode()
        for _entry_id, entry in entries:
            fields = job_event(entry, want)
            if fields is None:
                continue
            event = fields.get(b"e")
            if event == b"completed":
                rv = fields.get(b"rv")
                value = None if rv is None else serialization.decode(rv, what="return value")
                return (value,)
            if event == b"failed":
                raise JobFailedError(job_id, fields.get(b"reason", b"").decode("utf-8", "replace"))
        raise JobNotFoundError(f"job {job_id!r} in queue {self.name!r}: no such job")

    async def _finished_result(self, job_id: str) -> tuple[Any] | None:
        state = await self.get_job_state(job_id)
        if state == "unknown":
            # Gone already (removed on completion, or moved to a dead-letter queue):
            # its last word may still be in the event stream.
            return await self._outcome_from_events(job_id)
        if state not in ("completed", "failed"):
            return None
        job = await self.get_job(job_id)
        if job is None:  # removed (or moved to a dead-letter queue) just now
            return await self._outcome_from_events(job_id)
        if state == "completed":
            return (job.return_value,)
        stack = job.errors[-1].stacktrace if job.errors else None
        raise JobFailedError(job_id, job.failed_reason or "failed", stack)
