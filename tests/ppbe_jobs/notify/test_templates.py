"""Templates: every placeholder filled, HTML escaped, subjects one line."""

from __future__ import annotations

import re
from datetime import date
from importlib import resources
from string import Template

import pytest

from ppbe_jobs.notify import ApprovalDue, JobFailed, ReportReady, render_notification
from ppbe_jobs.notify.templates import Notification

HOSTILE = 'R-1 <script>alert("x")</script> & co'

SAMPLES: list[Notification] = [
    ReportReady(report_title=HOSTILE, format="xlsx", location="/srv/ppbe/out/r-1.xlsx"),
    ApprovalDue(
        item=HOSTILE, due_date=date(2026, 6, 15), link="https://ppbe.example.mil/a?i=1&j=2"
    ),
    JobFailed(queue="reports", job_name="generate", job_id="7", reason=HOSTILE),
]


def test_templates_ship_with_the_package_and_use_known_placeholders() -> None:
    folder = resources.files("ppbe_jobs") / "templates"
    for sample in SAMPLES:
        provided = set(sample.values())
        for part in ("subject.txt", "txt", "html"):
            text = (folder / f"email_{sample.template}.{part}").read_text(encoding="utf-8")
            used = set(Template(text).get_identifiers())
            assert used, (sample.template, part)
            assert used <= provided, (sample.template, part, used - provided)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: type(s).__name__)
def test_html_is_escaped_and_text_is_not(sample: Notification) -> None:
    rendered = render_notification(sample)
    assert rendered.html is not None
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in rendered.html
    assert HOSTILE in rendered.text
    assert "$" not in rendered.text + rendered.html + rendered.subject


def test_link_becomes_an_anchor_and_a_path_stays_text() -> None:
    link = render_notification(SAMPLES[1]).html or ""
    assert '<a href="https://ppbe.example.mil/a?i=1&amp;j=2">' in link
    path = render_notification(SAMPLES[0]).html or ""
    assert "<code>/srv/ppbe/out/r-1.xlsx</code>" in path
    assert "<a " not in path


def test_report_ready_wording() -> None:
    rendered = render_notification(
        ReportReady(report_title="FYDP", format="csv", location="/out/fydp.csv")
    )
    assert rendered.subject == "[PPBE] Report ready: FYDP (CSV)"
    assert "Format: CSV\nLocation: /out/fydp.csv\n" in rendered.text


def test_approval_without_link_points_at_the_application() -> None:
    rendered = render_notification(ApprovalDue(item="PB submission", due_date=date(2026, 9, 1)))
    assert rendered.subject == "[PPBE] Approval due 2026-09-01: PB submission"
    assert "Due: Tuesday 1 September 2026" in rendered.text
    assert "Review: the approvals page of the PPBE application" in rendered.text


def test_subject_cannot_carry_a_second_header() -> None:
    rendered = render_notification(
        JobFailed(queue="reports", job_name="x\r\nBcc: spy@example.com", job_id="1", reason="r")
    )
    assert "\n" not in rendered.subject
    assert "\r" not in rendered.subject
    assert rendered.subject == "[PPBE] Job failed: x Bcc: spy@example.com on reports"


def test_long_subject_and_reason_are_cut() -> None:
    rendered = render_notification(
        JobFailed(queue="q", job_name="n" * 500, job_id="1", reason="r" * 10_000)
    )
    assert len(rendered.subject) == 200
    assert rendered.subject.endswith("...")
    assert re.search(r"r{4000}\n\.\.\. \(cut\)", rendered.text)
    assert "r" * 4001 not in rendered.text


def test_without_html() -> None:
    assert render_notification(SAMPLES[2], with_html=False).html is None
