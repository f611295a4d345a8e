"""Notification delivery: templates, SMTP settings and sending with sorted errors.

:func:`render_notification` turns a :class:`ReportReady`, :class:`ApprovalDue`
or :class:`JobFailed` into subject and bodies; :class:`OutgoingEmail` makes it
an e-mail whose Message-ID follows from the notification id; :func:`send_email`
sends it and raises :class:`TransientDeliveryError` (retry) or
:class:`PermanentDeliveryError` (do not) when the server does not take it.
"""

from __future__ import annotations

from .errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from .settings import SmtpSettings
from .smtp import OutgoingEmail, message_id_for, send_email
from .templates import (
    ApprovalDue,
    JobFailed,
    Notification,
    RenderedNotification,
    ReportReady,
    render_notification,
)

__all__ = [
    "ApprovalDue",
    "DeliveryError",
    "JobFailed",
    "Notification",
    "OutgoingEmail",
    "PermanentDeliveryError",
    "RenderedNotification",
    "ReportReady",
    "SmtpSettings",
    "TransientDeliveryError",
    "message_id_for",
    "render_notification",
    "send_email",
]
