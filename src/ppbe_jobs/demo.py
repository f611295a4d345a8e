"""``ppbe-jobs demo``: the whole system on the embedded defaults, with live progress.

It creates a sample database (SQLite), starts the embedded Valkey server,
workers for every tier and a local SMTP sink, then enqueues a realistic mix:
reports in three formats, e-mail and in-app notifications, a budget
calculation, an export, an import with some bad rows, a delayed reminder, a
recurring maintenance job and one job that fails into the dead-letter queue.
It shows per-queue progress while they run and ends with a summary and the
paths of what it produced.
"""

from __future__ import annotations

import asyncio
import csv
import socket
import tempfile
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from rich.console import Console
from rich.live import Live
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from jobq import DeadLetters, Job, JobFailedError
from ppbe_jobs.config import load_settings
from ppbe_jobs.db import BudgetLine, Database, ProgramElement, seed
from ppbe_jobs.manager import QueueManager
from ppbe_jobs.notify import SmtpSettings
from ppbe_jobs.processors import register_all
from ppbe_jobs.processors.services import Services

__all__ = ["SmtpSink", "run_demo"]

QUEUES = (
    "critical",
    "reports",
    "notifications",
    "budget-calculations",
    "exports",
    "imports",
    "reminders",
    "maintenance",
)


@dataclass
class SmtpSink:
    """A local SMTP server that keeps every message it is sent (for demos and tests)."""

    messages: list[Any] = field(default_factory=list)
    controller: Controller | None = None
    port: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Keep the message."""
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 2.0.0 OK"

    def start(self) -> SmtpSettings:
        """Listen on a free loopback port; the settings to send to it."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return SmtpSettings(
            host="127.0.0.1", port=self.port, starttls=False, sender="ppbe-jobs@localhost"
        )

    def stop(self) -> None:
        """Stop listening."""
        if self.controller is not None:
            self.controller.stop()


def _import_file(path: Path, database: Database) -> Path:
    """A budget-line CSV (the export's columns): new FY2027-budget rows, three of them bad."""
    with database.session() as s:
        lines = s.scalars(
            select(BudgetLine)
            .options(
                joinedload(BudgetLine.program_element).joinedload(ProgramElement.organization),
                joinedload(BudgetLine.appropriation),
            )
            .where(BudgetLine.fiscal_year == 2027, BudgetLine.kind == "request")
            .order_by(BudgetLine.id)
            .limit(20)
        ).unique()
        good: list[list[str]] = []
        for line in lines:
            row = [
                line.program_element.code,
                line.program_element.organization.code,
                line.appropriation.symbol,
                str(line.appropriation.color),
            ]
            if all(g[0] != row[0] or g[2] != row[2] for g in good):
                good.append(row)
    header = [
        "program_element",
        "organization",
        "appropriation",
        "color",
        "budget_year",
        "fiscal_year",
        "kind",
        "amount_k",
    ]
    pe, org, acct, color = good[0]
    rows = [header]
    rows += [[*g, "2027", "2027", "request", f"{1234 + i}.567"] for i, g in enumerate(good[:3])]
    rows += [
        ["06035X2N", org, acct, color, "2027", "2028", "request", "10.000"],  # bad PE code
        [pe, org, acct, color, "2027", "FY1999", "request", "10.000"],  # bad fiscal year
        [pe, org, acct, color, "2027", "2029", "request", "12.3456"],  # too many decimals
    ]
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


def _table(metrics: dict[str, Any], started: float) -> Table:
    t = Table(title=f"ppbe-jobs demo, {time.monotonic() - started:4.1f} s")
    for col in ("queue", "waiting", "active", "delayed", "completed", "failed"):
        t.add_column(col, justify="left" if col == "queue" else "right")
    for name in QUEUES:
        m = metrics.get(name)
        if m is not None:
            t.add_row(
                name,
                *(
                    str(getattr(m, k))
                    for k in ("waiting", "active", "delayed", "completed", "failed")
                ),
            )
    return t


async def _enqueue(manager: QueueManager, work: Path, database: Database) -> tuple[list[Job], Job]:
    """The realistic mix; returns the jobs to wait for and the one meant to fail."""
    add = manager.add_job
    jobs = [
        await add(
            "reports",
            "generate-report",
            {
                "reportId": f"demo-{kind}-{fmt}",
                "reportType": kind,
                "format": fmt,
                "fiscalYear": 2026,
                "requestedBy": "analyst@example.mil",
            },
        )
        for kind, fmt in (
            ("budget-summary", "pdf"),
            ("r1", "xlsx"),
            ("execution", "csv"),
            ("fydp", "pdf"),
        )
    ]
    jobs.append(
        await add(
            "critical",
            "send-notification",
            {
                "notificationKey": "demo-approval-due",
                "channel": "email",
                "recipient": "comptroller@example.mil",
                "template": "approval-due",
                "context": {"item": "FY2027 Navy RDT&E request", "due_date": "2026-12-01"},
            },
            {"priority": 1},
        )
    )
    jobs.append(
        await add(
            "budget-calculations",
            "calculate",
            {
                "calculationId": "demo-full",
                "kind": "full",
                "parameters": {"fiscalYear": 2026, "fiscalMonth": 6},
            },
        )
    )
    jobs.append(
        await add(
            "exports",
            "export-data",
            {"exportId": "demo-line-items", "dataset": "line-items", "format": "csv"},
        )
    )
    jobs.append(
        await add(
            "imports",
            "import-data",
            {
                "importId": "demo-import",
                "path": str(_import_file(work / "budget-lines.csv", database)),
                "mode": "valid-rows",
                "target": "budget-lines",
            },
        )
    )
    jobs.append(
        await add(
            "reminders",
            "send-reminder",
            {
                "userId": "user-123",
                "message": "Budget approval due tomorrow",
                "dueDate": "2026-12-01",
            },
            {"delay": 2000},
        )
    )
    await add(
        "maintenance",
        "cleanup-old-data",
        {"olderThan": 90},
        {"repeat": {"every": 1500, "limit": 2}},
    )
    doomed = await add(
        "imports",
        "import-data",
        {
            "importId": "demo-missing-file",
            "path": str(work / "no-such-file.csv"),
            "mode": "valid-rows",
        },
    )
    return jobs, doomed


async def run_demo(
    data_dir: Path | None = None,
    console: Console | None = None,
    *,
    connection: str | None = None,
    serve_port: int | None = None,
) -> int:
    """Run the demo; 0 when everything went as planned.

    ``connection`` overrides the Redis settings (the tests pass their own server).
    With ``serve_port``, the workers keep running afterwards and the dashboard is
    served on 127.0.0.1 at that port until Ctrl-C, to look around.
    """
    console = console or Console()
    work = data_dir or Path(tempfile.mkdtemp(prefix="ppbe-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]ppbe-jobs demo[/] in {work}")
    settings = load_settings({"PPBE_DATA_DIR": str(work)})
    database = Database(settings.resolved_database_url)
    summary = await asyncio.to_thread(seed, database, scale="small", reset=True)
    console.print(f"sample database {settings.resolved_database_url}: {summary.describe()}")
    sink = SmtpSink()
    smtp = sink.start()
    started = time.monotonic()
    try:
        async with QueueManager(settings, connection=connection) as manager:
            for q in QUEUES:
                for physical in manager.physical_queues(q):
                    await (await manager.queue(physical)).obliterate(force=True)
            services = Services(
                database=database, output_dir=settings.output_dir, smtp=smtp, manager=manager
            )
            register_all(manager, services)
            await manager.start_workers()
            jobs, doomed = await _enqueue(manager, work, database)
            results: dict[str, Any] = {}
            failures: list[str] = []

            async def wait_all() -> None:
                for job in jobs:
                    key = f"{job.queue_name}/{job.name}/{job.id}"
                    try:
                        results[key] = await job.wait_until_finished(120)
                    except JobFailedError as exc:
                        failures.append(key)
                        results[key] = f"FAILED: {exc.reason}"
                try:
                    await doomed.wait_until_finished(60)
                except JobFailedError as exc:
                    results["expected failure"] = exc.reason

            waiter = asyncio.create_task(wait_all())
            with Live(console=console, refresh_per_second=5) as live:
                while True:
                    metrics = {q: await manager.get_queue_metrics(q) for q in QUEUES}
                    live.update(_table(metrics, started))
                    busy = any(m.waiting or m.active for m in metrics.values())
                    if waiter.done() and not busy:
                        break
                    await asyncio.sleep(0.2)
            await waiter
            async with DeadLetters(connection=manager.client) as dlq:
                dead = await dlq.list()
            _summary(console, results, sink, dead, settings.output_dir, time.monotonic() - started)
            ok = not failures and bool(dead) and "expected failure" in results
            if failures:
                console.print(f"[red]{len(failures)} job(s) failed unexpectedly[/]")
            if serve_port is not None:
                await _serve_dashboard(manager, console, serve_port)
            return 0 if ok else 1
    finally:
        sink.stop()
        database.dispose()


async def _serve_dashboard(manager: QueueManager, console: Console, port: int) -> None:
    """Serve the jobq dashboard on the demo's (embedded) server until interrupted."""
    try:
        import uvicorn

        from jobq.dashboard import create_app
    except ImportError as exc:
        console.print(
            f"[red]the dashboard needs its extra: pip install 'ppbe-jobs[dashboard]' ({exc})"
        )
        return
    app = create_app(manager.client, title="ppbe-jobs")
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    console.print(
        f"\n[bold]Dashboard:[/] http://127.0.0.1:{port}/ (workers keep running; Ctrl-C stops)"
    )
    await uvicorn.Server(config).serve()


def _summary(
    console: Console,
    results: dict[str, Any],
    sink: SmtpSink,
    dead: list[Any],
    output_dir: Path,
    seconds: float,
) -> None:
    console.print(f"\n[bold]Done in {seconds:.1f} s.[/] What each job returned:")
    for key, value in results.items():
        console.print(f"  {key}: {value}")
    console.print(f"\nE-mails received by the local SMTP sink: {len(sink.messages)}")
    for msg in sink.messages:
        console.print(f"  to {msg['To']}: {msg['Subject']}")
    console.print(f"\nDead-letter queue: {len(dead)} job(s)")
    for entry in dead:
        console.print(f"  {entry.queue}/{entry.job_id} {entry.name}: {entry.failed_reason}")
    files = sorted(p for p in output_dir.rglob("*") if p.is_file())
    console.print(f"\nFiles produced under {output_dir}:")
    for p in files:
        console.print(f"  {p}  ({p.stat().st_size:,} bytes)")
