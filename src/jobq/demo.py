"""An engine demo: a worker and a producer in one process, progress on screen.

Run it with ``python3 run.py demo`` (or ``python -m jobq.demo``). With no
``REDIS_URL`` set it starts the embedded Valkey server, so nothing needs to
be installed or configured.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import time
from decimal import Decimal
from typing import Any

from . import (
    Backoff,
    ConnectionSettings,
    Job,
    JobFailedError,
    JobOptions,
    Queue,
    QueueEvents,
    Worker,
    eventloop,
)

QUEUE = "demo-reports"


async def generate_report(job: Job) -> dict[str, Any]:
    """Pretend to build a report: a few steps, progress after each."""
    steps = int(job.data.get("steps", 5))
    for step in range(1, steps + 1):
        await asyncio.sleep(random.uniform(0.05, 0.2))
        await job.update_progress(int(step * 100 / steps))
    if job.data.get("flaky") and job.attempts_made == 0:
        raise RuntimeError("the ledger service timed out (this attempt fails on purpose)")
    total = sum(Decimal(str(x)) for x in job.data.get("amounts", []))
    await job.log(f"summed {len(job.data.get('amounts', []))} lines")
    return {"reportId": job.data["reportId"], "total": total}


def bar(percent: float, width: int = 20) -> str:
    """A text progress bar."""
    filled = int(width * percent / 100)
    return "#" * filled + "." * (width - filled)


async def watch(events: QueueEvents, expected: int, out: Any) -> None:
    """Print what happens in the queue until every job has finished."""
    finished = 0
    async for ev in events:
        jid = ev.job_id or ""
        if ev.event == "progress":
            pct = float(ev.fields.get("pg", "0"))
            print(f"  job {jid:>3}  [{bar(pct)}] {pct:5.1f}%", file=out, flush=True)
        elif ev.event in ("added", "delayed"):
            print(f"  job {jid:>3}  {ev.event}", file=out, flush=True)
        elif ev.event == "retried":
            print(f"  job {jid:>3}  retrying: {ev.fields.get('reason')}", file=out, flush=True)
        elif ev.event in ("completed", "failed"):
            finished += 1
            print(f"  job {jid:>3}  {ev.event.upper()}", file=out, flush=True)
            if finished >= expected:
                return


async def main_async(jobs: int, concurrency: int, out: Any = sys.stdout) -> int:
    """Add ``jobs`` report jobs, process them, print progress; 0 when all completed."""
    async with Queue(QUEUE) as queue:
        await queue.obliterate(force=True)
        configured = ConnectionSettings.from_env() is not None
        url_note = "configured Redis" if configured else "the embedded Valkey server"
        print(f"jobq demo on {url_note}: {jobs} report jobs, concurrency {concurrency}", file=out)
        events = QueueEvents(QUEUE, connection=queue.client, block_ms=500)
        await events.open()
        worker = Worker(QUEUE, generate_report, connection=queue.client, concurrency=concurrency)
        runner = asyncio.create_task(worker.run())
        watcher = asyncio.create_task(watch(events, jobs, out))
        t0 = time.monotonic()
        added: list[Job] = []
        for i in range(jobs):
            opts = JobOptions(
                priority=1 if i == jobs - 1 else 10,
                attempts=3,
                backoff=Backoff.exponential(200),
                delay=500 if i == 0 else 0,
            )
            data = {
                "reportId": f"report-{i + 1}",
                "steps": 4,
                "flaky": i == 1,
                "amounts": [Decimal("1234.56"), Decimal("0.10"), Decimal("99.99")],
            }
            added.append(await queue.add("generate-budget-report", data, opts))
        ok = 0
        for job in added:
            try:
                result = await job.wait_until_finished(60)
                ok += 1
                assert result["total"] == Decimal("1334.65")
            except JobFailedError as exc:
                print(f"  job {job.id} failed: {exc}", file=out)
        await asyncio.wait_for(watcher, 10)
        await worker.close()
        await runner
        await events.close()
        counts = await queue.get_job_counts()
        print(
            f"done in {time.monotonic() - t0:.1f} s: {counts.completed} completed, "
            f"{counts.failed} failed; every total was exactly Decimal('1334.65')",
            file=out,
        )
        return 0 if ok == jobs else 1


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(eventloop.run(main_async(args.jobs, args.concurrency)))


if __name__ == "__main__":
    main()
