"""QueueManager: the spec's API, in Python style, on jobq.

::

    manager = get_queue_manager()
    await manager.start()
    job = await manager.add_job("reports", "generate-budget-report",
                                {"reportId": "report-123", "format": "pdf"},
                                {"priority": 5, "attempts": 3,
                                 "backoff": {"type": "exponential", "delay": 2000}})
    manager.register_processor("reports", process_report, concurrency=3,
                               limiter={"max": 10, "duration": 1000})
    await manager.run_workers()          # until shutdown() or SIGTERM
    metrics = await manager.get_queue_metrics("reports")

Each named queue is split into tiers by priority (see :mod:`ppbe_jobs.tiers`);
metrics and health add the tiers up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from jobq import (
    Backoff,
    ConfigurationError,
    ConnectionSettings,
    Job,
    JobOptions,
    Queue,
    RateLimit,
    SchedulerInfo,
    Worker,
    WorkerOptions,
)
from jobq.connection import create_client, resolve

from .config import Settings, load_settings
from .job_options import parse_options
from .tiers import DEFAULT_QUEUE_PRIORITIES, TierConfig, physical_queue

__all__ = [
    "DEAD_LETTER_QUEUE",
    "HealthReport",
    "QueueHealth",
    "QueueManager",
    "QueueMetrics",
    "get_queue_manager",
]

log = logging.getLogger("ppbe_jobs.manager")

DEAD_LETTER_QUEUE = "dead-letter"
DEFAULT_PRIORITY = 20

Processor = Callable[[Job], Awaitable[Any]] | Callable[[Job], Any]
FailedJobHandler = Callable[[Job, BaseException], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class QueueMetrics:
    """The spec's metrics of a named queue, all tiers together, plus each tier's."""

    waiting: int
    active: int
    completed: int
    failed: int
    delayed: int
    paused: int
    by_tier: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QueueHealth:
    """One queue's health and why."""

    queue: str
    healthy: bool
    waiting: int
    failure_rate: float | None  # failed / (completed + failed) over the window; None if idle
    problems: list[str]


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Health of the queues checked: healthy only if every one is."""

    healthy: bool
    queues: list[QueueHealth]

    @property
    def problems(self) -> list[str]:
        """Every problem found, one line each."""
        return [p for q in self.queues for p in q.problems]


@dataclass(slots=True)
class _Registration:
    queue: str
    processor: Processor
    concurrency: int | Mapping[str, int] | None
    limiter: RateLimit | None
    failed_job_handler: FailedJobHandler | None
    worker_options: WorkerOptions | None


def _rate_limit(value: RateLimit | Mapping[str, Any] | None) -> RateLimit | None:
    if value is None or isinstance(value, RateLimit):
        return value
    unknown = set(value) - {"max", "duration"}
    if unknown:
        raise ConfigurationError(f"limiter has unknown keys: {sorted(unknown)}")
    return RateLimit(max=int(value["max"]), duration=int(value["duration"]))


class QueueManager:
    """Named queues with tiers, processors and their workers, metrics and health."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        connection: str | ConnectionSettings | Redis | None = None,
        tiers: TierConfig | None = None,
        queue_priorities: Mapping[str, int] | None = None,
        dead_letter_queue: str | None = DEAD_LETTER_QUEUE,
    ) -> None:
        self.settings = settings or load_settings()
        self.tiers = tiers or self.settings.tier_config()
        self.queue_priorities = dict(DEFAULT_QUEUE_PRIORITIES)
        self.queue_priorities.update(queue_priorities or {})
        for prio in self.queue_priorities.values():
            self.tiers.for_priority(prio)  # a bad default is an error now, not at add time
        self.dead_letter_queue = dead_letter_queue
        self._connection = connection if connection is not None else self.settings.redis
        self._client: Redis | None = None
        self._owns_client = False
        self._queues: dict[str, Queue] = {}
        self._registrations: dict[str, _Registration] = {}
        self._workers: list[tuple[Worker, asyncio.Task[None]]] = []
        self._stopping = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> QueueManager:
        """Connect (idempotent)."""
        if self._client is None:
            target = resolve(self._connection)
            if isinstance(target, ConnectionSettings):
                self._client, self._owns_client = create_client(target), True
            else:
                self._client = target
        return self

    async def __aenter__(self) -> QueueManager:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    @property
    def client(self) -> Redis:
        """The shared Redis client (after :meth:`start`)."""
        if self._client is None:
            raise RuntimeError("QueueManager is not started: await manager.start() first")
        return self._client

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop the workers gracefully (running jobs finish or go back), then disconnect."""
        self._stopping.set()
        for worker, _ in self._workers:
            await worker.close(grace)
        for _, task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        for q in self._queues.values():
            await q.close()
        self._queues.clear()
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.aclose()

    def install_signal_handlers(self) -> None:
        """Shut down gracefully on SIGTERM and SIGINT (the spec's graceful shutdown)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(self.shutdown()))

    async def queue(self, physical: str) -> Queue:
        """The open jobq queue ``physical`` (a named queue's tier, or the dead-letter queue)."""
        q = self._queues.get(physical)
        if q is None:
            q = Queue(physical, connection=self.client)
            await q.open()
            self._queues[physical] = q
        return q

    def physical_queues(self, queue: str) -> list[str]:
        """The jobq queues of a named queue, one per tier, most urgent first."""
        return [physical_queue(queue, t) for t in self.tiers.names]

    # -- adding --------------------------------------------------------------------
    def _job_options(
        self, queue: str, options: JobOptions | Mapping[str, Any] | None
    ) -> tuple[str, JobOptions, Any]:
        parsed = parse_options(options)
        priority = parsed.priority
        if priority is None:
            priority = self.queue_priorities.get(queue, DEFAULT_PRIORITY)
        tier = self.tiers.for_priority(priority)
        fields = dict(parsed.fields)
        fields["priority"] = priority
        fields.setdefault("attempts", tier.attempts)
        if fields.get("backoff") is None and fields["attempts"] > 1:
            fields["backoff"] = Backoff.exponential(self.settings.queue_backoff_delay)
        return physical_queue(queue, tier.name), JobOptions(**fields), parsed.repeat

    async def add_job(
        self,
        queue: str,
        name: str,
        data: Any = None,
        options: JobOptions | Mapping[str, Any] | None = None,
    ) -> Job:
        """Add a job to a named queue; its priority (or the queue's default) picks the tier.

        With ``repeat`` in the options the job recurs: a scheduler is upserted
        (one per queue, name and schedule) and its first pending job returned.
        """
        if not queue or queue == self.dead_letter_queue:
            raise ConfigurationError(f"cannot add jobs to queue {queue!r}")
        physical, opts, repeat = self._job_options(queue, options)
        q = await self.queue(physical)
        if repeat is None:
            return await q.add(name, data, opts)
        schedule = str(repeat.cron or repeat.every).replace(" ", "_")
        scheduler_id = opts.job_id or f"{name}:{schedule}"
        template = JobOptions(
            **{
                k: getattr(opts, k)
                for k in ("priority", "attempts", "backoff", "timeout", "remove_on_complete")
            }
        )
        info = await q.upsert_scheduler(
            scheduler_id,
            every=repeat.every,
            cron=repeat.cron,
            tz=repeat.tz,
            start=repeat.start,
            end=repeat.end,
            limit=repeat.limit,
            name=name,
            data=data,
            options=template,
        )
        return await self._scheduler_job(q, info)

    @staticmethod
    async def _scheduler_job(q: Queue, info: SchedulerInfo) -> Job:
        pending = None if info.next_run is None else int(info.next_run.timestamp() * 1000)
        job = None if pending is None else await q.get_job(f"sched:{info.id}:{pending}")
        if job is None:
            raise ConfigurationError(f"scheduler {info.id!r} has no pending run (ended?)")
        return job

    # -- processing ---------------------------------------------------------------------
    def register_processor(
        self,
        queue: str,
        processor: Processor,
        *,
        concurrency: int | Mapping[str, int] | None = None,
        limiter: RateLimit | Mapping[str, Any] | None = None,
        failed_job_handler: FailedJobHandler | None = None,
        worker_options: WorkerOptions | None = None,
    ) -> None:
        """Process ``queue``'s jobs with ``processor``: one worker per tier.

        ``concurrency`` (one number for every tier, or per tier name) overrides
        the tiers' own; ``limiter`` (``RateLimit`` or ``{"max", "duration"}``)
        applies to each tier's queue; ``failed_job_handler(job, error)`` runs
        when a job has failed for good (it then also goes to the dead-letter
        queue, if the manager has one).
        """
        if queue in self._registrations:
            raise ConfigurationError(f"a processor is already registered for queue {queue!r}")
        if isinstance(concurrency, Mapping):
            for tier in concurrency:
                self.tiers.get(tier)
        self._registrations[queue] = _Registration(
            queue, processor, concurrency, _rate_limit(limiter), failed_job_handler, worker_options
        )

    async def start_workers(self, tiers: Sequence[str] | None = None) -> None:
        """Start the workers of every registered processor (for ``tiers``, or all)."""
        await self.start()
        wanted = list(tiers) if tiers else self.tiers.names
        for t in wanted:
            self.tiers.get(t)
        for reg in self._registrations.values():
            for tier_name in wanted:
                tier = self.tiers.get(tier_name)
                physical = physical_queue(reg.queue, tier_name)
                if self.dead_letter_queue:
                    q = await self.queue(physical)
                    await q.set_dead_letter_queue(self.dead_letter_queue)
                conc = reg.concurrency
                if isinstance(conc, Mapping):
                    conc = conc.get(tier_name)
                worker = Worker(
                    physical,
                    reg.processor,
                    connection=self.client,
                    options=reg.worker_options,
                    concurrency=conc or tier.concurrency,
                    limiter=reg.limiter,
                    failed_job_handler=reg.failed_job_handler,
                    install_signal_handlers=False,
                )
                task = asyncio.create_task(worker.run(), name=f"worker-{physical}")
                self._workers.append((worker, task))
        log.info(
            "started %d worker(s) for %s (tiers: %s)",
            len(self._workers),
            ", ".join(self._registrations) or "no queue",
            ", ".join(wanted),
        )

    async def run_workers(self, tiers: Sequence[str] | None = None) -> None:
        """Start the workers and wait until :meth:`shutdown` (or a signal)."""
        await self.start_workers(tiers)
        await self._stopping.wait()

    @property
    def workers(self) -> list[Worker]:
        """The running workers."""
        return [w for w, _ in self._workers]

    # -- monitoring ---------------------------------------------------------------------
    async def get_queue_metrics(self, queue: str) -> QueueMetrics:
        """Waiting, active, completed, failed, delayed and paused jobs of a named queue."""
        total = dict.fromkeys(("waiting", "active", "completed", "failed", "delayed", "paused"), 0)
        by_tier: dict[str, dict[str, int]] = {}
        for tier_name in self.tiers.names:
            counts = await (await self.queue(physical_queue(queue, tier_name))).get_job_counts()
            row = {k: getattr(counts, k) for k in total}
            by_tier[tier_name] = row
            for k, v in row.items():
                total[k] += v
        return QueueMetrics(**total, by_tier=by_tier)

    async def failure_rate(self, queue: str, minutes: int = 60) -> float | None:
        """Failed / (completed + failed) over the last ``minutes``; None when nothing finished."""
        done = failed = 0
        for physical in self.physical_queues(queue):
            q = await self.queue(physical)
            done += sum(await q.get_metrics("completed", minutes))
            failed += sum(await q.get_metrics("failed", minutes))
        total = done + failed
        return None if total == 0 else failed / total

    async def check_health(self, queues: Sequence[str] | None = None) -> HealthReport:
        """The spec's health rules: too many waiting jobs, or too high a failure rate."""
        names = (
            list(queues)
            if queues
            else sorted(set(self.queue_priorities) | set(self._registrations))
        )
        out = []
        for name in names:
            metrics = await self.get_queue_metrics(name)
            rate = await self.failure_rate(name)
            problems = []
            if metrics.waiting > self.settings.queue_health_max_waiting:
                problems.append(
                    f"{name}: {metrics.waiting} jobs waiting "
                    f"(more than {self.settings.queue_health_max_waiting})"
                )
            if rate is not None and rate > self.settings.queue_health_max_failure_rate:
                problems.append(
                    f"{name}: failure rate {rate:.1%} over the last hour "
                    f"(above {self.settings.queue_health_max_failure_rate:.1%})"
                )
            out.append(QueueHealth(name, not problems, metrics.waiting, rate, problems))
        return HealthReport(all(q.healthy for q in out), out)


_manager: QueueManager | None = None


def get_queue_manager() -> QueueManager:
    """The process's QueueManager, created from the environment on first use."""
    global _manager
    if _manager is None:
        _manager = QueueManager()
    return _manager
