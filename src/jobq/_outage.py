"""A worker without Redis: paced reconnects, and the claims a lost reply stranded.

:class:`Outage` paces a worker's loops while Redis cannot be reached (full
jitter, capped at 5 s: many workers must not reconnect in lockstep) and logs
the loss and the return once each. :func:`release_stranded` hands back the
jobs that a claim gave the worker while its reply was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Set
from typing import Any

from .queue import Queue
from .scripts import ClaimReply, FinishItem

log = logging.getLogger("jobq.worker")

Finish = Callable[[list[FinishItem], int], Awaitable[tuple[list[int], ClaimReply | None]]]


class Outage:
    """One worker's view of its connection to Redis. ``stop`` cuts a pause short."""

    def __init__(self, worker_id: str, stop: asyncio.Event) -> None:
        self.worker_id = worker_id
        self._stop = stop
        self._since: float | None = None

    async def pause(self, failures: int, exc: BaseException) -> int:
        """Wait before the next try after ``failures`` failed ones; the new count."""
        if failures == 0:
            self._since = time.monotonic()
            log.warning("worker %s lost Redis (%s); reconnecting", self.worker_id, exc)
        # Full jitter, capped: many workers must not reconnect in lockstep.
        delay = random.uniform(0, min(5.0, 0.05 * (2**failures)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)
        return failures + 1

    def recovered(self) -> None:
        """Redis answered again (whichever loop reaches it first says so, once)."""
        if self._since is not None:
            log.info(
                "worker %s reconnected after %.1f s", self.worker_id, time.monotonic() - self._since
            )
            self._since = None


async def release_stranded(queue: Queue, worker_id: str, known: Set[str], finish: Finish) -> int:
    """Hand back the jobs a claim gave worker ``worker_id`` while the reply was lost;
    how many were handed back. Network errors are the caller's (still in doubt).

    A claim sent just before a network failure can run on the server after
    the worker gave up on it; nobody would run those jobs until their lease
    ran out (and they would count as stalled). Each claimed job records its
    claimant, so the worker looks for active jobs that name it but that it
    does not know (``known``: running, held, or finished with the outcome not
    yet reported), and hands them back to the front of the queue, fenced by
    their current token (a job another worker has taken meanwhile is left).
    """
    c: Any = queue.client
    k = queue.keys
    active = [x.decode() for x in await c.zrange(k.active, 0, -1)]
    candidates = [i for i in active if i not in known]
    if not candidates:
        return 0
    async with c.pipeline(transaction=False) as pipe:
        for job_id in candidates:
            pipe.hmget(k.job(job_id), "wk", "tk")
        rows = await pipe.execute()
    mine = [
        FinishItem(job_id, tk.decode(), "h")
        for job_id, (wk, tk) in zip(candidates, rows, strict=True)
        if wk is not None and tk is not None and wk.decode() == worker_id
    ]
    if not mine:
        return 0
    codes, _ = await finish(mine, 0)
    released = sum(1 for code in codes if code == 1)
    log.info(
        "worker %s handed back %d job(s) claimed while the network failed", worker_id, released
    )
    return released
