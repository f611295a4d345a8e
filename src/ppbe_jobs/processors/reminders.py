"""Reminder jobs: the spec's delayed ``send-reminder`` (e.g. "approval due tomorrow").

Job data: ``{"userId": "user-123", "message": "...", "item": "...", "dueDate":
"2026-12-01", "email": "optional address"}``. A reminder becomes a
notification job (in-app, or e-mail when an address is given) with a
notification key made from the reminder's job id, so a retried reminder never
notifies twice.
"""

from __future__ import annotations

from typing import Any

from jobq import Job, UnrecoverableError
from ppbe_jobs.processors.services import Services

__all__ = ["JOB_NAMES", "QUEUE", "process"]

QUEUE = "reminders"
JOB_NAMES = ("send-reminder",)


async def process(job: Job, services: Services) -> dict[str, Any]:
    """Turn the reminder into an approval-due notification."""
    data = job.data if isinstance(job.data, dict) else {}
    user = data.get("userId")
    if not isinstance(user, str) or not user:
        raise UnrecoverableError("data.userId is required")
    key = f"reminder:{job.queue_name}:{job.id}"
    email = data.get("email")
    follow_up = await services.manager.add_job(
        "notifications",
        "send-notification",
        {
            "notificationKey": key,
            "channel": "email" if email else "in-app",
            "recipient": email or user,
            "template": "approval-due",
            "context": {
                "item": str(data.get("item") or data.get("message") or "budget approval"),
                "due_date": str(data.get("dueDate") or ""),
            },
        },
        {"jobId": key},
    )
    return {"notificationKey": key, "notificationJob": follow_up.id}
