"""The notification templates: report ready, approval due, job failed.

Each notification is a small frozen record; :func:`render_notification` turns
it into a subject, a plain-text body and a simple HTML body, from the
:class:`string.Template` files ``ppbe_jobs/templates/email_<name>.subject.txt``,
``.txt`` and ``.html`` (shipped as package data, read on first use).

In the HTML body every value is HTML-escaped; the only markup substituted is
built here, from escaped parts (placeholders ending in ``_html``). The subject
is a single line: line breaks and control characters in values are folded to
spaces, so no value can add a header.
"""

from __future__ import annotations

import functools
import html
import re
from dataclasses import dataclass
from datetime import date
from importlib import resources
from string import Template
from typing import ClassVar
from urllib.parse import urlsplit

__all__ = [
    "ApprovalDue",
    "JobFailed",
    "Notification",
    "RenderedNotification",
    "ReportReady",
    "render_notification",
]

_MAX_SUBJECT = 200
_MAX_REASON = 4000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class RenderedNotification:
    """A notification's text, ready to send: subject, plain body, optional HTML body."""

    subject: str
    text: str
    html: str | None = None


def _location_html(location: str) -> str:
    shown = html.escape(location)
    if urlsplit(location).scheme in ("http", "https"):
        return f'<a href="{html.escape(location, quote=True)}">{shown}</a>'
    return f"<code>{shown}</code>"


@dataclass(frozen=True, kw_only=True, slots=True)
class ReportReady:
    """A report has been generated.

    Attributes:
        report_title: e.g. ``"Exhibit R-1, RDT&E Programs"``.
        format: ``"pdf"``, ``"xlsx"`` or ``"csv"`` (shown upper-case).
        location: a link (``https://...``) or a file path.
    """

    template: ClassVar[str] = "report_ready"
    report_title: str
    format: str
    location: str

    def values(self) -> dict[str, str]:
        """The template's placeholders (plain values, and ``*_html`` markup)."""
        return {
            "report_title": self.report_title,
            "format": str(self.format).upper(),
            "location": self.location,
            "location_html": _location_html(self.location),
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class ApprovalDue:
    """An approval (a budget line, a submission) is due.

    Attributes:
        item: what needs approving, e.g. ``"0603502N RDT&E,N FY2027 budget line"``.
        due_date: the last day for the approval.
        link: where to review it; without one the body names the application.
    """

    template: ClassVar[str] = "approval_due"
    item: str
    due_date: date
    link: str | None = None

    def values(self) -> dict[str, str]:
        """The template's placeholders (plain values, and ``*_html`` markup)."""
        d = self.due_date
        location = self.link or "the approvals page of the PPBE application"
        return {
            "item": self.item,
            "due_date": d.isoformat(),
            "due_date_long": f"{d:%A} {d.day} {d:%B %Y}",
            "location": location,
            "location_html": _location_html(self.link) if self.link else html.escape(location),
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class JobFailed:
    """A job failed for good (it will not be retried).

    Attributes:
        queue: the queue it ran on.
        job_name: the job's name, e.g. ``"generate-budget-report"``.
        job_id: the job's id.
        reason: the error; more than 4,000 characters are cut.
    """

    template: ClassVar[str] = "job_failed"
    queue: str
    job_name: str
    job_id: str
    reason: str

    def values(self) -> dict[str, str]:
        """The template's placeholders."""
        reason = self.reason.strip() or "(no reason given)"
        if len(reason) > _MAX_REASON:
            reason = reason[:_MAX_REASON] + "\n... (cut)"
        return {
            "queue": self.queue,
            "job_name": self.job_name,
            "job_id": self.job_id,
            "reason": reason,
        }


Notification = ReportReady | ApprovalDue | JobFailed
"""Any notification :func:`render_notification` knows."""


@functools.cache
def _template(name: str, part: str) -> Template:
    source = resources.files("ppbe_jobs") / "templates" / f"email_{name}.{part}"
    return Template(source.read_text(encoding="utf-8"))


def _one_line(text: str) -> str:
    line = " ".join(_CONTROL.sub(" ", text).split())
    return line if len(line) <= _MAX_SUBJECT else line[: _MAX_SUBJECT - 3].rstrip() + "..."


def render_notification(
    notification: Notification, *, with_html: bool = True
) -> RenderedNotification:
    """Subject, plain-text body and (unless ``with_html`` is false) HTML body."""
    values = notification.values()
    name = notification.template
    try:
        subject = _one_line(_template(name, "subject.txt").substitute(values))
        text = _template(name, "txt").substitute(values)
        body_html = None
        if with_html:
            escaped = {k: v if k.endswith("_html") else html.escape(v) for k, v in values.items()}
            body_html = _template(name, "html").substitute(escaped)
    except KeyError as exc:  # a template names a placeholder the record does not give
        raise ValueError(
            f"template email_{name} uses ${exc.args[0]}, which {type(notification).__name__} "
            f"does not provide (it provides {sorted(values)})"
        ) from None
    return RenderedNotification(subject=subject, text=text, html=body_html)
