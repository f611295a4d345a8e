"""Sending a notification e-mail through SMTP (aiosmtplib), with errors sorted.

:func:`send_email` raises :class:`TransientDeliveryError` when sending again
later may work (a 4xx reply, a timeout, a refused or dropped connection) and
:class:`PermanentDeliveryError` when it will not (a 5xx reply, a server
without a feature the settings require, a certificate that does not verify).
The SMTP reply code is in the message and in ``.code``.

The Message-ID is derived from the notification id alone
(:func:`message_id_for`), so if a notification is ever sent twice, the copies
carry the same Message-ID and mail clients and archives recognise the
duplicate. Not sending twice in the first place is the notification job's
part: it records the delivery against the notification id.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import aiosmtplib

from .errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from .settings import SmtpSettings
from .templates import Notification, render_notification

__all__ = ["OutgoingEmail", "message_id_for", "send_email"]


def message_id_for(notification_id: str, domain: str) -> str:
    """The Message-ID of the e-mail for ``notification_id``: the same id, the same value."""
    digest = hashlib.sha256(notification_id.encode("utf-8")).hexdigest()[:32]
    return f"<ppbe-notification.{digest}@{domain}>"


@dataclass(frozen=True, kw_only=True, slots=True)
class OutgoingEmail:
    """One e-mail for one notification.

    Attributes:
        notification_id: the notification's id; it fixes the Message-ID and is
            sent as ``X-PPBE-Notification-ID``.
        to: recipient addresses (a single string is taken as one recipient).
        subject: one line.
        text: the plain-text body.
        html: an HTML alternative, if any.
    """

    notification_id: str
    to: tuple[str, ...]
    subject: str
    text: str
    html: str | None = None

    def __post_init__(self) -> None:
        to = (self.to,) if isinstance(self.to, str) else tuple(self.to)
        object.__setattr__(self, "to", to)
        if not self.notification_id.strip():
            raise ValueError("an e-mail needs a notification_id (it fixes the Message-ID)")
        if not to:
            raise ValueError(f"notification {self.notification_id!r}: no recipients")
        for address in to:
            if "@" not in parseaddr(address)[1]:
                raise ValueError(
                    f"notification {self.notification_id!r}: {address!r} is not an e-mail address"
                )

    @classmethod
    def from_notification(
        cls,
        notification_id: str,
        to: str | Sequence[str],
        notification: Notification,
        *,
        with_html: bool = True,
    ) -> OutgoingEmail:
        """Render ``notification`` with its template into an e-mail to ``to``."""
        rendered = render_notification(notification, with_html=with_html)
        return cls(
            notification_id=notification_id,
            to=(to,) if isinstance(to, str) else tuple(to),
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
        )

    def to_mime(self, *, sender: str, domain: str) -> EmailMessage:
        """The MIME message: plain text, plus HTML as an alternative when present."""
        message = EmailMessage()
        message["From"] = sender
        message["To"] = ", ".join(self.to)
        message["Subject"] = self.subject
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = message_id_for(self.notification_id, domain)
        message["X-PPBE-Notification-ID"] = self.notification_id
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
        message.set_content(self.text)
        if self.html is not None:
            message.add_alternative(self.html, subtype="html")
        return message


async def send_email(settings: SmtpSettings, message: OutgoingEmail) -> None:
    """Send ``message`` through the server in ``settings``.

    Raises:
        TransientDeliveryError: retry later (4xx reply, timeout, connection problem).
        PermanentDeliveryError: do not retry (5xx reply, server lacks a required
            feature, TLS certificate refused, some recipients refused while others
            already got the message).
    """
    where = (
        f"e-mail for notification {message.notification_id!r} via {settings.host}:{settings.port}"
    )
    mime = message.to_mime(sender=settings.sender, domain=settings.sender_domain)
    try:
        refused, _ = await aiosmtplib.send(
            mime,
            hostname=settings.host,
            port=settings.port,
            username=settings.username,
            password=settings.password,
            use_tls=settings.use_tls,
            start_tls=settings.starttls,
            timeout=settings.timeout,
        )
    except aiosmtplib.SMTPException as exc:
        raise _classify(exc, where) from exc
    except ssl.SSLCertVerificationError as exc:
        raise PermanentDeliveryError(f"{where}: TLS certificate not accepted: {exc}") from exc
    except (OSError, TimeoutError) as exc:
        raise TransientDeliveryError(f"{where}: cannot reach the SMTP server: {exc}") from exc
    if refused:
        # The others already have it: sending again would give them a second copy.
        detail = "; ".join(f"{rcpt}: {r.code} {r.message}" for rcpt, r in refused.items())
        first = next(iter(refused.values())).code
        raise PermanentDeliveryError(
            f"{where}: accepted for some recipients, refused for others (SMTP {detail})",
            code=first,
        )


def _classify(exc: aiosmtplib.SMTPException, where: str) -> DeliveryError:
    """The delivery error an aiosmtplib exception stands for."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        transient = all(400 <= c < 500 for c in codes)
        kind = TransientDeliveryError if transient else PermanentDeliveryError
        code = max(codes) if codes else None
        return kind(f"{where}: every recipient refused (SMTP {detail})", code=code)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        text = f"{where}: SMTP {exc.code} {exc.message}"
        if 500 <= exc.code < 600:
            return PermanentDeliveryError(text, code=exc.code)
        return TransientDeliveryError(text, code=exc.code)
    if isinstance(exc.__cause__, ssl.SSLCertVerificationError):
        return PermanentDeliveryError(f"{where}: TLS certificate not accepted: {exc.__cause__}")
    if isinstance(exc, ConnectionError | TimeoutError):
        # Connect errors, timeouts, the server hanging up: nothing was refused.
        return TransientDeliveryError(f"{where}: {exc}")
    # SMTPNotSupported and the like: the server lacks what the settings require
    # (STARTTLS, AUTH); retrying will not change that.
    return PermanentDeliveryError(f"{where}: {exc}")
