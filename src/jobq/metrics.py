"""Prometheus metrics, health and readiness for jobq.

Two sides, usually in different processes:

* :class:`QueueCollector` describes queues as Redis sees them (jobs per state,
  oldest waiting age, live workers, finished jobs per minute, failure rate).
  Any process with a connection can serve it: a dashboard, a sidecar, a worker.
* :class:`WorkerMetrics` counts what one worker process does (outcomes,
  durations, wait and end-to-end latency, busy and total slots).
  :func:`instrument` hooks it into a :class:`~jobq.Worker` without changing it.

Why a snapshot: ``prometheus_client`` calls ``collect()`` synchronously,
usually from its HTTP thread, while jobq's Redis client is async and bound to
one event loop. So the collector never touches Redis in ``collect()``; it
serves the latest :class:`MetricsSnapshot`, which the owner of the event loop
refreshes with ``await collector.refresh()`` (say, before rendering a scrape)
or keeps fresh with a background ``asyncio.create_task(collector.run(15))``.
``jobq_metrics_refreshed_timestamp_seconds`` tells how fresh the data is.

Label values are bounded: queue names, state names and outcome names only,
never job ids, job names or worker ids.

Both sides can share one :class:`~prometheus_client.CollectorRegistry`: the
queue gauge is ``jobq_queue_jobs`` and the worker counter ``jobq_jobs_total``,
so their family names never meet, in the classic text format or OpenMetrics.

Example::

    registry = CollectorRegistry()
    collector = QueueCollector([queue], registry=registry)
    await collector.refresh()
    body, content_type = render_latest(registry)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from .connection import ConnectionSettings, create_client, resolve, server_time_ms
from .errors import ConfigurationError, RateLimitedError, UnrecoverableError
from .options import to_ms
from .queue import Queue
from .stats import slot_totals

if TYPE_CHECKING:
    from .job import Job
    from .worker import Worker

__all__ = [
    "JOB_BUCKETS",
    "STATES",
    "MetricsSnapshot",
    "Outcome",
    "QueueCollector",
    "QueueSnapshot",
    "WorkerMetrics",
    "health",
    "instrument",
    "instrument_producer",
    "readiness",
    "render_latest",
    "snapshot",
]

STATES: tuple[str, ...] = (
    "waiting",
    "active",
    "completed",
    "failed",
    "delayed",
    "paused",
    "prioritized",
    "waiting_children",
)
"""The values of the ``state`` label of ``jobq_queue_jobs``."""

Outcome = Literal["completed", "failed", "retried", "dead_lettered"]
_OUTCOMES: tuple[Outcome, ...] = ("completed", "failed", "retried", "dead_lettered")

JOB_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)
"""Histogram buckets in seconds, 5 ms to 10 minutes (plus +Inf)."""

_FAILURE_WINDOW_MINUTES = 60


# -- queue side: snapshot ------------------------------------------------------
@dataclass(frozen=True, slots=True)
class QueueSnapshot:
    """One queue at one moment, by the server's clock.

    ``failure_rate`` is failed / (completed + failed) over the last 60 minutes
    (the current minute included); 0.0, not NaN, when nothing finished.
    ``finished_last_minute`` counts the last *full* minute (the current one
    is still filling up). ``slots_busy`` and ``slots_total`` sum the live
    workers' slots as of their last heartbeats (see :mod:`jobq.stats`).
    """

    queue: str
    counts: Mapping[str, int]
    oldest_waiting_age_seconds: float
    workers_alive: int
    finished_last_minute: Mapping[str, int]
    failure_rate: float
    slots_busy: int = 0
    slots_total: int = 0


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Snapshots of several queues; ``taken_at`` is the local Unix time of the read."""

    queues: tuple[QueueSnapshot, ...] = ()
    taken_at: float = 0.0


async def _next_waiting_id(queue: Queue) -> str | None:
    """The id of the job that runs next, reading as little as possible."""
    c: Any = queue.client
    k = queue.keys
    prio = await c.zrange(k.prio, 0, 0)
    if prio:
        return str(prio[0].decode())
    plain = await c.lindex(k.wait, -1)  # the plain list is consumed from its right end
    if plain is not None:
        return str(plain.decode())
    # Jobs waiting in groups: rare, and the listing is bounded by the groups present.
    ids = await queue.get_job_ids("waiting", 0, 0)
    return ids[0] if ids else None


async def _snapshot_one(queue: Queue) -> QueueSnapshot:
    c: Any = queue.client
    k = queue.keys
    counts = (await queue.get_job_counts()).to_dict()
    now_ms = await server_time_ms(c)
    oldest = 0.0
    if counts["waiting"] or counts["paused"] or counts["prioritized"]:
        job_id = await _next_waiting_id(queue)
        if job_id is not None:
            created = await c.hget(k.job(job_id), "t")
            if created is not None:
                oldest = max(0.0, (now_ms - int(created)) / 1000)
    alive = int(await c.zcount(k.workers, now_ms, "+inf"))
    busy, slots = await slot_totals(queue, now_ms) if alive else (0, 0)
    now_minute = now_ms // 60_000
    minutes = [str(now_minute - i) for i in range(_FAILURE_WINDOW_MINUTES)]  # newest first
    done_raw = await c.hmget(k.metrics_completed, minutes)
    fail_raw = await c.hmget(k.metrics_failed, minutes)
    done = [int(x) if x is not None else 0 for x in done_raw]
    fail = [int(x) if x is not None else 0 for x in fail_raw]
    total = sum(done) + sum(fail)
    return QueueSnapshot(
        queue=queue.name,
        counts=counts,
        oldest_waiting_age_seconds=oldest,
        workers_alive=alive,
        finished_last_minute={"completed": done[1], "failed": fail[1]},
        failure_rate=sum(fail) / total if total else 0.0,
        slots_busy=busy,
        slots_total=slots,
    )


async def snapshot(queues: Iterable[Queue]) -> MetricsSnapshot:
    """Read the metrics of open ``queues`` from Redis, concurrently."""
    snaps = await asyncio.gather(*(_snapshot_one(q) for q in queues))
    return MetricsSnapshot(tuple(snaps), time.time())


QueueSource = Sequence[Queue] | Callable[[], Iterable[str]]


class QueueCollector(Collector):
    """A Prometheus collector serving the latest :class:`MetricsSnapshot`.

    ``queues`` is either open :class:`~jobq.Queue` objects, or a callable
    returning queue names (read at every refresh, so new queues appear);
    with names, ``connection`` (URL, settings or client) and ``prefix`` say
    where they live, and :meth:`aclose` closes what the collector opened.

    ``collect()`` never does I/O (see the module docstring): await
    :meth:`refresh` or run :meth:`run` in a task. Before the first refresh the
    collector exposes no queue samples.

    Exposes ``jobq_queue_jobs{queue,state}``, ``jobq_oldest_waiting_age_seconds{queue}``,
    ``jobq_workers_alive{queue}``, ``jobq_jobs_finished_per_minute{queue,outcome}``,
    ``jobq_failure_rate{queue}``, ``jobq_worker_slots_busy{queue}`` and
    ``jobq_worker_slots_total{queue}`` (live workers' slots at their last heartbeats)
    and ``jobq_metrics_refreshed_timestamp_seconds``.
    """

    def __init__(
        self,
        queues: QueueSource,
        *,
        registry: CollectorRegistry | None = None,
        connection: str | ConnectionSettings | Redis | None = None,
        prefix: str | None = None,
    ) -> None:
        self._source = queues
        self._connection = connection
        self._prefix = prefix
        self._client: Redis | None = None
        self._owns_client = False
        self._opened: dict[str, Queue] = {}
        self.latest = MetricsSnapshot()
        if registry is not None:
            registry.register(self)

    async def _queues(self) -> list[Queue]:
        if not callable(self._source):
            return list(self._source)
        if self._client is None:
            target = resolve(self._connection)
            if isinstance(target, ConnectionSettings):
                self._client, self._owns_client = create_client(target), True
                self._prefix = self._prefix or target.prefix
            else:
                self._client = target
        out: list[Queue] = []
        for name in dict.fromkeys(self._source()):
            q = self._opened.get(name)
            if q is None:
                q = await Queue(name, connection=self._client, prefix=self._prefix).open()
                self._opened[name] = q
            out.append(q)
        return out

    async def refresh(self) -> MetricsSnapshot:
        """Read every queue from Redis now; later scrapes serve this snapshot."""
        self.latest = await snapshot(await self._queues())
        return self.latest

    async def run(self, interval: float = 15.0) -> None:
        """Refresh every ``interval`` seconds until cancelled; a failed read keeps
        the previous snapshot (its timestamp shows its age) and tries again."""
        while True:
            with contextlib.suppress(Exception):
                await self.refresh()
            await asyncio.sleep(interval)

    async def aclose(self) -> None:
        """Close the queues and the client the collector opened (names mode)."""
        for q in self._opened.values():
            await q.close()
        self._opened.clear()
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()

    def collect(self) -> Iterator[Metric]:
        """Metric families of the latest snapshot (no I/O)."""
        snap = self.latest
        jobs = GaugeMetricFamily(
            "jobq_queue_jobs", "Jobs per queue and state.", labels=["queue", "state"]
        )
        oldest = GaugeMetricFamily(
            "jobq_oldest_waiting_age_seconds",
            "Server time minus the creation time of the next job to run; 0 when none waits.",
            labels=["queue"],
        )
        alive = GaugeMetricFamily(
            "jobq_workers_alive", "Workers whose heartbeat is current.", labels=["queue"]
        )
        per_minute = GaugeMetricFamily(
            "jobq_jobs_finished_per_minute",
            "Jobs finished in the last full minute, by outcome (failed: for good).",
            labels=["queue", "outcome"],
        )
        rate = GaugeMetricFamily(
            "jobq_failure_rate",
            "failed / (completed + failed) over the last 60 minutes; 0 when none finished.",
            labels=["queue"],
        )
        slots_busy = GaugeMetricFamily(
            "jobq_worker_slots_busy",
            "Jobs held by the live workers at their last heartbeats.",
            labels=["queue"],
        )
        slots_total = GaugeMetricFamily(
            "jobq_worker_slots_total",
            "Jobs the live workers can hold at once (concurrency times batch size).",
            labels=["queue"],
        )
        for qs in snap.queues:
            slots_busy.add_metric([qs.queue], qs.slots_busy)
            slots_total.add_metric([qs.queue], qs.slots_total)
            for state in STATES:
                jobs.add_metric([qs.queue, state], qs.counts.get(state, 0))
            oldest.add_metric([qs.queue], qs.oldest_waiting_age_seconds)
            alive.add_metric([qs.queue], qs.workers_alive)
            for outcome in ("completed", "failed"):
                per_minute.add_metric([qs.queue, outcome], qs.finished_last_minute[outcome])
            rate.add_metric([qs.queue], qs.failure_rate)
        yield from (jobs, oldest, alive, per_minute, rate, slots_busy, slots_total)
        yield GaugeMetricFamily(
            "jobq_metrics_refreshed_timestamp_seconds",
            "Unix time of the snapshot the queue metrics come from; 0 before the first.",
            value=snap.taken_at,
        )


# -- worker side ---------------------------------------------------------------
@dataclass(slots=True)
class _Slots:
    workers: list[Worker] = field(default_factory=list)

    def busy(self) -> float:
        return float(sum(w.running for w in self.workers))

    def total(self) -> float:
        return float(sum(w.options.concurrency for w in self.workers))


class WorkerMetrics:
    """Counters and histograms of one worker process, registered on ``registry``.

    * ``jobq_jobs_total{queue,outcome}``: completed, failed (for good),
      retried, dead_lettered (also counted as failed).
    * ``jobq_jobs_enqueued_total{queue}``: jobs added by this process, with
      :func:`instrument_producer`.
    * ``jobq_job_duration_seconds{queue}``: time in the processor, every attempt.
    * ``jobq_job_wait_seconds{queue}``: claim time minus due time (creation plus
      delay), first attempts only (a retry's due time includes its backoff,
      which jobq does not hand the processor).
    * ``jobq_job_latency_seconds{queue}``: creation to completion, completed jobs.
    * ``jobq_worker_slots{queue,kind}``: ``busy`` and ``total`` slots of the
      instrumented workers, read at scrape time.

    Wait and latency compare the server's creation time with this host's
    clock; clock skew shows up in them (clamped at 0).
    """

    def __init__(self, registry: CollectorRegistry, *, buckets: Sequence[float] = JOB_BUCKETS):
        self.registry = registry
        self.jobs = Counter(
            "jobq_jobs",
            "Jobs finished by this process, by outcome.",
            ["queue", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "jobq_job_duration_seconds",
            "Time a job spent in the processor (each attempt).",
            ["queue"],
            buckets=buckets,
            registry=registry,
        )
        self.wait = Histogram(
            "jobq_job_wait_seconds",
            "Claim time minus the time the job became due (first attempts).",
            ["queue"],
            buckets=buckets,
            registry=registry,
        )
        self.latency = Histogram(
            "jobq_job_latency_seconds",
            "Creation to completion of completed jobs.",
            ["queue"],
            buckets=buckets,
            registry=registry,
        )
        self.enqueued = Counter(
            "jobq_jobs_enqueued",
            "Jobs added by this process (instrument_producer), created or not.",
            ["queue"],
            registry=registry,
        )
        self.slots = Gauge(
            "jobq_worker_slots",
            "Worker slots of the instrumented workers: busy and total.",
            ["queue", "kind"],
            registry=registry,
        )
        self._slots: dict[str, _Slots] = {}

    def observe(
        self,
        queue: str,
        outcome: Outcome | None = None,
        *,
        duration: float | None = None,
        wait: float | None = None,
        latency: float | None = None,
    ) -> None:
        """Record one attempt: its outcome (None: not an attempt's end, e.g. rate
        limited) and whichever of the timings in seconds are known."""
        if outcome is not None:
            if outcome not in _OUTCOMES:
                raise ConfigurationError(
                    f"outcome must be one of {', '.join(_OUTCOMES)}; got {outcome!r}"
                )
            self.jobs.labels(queue, outcome).inc()
        if duration is not None:
            self.duration.labels(queue).observe(max(0.0, duration))
        if wait is not None:
            self.wait.labels(queue).observe(max(0.0, wait))
        if latency is not None:
            self.latency.labels(queue).observe(max(0.0, latency))

    def track_slots(self, worker: Worker) -> None:
        """Expose ``worker``'s busy and total slots (summed per queue) at scrape time."""
        slots = self._slots.get(worker.name)
        if slots is None:
            slots = self._slots[worker.name] = _Slots()
            self.slots.labels(worker.name, "busy").set_function(slots.busy)
            self.slots.labels(worker.name, "total").set_function(slots.total)
        if worker not in slots.workers:
            slots.workers.append(worker)

    def untrack_slots(self, worker: Worker) -> None:
        """Stop counting ``worker``'s slots (its queue's series stay, possibly at 0)."""
        slots = self._slots.get(worker.name)
        if slots is not None and worker in slots.workers:
            slots.workers.remove(worker)


def _failure_outcomes(worker: Worker, job: Job, exc: BaseException) -> list[Outcome]:
    """What the worker will make of ``exc`` (mirrors jobq._outcome.Outcomes.failure)."""
    if isinstance(exc, RateLimitedError):
        return []  # put back without spending an attempt
    final = isinstance(exc, UnrecoverableError) or job.attempts_made + 1 >= job.options.attempts
    if not final:
        return ["retried"]
    # The worker routes final failures when the queue has a dead-letter queue; its
    # router caches that setting (private attribute, read defensively).
    router = getattr(worker, "_dead_letters", None)
    if getattr(router, "target", None) is not None:
        return ["failed", "dead_lettered"]
    return ["failed"]


def instrument_producer(queue: Queue, metrics: WorkerMetrics) -> None:
    """Count the jobs this process adds through ``queue`` in ``jobq_jobs_enqueued_total``.

    Wraps the queue object's ``add`` and ``add_bulk``; an add that raises (a
    payload refused, Redis unreachable) is not counted. An add answered with an
    existing job (same ``job_id``, deduplicated) counts too: it was asked for.
    """
    add, add_bulk = queue.add, queue.add_bulk
    counter = metrics.enqueued.labels(queue.name)

    @functools.wraps(add)
    async def counted_add(*args: Any, **kwargs: Any) -> Any:
        job = await add(*args, **kwargs)
        counter.inc()
        return job

    @functools.wraps(add_bulk)
    async def counted_add_bulk(*args: Any, **kwargs: Any) -> Any:
        jobs = await add_bulk(*args, **kwargs)
        counter.inc(len(jobs))
        return jobs

    queue.add = counted_add  # type: ignore[method-assign]
    queue.add_bulk = counted_add_bulk  # type: ignore[method-assign]


def instrument(worker: Worker, metrics: WorkerMetrics) -> None:
    """Wrap ``worker.processor`` so each attempt feeds ``metrics``, and track its slots.

    Call it before (or while) the worker runs; the worker looks up its processor
    for every job. Async processors stay async and plain ``def`` processors stay
    plain (still run in the thread pool). Batch processors are handled job by job.

    Limits: ``processes=N`` workers are refused (the wrapper would have to be
    pickled into the child); a job the worker fails after the processor returned
    (a return value too large to store) counts as completed; an attempt cut by
    its timeout or by shutdown records neither outcome nor duration.

    Raises:
        ConfigurationError: the worker runs its processor in child processes.
    """
    if worker.options.processes:
        raise ConfigurationError(
            f"instrument() cannot wrap the processor of worker {worker.id} of queue "
            f"{worker.name!r}: it runs in child processes (processes=N); call "
            "WorkerMetrics.observe() from your own code instead"
        )
    original: Any = worker.processor
    queue = worker.name

    def begin(arg: Job | list[Job]) -> float:
        now = time.time()
        for job in arg if isinstance(arg, list) else [arg]:
            if job.attempts_made == 0:
                due_ms = job.timestamp + to_ms(job.options.delay, "delay")
                metrics.observe(queue, wait=now - due_ms / 1000)
        return time.perf_counter()

    def settle(
        arg: Job | list[Job], started: float, result: Any, exc: BaseException | None
    ) -> None:
        duration = time.perf_counter() - started
        now = time.time()
        jobs = arg if isinstance(arg, list) else [arg]
        if isinstance(arg, list) and exc is None and isinstance(result, list | tuple):
            per_job: list[tuple[Any, BaseException | None]] = [
                (r, r if isinstance(r, BaseException) else None) for r in result
            ]
            if len(per_job) != len(jobs):
                per_job = [(None, TypeError("batch result length"))] * len(jobs)
        else:
            per_job = [(result, exc)] * len(jobs)
        for job, (_, err) in zip(jobs, per_job, strict=True):
            if err is None:
                metrics.observe(
                    queue, "completed", duration=duration, latency=now - job.timestamp / 1000
                )
                continue
            outcomes = _failure_outcomes(worker, job, err)
            for i, outcome in enumerate(outcomes):
                metrics.observe(queue, outcome, duration=duration if i == 0 else None)
            if not outcomes:
                metrics.observe(queue, duration=duration)

    wrapped: Callable[..., Any]
    if inspect.iscoroutinefunction(original) or inspect.iscoroutinefunction(
        getattr(original, "__call__", None)  # noqa: B004 - async callables too
    ):

        async def async_wrapped(arg: Job | list[Job]) -> Any:
            started = begin(arg)
            try:
                result = await original(arg)
            except asyncio.CancelledError:
                raise  # timeout or shutdown: the worker decides, see Limits
            except BaseException as exc:
                settle(arg, started, None, exc)
                raise
            settle(arg, started, result, None)
            return result

        wrapped = async_wrapped
    else:

        def sync_wrapped(arg: Job | list[Job]) -> Any:
            started = begin(arg)
            try:
                result = original(arg)
            except BaseException as exc:
                settle(arg, started, None, exc)
                raise
            settle(arg, started, result, None)
            return result

        wrapped = sync_wrapped
    with contextlib.suppress(AttributeError, TypeError):
        functools.update_wrapper(wrapped, original)
    worker.processor = wrapped
    metrics.track_slots(worker)


# -- health ----------------------------------------------------------------------
async def health(queue: Queue, *, timeout: float = 1.0, min_workers: int = 1) -> dict[str, Any]:
    """Health of one open queue: Redis answers PING within ``timeout`` seconds and at
    least ``min_workers`` workers have a current heartbeat.

    Returns ``{"queue", "ok", "redis", "ping_ms", "workers_alive", "error"}``;
    ``ok`` is True when both hold. Never raises for an unreachable server.
    """
    out: dict[str, Any] = {
        "queue": queue.name,
        "ok": False,
        "redis": False,
        "ping_ms": None,
        "workers_alive": None,
        "error": None,
    }
    try:
        async with asyncio.timeout(timeout):
            started = time.perf_counter()
            await queue.client.ping()
            out["ping_ms"] = round((time.perf_counter() - started) * 1000, 3)
            out["redis"] = True
            out["workers_alive"] = await queue.workers_alive()
    except TimeoutError:
        out["error"] = f"Redis did not answer within {timeout} s"
        return out
    except Exception as exc:  # a health check reports, it does not raise
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    if out["workers_alive"] < min_workers:
        out["error"] = (
            f"{out['workers_alive']} worker(s) alive on queue {queue.name!r}, "
            f"need {min_workers}: start a worker"
        )
    else:
        out["ok"] = True
    return out


async def readiness(
    queues: Iterable[Queue], *, timeout: float = 1.0, min_workers: int = 1
) -> tuple[bool, dict[str, dict[str, Any]]]:
    """Readiness over several queues: ``(all healthy, {queue name: health(queue)})``."""
    checks: list[Awaitable[dict[str, Any]]] = [
        health(q, timeout=timeout, min_workers=min_workers) for q in queues
    ]
    results = await asyncio.gather(*checks)
    details = {r["queue"]: r for r in results}
    return all(r["ok"] for r in results), details


def render_latest(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The body and Content-Type of a scrape of ``registry`` (Prometheus text format)."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
