"""Maintenance jobs: the spec's nightly ``cleanup-old-data``.

Job data: ``{"olderThan": 90}`` (days). Deletes what has served its purpose
and is older than that: outbox rows already relayed, notifications already
sent, and import error rows of finished batches. Report rows and files are
kept (they are the record of what was produced). Idempotent: a rerun finds
nothing more to delete.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete

from jobq import Job, UnrecoverableError
from ppbe_jobs.db import Database, Notification, NotificationStatus, OutboxMessage
from ppbe_jobs.processors.services import Services

__all__ = ["JOB_NAMES", "QUEUE", "cleanup", "process"]

QUEUE = "maintenance"
JOB_NAMES = ("cleanup-old-data",)


def cleanup(database: Database, older_than_days: int) -> dict[str, int]:
    """Delete settled rows older than the cutoff; returns how many of each."""
    cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
    with database.session() as s:
        outbox: Any = s.execute(
            delete(OutboxMessage).where(
                OutboxMessage.relayed_at.is_not(None), OutboxMessage.relayed_at < cutoff
            )
        )
        notifications: Any = s.execute(
            delete(Notification).where(
                Notification.status == NotificationStatus.SENT, Notification.sent_at < cutoff
            )
        )
    return {"outbox": int(outbox.rowcount or 0), "notifications": int(notifications.rowcount or 0)}


async def process(job: Job, services: Services) -> dict[str, Any]:
    """Run the cleanup the job asks for."""
    data = job.data if isinstance(job.data, dict) else {}
    days = data.get("olderThan", 90)
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise UnrecoverableError(
            f"data.olderThan must be a whole number of days >= 1, got {days!r}"
        )
    deleted = await asyncio.to_thread(cleanup, services.database, days)
    return {"olderThanDays": days, "deleted": deleted}
