"""The Worker: claims jobs, runs a processor on them, reports the outcome.

How a worker moves (one asyncio task each):

- the *main loop* reports finished attempts in batches and claims new jobs in
  the same call, as many as there are free slots;
- the *marker loop* blocks on the queue's marker key while the worker is idle,
  so an added job wakes it at once (no polling);
- the *heartbeat* renews the leases of all running jobs in one call.

Delivery is at least once: a job's lease lives in Redis, and an attempt is
only accepted with the fencing token its claim received.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import math
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from redis.asyncio import Redis

from . import logs as _logs
from . import scheduler as _scheduler
from . import security as _security
from . import serialization
from . import tracing as _tracing
from ._claimed import ClaimDecoder
from ._heartbeat import Heartbeat, ParentDelivery
from ._outage import Outage, release_stranded
from ._outcome import BackoffStrategy, Outcome, Outcomes
from ._runner import ChildJob, ProcessorRunner
from .connection import NETWORK_ERRORS as _NETWORK_ERRORS
from .connection import is_cluster
from .deadletter import DeadLetterRouter
from .errors import (
    JobStalledError,
    ServerUnreachableError,
    UnrecoverableError,
)
from .job import Job
from .options import RateLimit, WorkerOptions
from .queue import ConnectionLike, Queue
from .scripts import ClaimedJob, ClaimReply, FinishItem
from .signing import JobSigner
from .stats import WorkerStats

__all__ = ["BackoffStrategy", "ChildJob", "FailedJobHandler", "Processor", "Worker"]

log = logging.getLogger("jobq.worker")

Processor = Callable[[Job], Awaitable[Any]] | Callable[[Job], Any]
FailedJobHandler = Callable[[Job, BaseException], Awaitable[None] | None]

#: Prefetch only while the average processor call takes this long (s): shorter
#: jobs run out faster than a round trip anyway (two calls in flight feed them),
#: and behind longer ones a held job could wait while another worker is idle.
_PREFETCH_FROM_S = 0.001
_PREFETCH_UNTIL_S = 0.05
#: The scripts a worker calls on every claim and heartbeat (loaded when it connects).
_WORKER_SCRIPTS = ("claim", "finish", "extend")


@dataclass(frozen=True, slots=True)
class _CallResult:
    """How a report-and-claim call ended: ``error`` is the network error, or None."""

    error: BaseException | None


@dataclass(slots=True)
class _Running:
    job: Job
    task: asyncio.Task[None] | None = None
    abandoned: bool = False
    cancelled_by_worker: bool = False
    #: time.monotonic() when the processor was handed the job; inf while it waits
    #: in the prefetch buffer.
    started: float = field(default_factory=time.monotonic)


class Worker:
    """Runs ``processor`` on the jobs of queue ``name``.

    ``processor`` may be ``async def`` (run on the event loop) or a plain
    ``def`` (run in a thread pool, or in child processes with
    ``processes=N``, for CPU-heavy work). Its return value is stored as the
    job's result; raising spends an attempt (see :class:`~jobq.JobOptions`),
    :class:`~jobq.UnrecoverableError` fails the job at once, and
    :class:`~jobq.RateLimitedError` puts it back without spending one.

    ``await worker.run()`` works until :meth:`close` or SIGTERM/SIGINT.

    ``signing``: a :class:`~jobq.signing.JobSigner` makes the worker fail every
    job without a good signature at once, unrun (left out: ``JOBQ_SIGNING_KEYS``;
    False: signatures are ignored). See docs/security.md.
    """

    def __init__(
        self,
        name: str,
        processor: Processor,
        *,
        connection: ConnectionLike = None,
        prefix: str | None = None,
        options: WorkerOptions | None = None,
        concurrency: int | None = None,
        limiter: RateLimit | None = None,
        failed_job_handler: FailedJobHandler | None = None,
        backoff_strategies: Mapping[str, BackoffStrategy] | None = None,
        max_payload_bytes: int | None = serialization.DEFAULT_LIMIT,
        install_signal_handlers: bool = True,
        signing: JobSigner | Literal[False] | None = None,
    ) -> None:
        opts = options or WorkerOptions()
        overrides: dict[str, Any] = {}
        if concurrency is not None:
            overrides["concurrency"] = concurrency
        if limiter is not None:
            overrides["limiter"] = limiter
        if overrides:
            opts = WorkerOptions(**{**_fields(opts), **overrides})
        self.options = opts
        self.failed_job_handler = failed_job_handler
        self.backoff_strategies = dict(backoff_strategies or {})
        self.install_signal_handlers = install_signal_handlers
        self.queue = Queue(
            name,
            connection=connection,
            prefix=prefix,
            max_payload_bytes=max_payload_bytes,
            events_max_len=opts.events_max_len,
            signing=signing,
        )
        self.name = name
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._runner = ProcessorRunner(
            processor,
            name=name,
            processes=opts.processes,
            threads=opts.threads or opts.concurrency,
        )
        self._running: dict[str, _Running] = {}
        self._results: list[tuple[FinishItem, Job, BaseException | None]] = []
        self._wake = asyncio.Event()
        self._marker_gate = asyncio.Event()
        self._closing = False
        self._closed = asyncio.Event()
        self._stop = asyncio.Event()
        self._started = False
        self._connected_at: float | None = None  # loop time connect() finished, if it did
        self._maybe_work = True
        # Bumped by every marker wake-up: a claim reply computed before the wake-up
        # must not talk the main loop out of claiming again (a lost wake-up).
        self._wake_seq = 0
        # Set when a claim call failed on the network: its jobs may be ours.
        self._claims_in_doubt = False
        self._pickup_want = 0  # slots the marker loop's pick-up holds while it blocks
        # Claim slots asked for by calls in flight, and claim calls launched so far.
        self._reserved = 0
        self._reporting: set[str] = set()  # ids whose outcome a call in flight reports
        # Jobs running (one task each) and claimed jobs waiting for a slot (prefetch).
        self._executing = 0
        self._ready: collections.deque[_Running] = collections.deque()
        self._avg_run: float | None = None  # moving average of processor run time (s)
        if opts.prefetch is not None:
            self._prefetch_max = opts.prefetch
        elif opts.batch_size or opts.concurrency == 1:
            # One slot is chosen for isolation: a held job would die with a job
            # that kills the worker, and be counted a stall each time it does.
            self._prefetch_max = 0
        else:
            self._prefetch_max = max(1, opts.concurrency // 4)
        self._claim_launches = 0
        self._wake_at: float | None = None
        self._limited_until = 0.0
        self._grace_cut = asyncio.Event()
        self._bclient: Redis | None = None
        self._outage = Outage(self.id, self._stop)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._background: set[asyncio.Future[Any]] = set()
        self._parents = ParentDelivery(self.queue, self._background)
        # Jobs held at once: one per slot, or a batch per slot in batch mode.
        self._capacity = opts.concurrency * max(1, opts.batch_size)
        self._batch_buf: list[_Running] = []
        self._batch_due: float | None = None
        self._limiter_max = opts.limiter.max if opts.limiter else 0
        self._limiter_ms = opts.limiter.duration_ms if opts.limiter else 0
        # Most jobs one claim asks for: half the slots, so two calls can be in flight.
        self._lane = max(1, -(-self._capacity // self._MAX_CALLS))
        # What every claim tells the server besides its count (fixed for the worker).
        self._claim_kwargs: dict[str, Any] = {
            "lease_ms": opts.lease_ms,
            "max_stalled": opts.max_stalled,
            "limiter_max": self._limiter_max,
            "limiter_ms": self._limiter_ms,
            "worker_id": self.id,
            "events_max_len": opts.events_max_len,
        }
        self._outcomes = Outcomes(
            name,
            self.id,
            payload_limit=self.queue.max_payload_bytes,
            encoded_in_children=bool(opts.processes),
            strategies=self.backoff_strategies,
        )
        self._claims = ClaimDecoder(self.queue, self.id)
        self._dead_letters = DeadLetterRouter(self.queue, opts.events_max_len)
        self._stats = WorkerStats(
            self.queue,
            self.id,
            self._running,
            capacity=self._capacity,
            concurrency=opts.concurrency,
            processes=opts.processes,
            batch_size=opts.batch_size,
            lease_ms=opts.lease_ms,
        )
        self._heartbeat = Heartbeat(
            self.queue,
            self.id,
            opts,
            running=self._running,
            stats=self._stats,
            dead_letters=self._dead_letters,
            parents=self._parents,
            on_stalled_failed=self._spawn_stalled_handler,
        )

    # -- public ------------------------------------------------------------
    @property
    def processor(self) -> Processor:
        """The function run on each job (may be replaced before :meth:`run`, e.g. by
        :func:`jobq.metrics.instrument`)."""
        processor: Processor = self._runner.processor
        return processor

    @processor.setter
    def processor(self, fn: Processor) -> None:
        self._runner.processor = fn

    @property
    def jobs_processed(self) -> int:
        """Jobs this worker completed."""
        return self._outcomes.processed

    @property
    def jobs_failed(self) -> int:
        """Jobs this worker failed for good."""
        return self._outcomes.failed

    @property
    def running(self) -> int:
        """Jobs running now."""
        return len(self._running) if self.options.batch_size else self._executing

    @property
    def closing(self) -> bool:
        """True once close has begun."""
        return self._closing

    async def flush_stats(self) -> None:
        """Write this worker's hash and per-minute figures now (see :mod:`jobq.stats`);
        the heartbeat does it every third of the lease, and a clean stop at the end."""
        await self._stats.flush()

    async def connect(self) -> None:
        """Connect, check the server's permissions and register this worker, without
        claiming anything yet.

        :meth:`run` does all of this itself; call this first to have the worker
        ready, and any permission problem raised, before work is due (a
        readiness probe, a deployment that must fail fast). Like :meth:`run`, it
        waits out a Redis that is not up yet, and returns early if the worker is
        closed meanwhile. Calling it again, or after :meth:`run`, does nothing.

        Raises:
            ConnectionSetupError: the server refuses a command or key the worker needs.
        """
        if self._started or self._connected_at is not None:
            return
        self._loop = asyncio.get_running_loop()
        if await self._connect():
            self._connected_at = self._loop.time()

    async def run(self) -> None:
        """Work until closed or signalled; returns after a graceful shutdown."""
        if self._started:
            raise RuntimeError(f"worker {self.id} for queue {self.name!r} was already started")
        self._started = True
        self._loop = asyncio.get_running_loop()
        # Connected by connect() within a heartbeat interval: the registration holds.
        since = self._connected_at
        fresh = since is not None and self._loop.time() - since < self.options.lease_ms / 3000
        try:
            connected = True if fresh else await self._connect()
        except BaseException:
            self._closed.set()
            raise
        if not connected:  # closed while waiting for Redis
            self._closed.set()
            return
        self._runner.start()
        installed = self._install_signals()
        self._heartbeat.start()
        marker = asyncio.create_task(self._marker_loop(), name="jobq-marker")
        log.info(
            "worker %s started on queue %r (concurrency %d)",
            self.id,
            self.name,
            self.options.concurrency,
        )
        try:
            await self._main_loop()
        finally:
            await self._stop_marker(marker)
            if self._claims_in_doubt:  # a pick-up cut short may have claimed jobs
                await self._release_stranded()
            try:
                await self._drain_running()
            finally:
                await self._heartbeat.stop()
                for sig in installed:
                    self._loop.remove_signal_handler(sig)
                await self._dead_letters.settle()
                await self._release()
                self._closed.set()
                log.info("worker %s stopped", self.id)

    async def _connect(self) -> bool:
        """Connect, waiting out a Redis that is not up yet; False if closed meanwhile."""
        failures = 0
        while not self._closing:
            try:
                await self.queue.open()
                if self._bclient is None:
                    q = self.queue
                    await _security.check_permissions(
                        q.client, q.keys, commands=_security.WORKER_COMMANDS
                    )
                    self._bclient = self.queue.blocking_client(self.options.block_ms / 1000)
                # The first claims find their scripts cached (a new or restarted
                # server has none): no NOSCRIPT round trip while jobs wait.
                await self.queue.scripts.load_all(_WORKER_SCRIPTS)
                await self._heartbeat.once()  # registers the worker as alive before it claims
            except (ServerUnreachableError, *_NETWORK_ERRORS) as exc:
                await self.queue.close()
                failures = await self._outage.pause(failures, exc)
                continue
            if failures:
                self._outage.recovered()
            return True
        if self._bclient is not None:
            await self._bclient.aclose()
        return False

    async def _stop_marker(self, marker: asyncio.Task[None]) -> None:
        # On Python 3.11 redis-py's internal wait_for can swallow a cancel that lands
        # just as a command was sent, leaving BZPOPMIN to block its full time: cut
        # the blocking connection as well, and repeat until the task is done.
        while not marker.done():
            marker.cancel()
            assert self._bclient is not None
            with contextlib.suppress(*_NETWORK_ERRORS):
                await self._bclient.connection_pool.disconnect()
            await asyncio.wait({marker}, timeout=0.1)
        # A connection cut during its handshake (slow with TLS) makes redis-py raise
        # AttributeError; escaping here, it would skip the rest of the shutdown.
        with contextlib.suppress(asyncio.CancelledError, AttributeError, *_NETWORK_ERRORS):
            await marker

    async def close(self, grace: float | None = None) -> None:
        """Stop claiming now; let running jobs finish within the grace period
        (seconds; default the worker's ``shutdown_grace``), hand back the rest."""
        if grace is not None and grace <= 0:
            self._grace_cut.set()
        elif grace is not None:
            self._grace_override = grace
        self._begin_close()
        if self._started:
            await self._closed.wait()
        elif self._connected_at is not None:  # connected, never run
            self._connected_at = None
            await self._release()

    def _begin_close(self) -> None:
        """Stop claiming now (synchronous, so a signal handler sees it at once)."""
        self._closing = True
        self._stop.set()
        self._wake.set()
        self._marker_gate.set()

    _grace_override: float | None = None

    # -- main loop -----------------------------------------------------------
    # Up to two report-and-claim calls are in flight at once, each claiming at
    # most half the slots: while the server runs one call, the worker runs the
    # jobs the other brought (the two processes overlap instead of taking turns).
    _MAX_CALLS = 2

    async def _main_loop(self) -> None:
        assert self._loop is not None
        failures = 0
        calls: set[asyncio.Task[_CallResult]] = set()
        try:
            while not self._closing:
                done = [t for t in calls if t.done()]
                for task in done:
                    calls.discard(task)
                    outcome = task.result()
                    if outcome.error is not None:
                        failures = await self._outage.pause(failures, outcome.error)
                        continue
                    if failures:
                        self._outage.recovered()
                        failures = 0
                    if self._claims_in_doubt and not calls:
                        await self._release_stranded()
                if done:
                    continue
                free = self._free()
                now = self._loop.time()
                limited = now < self._limited_until
                want = self._want(free, now)
                batch = self._results
                if len(calls) < self._MAX_CALLS and (batch or (want > 0 and self._maybe_work)):
                    self._results = []
                    calls.add(self._launch(batch, want))
                    continue
                # Idle: nothing to report and nothing known to claim (or calls in flight).
                self._wake.clear()
                timeout: float | None = None
                if limited:
                    timeout = self._limited_until - now
                elif self._wake_at is not None:
                    timeout = max(0.0, self._wake_at - now)
                if self._batch_due is not None:
                    due = max(0.0, self._batch_due - now)
                    timeout = due if timeout is None else min(timeout, due)
                if free > 0 and not calls:
                    self._marker_gate.set()
                else:
                    self._marker_gate.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    if self._batch_due is not None and self._loop.time() >= self._batch_due:
                        self._dispatch_batches(force=True)
                    else:
                        self._wake_at = None
                        self._maybe_work = True
                        if self._pickup_want:
                            # The marker loop's pick-up holds the free slots: wake it
                            # (or another idle worker) as an add would.
                            self._background_task(self._poke_marker())
        finally:
            # Calls in flight still bring outcomes and jobs: take them in (the
            # shutdown runs or hands back what they claimed).
            for task in calls:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(task)

    def _free(self) -> int:
        """Slots (and prefetch places) neither taken nor asked for by a call in flight."""
        return self._capacity + self._prefetch() - len(self._running) - self._reserved

    def _want(self, free: int, now: float) -> int:
        """How many jobs one claim asks for: up to half the slots, none while limited."""
        return min(free, self._lane) if free > 0 and now >= self._limited_until else 0

    def _launch(
        self, batch: list[tuple[FinishItem, Job, BaseException | None]], want: int
    ) -> asyncio.Task[_CallResult]:
        """Start one report-and-claim call; the main loop is woken when it ends."""
        self._reserved += want
        self._claim_launches += want > 0
        self._reporting.update(item.id for item, _, _ in batch)
        if want > 0 and not batch:
            self._maybe_work = False  # until a reply (or a wake-up) says there may be more
        task = asyncio.create_task(
            self._call(batch, want, self._wake_seq, self._claim_launches), name="jobq-call"
        )
        task.add_done_callback(lambda _: self._wake.set())
        return task

    async def _call(
        self,
        batch: list[tuple[FinishItem, Job, BaseException | None]],
        want: int,
        seq: int,
        launch: int,
    ) -> _CallResult:
        try:
            reply = await self._report_and_claim(batch, want)
        except _NETWORK_ERRORS as exc:
            self._reporting.difference_update(item.id for item, _, _ in batch)
            self._reserved -= want
            self._results = batch + self._results
            if want > 0:
                # The server may have run the claim and lost only the reply.
                self._claims_in_doubt = True
                self._maybe_work = True
            return _CallResult(exc)
        self._reporting.difference_update(item.id for item, _, _ in batch)
        self._reserved -= want
        if reply is not None:
            self._on_claim(reply, want)
            if want > 0:
                if len(reply.jobs) >= want or self._wake_seq != seq:
                    self._maybe_work = True  # a full claim, or woken while it ran
                elif launch == self._claim_launches:
                    self._maybe_work = False  # the newest claim found the queue empty
        elif self._wake_seq != seq:
            self._maybe_work = True
        return _CallResult(None)

    async def _report_and_claim(
        self, batch: list[tuple[FinishItem, Job, BaseException | None]], want: int
    ) -> ClaimReply | None:
        if not batch:
            return await self.queue.scripts.claim(count=want, **self._claim_kwargs)
        codes, reply = await self._finish([b[0] for b in batch], want)
        for (item, job, exc), code in zip(batch, codes, strict=True):
            if code != 1:
                log.warning(
                    "job %s of queue %r: outcome %r refused, its lease token is stale "
                    "(the lease was lost, or a call retried after a network failure "
                    "had recorded it already)",
                    item.id,
                    self.name,
                    item.kind,
                    extra=_logs.job_fields(job, self.id),
                )
            else:
                if item.kind == "f" and exc is not None:
                    self._spawn_handler(job, exc)
                    self._dead_letters.route_soon(job.id)
                if item.kind in ("c", "f") and "parent" in job.extra:
                    self._parents.soon()
        return reply

    async def _finish(
        self, items: list[FinishItem], want: int
    ) -> tuple[list[int], ClaimReply | None]:
        """Report outcomes (and claim up to ``want`` more) in one script call."""
        return await self.queue.scripts.finish(
            items,
            claim_count=want,
            metrics_minutes=self.options.metrics_minutes,
            **self._claim_kwargs,
        )

    def _on_claim(self, reply: ClaimReply, want: int) -> None:
        assert self._loop is not None
        now = self._loop.time()
        self._wake_at = None if reply.next_wake_ms < 0 else now + reply.next_wake_ms / 1000
        if reply.limited_ms > 0:
            self._limited_until = now + reply.limited_ms / 1000
        for cj in reply.jobs:
            self._start(cj)
            if cj.extra and b'"sid"' in cj.extra:  # a scheduler's tick: plan the next one
                self._background_task(_scheduler.on_tick_claimed(self.queue, cj.extra))
        if self.options.batch_size:
            self._dispatch_batches(force=False)
        for job_id in reply.stalled_failed:
            self._spawn_stalled_handler(job_id)

    # -- marker and heartbeat ----------------------------------------------
    async def _marker_loop(self) -> None:
        assert self._bclient is not None
        failures = 0
        block = self.options.block_ms / 1000
        marker = self.queue.keys.marker
        # A claim pipelined behind the pop runs on the server the moment an add wakes
        # it: the jobs come back with the wake-up, one round trip instead of two. A
        # cluster client has no single connection to pipeline the two on.
        pickup = not is_cluster(self._bclient)
        while not self._closing:
            await self._marker_gate.wait()
            if self._closing:
                return
            assert self._loop is not None
            want = self._want(self._free(), self._loop.time()) if pickup else 0
            self._reserved += want
            self._pickup_want = want
            reply: ClaimReply | None = None
            try:
                if want:
                    popped, reply = await self.queue.scripts.pop_then_claim(
                        self._bclient, marker, block, count=want, **self._claim_kwargs
                    )
                else:
                    popped = await self._bclient.bzpopmin(marker, block)
            except _NETWORK_ERRORS as exc:
                self._pickup_lost(want)
                failures = await self._outage.pause(failures, exc)
                continue
            except asyncio.CancelledError:
                self._pickup_lost(want)
                raise
            self._reserved -= want
            self._pickup_want = 0
            if failures:
                # Whichever loop reaches Redis again first says so (once per outage).
                self._outage.recovered()
                failures = 0
            if reply is not None:
                self._on_claim(reply, want)
                self._marker_gate.clear()
                if len(reply.jobs) >= want:  # there may be more: claim on
                    self._wake_seq += 1
                    self._maybe_work = True
                self._wake.set()
                continue
            if popped is None:
                continue
            if not want and len(self._running) >= self._capacity + self._prefetch():
                # Full since we blocked: pass the wake-up on to another worker.
                await self._poke_marker()
                continue
            self._marker_gate.clear()
            self._wake_seq += 1
            self._maybe_work = True
            self._wake.set()

    async def _poke_marker(self) -> None:
        with contextlib.suppress(*_NETWORK_ERRORS):
            await self.queue.client.zadd(self.queue.keys.marker, {"0": 0})

    def _pickup_lost(self, want: int) -> None:
        """A pop with a claim behind it ended without a reply: the claim may have run."""
        self._reserved -= want
        self._pickup_want = 0
        if want:
            self._claims_in_doubt = True  # released once calls succeed again
            self._maybe_work = True
            self._wake.set()

    # -- running jobs --------------------------------------------------------
    def _start(self, cj: ClaimedJob) -> None:
        job = self._claims.job(cj, self._loop)
        if self.options.batch_size:
            run = _Running(job)
            self._running[job.id] = run
            self._batch_buf.append(run)  # leased and renewed while it waits for its batch
        elif self._executing < self._capacity:
            run = _Running(job)
            self._running[job.id] = run
            self._execute_soon(run)
        else:
            run = _Running(job, started=math.inf)
            self._running[job.id] = run
            self._ready.append(run)  # leased and renewed while it waits for a slot

    def _execute_soon(self, run: _Running) -> None:
        self._executing += 1
        run.task = asyncio.create_task(self._execute(run), name=f"jobq-job-{run.job.id}")

    def _prefetch(self) -> int:
        """How many claimed jobs to hold beyond the slots, ready to start the moment a
        slot frees (no round trip between two jobs). Only while jobs are short: a job
        held behind long ones would wait while another worker might be idle."""
        avg = self._avg_run
        if avg is None or not _PREFETCH_FROM_S <= avg <= _PREFETCH_UNTIL_S:
            return 0
        return self._prefetch_max

    def _slot_freed(self, run: _Running) -> None:
        """A processor call ended: note its duration, start a prefetched job if any."""
        self._executing -= 1
        took = time.monotonic() - run.started
        avg = self._avg_run
        self._avg_run = took if avg is None else avg + (took - avg) * 0.1
        ready = self._ready
        while ready and not self._closing:
            nxt = ready.popleft()
            if nxt.job.id in self._running and not nxt.abandoned:
                nxt.started = time.monotonic()
                self._execute_soon(nxt)
                return

    def _dispatch_batches(self, *, force: bool) -> None:
        """Start full batches; with ``force`` (the wait is over) a partial one too."""
        assert self._loop is not None
        size = self.options.batch_size
        while len(self._batch_buf) >= size or (force and self._batch_buf):
            runs, self._batch_buf = self._batch_buf[:size], self._batch_buf[size:]
            task = asyncio.create_task(self._execute_batch(runs), name="jobq-batch")
            for r in runs:
                r.task = task
        if not self._batch_buf:
            self._batch_due = None
        elif self.options.batch_wait_ms == 0:
            self._dispatch_batches(force=True)
        elif self._batch_due is None:
            self._batch_due = self._loop.time() + self.options.batch_wait_ms / 1000

    async def _execute(self, run: _Running) -> None:
        job = run.job
        try:
            try:
                why = _unrunnable(job)
                if why is not None:
                    raise UnrecoverableError(why)
                outcome = self._outcomes.success(job, await self._invoke(job))
            except asyncio.CancelledError as exc:
                if run.cancelled_by_worker:
                    return  # the shutdown hands this job back itself
                outcome = self._settle_error(job, exc)
            except BaseException as exc:  # a job must never stay active
                outcome = self._settle_error(job, exc)
        finally:
            self._running.pop(job.id, None)
            self._slot_freed(run)
        self._deliver_outcome(run, outcome)

    async def _execute_batch(self, runs: list[_Running]) -> None:
        """Run one batch; every job gets its own outcome."""
        outcomes: dict[str, Outcome] = {}
        good: list[Job] = []
        for r in runs:
            why = _unrunnable(r.job)
            if why is not None:
                exc = UnrecoverableError(why)
                outcomes[r.job.id] = self._settle_error(r.job, exc)
            else:
                good.append(r.job)
        try:
            try:
                results = await self._invoke(good) if good else []
                if not isinstance(results, list | tuple) or len(results) != len(good):
                    raise TypeError(
                        f"a batch processor must return a list with one outcome per job "
                        f"({len(good)}), got {type(results).__name__}"
                    )
                for job, result in zip(good, results, strict=True):
                    if isinstance(result, BaseException):
                        outcomes[job.id] = self._settle_error(job, result)
                    else:
                        outcomes[job.id] = self._outcomes.success(job, result)
            except asyncio.CancelledError as exc:
                if runs[0].cancelled_by_worker:
                    return
                outcomes.update({j.id: self._settle_error(j, exc) for j in good})
            except BaseException as exc:  # a job must never stay active
                outcomes.update({j.id: self._settle_error(j, exc) for j in good})
        finally:
            for r in runs:
                self._running.pop(r.job.id, None)
        for r in runs:
            self._deliver_outcome(r, outcomes[r.job.id])

    def _deliver_outcome(self, run: _Running, outcome: Outcome) -> None:
        if not run.abandoned:
            item, exc = outcome
            self._results.append((item, run.job, exc))
            self._stats.record(item.kind, run)
            self._wake.set()

    def _settle_error(self, job: Job, exc: BaseException) -> Outcome:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            log.error(
                "processor of job %s raised %s; the worker shuts down",
                job.id,
                type(exc).__name__,
                extra=_logs.job_fields(job, self.id),
            )
            self._background_task(self.close())
        return self._outcomes.error(job, exc)

    async def _invoke(self, arg: Job | list[Job]) -> Any:
        """Run the processor on one job, or on a batch (a list of jobs), with the job
        bound for logging (:mod:`jobq.logs`) and, if tracing is on, in a span."""
        token = _logs.bind(arg, self.id)
        try:
            if _tracing.enabled:
                return await _tracing.process(self.name, self.id, arg, self._runner.call(arg))
            return await self._runner.call(arg)
        finally:
            _logs.unbind(token)

    # -- failure hooks ---------------------------------------------------------
    def _spawn_handler(self, job: Job, exc: BaseException) -> None:
        if self.failed_job_handler is not None:
            self._background_task(self._call_handler(job, exc))

    def _spawn_stalled_handler(self, job_id: str) -> None:
        if self.failed_job_handler is None:
            self._dead_letters.route_soon(job_id)
            return

        async def fetch_and_call() -> None:
            job = await self.queue.get_job(job_id)
            self._dead_letters.route_soon(job_id)  # after the fetch: routing deletes the job
            if job is not None:
                await self._call_handler(job, JobStalledError(job.failed_reason or "stalled"))

        self._background_task(fetch_and_call())

    async def _call_handler(self, job: Job, exc: BaseException) -> None:
        handler = self.failed_job_handler
        assert handler is not None
        try:
            result = handler(job, exc)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception(
                "failed_job_handler raised for job %s of queue %r",
                job.id,
                self.name,
                extra=_logs.job_fields(job, self.id),
            )

    # -- shutdown ----------------------------------------------------------
    async def _drain_running(self) -> None:
        """Let running jobs finish within the grace period, then hand back the rest."""
        grace = self._grace_override
        if grace is None:
            grace = self.options.grace_ms / 1000
        deadline = time.monotonic() + grace
        # Jobs still waiting for a batch to fill have not started (no task): they are
        # handed back below without waiting.
        self._batch_buf, self._batch_due = [], None
        while not self._grace_cut.is_set():
            tasks = {r.task for r in self._running.values() if r.task is not None}
            remaining = deadline - time.monotonic()
            if not tasks or remaining <= 0:
                break
            cut = asyncio.create_task(self._grace_cut.wait())
            await asyncio.wait({*tasks, cut}, timeout=remaining, return_when="FIRST_COMPLETED")
            cut.cancel()
            await self._flush_final([])
        handback: list[tuple[FinishItem, Job, BaseException | None]] = []
        for run in list(self._running.values()):
            run.abandoned = True
            run.cancelled_by_worker = True
            if run.task is not None:
                run.task.cancel()
            handback.append((FinishItem(run.job.id, run.job.token or "", "h"), run.job, None))
        if handback:
            log.info(
                "worker %s hands %d unfinished job(s) back to queue %r",
                self.id,
                len(handback),
                self.name,
            )
        await self._flush_final(handback)

    async def _flush_final(self, extra: list[tuple[FinishItem, Job, BaseException | None]]) -> None:
        batch, self._results = self._results + extra, []
        if not batch:
            return
        for attempt in range(5):
            try:
                await self._report_and_claim(batch, 0)
                return
            except _NETWORK_ERRORS as exc:
                if attempt == 4:
                    log.error(
                        "worker %s could not report %d outcome(s) at shutdown (%s); "
                        "their leases will expire and other workers will run them again",
                        self.id,
                        len(batch),
                        exc,
                    )
                    return
                await asyncio.sleep(0.2 * (attempt + 1))

    async def _release(self) -> None:
        self._runner.shutdown()
        if self._bclient is not None:
            await self._bclient.aclose()
        with contextlib.suppress(*_NETWORK_ERRORS):
            await self._stats.flush(final=True)  # the last figures; deletes the worker's hash
        with contextlib.suppress(*_NETWORK_ERRORS):
            await self.queue.client.zrem(self.queue.keys.workers, self.id)
        await self.queue.close()

    def _install_signals(self) -> list[signal.Signals]:
        in_main = threading.current_thread() is threading.main_thread()
        if not self.install_signal_handlers or not in_main:
            return []
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix
                continue
            installed.append(sig)
        return installed

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._closing:
            log.warning("second %s: handing running jobs back now", sig.name)
            self._grace_cut.set()
            return
        log.info("%s received: worker %s stops claiming and finishes its jobs", sig.name, self.id)
        self._begin_close()

    def _background_task(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- helpers -----------------------------------------------------------
    async def _release_stranded(self) -> None:
        """Hand back the jobs a claim gave this worker while the reply was lost
        (see :func:`jobq._outage.release_stranded`); clears the doubt once done."""
        # Ours and known: running, held, or finished with the outcome not yet
        # reported (waiting, or in a call in flight).
        known = self._running.keys() | self._reporting | {r[0].id for r in self._results}
        try:
            if await release_stranded(self.queue, self.id, known, self._finish):
                self._maybe_work = True
        except _NETWORK_ERRORS:
            return  # still in doubt: try again after the next successful call
        self._claims_in_doubt = False


def _unrunnable(job: Job) -> str | None:
    """Why a claimed job must fail at once without running, or None."""
    if job.refusal is not None:
        return job.refusal
    if job.corrupt_reason is not None:
        return f"corrupt record: {job.corrupt_reason}"
    return None


def _fields(opts: WorkerOptions) -> dict[str, Any]:
    return {name: getattr(opts, name) for name in opts.__dataclass_fields__}
