"""The notification job: e-mail to a private SMTP server, in-app rows, never twice per key."""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from jobq import DeadLetters, Job, JobFailedError, QueueEvents, UnrecoverableError
from ppbe_jobs.config import load_settings
from ppbe_jobs.db import (
    Database,
    Notification,
    NotificationChannel,
    NotificationStatus,
)
from ppbe_jobs.manager import QueueManager
from ppbe_jobs.notify import (
    PermanentDeliveryError,
    SmtpSettings,
    TransientDeliveryError,
    message_id_for,
)
from ppbe_jobs.processors import notifications
from ppbe_jobs.processors.services import Services
from ppbe_jobs.tiers import Tier, TierConfig
from tests.ppbe_jobs.notify.conftest import Collector, free_port

SENDER = "PPBE <ppbe@example.mil>"


# --------------------------------------------------------------------------- fixtures


class CountingRefusal(Collector):
    """Answers DATA with ``reply`` the first ``times`` times, then accepts; counts DATA commands."""

    def __init__(self, reply: str, times: int) -> None:
        super().__init__()
        self.reply = reply
        self.times = times
        self.data_commands = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Refuse while refusals are left, then keep the message."""
        self.data_commands += 1
        if self.data_commands <= self.times:
            return self.reply
        return await super().handle_DATA(server, session, envelope)


SmtpFactory = Callable[[Collector], SmtpSettings]


@pytest.fixture
def smtp() -> Iterator[SmtpFactory]:
    """Start an aiosmtpd server for a handler; settings that reach it. Stopped at teardown."""
    started: list[Controller] = []

    def start(handler: Collector) -> SmtpSettings:
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
        started.append(controller)
        return SmtpSettings(host="127.0.0.1", port=port, timeout=10.0, sender=SENDER)

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture
async def manager(redis_url: str) -> AsyncIterator[QueueManager]:
    """A manager whose queues are this test's own: one tier with a unique name."""
    uid = uuid.uuid4().hex[:10]
    tiers = TierConfig(tiers=(Tier(name=f"t{uid}", low=1, high=100, concurrency=2, attempts=3),))
    settings = load_settings({"QUEUE_BACKOFF_DELAY": "10"})
    async with QueueManager(
        settings, connection=redis_url, tiers=tiers, dead_letter_queue=f"dead-letter-{uid}"
    ) as m:
        yield m


@pytest.fixture
def database(sqlite_empty_db: Database) -> Database:
    return sqlite_empty_db


def make_services(
    database: Database, manager: QueueManager, smtp: SmtpSettings | None, tmp: Path
) -> Services:
    return Services(database=database, output_dir=tmp, smtp=smtp, manager=manager)


def report_ready(key: str | None = None, **change: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "notificationKey": key or f"report-ready:report-{uuid.uuid4().hex[:8]}",
        "channel": "email",
        "recipient": "analyst@example.mil",
        "template": "report-ready",
        "context": {
            "reportTitle": "Budget Summary by Appropriation",
            "format": "pdf",
            "location": "https://ppbe.example.mil/reports/report-123",
        },
    }
    return data | change


async def queued(
    manager: QueueManager, data: dict[str, Any], name: str = "send-notification"
) -> Job:
    """A real job in the notifications queue (no worker), for calling the processor directly."""
    return await manager.add_job(notifications.QUEUE, name, data)


def stored(database: Database, key: str) -> Notification:
    with database.session() as session:
        row = session.scalar(select(Notification).where(Notification.notification_key == key))
    assert row is not None
    return row


async def start(manager: QueueManager, services: Services) -> None:
    manager.register_processor(
        notifications.QUEUE, functools.partial(notifications.process, services=services)
    )
    await manager.start_workers()


# --------------------------------------------------------------------------- through a worker


async def test_email_is_received_once_and_a_second_job_for_the_key_sends_nothing(
    manager: QueueManager, database: Database, smtp: SmtpFactory, tmp_path: Path
) -> None:
    server = Collector()
    await start(manager, make_services(database, manager, smtp(server), tmp_path))
    data = report_ready()
    key = data["notificationKey"]

    result = await (
        await manager.add_job(notifications.QUEUE, "send-notification", data)
    ).wait_until_finished(30)
    assert result["status"] == "sent"
    assert result["messageId"] == message_id_for(key, "example.mil")

    [message] = server.messages
    assert server.recipients == [["analyst@example.mil"]]
    assert message["Subject"] == "[PPBE] Report ready: Budget Summary by Appropriation (PDF)"
    assert message["Message-ID"] == message_id_for(key, "example.mil")
    assert message["X-PPBE-Notification-ID"] == key
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None
    assert "Location: https://ppbe.example.mil/reports/report-123" in plain.get_content()

    row = stored(database, key)
    assert row.status is NotificationStatus.SENT
    assert row.sent_at is not None
    assert (row.channel, row.recipient, row.attempts) == ("email", "analyst@example.mil", 1)
    assert row.subject == message["Subject"]

    again = await manager.add_job(notifications.QUEUE, "send-notification", data)
    assert (await again.wait_until_finished(30))["status"] == "already-sent"
    assert len(server.messages) == 1


async def test_a_451_reply_is_retried_then_delivered(
    manager: QueueManager, database: Database, smtp: SmtpFactory, tmp_path: Path
) -> None:
    server = CountingRefusal("451 4.3.0 Try again later", times=1)
    await start(manager, make_services(database, manager, smtp(server), tmp_path))
    data = report_ready()
    job = await manager.add_job(notifications.QUEUE, "send-notification", data, {"attempts": 3})
    result = await job.wait_until_finished(30)

    assert result["status"] == "sent"
    assert server.data_commands == 2
    assert len(server.messages) == 1
    finished = await job.refresh()
    assert [e.type for e in finished.errors] == ["TransientDeliveryError"]
    assert "451" in finished.errors[0].reason
    row = stored(database, data["notificationKey"])
    assert (row.status, row.attempts, row.last_error) == (NotificationStatus.SENT, 2, None)


async def test_a_550_reply_fails_for_good_into_the_dead_letter_queue(
    manager: QueueManager, database: Database, smtp: SmtpFactory, tmp_path: Path, redis_url: str
) -> None:
    server = CountingRefusal("550 5.1.1 Mailbox unavailable", times=99)
    await start(manager, make_services(database, manager, smtp(server), tmp_path))
    data = report_ready()
    dead_letter_queue = manager.dead_letter_queue
    assert dead_letter_queue is not None
    async with QueueEvents(dead_letter_queue, connection=redis_url, block_ms=200) as dead:
        job = await manager.add_job(notifications.QUEUE, "send-notification", data, {"attempts": 3})
        with pytest.raises(JobFailedError, match="550"):
            await job.wait_until_finished(30)
        async for event in dead:
            if event.event == "added" and event.job_id == f"{job.queue_name}:{job.id}":
                break
    async with DeadLetters(connection=redis_url, name=dead_letter_queue) as letters:
        [entry] = await letters.list(queue=job.queue_name)
    assert entry.job_id == job.id
    assert entry.failed_reason is not None
    assert "550" in entry.failed_reason

    assert server.data_commands == 1  # one attempt of three: a 5xx is not retried
    assert server.messages == []
    row = stored(database, data["notificationKey"])
    assert row.status is NotificationStatus.FAILED
    assert row.last_error is not None
    assert "550 5.1.1 Mailbox unavailable" in row.last_error


# --------------------------------------------------------------------------- called directly


async def test_in_app_notification_is_delivered_as_its_row(
    manager: QueueManager, database: Database, tmp_path: Path
) -> None:
    services = make_services(database, manager, None, tmp_path)
    data = report_ready(channel="in-app", recipient="user-456")
    result = await notifications.process(await queued(manager, data), services)
    assert result["status"] == "sent"
    assert result["messageId"] is None

    row = stored(database, data["notificationKey"])
    assert row.channel is NotificationChannel.IN_APP
    assert row.status is NotificationStatus.SENT
    assert row.sent_at is not None
    assert row.read_at is None
    assert row.subject == "[PPBE] Report ready: Budget Summary by Appropriation (PDF)"
    assert "https://ppbe.example.mil/reports/report-123" in row.body
    assert row.context["reportTitle"] == "Budget Summary by Appropriation"

    again = await notifications.process(await queued(manager, data), services)
    assert again == {
        "status": "already-sent",
        "notificationKey": data["notificationKey"],
        "sentAt": result["sentAt"],
    }
    assert stored(database, data["notificationKey"]).attempts == 1


@pytest.mark.parametrize(
    ("template", "context", "subject_part"),
    [
        ("approval-due", {"item": "0603502N FY2027 line", "due_date": "2026-04-15"}, "0603502N"),
        (
            "job-failed",
            {"queue": "reports", "jobName": "generate-report", "jobId": 42, "reason": "boom"},
            "generate-report",
        ),
    ],
)
async def test_other_templates_render_from_their_context(
    manager: QueueManager,
    database: Database,
    tmp_path: Path,
    template: str,
    context: dict[str, Any],
    subject_part: str,
) -> None:
    services = make_services(database, manager, None, tmp_path)
    data = report_ready(channel="in-app", recipient="user-1", template=template, context=context)
    await notifications.process(await queued(manager, data), services)
    row = stored(database, data["notificationKey"])
    assert row.template == template
    assert subject_part in row.subject
    assert row.status is NotificationStatus.SENT


async def test_spec_send_email_shape_sends_subject_and_body_as_given(
    manager: QueueManager, database: Database, smtp: SmtpFactory, tmp_path: Path
) -> None:
    server = Collector()
    services = make_services(database, manager, smtp(server), tmp_path)
    data = {
        "notificationKey": "welcome:user-123",
        "to": "user@example.com",
        "subject": "Welcome",
        "body": "Welcome to PPBE system",
    }
    result = await notifications.process(await queued(manager, data, "send-email"), services)
    assert result["status"] == "sent"
    [message] = server.messages
    assert message["Subject"] == "Welcome"
    assert message.get_content().strip() == "Welcome to PPBE system"
    assert stored(database, "welcome:user-123").template == "custom"


async def test_email_without_smtp_settings_fails_for_good_naming_smtp_host(
    manager: QueueManager, database: Database, tmp_path: Path
) -> None:
    services = make_services(database, manager, None, tmp_path)
    data = report_ready()
    with pytest.raises(PermanentDeliveryError, match="SMTP_HOST") as raised:
        await notifications.process(await queued(manager, data), services)
    assert isinstance(raised.value, UnrecoverableError)
    assert stored(database, data["notificationKey"]).status is NotificationStatus.FAILED


async def test_unreachable_server_is_transient_and_leaves_the_row_pending(
    manager: QueueManager, database: Database, tmp_path: Path
) -> None:
    nowhere = SmtpSettings(host="127.0.0.1", port=free_port(), timeout=5.0, sender=SENDER)
    services = make_services(database, manager, nowhere, tmp_path)
    data = report_ready()
    with pytest.raises(TransientDeliveryError, match="Connect call failed"):
        await notifications.process(await queued(manager, data), services)
    row = stored(database, data["notificationKey"])
    assert row.status is NotificationStatus.PENDING
    assert row.last_error is not None
    assert "Connect call failed" in row.last_error


async def test_a_key_reused_for_another_recipient_is_refused(
    manager: QueueManager, database: Database, tmp_path: Path
) -> None:
    services = make_services(database, manager, None, tmp_path)
    first = report_ready(channel="in-app", recipient="user-1")
    await notifications.process(await queued(manager, first), services)
    other = first | {"recipient": "user-2"}
    with pytest.raises(UnrecoverableError, match=r"notificationKey.*user-1.*user-2"):
        await notifications.process(await queued(manager, other), services)
    assert stored(database, first["notificationKey"]).recipient == "user-1"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"notificationKey": None}, "notificationKey"),
        ({"notificationKey": "x" * 129}, "notificationKey"),
        ({"channel": "sms"}, "channel"),
        ({"recipient": "user-456"}, "recipient"),
        ({"template": "welcome"}, "template"),
        ({"context": {"reportTitle": "R", "format": "pdf"}}, "context.location"),
        (
            {"context": {"reportTitle": "R", "format": "pdf", "location": "x", "extra": 1}},
            "context",
        ),
        (
            {"template": "approval-due", "context": {"item": "x", "dueDate": "soon"}},
            "context.dueDate",
        ),
    ],
)
async def test_invalid_data_is_a_permanent_error_naming_the_field(
    manager: QueueManager,
    database: Database,
    tmp_path: Path,
    change: dict[str, Any],
    field: str,
) -> None:
    services = make_services(database, manager, None, tmp_path)
    job = await queued(manager, report_ready() | change)
    with pytest.raises(UnrecoverableError, match=rf"{job.id}.*{field}"):
        await notifications.process(job, services)
    with database.session() as session:
        assert session.scalars(select(Notification)).all() == []


async def test_a_date_in_the_job_data_fills_the_approval_template(
    manager: QueueManager, database: Database, tmp_path: Path
) -> None:
    services = make_services(database, manager, None, tmp_path)
    context = {"item": "0603502N FY2027 budget line", "dueDate": date(2026, 4, 15)}
    data = report_ready(
        channel="in-app", recipient="user-1", template="approval-due", context=context
    )
    await notifications.process(await queued(manager, data), services)
    row = stored(database, data["notificationKey"])
    assert row.context == {"item": "0603502N FY2027 budget line", "dueDate": "2026-04-15"}
    assert "Wednesday 15 April 2026" in row.body
