"""``jobq worker``: run a processor given by its dotted path."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import sys
from typing import Any

import click

from jobq.connection import ConnectionSettings
from jobq.logs import configure_logging
from jobq.options import WorkerOptions
from jobq.queue import Queue
from jobq.worker import Worker

from ._app import CliError, cli, log_options, run, state

BURST_POLL = 0.2


def load_processor(path: str) -> Any:
    """Import ``module.path:attr`` (the current directory is importable, as for uvicorn)."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise CliError(f"processor must look like MODULE:ATTR, got {path!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"cannot import module {module_name!r}: {exc}") from None
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CliError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(target):
        raise CliError(f"{path!r} is not callable")
    return target


async def _idle(queue: Queue) -> bool:
    c = await queue.get_job_counts()
    return c.waiting + c.prioritized + c.delayed + c.active == 0


async def run_workers(workers: list[Worker], burst: bool, settings: ConnectionSettings) -> None:
    """Run the workers; with ``burst``, close each once its queue has no waiting,
    delayed or active jobs (polled every 0.2 s on a connection of its own)."""
    tasks = [asyncio.create_task(w.run(), name=f"jobq-worker-{w.name}") for w in workers]
    watchers: list[Queue] = []
    try:
        if burst:
            for w in workers:
                watchers.append(
                    await Queue(w.name, connection=settings, prefix=settings.prefix).open()
                )
            pending = set(range(len(workers)))
            while pending:
                await asyncio.sleep(BURST_POLL)
                for i in sorted(pending):
                    if tasks[i].done() or await _idle(watchers[i]):
                        pending.discard(i)
                        await workers[i].close()
        await asyncio.gather(*tasks)
    finally:
        for w, t in zip(workers, tasks, strict=True):
            if not t.done():
                await w.close(grace=0)
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        for q in watchers:
            await q.close()


@cli.command()
@click.argument("processor", metavar="MODULE:ATTR")
@click.option(
    "--queue",
    "--queues",
    "-q",
    "queues",
    multiple=True,
    required=True,
    help="Queue to work on; repeat it or give a comma-separated list (one worker each).",
)
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--processes",
    type=click.IntRange(min=0),
    default=0,
    help="Child processes for a def processor.",
)
@click.option(
    "--burst", is_flag=True, help="Exit 0 once the queues have no waiting, delayed or active jobs."
)
@log_options
@click.pass_context
def worker(
    ctx: click.Context,
    processor: str,
    queues: tuple[str, ...],
    concurrency: int,
    processes: int,
    burst: bool,
    log_format: str,
    log_level: str,
) -> None:
    """Run PROCESSOR (an importable MODULE:ATTR) on the jobs of the given queues.

    SIGTERM/SIGINT close the worker gracefully.
    """
    configure_logging(log_format, log_level)
    names = [n.strip() for q in queues for n in q.split(",") if n.strip()]
    func = load_processor(processor)
    settings = state(ctx).settings()
    options = WorkerOptions(concurrency=concurrency, processes=processes)

    async def go() -> None:
        workers = [
            Worker(name, func, connection=settings, prefix=settings.prefix, options=options)
            for name in dict.fromkeys(names)
        ]
        await run_workers(workers, burst, settings)

    run(ctx, go())
