"""The ``jobq`` click group and what every command shares: the connection,
running a coroutine, turning user mistakes into one ``error:`` line."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import click
import redis.exceptions

from jobq import eventloop
from jobq.connection import ConnectionSettings
from jobq.deadletter import DeadLetters
from jobq.errors import ConnectionSetupError, JobqError
from jobq.queue import Queue
from jobq.redaction import DEFAULT_REDACTED_FIELDS, Redactor

T = TypeVar("T")

#: Exit codes: 0 done/healthy, 1 refused or unhealthy, 2 user mistake or Redis unreachable.
EXIT_REFUSED = 1
EXIT_ERROR = 2

_NETWORK_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionSetupError,
    OSError,
)


class CliError(click.ClickException):
    """A user-facing failure: printed as one ``error: ...`` line."""

    exit_code = EXIT_ERROR


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print ``error: message`` to stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(code)


@dataclass(frozen=True, slots=True)
class AppState:
    """Options of the ``jobq`` group, handed to every command."""

    url: str | None
    prefix: str | None
    redact: Redactor = dataclasses.field(default_factory=Redactor)

    def settings(self) -> ConnectionSettings:
        """The connection settings: ``--url``, else the environment; never an embedded server."""
        if self.url is not None:
            settings = ConnectionSettings.from_url(self.url)
        else:
            found = ConnectionSettings.from_env()
            if found is None:
                raise CliError("set REDIS_URL or pass --url")
            settings = found
        if self.prefix is not None:
            settings = dataclasses.replace(settings, prefix=self.prefix)
        return settings


class JobqGroup(click.Group):
    """A group that reports user mistakes as one ``error:`` line, without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except click.exceptions.Abort:
            fail("aborted", EXIT_REFUSED)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except JobqError as exc:
            fail(str(exc))


def state(ctx: click.Context) -> AppState:
    """The group's :class:`AppState`."""
    obj = ctx.find_root().obj
    assert isinstance(obj, AppState)
    return obj


def run(ctx: click.Context, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; an unreachable Redis becomes ``error: cannot reach Redis ...`` (exit 2)."""
    try:
        return eventloop.run(coro)
    except JobqError as exc:
        if isinstance(exc, ConnectionSetupError):
            fail(f"cannot reach Redis at {_where(ctx)}: {exc}")
        fail(str(exc))
    except _NETWORK_ERRORS as exc:
        fail(f"cannot reach Redis at {_where(ctx)}: {exc}")


def _where(ctx: click.Context) -> str:
    try:
        return state(ctx).settings().redacted_url
    except (JobqError, click.ClickException):
        return "<unconfigured>"


@asynccontextmanager
async def open_queue(ctx: click.Context, name: str) -> AsyncIterator[Queue]:
    """An open :class:`Queue` on the CLI's connection."""
    settings = state(ctx).settings()
    async with Queue(name, connection=settings, prefix=settings.prefix) as queue:
        yield queue


@asynccontextmanager
async def open_dead_letters(ctx: click.Context, name: str) -> AsyncIterator[DeadLetters]:
    """Open :class:`DeadLetters` named ``name`` on the CLI's connection."""
    settings = state(ctx).settings()
    async with DeadLetters(connection=settings, name=name, prefix=settings.prefix) as dl:
        yield dl


def iso(value: int | datetime | None) -> str | None:
    """A server-ms timestamp or datetime as ISO 8601 (UTC), or None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return datetime.fromtimestamp(value / 1000, tz=UTC).isoformat()


def emit_json(value: Any) -> None:
    """Print ``value`` as indented JSON (non-JSON values via ``str``)."""
    click.echo(json.dumps(value, indent=2, default=str, sort_keys=False))


F = TypeVar("F", bound=Callable[..., Any])


def log_options(command: F) -> F:
    """``--log-format`` and ``--log-level`` (env ``JOBQ_LOG_FORMAT``, ``LOG_LEVEL``),
    for every command that runs workers (``jobq worker``, ``ppbe-jobs worker``)."""
    command = click.option(
        "--log-level",
        type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False),
        envvar="LOG_LEVEL",
        default="INFO",
        show_default=True,
        help="Lowest level logged (env LOG_LEVEL).",
    )(command)
    return click.option(
        "--log-format",
        type=click.Choice(["auto", "json", "text"], case_sensitive=False),
        envvar="JOBQ_LOG_FORMAT",
        default="auto",
        show_default=True,
        help="Log lines as JSON, as text, or text on a terminal and JSON otherwise "
        "(env JOBQ_LOG_FORMAT).",
    )(command)


def refuse_without_yes(yes: bool, what: str) -> None:
    """Exit 1 unless ``--yes`` was passed."""
    if not yes:
        click.echo(f"refusing to {what} without confirmation: pass --yes", err=True)
        raise click.exceptions.Exit(EXIT_REFUSED)


def parse_json(text: str, what: str) -> Any:
    """Parse ``text`` as JSON, naming the option on failure."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CliError(f"{what} is not valid JSON: {exc}") from None


@click.group(cls=JobqGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    metavar="URL",
    help="Redis URL (default: REDIS_URL, or REDIS_HOST/REDIS_PORT/...).",
)
@click.option("--prefix", metavar="PREFIX", help="Key prefix (default: JOBQ_PREFIX or 'jobq').")
@click.option(
    "--redact",
    metavar="FIELDS",
    envvar="JOBQ_REDACT",
    help="Comma-separated payload fields printed as [redacted] (default: common secret "
    "names; '' for none; env JOBQ_REDACT).",
)
@click.pass_context
def cli(ctx: click.Context, url: str | None, prefix: str | None, redact: str | None) -> None:
    """Operate jobq queues: run workers, inspect, retry, clean up."""
    fields = DEFAULT_REDACTED_FIELDS if redact is None else redact.split(",")
    ctx.obj = AppState(url=url, prefix=prefix, redact=Redactor(fields))


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="jobq")
    sys.exit(0)  # pragma: no cover - cli.main exits itself
