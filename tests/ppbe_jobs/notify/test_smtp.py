"""E-mail delivery against a real SMTP server; refusals sorted into retry / no retry."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from ppbe_jobs.notify import (
    ApprovalDue,
    JobFailed,
    Notification,
    OutgoingEmail,
    PermanentDeliveryError,
    ReportReady,
    TransientDeliveryError,
    message_id_for,
    send_email,
)

from .conftest import (
    PASSWORD,
    USER,
    Collector,
    RefuseData,
    RefuseRecipients,
    SmtpServerFactory,
    check_login,
    free_port,
)

NOTIFICATIONS: dict[str, Notification] = {
    "report_ready": ReportReady(
        report_title="Exhibit R-1, RDT&E Programs",
        format="pdf",
        location="https://ppbe.example.mil/reports/r-123.pdf",
    ),
    "approval_due": ApprovalDue(
        item="0603502N RDT&E,N FY2027 budget line", due_date=date(2026, 6, 15)
    ),
    "job_failed": JobFailed(
        queue="reports", job_name="generate-budget-report", job_id="42", reason="disk full"
    ),
}
SUBJECTS = {
    "report_ready": "[PPBE] Report ready: Exhibit R-1, RDT&E Programs (PDF)",
    "approval_due": "[PPBE] Approval due 2026-06-15: 0603502N RDT&E,N FY2027 budget line",
    "job_failed": "[PPBE] Job failed: generate-budget-report on reports",
}
BODY_LINES = {
    "report_ready": "Location: https://ppbe.example.mil/reports/r-123.pdf",
    "approval_due": "Due: Monday 15 June 2026",
    "job_failed": "Job id: 42",
}
HTML_SNIPPETS = {
    "report_ready": '<a href="https://ppbe.example.mil/reports/r-123.pdf">',
    "approval_due": "<td>0603502N RDT&amp;E,N FY2027 budget line</td>",
    "job_failed": "<code>42</code>",
}


@pytest.mark.parametrize("kind", list(NOTIFICATIONS))
async def test_each_template_is_delivered(smtp_server: SmtpServerFactory, kind: str) -> None:
    collector = Collector()
    settings = smtp_server(collector)
    email = OutgoingEmail.from_notification(
        f"notif-{kind}", "analyst@example.mil", NOTIFICATIONS[kind]
    )

    await send_email(settings, email)

    (received,) = collector.messages
    assert received["Subject"] == SUBJECTS[kind]
    assert received["From"] == "PPBE <ppbe@example.mil>"
    assert received["To"] == "analyst@example.mil"
    assert received["Message-ID"] == message_id_for(f"notif-{kind}", "example.mil")
    assert received["X-PPBE-Notification-ID"] == f"notif-{kind}"
    plain = received.get_body(("plain",))
    html = received.get_body(("html",))
    assert plain is not None
    assert html is not None
    assert BODY_LINES[kind] in plain.get_content()
    assert HTML_SNIPPETS[kind] in html.get_content()


async def test_the_same_notification_keeps_its_message_id(
    smtp_server: SmtpServerFactory,
) -> None:
    collector = Collector()
    settings = smtp_server(collector)
    email = OutgoingEmail.from_notification("n-7", ["a@example.mil"], NOTIFICATIONS["job_failed"])
    other = dataclasses.replace(email, notification_id="n-8")

    await send_email(settings, email)
    await send_email(settings, email)  # a duplicate send, e.g. after a crash
    await send_email(settings, other)

    ids = [m["Message-ID"] for m in collector.messages]
    assert ids[0] == ids[1]
    assert ids[2] != ids[0]


async def test_plain_text_only(smtp_server: SmtpServerFactory) -> None:
    collector = Collector()
    settings = smtp_server(collector)
    email = OutgoingEmail.from_notification(
        "n-1", "a@example.mil", NOTIFICATIONS["job_failed"], with_html=False
    )
    await send_email(settings, email)
    (received,) = collector.messages
    assert received.get_content_type() == "text/plain"
    assert "Reason:\r\ndisk full\r\n" in received.get_content()


async def test_several_recipients(smtp_server: SmtpServerFactory) -> None:
    collector = Collector()
    settings = smtp_server(collector)
    to = ["a@example.mil", "b@example.mil"]
    await send_email(
        settings, OutgoingEmail.from_notification("n", to, NOTIFICATIONS["job_failed"])
    )
    assert collector.recipients == [to]


async def test_451_is_transient(smtp_server: SmtpServerFactory) -> None:
    settings = smtp_server(RefuseData("451 4.3.0 Try again later"))
    email = OutgoingEmail.from_notification("n-451", "a@example.mil", NOTIFICATIONS["job_failed"])
    with pytest.raises(TransientDeliveryError, match=r"SMTP 451 4\.3\.0 Try again later") as err:
        await send_email(settings, email)
    assert err.value.code == 451
    assert err.value.retryable
    assert "'n-451'" in str(err.value)


async def test_550_is_permanent(smtp_server: SmtpServerFactory) -> None:
    settings = smtp_server(RefuseData("550 5.7.1 Message rejected"))
    email = OutgoingEmail.from_notification("n-550", "a@example.mil", NOTIFICATIONS["job_failed"])
    with pytest.raises(PermanentDeliveryError, match=r"SMTP 550 5\.7\.1 Message rejected") as err:
        await send_email(settings, email)
    assert err.value.code == 550
    assert not err.value.retryable


async def test_permanent_errors_tell_jobq_not_to_retry() -> None:
    from jobq import UnrecoverableError

    assert issubclass(PermanentDeliveryError, UnrecoverableError)
    assert not issubclass(TransientDeliveryError, UnrecoverableError)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ("450 4.2.1 Mailbox busy", TransientDeliveryError),
        ("550 5.1.1 No such user", PermanentDeliveryError),
    ],
)
async def test_every_recipient_refused(
    smtp_server: SmtpServerFactory, reply: str, error: type[Exception]
) -> None:
    settings = smtp_server(RefuseRecipients(reply))
    email = OutgoingEmail.from_notification("n", "bad@example.mil", NOTIFICATIONS["job_failed"])
    with pytest.raises(error, match=f"every recipient refused.*bad@example.mil: {reply[:3]}"):
        await send_email(settings, email)


async def test_some_recipients_refused_is_permanent(smtp_server: SmtpServerFactory) -> None:
    handler = RefuseRecipients("450 4.2.1 Mailbox busy")
    settings = smtp_server(handler)
    to = ["good@example.mil", "bad@example.mil"]
    email = OutgoingEmail.from_notification("n", to, NOTIFICATIONS["job_failed"])
    with pytest.raises(PermanentDeliveryError, match=r"refused for others.*bad@example\.mil: 450"):
        await send_email(settings, email)
    assert handler.recipients == [["good@example.mil"]]  # sending again would double this


async def test_connection_refused_is_transient() -> None:
    from ppbe_jobs.notify import SmtpSettings

    settings = SmtpSettings(host="127.0.0.1", port=free_port(), timeout=5.0)
    email = OutgoingEmail.from_notification("n", "a@example.mil", NOTIFICATIONS["job_failed"])
    with pytest.raises(TransientDeliveryError, match=r"127\.0\.0\.1") as err:
        await send_email(settings, email)
    assert err.value.code is None


async def test_login(smtp_server: SmtpServerFactory) -> None:
    collector = Collector()
    settings = smtp_server(collector, authenticator=check_login, auth_require_tls=False)
    email = OutgoingEmail.from_notification("n", "a@example.mil", NOTIFICATIONS["job_failed"])

    good = dataclasses.replace(settings, username=USER, password=PASSWORD)
    await send_email(good, email)
    assert len(collector.messages) == 1

    bad = dataclasses.replace(settings, username=USER, password="wrong")
    with pytest.raises(PermanentDeliveryError, match="SMTP 535") as err:
        await send_email(bad, email)
    assert err.value.code == 535


async def test_required_starttls_missing_is_permanent(smtp_server: SmtpServerFactory) -> None:
    settings = dataclasses.replace(smtp_server(Collector()), starttls=True)
    email = OutgoingEmail.from_notification("n", "a@example.mil", NOTIFICATIONS["job_failed"])
    with pytest.raises(PermanentDeliveryError, match="STARTTLS"):
        await send_email(settings, email)


def test_outgoing_email_checks_its_fields() -> None:
    with pytest.raises(ValueError, match="notification_id"):
        OutgoingEmail(notification_id=" ", to=("a@example.mil",), subject="s", text="t")
    with pytest.raises(ValueError, match="no recipients"):
        OutgoingEmail(notification_id="n", to=(), subject="s", text="t")
    with pytest.raises(ValueError, match="'nobody' is not an e-mail address"):
        OutgoingEmail(notification_id="n", to=("nobody",), subject="s", text="t")


def test_message_id_is_stable_and_valid() -> None:
    first = message_id_for("report-123:ready", "example.mil")
    assert first == message_id_for("report-123:ready", "example.mil")
    assert first != message_id_for("report-124:ready", "example.mil")
    assert first.startswith("<ppbe-notification.")
    assert first.endswith("@example.mil>")
    assert " " not in first
