"""The notification job: deliver one e-mail or in-app notification, never twice for one key.

Job data::

    {"notificationKey": "report-ready:report-123",     # required, unique, <= 128 chars
     "channel": "email",                               # or "in-app" (default "email")
     "recipient": "analyst@example.mil",               # an address, or a user id for in-app
     "template": "report-ready",                       # or "approval-due", "job-failed"
     "context": {"reportTitle": "Budget Summary by Appropriation",
                 "format": "pdf", "location": "https://ppbe.example.mil/r/123"}}

Template fields (``context``; camelCase or snake_case):

* ``report-ready``: ``reportTitle``, ``format``, ``location``;
* ``approval-due``: ``item``, ``dueDate`` (``2026-04-15``), optional ``link``;
* ``job-failed``: ``queue``, ``jobName``, ``jobId``, ``reason``.

Without ``template``, ``subject`` and ``body`` are sent as they are (the spec's
``send-email`` shape; ``to`` is read as ``recipient``).

How "never twice" holds: the :class:`~ppbe_jobs.db.Notification` row, unique
by ``notification_key``, is the record of delivery. The job looks the key up
first; a row already ``sent`` ends the job with ``{"status": "already-sent"}``
and nothing is sent. Otherwise the row is claimed (``sending``), the e-mail
handed to the SMTP server (or, in-app, the row itself is the delivery), and the
row marked ``sent`` with ``sent_at``. The one gap: a crash after the SMTP
server accepted the message and before the ``sent`` mark is committed leaves
the row ``sending``, and the retry sends again. The copies then carry the same
``Message-ID`` (derived from the key, :func:`ppbe_jobs.notify.message_id_for`)
and ``X-PPBE-Notification-ID``, so mail clients and archives drop the
duplicate. The same holds if two jobs race on one key (the report job queues
its notification under the key as job id, so the queue holds one).

Errors:

* invalid data, a key reused for another recipient, channel or template:
  :class:`jobq.UnrecoverableError` naming the field;
* e-mail without SMTP settings: :class:`~ppbe_jobs.notify.PermanentDeliveryError`
  naming ``SMTP_HOST``;
* a 5xx reply: :class:`~ppbe_jobs.notify.PermanentDeliveryError` (fails at once,
  dead-letter queue), row ``failed``;
* a 4xx reply, a timeout, a refused connection:
  :class:`~ppbe_jobs.notify.TransientDeliveryError`, retried with backoff; the
  row stays ``pending`` with the reason (``failed`` after the last attempt).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from email.utils import parseaddr
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from jobq import Job, UnrecoverableError
from ppbe_jobs.db import Database, NotificationChannel, NotificationStatus, utcnow
from ppbe_jobs.db import Notification as NotificationRow
from ppbe_jobs.notify import (
    ApprovalDue,
    DeliveryError,
    JobFailed,
    Notification,
    OutgoingEmail,
    PermanentDeliveryError,
    RenderedNotification,
    ReportReady,
    SmtpSettings,
    message_id_for,
    render_notification,
    send_email,
)
from ppbe_jobs.processors.services import Services
from ppbe_jobs.services.reporting import json_native

__all__ = [
    "JOB_NAMES",
    "QUEUE",
    "TEMPLATES",
    "NotificationRequest",
    "NotificationRequestError",
    "parse_notification_request",
    "process",
]

log = logging.getLogger("ppbe_jobs.processors.notifications")

QUEUE = "notifications"
"""The named queue notification jobs are added to."""

JOB_NAMES: tuple[str, ...] = ("send-notification", "send-email")
"""The job names this processor handles (the second is the spec's)."""

CUSTOM_TEMPLATE = "custom"
"""What the row's ``template`` says for a message sent without a template."""

_MAX_KEY = 128
_MAX_RECIPIENT = 320
_MAX_SUBJECT = 300
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class NotificationRequestError(ValueError):
    """Notification job data that cannot be delivered as given; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


# --------------------------------------------------------------------------- the request


def _required_text(context: Mapping[str, Any], name: str) -> str:
    value = context.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise NotificationRequestError(
            f"context.{name}", f"expected a non-empty string, got {value!r}"
        )
    return value.strip()


def _optional_text(context: Mapping[str, Any], name: str) -> str | None:
    return None if context.get(name) in (None, "") else _required_text(context, name)


def _report_ready(context: Mapping[str, Any]) -> Notification:
    return ReportReady(
        report_title=_required_text(context, "reportTitle"),
        format=_required_text(context, "format"),
        location=_required_text(context, "location"),
    )


def _approval_due(context: Mapping[str, Any]) -> Notification:
    given = context.get("dueDate")
    if isinstance(given, date):  # a date (or datetime) in the job data, kept by jobq
        return ApprovalDue(
            item=_required_text(context, "item"),
            due_date=given.date() if isinstance(given, datetime) else given,
            link=_optional_text(context, "link"),
        )
    raw = _required_text(context, "dueDate")
    try:
        due = date.fromisoformat(raw[:10])  # a date, or the date part of a timestamp
    except ValueError:
        raise NotificationRequestError(
            "context.dueDate", f"expected a date such as 2026-04-15, got {raw!r}"
        ) from None
    return ApprovalDue(
        item=_required_text(context, "item"), due_date=due, link=_optional_text(context, "link")
    )


def _job_failed(context: Mapping[str, Any]) -> Notification:
    return JobFailed(
        queue=_required_text(context, "queue"),
        job_name=_required_text(context, "jobName"),
        job_id=_required_text(context, "jobId"),
        reason=_required_text(context, "reason"),
    )


@dataclass(frozen=True, slots=True)
class _Template:
    build: Callable[[Mapping[str, Any]], Notification]
    fields: frozenset[str]


TEMPLATES: Mapping[str, _Template] = {
    "report-ready": _Template(_report_ready, frozenset({"reportTitle", "format", "location"})),
    "approval-due": _Template(_approval_due, frozenset({"item", "dueDate", "link"})),
    "job-failed": _Template(_job_failed, frozenset({"queue", "jobName", "jobId", "reason"})),
}
"""The templates by name, with the context fields each takes."""


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclass(frozen=True, kw_only=True, slots=True)
class NotificationRequest:
    """Checked notification job data: what to send, to whom, how, under which key.

    ``message`` is the template's record, or None for a message given as
    ``subject`` and ``body``.
    """

    key: str
    channel: NotificationChannel
    recipient: str
    template: str
    context: Mapping[str, Any] = field(default_factory=dict)
    message: Notification | None = None
    subject: str = ""
    body: str = ""

    def render(self) -> RenderedNotification:
        """Subject and bodies (HTML only for e-mail from a template)."""
        if self.message is None:
            return RenderedNotification(subject=self.subject, text=self.body)
        with_html = self.channel is NotificationChannel.EMAIL
        return render_notification(self.message, with_html=with_html)


def _text_field(data: Mapping[str, Any], name: str, max_length: int) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value.strip():
        raise NotificationRequestError(name, f"expected a non-empty string, got {value!r}")
    text = value.strip()
    if len(text) > max_length:
        raise NotificationRequestError(name, f"longer than {max_length} characters")
    return text


def parse_notification_request(data: object) -> NotificationRequest:
    """Check notification job data (see the module docstring).

    Raises :class:`NotificationRequestError` naming the field at fault.
    """
    if not isinstance(data, Mapping):
        raise NotificationRequestError("data", f"expected an object, got {type(data).__name__}")
    key = _text_field(data, "notificationKey", _MAX_KEY)
    if _CONTROL.search(key):
        raise NotificationRequestError("notificationKey", "must not hold control characters")

    raw_channel = data.get("channel", NotificationChannel.EMAIL.value)
    try:
        channel = NotificationChannel(str(raw_channel).strip().lower())
    except ValueError:
        accepted = ", ".join(c.value for c in NotificationChannel)
        raise NotificationRequestError(
            "channel", f"expected one of {accepted}, got {raw_channel!r}"
        ) from None

    recipient_field = "recipient" if "recipient" in data or "to" not in data else "to"
    recipient = _text_field(data, recipient_field, _MAX_RECIPIENT)
    if channel is NotificationChannel.EMAIL and (
        "@" not in parseaddr(recipient)[1] or _CONTROL.search(recipient)
    ):
        raise NotificationRequestError(
            recipient_field, f"an e-mail notification needs an e-mail address, got {recipient!r}"
        )

    raw_context = data.get("context") or {}
    if not isinstance(raw_context, Mapping):
        raise NotificationRequestError("context", f"expected an object, got {raw_context!r}")
    context: dict[str, Any] = {_camel(str(k)): v for k, v in raw_context.items()}

    template_name = data.get("template")
    if template_name is None and "subject" in data:
        subject = _text_field(data, "subject", _MAX_SUBJECT)
        if _CONTROL.search(subject):
            raise NotificationRequestError("subject", "must be one line")
        body = data.get("body")
        if not isinstance(body, str) or not body.strip():
            raise NotificationRequestError("body", f"expected a non-empty string, got {body!r}")
        return NotificationRequest(
            key=key,
            channel=channel,
            recipient=recipient,
            template=CUSTOM_TEMPLATE,
            context=context,
            subject=subject,
            body=body,
        )
    template = TEMPLATES.get(str(template_name).strip().lower()) if template_name else None
    if template is None:
        accepted = ", ".join(TEMPLATES)
        raise NotificationRequestError(
            "template",
            f"expected one of {accepted} (or subject and body without a template), "
            f"got {template_name!r}",
        )
    unknown = sorted(set(context) - template.fields)
    if unknown:
        raise NotificationRequestError(
            "context",
            f"template {template_name} takes {', '.join(sorted(template.fields))}; "
            f"unknown: {', '.join(unknown)}",
        )
    return NotificationRequest(
        key=key,
        channel=channel,
        recipient=recipient,
        template=str(template_name).strip().lower(),
        context=context,
        message=template.build(context),
    )


# --------------------------------------------------------------------------- the record


@dataclass(frozen=True, slots=True)
class _Claim:
    """The row's state when the job looked: sent already, or ours to deliver."""

    already_sent: bool
    sent_at: datetime | None = None


def _claim(
    database: Database, request: NotificationRequest, rendered: RenderedNotification
) -> _Claim:
    """Find or create the row for the key; unless it is ``sent``, mark it ``sending``."""
    for attempt in (1, 2):
        try:
            with database.session() as session:
                row = session.scalar(
                    select(NotificationRow).where(NotificationRow.notification_key == request.key)
                )
                if row is None:
                    row = NotificationRow(
                        notification_key=request.key,
                        channel=request.channel,
                        recipient=request.recipient,
                        template=request.template,
                        context=json_native(request.context),
                    )
                    session.add(row)
                else:
                    _check_same(row, request)
                    if row.status is NotificationStatus.SENT:
                        return _Claim(already_sent=True, sent_at=row.sent_at)
                row.subject = rendered.subject
                row.body = rendered.text
                row.context = json_native(request.context)
                row.status = NotificationStatus.SENDING
                row.attempts += 1
            return _Claim(already_sent=False)
        except IntegrityError:
            if attempt == 2:
                raise
            # Another job created the row for this key a moment ago: look again.
    raise AssertionError("unreachable")  # pragma: no cover


def _check_same(row: NotificationRow, request: NotificationRequest) -> None:
    mine = (request.channel, request.recipient, request.template)
    stored = (NotificationChannel(row.channel), row.recipient, row.template)
    if mine != stored:
        raise NotificationRequestError(
            "notificationKey",
            f"{request.key!r} already names a {stored[0]} {stored[2]} notification to "
            f"{stored[1]!r}; this job asks for a {mine[0]} {mine[2]} notification to "
            f"{mine[1]!r}. Use a key of its own for each notification",
        )


def _mark_sent(database: Database, key: str) -> datetime:
    sent_at = utcnow()
    with database.session() as session:
        row = session.scalar(select(NotificationRow).where(NotificationRow.notification_key == key))
        if row is not None:
            row.status = NotificationStatus.SENT
            row.sent_at = sent_at
            row.last_error = None
    return sent_at


def _mark_not_sent(database: Database, key: str, error: str, *, final: bool) -> None:
    with database.session() as session:
        row = session.scalar(select(NotificationRow).where(NotificationRow.notification_key == key))
        if row is not None and row.status is not NotificationStatus.SENT:
            row.status = NotificationStatus.FAILED if final else NotificationStatus.PENDING
            row.last_error = error


async def _record_not_sent(database: Database, key: str, error: str, *, final: bool) -> None:
    """Record why nothing was sent; never hide the job's own error behind a database one."""
    try:
        await asyncio.to_thread(_mark_not_sent, database, key, error, final=final)
    except Exception as exc:
        # The type only: a database error's text quotes its SQL parameters (the job's error).
        log.error(
            "notification %s: could not record the failure in the database (%s)",
            key,
            type(exc).__name__,
        )


# --------------------------------------------------------------------------- the job


def _missing_smtp(request: NotificationRequest) -> PermanentDeliveryError:
    return PermanentDeliveryError(
        f"notification {request.key!r}: e-mail to {request.recipient!r} cannot be sent, no SMTP "
        "server is configured; set SMTP_HOST (and SMTP_PORT, SMTP_FROM... as needed) for the "
        "workers, or use the in-app channel"
    )


async def _deliver(
    request: NotificationRequest, rendered: RenderedNotification, smtp: SmtpSettings | None
) -> str | None:
    """Send the e-mail (in-app needs nothing more); the Message-ID, for e-mail."""
    if request.channel is NotificationChannel.IN_APP:
        return None  # the row is the in-app notification: marking it sent delivers it
    if smtp is None:
        raise _missing_smtp(request)
    email = OutgoingEmail(
        notification_id=request.key,
        to=(request.recipient,),
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
    )
    await send_email(smtp, email)
    return message_id_for(request.key, smtp.sender_domain)


async def process(job: Job, services: Services) -> dict[str, Any]:
    """Deliver the notification ``job.data`` describes, unless its key was delivered already.

    Returns ``{"status": "sent", "notificationKey", "channel", "recipient",
    "sentAt", "messageId"}`` (``messageId`` None in-app) or ``{"status":
    "already-sent", "notificationKey", "sentAt"}``. Bind ``services`` with
    :func:`functools.partial` to register it.
    """
    where = f"notification job {job.id} ({job.name!r}) in queue {job.queue_name!r}"
    try:
        request = parse_notification_request(job.data)
        rendered = request.render()
    except (NotificationRequestError, ValueError) as exc:
        raise UnrecoverableError(f"{where}: invalid notification, {exc}") from exc

    database = services.database
    try:
        claim = await asyncio.to_thread(_claim, database, request, rendered)
    except NotificationRequestError as exc:
        raise UnrecoverableError(f"{where}: {exc}") from exc
    if claim.already_sent:
        await job.log(f"notification {request.key!r} was sent already; not sending it again")
        return {
            "status": "already-sent",
            "notificationKey": request.key,
            "sentAt": None if claim.sent_at is None else claim.sent_at.isoformat(),
        }

    try:
        message_id = await _deliver(request, rendered, services.smtp)
    except DeliveryError as exc:
        final = isinstance(exc, UnrecoverableError) or job.attempts_made + 1 >= job.options.attempts
        await _record_not_sent(database, request.key, str(exc), final=final)
        raise
    except Exception as exc:
        # Nothing is known to have been sent; the retry tries again.
        await _record_not_sent(database, request.key, f"{type(exc).__name__}: {exc}", final=False)
        raise

    sent_at = await asyncio.to_thread(_mark_sent, database, request.key)
    await job.log(
        f"notification {request.key!r} delivered ({request.channel}) to {request.recipient}"
    )
    return {
        "status": "sent",
        "notificationKey": request.key,
        "channel": str(request.channel),
        "recipient": request.recipient,
        "sentAt": sent_at.isoformat(),
        "messageId": message_id,
    }
