"""A private SMTP server (aiosmtpd) on a free loopback port, per test."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from ppbe_jobs.notify import SmtpSettings

USER, PASSWORD = "budget-office", "s3cret pass"


def free_port() -> int:
    """A loopback port nothing listens on (just now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Collector:
    """Accepts every message and keeps it, parsed."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Keep the message; the client's send returns only after this reply."""
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 2.0.0 OK"


class RefuseData(Collector):
    """Answers DATA with a fixed reply, e.g. ``451 4.3.0 Try again later``."""

    def __init__(self, reply: str) -> None:
        super().__init__()
        self.reply = reply

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Refuse the message."""
        return self.reply


class RefuseRecipients(Collector):
    """Refuses recipients whose address starts with ``bad``, with a fixed reply."""

    def __init__(self, reply: str) -> None:
        super().__init__()
        self.reply = reply

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        """Refuse ``bad*`` addresses, accept others."""
        if address.startswith("bad"):
            return self.reply
        envelope.rcpt_tos.append(address)
        return "250 OK"


def check_login(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    """Accepts only USER / PASSWORD."""
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER.encode()
        and auth_data.password == PASSWORD.encode()
    )
    # handled=False: aiosmtpd sends the 235 / 535 reply itself.
    return AuthResult(success=ok, handled=False)


SmtpServerFactory = Callable[..., SmtpSettings]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServerFactory]:
    """Start SMTP servers for a handler; returns settings that reach each one.

    Keyword arguments go to aiosmtpd's SMTP class (``authenticator=`` etc.).
    Every server is stopped at teardown.
    """
    started: list[Controller] = []

    def start(handler: Collector, **smtp_kwargs: Any) -> SmtpSettings:
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port, **smtp_kwargs)
        controller.start()  # returns once the server answers
        started.append(controller)
        return SmtpSettings(
            host="127.0.0.1", port=port, timeout=10.0, sender="PPBE <ppbe@example.mil>"
        )

    yield start
    for controller in started:
        controller.stop()
