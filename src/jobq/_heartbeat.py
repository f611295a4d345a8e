"""A worker's heartbeat: it renews the leases of the running jobs and keeps the queue.

Every third of the lease (``lease_ms / 3``) one ``extend`` call renews the
leases of every job the worker holds, recovers the expired leases of others
and registers the worker as alive. The same beat flushes the worker's figures
(:mod:`jobq.stats`), hands finished flow children to their parents (the
outbox), follows the queue's dead-letter setting and advances due schedules.

A beat that fails is tried again within a second: while Redis cannot be
reached the leases run out, and every job would run twice. Nothing but
:meth:`Heartbeat.stop` ends the beat that :meth:`Heartbeat.start` began.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from . import logs as _logs
from . import scheduler as _scheduler
from .connection import NETWORK_ERRORS
from .deadletter import DeadLetterRouter
from .flows import deliver_outbox
from .options import WorkerOptions
from .queue import Queue
from .stats import RunLike, WorkerStats

log = logging.getLogger("jobq.worker")


class ParentDelivery:
    """Tells flow parents about their finished children, one delivery at a time.

    :meth:`soon` starts a delivery in the background, or asks the one running
    to go round once more (its children may have finished after it read the
    outbox). A delivery that cannot reach Redis stops: the heartbeat tries again.
    """

    def __init__(self, queue: Queue, background: set[asyncio.Future[Any]]) -> None:
        self.queue = queue
        self._background = background
        self._delivering: asyncio.Future[None] | None = None
        self._again = False

    def soon(self) -> None:
        if self._delivering is not None and not self._delivering.done():
            self._again = True
            return
        self._delivering = asyncio.ensure_future(self._deliver())
        self._background.add(self._delivering)
        self._delivering.add_done_callback(self._background.discard)

    async def _deliver(self) -> None:
        while True:
            self._again = False
            try:
                await deliver_outbox(self.queue)
            except NETWORK_ERRORS as exc:
                log.warning("could not deliver finished children to parents: %s", exc)
                return
            if not self._again:
                return


class Heartbeat:
    """The beat of one worker (see the module's doc).

    ``running``: the worker's jobs by id, the worker's own dict (read at each
    beat). ``on_stalled_failed`` is called with the id of each job that stall
    recovery failed for good.
    """

    def __init__(
        self,
        queue: Queue,
        worker_id: str,
        options: WorkerOptions,
        *,
        running: Mapping[str, RunLike],
        stats: WorkerStats,
        dead_letters: DeadLetterRouter,
        parents: ParentDelivery,
        on_stalled_failed: Callable[[str], None],
    ) -> None:
        self.queue = queue
        self.worker_id = worker_id
        self.options = options
        self._running = running
        self._stats = stats
        self._dead_letters = dead_letters
        self._parents = parents
        self._on_stalled_failed = on_stalled_failed
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Beat every ``lease_ms / 3`` in a task of its own until :meth:`stop`."""
        self._task = asyncio.create_task(self._run(), name="jobq-heartbeat")

    async def _run(self) -> None:
        interval = self.options.lease_ms / 3000
        wait = interval
        while not self._stopping:
            await asyncio.sleep(wait)
            try:
                await self.once()
                wait = interval
            except NETWORK_ERRORS as exc:
                # Try again soon: the leases run out while we cannot reach Redis.
                log.debug("heartbeat of worker %s failed: %s", self.worker_id, exc)
                wait = min(interval, 1.0)
            except Exception:
                # Anything else (a server error reply, MemoryError, a bug in a
                # maintenance step) must not end the heartbeat: without it every
                # running job loses its lease and runs twice.
                log.exception("heartbeat of worker %s failed; trying again", self.worker_id)
                wait = min(interval, 1.0)

    async def stop(self) -> None:
        """End the beat (if it was started) and wait for its task."""
        # The flag ends the loop even if a cancel is swallowed inside redis-py (as
        # the worker's marker loop explains); the loop itself survives any other error.
        self._stopping = True
        task = self._task
        if task is None:
            return
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        if not task.cancelled() and task.exception() is not None:
            log.debug("heartbeat of worker %s ended: %r", self.worker_id, task.exception())

    async def once(self) -> None:
        """One beat: renew the leases of all running jobs in one call, then the upkeep."""
        o = self.options
        # The worker's hash before its registration is renewed: whoever sees it
        # registered (the first time too) sees it whole.
        await self._stats.flush()  # this worker's hash and per-minute figures (jobq.stats)
        pairs = [(j, r.job.token or "") for j, r in self._running.items() if not r.abandoned]
        renewed, stalled_failed = await self.queue.scripts.extend(
            pairs,
            lease_ms=o.lease_ms,
            max_stalled=o.max_stalled,
            worker_id=self.worker_id,
            events_max_len=o.events_max_len,
        )
        for (jid, _), ok in zip(pairs, renewed, strict=True):
            r = self._running.get(jid)
            if not ok and r is not None and not r.job.lease_lost:
                r.job.lease_lost = True
                log.warning(
                    "job %s of queue %r: lease lost while running; its result will be "
                    "refused (another worker may run it)",
                    jid,
                    self.queue.name,
                    extra=_logs.job_fields(r.job, self.worker_id),
                )
        for job_id in stalled_failed:
            self._on_stalled_failed(job_id)
        if await self.queue.client.llen(self.queue.keys.outbox):
            self._parents.soon()
        await self._dead_letters.refresh()  # the queue's dead-letter setting; sweeps now and then
        await _scheduler.maintain(self.queue)  # advance schedules whose tick is due
