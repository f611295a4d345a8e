"""Read-only commands: ``info``, ``jobs list|show``, ``check``."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import click

from jobq.connection import create_client, server_time_ms
from jobq.discovery import discover_queues as _discover
from jobq.errors import ConfigurationError
from jobq.health import HealthRules, problems
from jobq.job import Job
from jobq.metrics import QueueSnapshot, snapshot
from jobq.queue import ListState, Queue
from jobq.redaction import Redactor

from ._app import EXIT_REFUSED, AppState, cli, emit_json, iso, open_queue, run, state

LIST_STATES = (
    "waiting",
    "prioritized",
    "active",
    "delayed",
    "completed",
    "failed",
    "paused",
    "waiting-children",
)


async def discover_queues(app: AppState) -> list[str]:
    """Queue names under the prefix (SCAN, not KEYS; see :mod:`jobq.discovery`)."""
    settings = app.settings()
    client = create_client(settings)
    try:
        return await _discover(client, settings.prefix)
    finally:
        await client.aclose()


async def queue_info(queue: Queue) -> dict[str, Any]:
    """Counts, throughput, failure rate, oldest waiting age and workers of one queue."""
    counts = await queue.get_job_counts()
    completed = await queue.get_metrics("completed", 60)
    failed = await queue.get_metrics("failed", 60)
    done, lost = sum(completed), sum(failed)
    oldest: float | None = None
    ids = await queue.get_job_ids("waiting", 0, 0)
    if ids:
        job = await queue.get_job(ids[0])
        if job is not None and job.timestamp:
            now = await server_time_ms(queue.client)
            oldest = max(0, now - job.timestamp) / 1000
    return {
        "queue": queue.name,
        "paused": await queue.is_paused(),
        "counts": counts.to_dict(),
        "throughput": {"last_minute": completed[-1], "last_hour": done},
        "failed_last_hour": lost,
        "failure_rate": None if done + lost == 0 else lost / (done + lost),
        "oldest_waiting_seconds": oldest,
        "workers_alive": await queue.workers_alive(),
    }


async def _collect(ctx: click.Context, names: tuple[str, ...]) -> list[dict[str, Any]]:
    queues = list(names) or await discover_queues(state(ctx))
    out = []
    for name in queues:
        async with open_queue(ctx, name) as q:
            out.append(await queue_info(q))
    return out


def _show_info(rows: list[dict[str, Any]]) -> None:
    if not rows:
        click.echo("no queues found")
        return
    for r in rows:
        c = r["counts"]
        rate = "-" if r["failure_rate"] is None else f"{r['failure_rate']:.1%}"
        age = "-" if r["oldest_waiting_seconds"] is None else f"{r['oldest_waiting_seconds']:.1f}s"
        flag = " (paused)" if r["paused"] else ""
        click.echo(f"{r['queue']}{flag}")
        click.echo("  " + "  ".join(f"{k}={v}" for k, v in c.items()))
        click.echo(
            f"  throughput: {r['throughput']['last_minute']}/min (this minute), "
            f"{r['throughput']['last_hour']}/h; failure rate 1h: {rate}; "
            f"oldest waiting: {age}; workers alive: {r['workers_alive']}"
        )


@cli.command()
@click.argument("queues", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--watch", type=click.FloatRange(min=0.1), help="Refresh every SECONDS until Ctrl-C.")
@click.option("--count", type=click.IntRange(min=1), help="With --watch: stop after N refreshes.")
@click.pass_context
def info(
    ctx: click.Context,
    queues: tuple[str, ...],
    as_json: bool,
    watch: float | None,
    count: int | None,
) -> None:
    """Counts, throughput, failure rate, oldest waiting age and workers per queue.

    Without QUEUES, every queue under the prefix is shown.
    """
    shown = 0
    try:
        while True:
            rows = run(ctx, _collect(ctx, queues))
            if as_json:
                emit_json(rows)
            else:
                if watch is not None:
                    click.echo(f"--- {time.strftime('%H:%M:%S')}")
                _show_info(rows)
            shown += 1
            if watch is None or (count is not None and shown >= count):
                return
            time.sleep(watch)
    except KeyboardInterrupt:
        return


@cli.group()
def jobs() -> None:
    """List and inspect jobs."""


def _job_row(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "name": job.name,
        "attempts_made": job.attempts_made,
        "progress": job.progress,
        "created": iso(job.timestamp),
        "processed": iso(job.processed_on),
        "finished": iso(job.finished_on),
        "failed_reason": job.failed_reason,
    }


@jobs.command("list")
@click.argument("queue")
@click.option(
    "--state", "state_", type=click.Choice(LIST_STATES), default="waiting", show_default=True
)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def jobs_list(ctx: click.Context, queue: str, state_: str, limit: int, as_json: bool) -> None:
    """Jobs of QUEUE in a state (waiting in run order, finished newest first)."""

    async def go() -> list[dict[str, Any]]:
        async with open_queue(ctx, queue) as q:
            found = await q.get_jobs(cast(ListState, state_), 0, limit - 1)
            return [_job_row(j) for j in found]

    rows = run(ctx, go())
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo(f"no {state_} jobs in queue {queue!r}")
    for r in rows:
        reason = f"  {r['failed_reason']}" if r["failed_reason"] else ""
        click.echo(f"{r['id']}\t{r['name']}\tattempts={r['attempts_made']}\t{r['created']}{reason}")


async def job_detail(q: Queue, job_id: str, redact: Redactor) -> dict[str, Any]:
    """Everything about one job, for ``jobs show`` (payload fields redacted)."""
    job = await q.get_job(job_id)
    if job is None:
        from jobq.errors import JobNotFoundError

        raise JobNotFoundError(f"queue {q.name!r}: no job {job_id!r}")
    return {
        "id": job.id,
        "queue": q.name,
        "name": job.name,
        "state": await job.get_state(),
        "data": redact(job.data),
        "options": job.options.to_json(),
        "progress": job.progress,
        "attempts_made": job.attempts_made,
        "attempts_started": job.attempts_started,
        "stalls": job.stalls,
        "failed_reason": job.failed_reason,
        "errors": [
            {"attempt": e.attempt, "type": e.type, "reason": e.reason, "stack": e.stacktrace}
            for e in job.errors
        ],
        "return_value": redact(job.return_value),
        "timestamps": {
            "created": iso(job.timestamp),
            "processed": iso(job.processed_on),
            "finished": iso(job.finished_on),
        },
        "logs": await job.get_logs(),
        "corrupt": job.corrupt_reason,
    }


@jobs.command("show")
@click.argument("queue")
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def jobs_show(ctx: click.Context, queue: str, job_id: str, as_json: bool) -> None:
    """One job: data, options, progress, attempts, errors with stacks, timestamps, logs."""

    async def go() -> dict[str, Any]:
        async with open_queue(ctx, queue) as q:
            return await job_detail(q, job_id, state(ctx).redact)

    d = run(ctx, go())
    if as_json:
        emit_json(d)
        return
    for key in ("id", "queue", "name", "state", "progress", "attempts_made", "failed_reason"):
        click.echo(f"{key}: {d[key]}")
    for key in ("data", "options", "return_value", "timestamps"):
        click.echo(f"{key}: {d[key]}")
    for e in d["errors"]:
        click.echo(f"--- attempt {e['attempt']}: {e['type']}: {e['reason']}")
        click.echo(e["stack"].rstrip())
    if d["logs"]:
        click.echo("logs:")
        for line in d["logs"]:
            click.echo(f"  {line}")


@cli.command()
@click.argument("queues", nargs=-1)
@click.option("--max-waiting", type=click.IntRange(min=0), help="Unhealthy above N waiting jobs.")
@click.option(
    "--max-failure-rate",
    type=click.FloatRange(min=0, max=1),
    help="Unhealthy above this failure rate over the last hour (0..1).",
)
@click.option(
    "--min-workers", type=click.IntRange(min=0), default=0, help="Workers required per queue."
)
@click.pass_context
def check(
    ctx: click.Context,
    queues: tuple[str, ...],
    max_waiting: int | None,
    max_failure_rate: float | None,
    min_workers: int,
) -> None:
    """Health probe: exit 0 healthy, 1 unhealthy, 2 Redis unreachable."""
    try:
        rules = HealthRules(
            max_waiting=max_waiting, max_failure_rate=max_failure_rate, min_workers=min_workers
        )
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None

    async def go() -> list[QueueSnapshot]:
        names = list(queues) or await discover_queues(state(ctx))
        settings = state(ctx).settings()
        client = create_client(settings)
        try:
            opened = [
                await Queue(n, connection=client, prefix=settings.prefix).open() for n in names
            ]
            return list((await snapshot(opened)).queues)
        finally:
            await client.aclose()

    rows = run(ctx, asyncio.wait_for(go(), timeout=30))
    found = problems(rows, rules)
    for p in found:
        click.echo(p)
    if found:
        raise click.exceptions.Exit(EXIT_REFUSED)
    click.echo(f"ok: {len(rows)} queue(s) healthy")
