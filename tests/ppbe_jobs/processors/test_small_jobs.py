"""Maintenance and reminder jobs, and the registry that wires every processor."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from jobq import JobFailedError
from ppbe_jobs.config import load_settings
from ppbe_jobs.db import Database, OutboxMessage
from ppbe_jobs.manager import QueueManager
from ppbe_jobs.processors import PROCESSORS, register_all
from ppbe_jobs.processors.maintenance import cleanup
from ppbe_jobs.processors.services import Services


def test_cleanup_deletes_only_settled_rows_older_than_the_cutoff(
    sqlite_empty_db: Database,
) -> None:
    old = datetime.now(UTC) - timedelta(days=120)
    with sqlite_empty_db.session() as s:
        s.add(OutboxMessage(queue="q", job_name="a", relayed_at=old))
        s.add(OutboxMessage(queue="q", job_name="b", relayed_at=datetime.now(UTC)))
        s.add(OutboxMessage(queue="q", job_name="c"))  # not relayed yet: kept
    assert cleanup(sqlite_empty_db, 90) == {"outbox": 1, "notifications": 0}
    assert cleanup(sqlite_empty_db, 90) == {"outbox": 0, "notifications": 0}
    with sqlite_empty_db.session() as s:
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 2


async def test_registry_serves_reminders_and_refuses_unknown_job_names(
    redis_url: str, sqlite_empty_db: Database, tmp_path: Path
) -> None:
    # Unique named queues for this test: the registry's own names, re-keyed.
    suffix = uuid.uuid4().hex[:6]
    settings = load_settings({})
    async with QueueManager(settings, connection=redis_url) as m:
        services = Services(database=sqlite_empty_db, output_dir=tmp_path, smtp=None, manager=m)
        register_all(m, services, only=["reminders", "maintenance"])
        assert set(PROCESSORS) >= {"reports", "notifications", "exports", "imports"}
        await m.start_workers()
        reminder = await m.add_job(
            "reminders", "send-reminder", {"userId": f"user-{suffix}", "item": "FY2027 request"}
        )
        result = await reminder.wait_until_finished(20)
        follow_up = await (await m.queue("notifications.standard")).get_job(
            result["notificationJob"]
        )
        assert follow_up is not None
        assert follow_up.data["template"] == "approval-due"
        wrong = await m.add_job("maintenance", "defragment-everything", {})
        with pytest.raises(JobFailedError, match="no processor for job name"):
            await wrong.wait_until_finished(20)
        await m.shutdown()
