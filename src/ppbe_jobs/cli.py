"""The ``ppbe-jobs`` command: workers, enqueueing, health and metrics, the demo.

Every command reads its configuration from the environment (see
:mod:`ppbe_jobs.config`); a wrong value stops it with a message naming the
variable, without a traceback.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from jobq import JobqError, eventloop
from jobq.cli import log_options

from .config import load_settings
from .manager import QueueManager

__all__ = ["main"]

T = TypeVar("T")


def _run(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine, turning jobq's errors into one clear line and exit code 2."""
    try:
        return eventloop.run(coro_fn())
    except JobqError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def _json_arg(value: str | None, what: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{what} is not valid JSON: {exc}") from exc


@click.group()
@click.version_option(package_name="ppbe-jobs")
def main() -> None:
    """Background jobs of the PPBE system: reports, notifications, budget
    calculations, exports and imports, on Redis (or an embedded Valkey)."""


@main.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the demo keeps its database and outputs (default: a new temporary folder).",
)
@click.option(
    "--serve",
    "serve_port",
    type=click.IntRange(1, 65535),
    default=None,
    metavar="PORT",
    help="Afterwards keep the workers running and serve the dashboard on 127.0.0.1:PORT.",
)
def demo(data_dir: Path | None, serve_port: int | None) -> None:
    """Run the whole system on the embedded defaults, with live progress and a summary."""
    from .demo import run_demo

    sys.exit(_run(lambda: run_demo(data_dir, serve_port=serve_port)))


@main.command("seed-db")
@click.option("--scale", type=click.Choice(["small", "realistic"]), default="small")
@click.option("--reset", is_flag=True, help="Drop every table first (all data is lost).")
def seed_db(scale: str, reset: bool) -> None:
    """Create the domain tables in DATABASE_URL and fill them with sample data."""
    from .db import Database, SeedError, seed

    settings = load_settings()
    try:
        size: Any = scale  # click.Choice has checked it is "small" or "realistic"
        summary = seed(Database(settings.resolved_database_url), scale=size, reset=reset)
    except (SeedError, JobqError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1 if isinstance(exc, SeedError) else 2)
    click.echo(summary.describe())


@main.command()
@click.option(
    "--tiers",
    default="",
    help="Comma-separated tiers to serve (critical,standard,bulk); default all.",
)
@click.option(
    "--queues",
    default="",
    help="Comma-separated named queues to serve; default all with a processor.",
)
@log_options
def worker(tiers: str, queues: str, log_format: str, log_level: str) -> None:
    """Run workers for the registered processors until SIGTERM/SIGINT."""
    from jobq.logs import configure_logging

    configure_logging(log_format, log_level)
    from .outbox import OutboxRelay
    from .processors import register_all

    async def go() -> None:
        manager = QueueManager(load_settings())
        await manager.start()
        services = register_all(manager, only=[q for q in queues.split(",") if q] or None)
        # The outbox relay runs beside the workers: committed domain changes reach the queues.
        relay = OutboxRelay(services.database, manager)
        relay_task = asyncio.create_task(relay.run())
        manager.install_signal_handlers()
        try:
            await manager.run_workers([t for t in tiers.split(",") if t] or None)
        finally:
            relay.close()
            await relay_task

    _run(go)


@main.command()
@click.argument("queue")
@click.argument("name")
@click.option("--data", default="{}", help="Job data as JSON.")
@click.option("--options", "options_json", default=None, help="Job options as JSON (spec shape).")
def enqueue(queue: str, name: str, data: str, options_json: str | None) -> None:
    """Add a job NAME to QUEUE and print its id and tier queue."""

    async def go() -> None:
        async with QueueManager(load_settings()) as manager:
            job = await manager.add_job(
                queue, name, _json_arg(data, "--data"), _json_arg(options_json, "--options")
            )
            click.echo(json.dumps({"id": job.id, "queue": job.queue_name}))

    _run(go)


@main.command()
@click.argument("queues", nargs=-1)
def health(queues: tuple[str, ...]) -> None:
    """Check queue health (exit 1 when unhealthy), as the spec's rules say."""

    async def go() -> bool:
        async with QueueManager(load_settings()) as manager:
            report = await manager.check_health(list(queues) or None)
            for q in report.queues:
                rate = "-" if q.failure_rate is None else f"{q.failure_rate:.1%}"
                status = "ok" if q.healthy else "UNHEALTHY"
                click.echo(f"{q.queue:<24} {status:<10} waiting {q.waiting:>7}  failures {rate}")
            for problem in report.problems:
                click.echo(f"  - {problem}")
            return report.healthy

    sys.exit(0 if _run(go) else 1)


@main.command()
@click.argument("queue")
def metrics(queue: str) -> None:
    """Print a named queue's metrics (all tiers, and per tier) as JSON."""

    async def go() -> None:
        async with QueueManager(load_settings()) as manager:
            m = await manager.get_queue_metrics(queue)
            out = {k: getattr(m, k) for k in ("waiting", "active", "completed", "failed")}
            out.update({"delayed": m.delayed, "paused": m.paused, "by_tier": m.by_tier})
            click.echo(json.dumps(out, indent=2))

    _run(go)


if __name__ == "__main__":  # pragma: no cover
    main()
