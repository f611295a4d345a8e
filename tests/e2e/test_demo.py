"""The README's first command, end to end: the demo produces what it promises."""

from __future__ import annotations

import io
from pathlib import Path

from openpyxl import load_workbook
from rich.console import Console

from ppbe_jobs.demo import run_demo


async def test_demo_runs_every_kind_of_job_and_reports_what_it_made(
    tmp_path: Path, redis_url: str
) -> None:
    out = io.StringIO()
    code = await run_demo(tmp_path, Console(file=out, width=200), connection=redis_url)
    text = out.getvalue()
    assert code == 0, text
    reports = tmp_path / "output" / "reports"
    assert sorted(p.suffix for p in reports.iterdir()) == [".csv", ".pdf", ".pdf", ".xlsx"]
    assert (reports / "demo-budget-summary-pdf.pdf").read_bytes().startswith(b"%PDF")
    sheet = load_workbook(reports / "demo-r1-xlsx.xlsx", read_only=True).active
    assert sheet is not None
    assert (tmp_path / "output" / "exports" / "demo-line-items.csv").stat().st_size > 1000
    assert "E-mails received by the local SMTP sink: 1" in text
    assert "'inserted': 3" in text
    assert "'rejected': 3" in text
    assert "Dead-letter queue: 1 job(s)" in text
    assert "no-such-file.csv does not exist" in text
    assert "failed unexpectedly" not in text
