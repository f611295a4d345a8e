"""``jobq dashboard``: serve the web dashboard; ``jobq dashboard hash-password``."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import click

from jobq.errors import ConfigurationError

from ._app import CliError, cli, state


def load_users(path: Path) -> dict[str, Any]:
    """Users from a JSON file ``{"name": {"password_hash": "scrypt$...", "role": "admin"}}``."""
    from jobq.dashboard import User  # the dashboard extra may be missing

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"--users-file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CliError(f"--users-file {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise CliError(f"--users-file {path} must hold a JSON object of users")
    users: dict[str, Any] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict) or "password_hash" not in entry:
            raise CliError(f"--users-file {path}: user {name!r} needs a password_hash")
        try:
            users[name] = User(entry["password_hash"], entry.get("role", "viewer"))
        except ConfigurationError as exc:
            raise CliError(f"--users-file {path}: user {name!r}: {exc}") from None
    return users


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@cli.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--token", envvar="JOBQ_DASHBOARD_TOKEN", help="Admin API token (env JOBQ_DASHBOARD_TOKEN)."
)
@click.option(
    "--users-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="JOBQ_DASHBOARD_USERS_FILE",
    help='JSON {"name": {"password_hash": ..., "role": viewer|operator|admin}}.',
)
@click.option(
    "--secret-key",
    envvar="JOBQ_DASHBOARD_SECRET",
    help="Signs session cookies; the same on every dashboard process (env JOBQ_DASHBOARD_SECRET).",
)
@click.option("--read-only", is_flag=True, help="Refuse every action.")
@click.option(
    "--redact",
    metavar="FIELDS",
    help="Comma-separated payload fields shown as [redacted] (default: common secret names).",
)
@click.option(
    "--index",
    "index_path",
    metavar="PATH",
    help="Keep the job-history search index in this SQLite file (default: in memory).",
)
@click.option("--no-index", is_flag=True, help="No search over finished jobs.")
@click.option("--root-path", default="", help="URL prefix when served behind a proxy.")
@click.pass_context
def dashboard(
    ctx: click.Context,
    host: str,
    port: int,
    token: str | None,
    users_file: Path | None,
    secret_key: str | None,
    read_only: bool,
    redact: str | None,
    index_path: str | None,
    no_index: bool,
    root_path: str,
) -> None:
    """Serve the web dashboard (needs the dashboard extra: starlette, jinja2, uvicorn)."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        import uvicorn

        from jobq.dashboard import create_app
        from jobq.redaction import DEFAULT_REDACTED_FIELDS
    except ImportError as exc:
        raise CliError(
            f"the dashboard needs its extra: pip install 'ppbe-jobs[dashboard]' ({exc})"
        ) from None
    settings = state(ctx).settings()
    users = load_users(users_file) if users_file else {}
    if not token and not users and not _is_loopback(host):
        raise CliError(
            f"refusing to serve an open dashboard on {host}: set --token or --users-file "
            "(or listen on 127.0.0.1)"
        )
    fields = DEFAULT_REDACTED_FIELDS if redact is None else [f for f in redact.split(",") if f]
    history: Any = False if no_index else (index_path or True)
    app = create_app(
        settings,
        token=token or None,
        users=users,
        secret_key=secret_key,
        read_only=read_only,
        redact=fields,
        history=history,
    )
    if not token and not users:
        click.echo("warning: no sign-in configured: everyone who can reach it is admin", err=True)
    click.echo(f"jobq dashboard on http://{host}:{port}{root_path}/ ({settings.redacted_url})")
    uvicorn.run(app, host=host, port=port, root_path=root_path, log_level="warning")


@dashboard.command("hash-password")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="The password (asked for when not given).",
)
def hash_password_cmd(password: str) -> None:
    """Print the scrypt hash of a password, for the users file."""
    from jobq.dashboard import hash_password

    try:
        click.echo(hash_password(password))
    except ConfigurationError as exc:
        raise CliError(str(exc)) from None
