"""Transactional enqueue: a job starts only if the change that needs it commits.

A domain action (request a report, submit a budget for approval) writes its
rows *and* an outbox row in ONE database transaction with :func:`stage_job`.
The :class:`OutboxRelay` then moves outbox rows into the queues, at least
once, each under a deduplication key made from its outbox id, so:

- a job is never lost because Redis was down at commit: the row waits, the
  relay retries;
- a job is never enqueued for a transaction that rolled back: the row was
  never written;
- a relay that dies after enqueueing and before marking the row sends it
  again, and the queue absorbs the duplicate;
- a row the queue can never take (bad options or data) is settled with
  ``relayed_at`` set and ``last_error`` starting with "refused:", and the
  rows after it go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from jobq import ConfigurationError, JobqError, PayloadError

from .db import AuditLog, Database, OutboxMessage
from .manager import QueueManager

__all__ = ["OutboxRelay", "outbox_job_id", "stage_job"]

log = logging.getLogger("ppbe_jobs.outbox")

#: How long a relayed outbox id keeps absorbing duplicates in the queue.
DEDUP_TTL = timedelta(days=7)


def outbox_job_id(message_id: int) -> str:
    """The job id (and deduplication key) of an outbox row."""
    return f"outbox-{message_id}"


def stage_job(
    session: Session,
    queue: str,
    name: str,
    data: Mapping[str, Any],
    options: Mapping[str, Any] | None = None,
    *,
    actor: str,
) -> OutboxMessage:
    """Write a job to start, in the caller's transaction, and audit who asked."""
    message = OutboxMessage(
        queue=queue, job_name=name, data=dict(data), options=dict(options or {})
    )
    session.add(message)
    session.flush()  # the id, for the audit row
    session.add(
        AuditLog(
            actor=actor,
            action="enqueue",
            queue=queue,
            job_id=outbox_job_id(message.id),
            job_name=name,
            details={"outbox_id": message.id},
        )
    )
    return message


class OutboxRelay:
    """Moves committed outbox rows into the queues."""

    def __init__(
        self,
        database: Database,
        manager: QueueManager,
        *,
        batch: int = 100,
        idle_interval: float = 1.0,
    ) -> None:
        self.database = database
        self.manager = manager
        self.batch = batch
        self.idle_interval = idle_interval
        self._stop = asyncio.Event()

    def _pending(self) -> list[OutboxMessage]:
        with self.database.session() as s:
            rows = s.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.relayed_at.is_(None))
                .order_by(OutboxMessage.id)
                .limit(self.batch)
            )
            return list(rows)

    def _mark(self, relayed: list[int], failed: dict[int, str], refused: dict[int, str]) -> None:
        with self.database.session() as s:
            for message_id, error in refused.items():
                # Settled without a job: relayed_at set, the reason in last_error.
                s.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == message_id)
                    .values(relayed_at=datetime.now(UTC), last_error=error[:2000])
                )
            if relayed:
                s.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_(relayed))
                    .values(relayed_at=datetime.now(UTC))
                )
            for message_id, error in failed.items():
                s.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == message_id)
                    .values(attempts=OutboxMessage.attempts + 1, last_error=error[:2000])
                )

    async def relay_once(self) -> int:
        """Relay one batch; returns how many rows reached their queue."""
        rows = await asyncio.to_thread(self._pending)
        relayed: list[int] = []
        failed: dict[int, str] = {}
        refused: dict[int, str] = {}
        for row in rows:
            options = dict(row.options)
            options.setdefault("jobId", outbox_job_id(row.id))
            options["deduplication"] = {
                "id": outbox_job_id(row.id),
                "ttl": int(DEDUP_TTL.total_seconds() * 1000),
            }
            try:
                await self.manager.add_job(row.queue, row.job_name, row.data, options)
            except (ConfigurationError, PayloadError) as exc:
                # This row can never be enqueued: settle it, say why, go on.
                log.error("outbox row %d refused by queue %r: %s", row.id, row.queue, exc)
                refused[row.id] = f"refused: {exc}"
                continue
            except (JobqError, ConnectionError, OSError) as exc:
                # Redis is away: keep the order, try again next round.
                failed[row.id] = f"{type(exc).__name__}: {exc}"
                break
            relayed.append(row.id)
        await asyncio.to_thread(self._mark, relayed, failed, refused)
        if failed:
            log.warning("outbox relay paused: %s", next(iter(failed.values())))
        return len(relayed)

    async def run(self) -> None:
        """Relay until :meth:`close`; idle rounds wait ``idle_interval`` seconds."""
        while not self._stop.is_set():
            try:
                moved = await self.relay_once()
            except Exception:  # a database hiccup must not end the relay
                log.exception("outbox relay round failed")
                moved = 0
            if moved < self.batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.idle_interval)

    def close(self) -> None:
        """Stop :meth:`run` after its current round."""
        self._stop.set()
