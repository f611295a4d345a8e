"""Commands that change queues: retry, promote, pause/resume, clean/drain/obliterate,
dead letters and schedulers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import click

from jobq.audit import AuditLog, cli_actor
from jobq.deadletter import DEFAULT_DEAD_LETTER_QUEUE, UNSET, DeadLetter
from jobq.errors import InvalidJobStateError, JobNotFoundError
from jobq.queue import CleanState, Queue

from ._app import (
    EXIT_REFUSED,
    CliError,
    cli,
    emit_json,
    iso,
    open_dead_letters,
    open_queue,
    parse_json,
    refuse_without_yes,
    run,
    state,
)

_DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]


def _utc(value: datetime | None) -> datetime | None:
    """Command-line times are UTC, like every time jobq stores."""
    return None if value is None else value.replace(tzinfo=UTC)


async def record(
    q: Queue, action: str, *, target: str = "", count: int | None = None, detail: str = ""
) -> None:
    """Append a command's action to the audit log the dashboard shows."""
    await AuditLog(q.client, q.keys.prefix).record(
        cli_actor(),
        action,
        queue=q.name,
        target=target,
        count=count,
        detail=detail,
        source="jobq command",
    )


# -- retry, promote, pause, resume -------------------------------------------


@cli.command()
@click.argument("queue")
@click.argument("job_id", metavar="[ID]", required=False)
@click.option("--all-failed", is_flag=True, help="Retry every failed job of QUEUE.")
@click.option("--name", help="Only failed jobs with this job name.")
@click.option("--error", "error_text", help="Only failed jobs whose errors contain TEXT.")
@click.option("--since", type=click.DateTime(_DATE_FORMATS), help="Failed at or after (UTC).")
@click.option("--until", type=click.DateTime(_DATE_FORMATS), help="Failed at or before (UTC).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before retrying many jobs.")
@click.pass_context
def retry(
    ctx: click.Context,
    queue: str,
    job_id: str | None,
    all_failed: bool,
    name: str | None,
    error_text: str | None,
    since: datetime | None,
    until: datetime | None,
    yes: bool,
) -> None:
    """Put failed jobs back to waiting: one (ID), all (--all-failed), or those matching
    filters (--name, --error, --since, --until). Shows the count and asks first."""
    filtered = any(v is not None for v in (name, error_text, since, until))
    if job_id is not None and (all_failed or filtered):
        raise CliError("give a job ID, or --all-failed / filters, not both")
    if job_id is None and not all_failed and not filtered:
        raise CliError(
            "give a job ID, --all-failed, or a filter (--name, --error, --since, --until)"
        )
    if job_id is not None:

        async def one() -> None:
            async with open_queue(ctx, queue) as q:
                await q.retry(job_id)
                await record(q, "retry", target=job_id, count=1)

        run(ctx, one())
        click.echo(f"retried job {job_id} of queue {queue!r}")
        return
    bounds = {"since": _utc(since), "until": _utc(until)}
    described = ", ".join(
        f"{k}={v}"
        for k, v in (("name", name), ("error", error_text), *bounds.items())
        if v is not None
    )

    async def matching() -> list[str] | int:
        async with open_queue(ctx, queue) as q:
            if not filtered:
                return (await q.get_job_counts()).failed
            return await q.find_failed(
                name=name, error_contains=error_text, since=bounds["since"], until=bounds["until"]
            )

    found = run(ctx, matching())
    n = found if isinstance(found, int) else len(found)
    click.echo(
        f"{n} failed job(s) in queue {queue!r}" + (f" match {described}" if filtered else "")
    )
    if n == 0:
        return
    if not yes and not click.confirm(f"retry {n} failed job(s)?", default=False):
        click.echo("nothing retried", err=True)
        raise click.exceptions.Exit(EXIT_REFUSED)

    async def go() -> int:
        async with open_queue(ctx, queue) as q:
            if isinstance(found, int):
                done = await q.retry_all_failed()
                await record(q, "retry-all", count=done, detail=f"confirmed {n}")
                return done
            done = 0
            for jid in found:
                try:
                    await q.retry(jid)
                    done += 1
                except (JobNotFoundError, InvalidJobStateError):
                    continue  # retried, removed or cleaned since it was listed
            await record(q, "retry-matching", count=done, detail=described)
            return done

    click.echo(f"retried {run(ctx, go())} job(s)")


@cli.command()
@click.argument("queue")
@click.argument("job_id", metavar="ID")
@click.pass_context
def promote(ctx: click.Context, queue: str, job_id: str) -> None:
    """Run a delayed job now."""

    async def go() -> None:
        async with open_queue(ctx, queue) as q:
            await q.promote(job_id)
            await record(q, "promote", target=job_id, count=1)

    run(ctx, go())
    click.echo(f"promoted job {job_id} of queue {queue!r}")


def _pause_or_resume(ctx: click.Context, queue: str, verb: str) -> bool:
    """Pause or resume QUEUE, audited; True when that changed its state."""

    async def go() -> bool:
        async with open_queue(ctx, queue) as q:
            changed = await (q.pause() if verb == "pause" else q.resume())
            await record(q, verb)
            return changed

    return run(ctx, go())


@cli.command()
@click.argument("queue")
@click.pass_context
def pause(ctx: click.Context, queue: str) -> None:
    """Stop workers claiming jobs of QUEUE (running jobs go on)."""
    changed = _pause_or_resume(ctx, queue, "pause")
    click.echo(f"queue {queue!r} paused" if changed else f"queue {queue!r} was already paused")


@cli.command()
@click.argument("queue")
@click.pass_context
def resume(ctx: click.Context, queue: str) -> None:
    """Let workers claim jobs of QUEUE again."""
    changed = _pause_or_resume(ctx, queue, "resume")
    click.echo(f"queue {queue!r} resumed" if changed else f"queue {queue!r} was not paused")


# -- clean, drain, obliterate ---------------------------------------------------


@cli.command()
@click.argument("queue")
@click.option(
    "--state",
    "state_",
    required=True,
    type=click.Choice(["completed", "failed", "delayed", "waiting"]),
    help="Which jobs to delete.",
)
@click.option("--grace", type=click.IntRange(min=0), default=0, help="Only jobs older than MS.")
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--yes", "-y", is_flag=True, help="Really delete.")
@click.pass_context
def clean(ctx: click.Context, queue: str, state_: str, grace: int, limit: int, yes: bool) -> None:
    """Delete up to LIMIT jobs of QUEUE in a state, older than --grace ms."""

    async def count() -> int:
        async with open_queue(ctx, queue) as q:
            return await q.clean_count(cast(CleanState, state_), grace)

    n = min(run(ctx, count()), limit)
    click.echo(f"clean will delete up to {n} {state_} job(s) of queue {queue!r}")
    refuse_without_yes(yes, f"delete {state_} jobs")

    async def go() -> list[str]:
        async with open_queue(ctx, queue) as q:
            ids = await q.clean(cast(CleanState, state_), grace, limit)
            await record(q, "clean", count=len(ids), detail=f"state={state_} grace={grace}ms")
            return ids

    click.echo(f"deleted {len(run(ctx, go()))} job(s)")


@cli.command()
@click.argument("queue")
@click.option("--delayed", is_flag=True, help="Delete delayed jobs too.")
@click.option("--yes", "-y", is_flag=True, help="Really delete.")
@click.pass_context
def drain(ctx: click.Context, queue: str, delayed: bool, yes: bool) -> None:
    """Delete every waiting job of QUEUE (and delayed ones with --delayed)."""

    async def count() -> int:
        async with open_queue(ctx, queue) as q:
            c = await q.get_job_counts()
            return c.waiting + c.paused + c.prioritized + (c.delayed if delayed else 0)

    click.echo(f"drain will delete {run(ctx, count())} job(s) of queue {queue!r}")
    refuse_without_yes(yes, "drain the queue")

    async def go() -> int:
        async with open_queue(ctx, queue) as q:
            n = await q.drain(delayed=delayed)
            await record(q, "drain", count=n, detail="with delayed" if delayed else "")
            return n

    click.echo(f"deleted {run(ctx, go())} job(s)")


@cli.command()
@click.argument("queue")
@click.option("--force", is_flag=True, help="Even while jobs are running.")
@click.option("--yes", "-y", is_flag=True, help="Really delete.")
@click.pass_context
def obliterate(ctx: click.Context, queue: str, force: bool, yes: bool) -> None:
    """Delete QUEUE with all its jobs."""

    async def count() -> int:
        async with open_queue(ctx, queue) as q:
            return sum((await q.get_job_counts()).to_dict().values())

    click.echo(f"obliterate will delete queue {queue!r} and its {run(ctx, count())} job(s)")
    refuse_without_yes(yes, "obliterate the queue")

    async def go() -> int:
        async with open_queue(ctx, queue) as q:
            n = await q.obliterate(force=force)
            await record(q, "obliterate", count=n, detail="forced" if force else "")
            return n

    run(ctx, go())
    click.echo(f"obliterated queue {queue!r}")


# -- dead letters ----------------------------------------------------------------


@cli.group()
@click.option(
    "--dlq",
    default=DEFAULT_DEAD_LETTER_QUEUE,
    show_default=True,
    help="The dead-letter queue.",
)
@click.pass_context
def dlq(ctx: click.Context, dlq: str) -> None:
    """Dead-letter entries: list, show, replay, discard."""
    ctx.meta["jobq.dlq"] = dlq


def _dlq_name(ctx: click.Context) -> str:
    return str(ctx.meta["jobq.dlq"])


def _entry_row(e: DeadLetter) -> dict[str, Any]:
    return {
        "id": e.id,
        "queue": e.queue,
        "job_id": e.job_id,
        "name": e.name,
        "failed_reason": e.failed_reason,
        "attempts_made": e.attempts_made,
        "failed_at": iso(e.failed_at),
        "dead_lettered_at": iso(e.dead_lettered_at),
        "replay_count": e.replay_count,
    }


@dlq.command("list")
@click.option("--queue", help="Only entries from this queue.")
@click.option("--name", help="Only entries of this job name.")
@click.option("--error", "error_text", help="Only entries whose errors contain TEXT.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def dlq_list(
    ctx: click.Context,
    queue: str | None,
    name: str | None,
    error_text: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Dead-letter entries, newest failure first."""

    async def go() -> list[dict[str, Any]]:
        async with open_dead_letters(ctx, _dlq_name(ctx)) as dl:
            found = await dl.list(queue, name, error_text, end=limit - 1)
            return [_entry_row(e) for e in found]

    rows = run(ctx, go())
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no dead-letter entries")
    for r in rows:
        click.echo(f"{r['id']}\t{r['name']}\t{r['failed_at']}\t{r['failed_reason']}")


@dlq.command("show")
@click.argument("entry")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def dlq_show(ctx: click.Context, entry: str, as_json: bool) -> None:
    """One dead-letter entry with its data, errors and replays."""

    async def go() -> dict[str, Any]:
        async with open_dead_letters(ctx, _dlq_name(ctx)) as dl:
            e = await dl.get(entry)
            if e is None:
                raise JobNotFoundError(f"dead-letter queue {dl.name!r}: no entry {entry!r}")
            row = _entry_row(e)
            row.update(
                data=state(ctx).redact(e.data),
                options=e.options,
                errors=[
                    {
                        "attempt": x.attempt,
                        "type": x.type,
                        "reason": x.reason,
                        "stack": x.stacktrace,
                    }
                    for x in e.errors
                ],
                replays=[
                    {"by": r.by, "at": iso(r.at), "job_id": r.job_id, "data_edited": r.data_edited}
                    for r in e.replays
                ],
            )
            return row

    d = run(ctx, go())
    if as_json:
        emit_json(d)
        return
    for key, value in d.items():
        if key != "errors":
            click.echo(f"{key}: {value}")
    for x in d["errors"]:
        click.echo(f"--- attempt {x['attempt']}: {x['type']}: {x['reason']}")
        click.echo(str(x["stack"]).rstrip())


@dlq.command("replay")
@click.argument("entry")
@click.option("--data", "data_json", metavar="JSON", help="Replace the job's data with this JSON.")
@click.option("--by", required=True, help="Who replays it (recorded with the entry).")
@click.pass_context
def dlq_replay(ctx: click.Context, entry: str, data_json: str | None, by: str) -> None:
    """Add the entry's job back to its queue as a fresh job."""
    data: Any = UNSET if data_json is None else parse_json(data_json, "--data")

    async def go() -> tuple[str, str]:
        async with open_dead_letters(ctx, _dlq_name(ctx)) as dl:
            job = await dl.replay(entry, data=data, by=by)
            await record(
                dl.queue,
                "dlq-replay",
                target=entry,
                count=1,
                detail=f"by={by} job={job.queue_name}/{job.id}"
                + (" data edited" if data is not UNSET else ""),
            )
            return job.queue_name, job.id

    queue, job_id = run(ctx, go())
    click.echo(f"replayed as job {job_id} in queue {queue!r}")


@dlq.command("discard")
@click.argument("entry")
@click.option("--yes", "-y", is_flag=True, help="Really delete.")
@click.pass_context
def dlq_discard(ctx: click.Context, entry: str, yes: bool) -> None:
    """Delete a dead-letter entry."""
    refuse_without_yes(yes, f"discard entry {entry!r}")

    async def go() -> bool:
        async with open_dead_letters(ctx, _dlq_name(ctx)) as dl:
            gone = await dl.discard(entry)
            if gone:
                await record(dl.queue, "dlq-discard", target=entry, count=1)
            return gone

    if not run(ctx, go()):
        raise CliError(f"dead-letter queue {_dlq_name(ctx)!r}: no entry {entry!r}")
    click.echo(f"discarded entry {entry}")


# -- schedulers ------------------------------------------------------------------


@cli.group()
def schedulers() -> None:
    """Job schedulers: list, run now, remove."""


@schedulers.command("list")
@click.argument("queue")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def schedulers_list(ctx: click.Context, queue: str, as_json: bool) -> None:
    """The live schedulers of QUEUE, soonest next run first."""

    async def go() -> list[dict[str, Any]]:
        async with open_queue(ctx, queue) as q:
            return [
                {
                    "id": s.id,
                    "every_ms": s.every,
                    "cron": s.cron,
                    "tz": s.tz,
                    "name": s.name,
                    "next_run": iso(s.next_run),
                    "last_run": iso(s.last_run),
                    "count": s.count,
                    "limit": s.limit,
                    "ended": s.ended,
                }
                for s in await q.list_schedulers()
            ]

    rows = run(ctx, go())
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo(f"no schedulers in queue {queue!r}")
    for r in rows:
        spec = f"every {r['every_ms']}ms" if r["every_ms"] else f"cron {r['cron']} {r['tz']}"
        click.echo(f"{r['id']}\t{r['name']}\t{spec}\tnext={r['next_run']}\tcount={r['count']}")


@schedulers.command("run-now")
@click.argument("queue")
@click.argument("scheduler_id", metavar="ID")
@click.pass_context
def schedulers_run_now(ctx: click.Context, queue: str, scheduler_id: str) -> None:
    """Add one extra job from a scheduler's template now."""

    async def go() -> str:
        async with open_queue(ctx, queue) as q:
            job = await q.run_scheduler_now(scheduler_id)
            await record(q, "scheduler-run-now", target=scheduler_id, count=1)
            return job.id

    click.echo(f"added job {run(ctx, go())}")


@schedulers.command("remove")
@click.argument("queue")
@click.argument("scheduler_id", metavar="ID")
@click.option("--yes", "-y", is_flag=True, help="Really remove.")
@click.pass_context
def schedulers_remove(ctx: click.Context, queue: str, scheduler_id: str, yes: bool) -> None:
    """Delete a scheduler and its pending job."""
    refuse_without_yes(yes, f"remove scheduler {scheduler_id!r}")

    async def go() -> bool:
        async with open_queue(ctx, queue) as q:
            gone = await q.remove_scheduler(scheduler_id)
            if gone:
                await record(q, "scheduler-remove", target=scheduler_id, count=1)
            return gone

    if not run(ctx, go()):
        raise CliError(f"queue {queue!r}: no scheduler {scheduler_id!r}")
    click.echo(f"removed scheduler {scheduler_id}")
