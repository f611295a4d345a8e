"""Structured logs: JSON lines for machines, readable text for people, and the job
being run on every line.

:func:`configure_logging` installs one handler on the root logger. With
``format="json"`` each record is one JSON object on one line::

    {"ts": "2026-11-28T03:23:08.123Z", "level": "WARNING", "logger": "jobq.worker",
     "message": "...", "job_id": "42", "queue": "reports", "job_name": "generate-report",
     "attempt": 2, "worker_id": "host:1234:ab12cd34"}

``format="text"`` writes the same as one readable line, the fields at the end;
``"auto"`` picks text when the stream is a terminal and JSON otherwise.

While a worker runs a processor it binds the job (id, queue, name, attempt,
worker id) in a context variable; the handler's filter adds those fields to
every record logged meanwhile, by any logger (the application's too), also
from a plain ``def`` processor running in a thread. :func:`job_context` reads
them. The worker's own lines about a job carry the same fields.

jobq never logs job data, return values or the messages of exceptions raised
by processors (they often quote the data): a failed attempt is logged with the
exception's type, and the full reason and stack trace stay in the job record.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from contextvars import ContextVar, Token
from typing import IO, TYPE_CHECKING, Any, Literal

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .job import Job

__all__ = [
    "JOB_FIELDS",
    "JobContextFilter",
    "JsonFormatter",
    "LogFormat",
    "TextFormatter",
    "configure_logging",
    "job_context",
    "job_fields",
]

LogFormat = Literal["json", "text", "auto"]

#: The fields bound to every line logged while a job runs (a batch has ``job_ids``).
JOB_FIELDS = ("job_id", "job_ids", "queue", "job_name", "attempt", "worker_id")

# (job or batch, worker id) of the processor call running in this context.
_JOB: ContextVar[tuple[Job | list[Job], str] | None] = ContextVar("jobq_job", default=None)

# Attributes every LogRecord has; anything else on a record was bound by a caller.
_STANDARD = frozenset(
    [
        *logging.LogRecord("", 0, "", 0, "", (), None).__dict__,
        "message",
        "asctime",
        "taskName",
    ]
)


def bind(arg: Job | list[Job], worker_id: str) -> Token[tuple[Job | list[Job], str] | None]:
    """Bind the job (or batch) a processor is about to run; undo with :func:`unbind`."""
    return _JOB.set((arg, worker_id))


def unbind(token: Token[tuple[Job | list[Job], str] | None]) -> None:
    """Undo a :func:`bind`."""
    _JOB.reset(token)


def job_fields(job: Job, worker_id: str | None = None) -> dict[str, Any]:
    """The log fields of one job (for ``extra=`` on a line about a job)."""
    out: dict[str, Any] = {
        "job_id": job.id,
        "queue": job.queue_name,
        "job_name": job.name,
        "attempt": job.attempts_made + 1,
    }
    if worker_id is not None:
        out["worker_id"] = worker_id
    return out


def job_context() -> dict[str, Any]:
    """The fields of the job being run in this context (empty outside a processor).

    ``job_id``, ``queue``, ``job_name``, ``attempt`` (1 for the first) and
    ``worker_id``; for a batch, ``job_ids``, ``queue`` and ``worker_id``.
    """
    bound = _JOB.get()
    if bound is None:
        return {}
    arg, worker_id = bound
    if isinstance(arg, list):
        return {
            "job_ids": [j.id for j in arg],
            "queue": arg[0].queue_name if arg else None,
            "worker_id": worker_id,
        }
    return job_fields(arg, worker_id)


class JobContextFilter(logging.Filter):
    """Adds the running job's fields (see :func:`job_context`) to each record.

    Put it on a handler (as :func:`configure_logging` does), not on a logger: a
    handler's filters see the records of every logger that reaches it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if _JOB.get() is not None:
            for key, value in job_context().items():
                if not hasattr(record, key):
                    setattr(record, key, value)
        return True


def _timestamp(record: logging.LogRecord) -> str:
    secs = int(record.created)
    ms = int((record.created - secs) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ms:03d}Z"


def _bound(record: logging.LogRecord) -> dict[str, Any]:
    """Fields a caller or a filter bound to the record, job fields first."""
    fields = {k: record.__dict__[k] for k in JOB_FIELDS if k in record.__dict__}
    for key, value in record.__dict__.items():
        if key not in _STANDARD and key not in fields and not key.startswith("_"):
            fields[key] = value
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (ISO-8601 UTC), ``level``, ``logger``,
    ``message``, the bound fields, and ``exc_info``/``stack_info`` when present."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(_bound(record))
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``<ts> <LEVEL> <logger>: <message> key=value ...`` on one line (tracebacks below)."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        fields = _bound(record)
        if fields:
            line += "  " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if (not text or any(c in text for c in ' ="')) else text


def _level(level: str | int) -> int:
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    if isinstance(level, str):
        name = level.strip().upper()
        if name.isdigit():
            return int(name)
        value = logging.getLevelNamesMapping().get(name)
        if value is not None:
            return value
    raise ConfigurationError(
        f"log level must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {level!r}"
    )


_HANDLER_MARK = "_jobq_handler"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (it may be replaced later)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


def configure_logging(
    format: str | None = None,
    level: str | int | None = None,
    *,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send the root logger's records to ``stream`` (default stderr) as JSON or text.

    ``format``: ``"json"``, ``"text"`` or ``"auto"`` (text on a terminal, else
    JSON); default ``JOBQ_LOG_FORMAT`` or ``"auto"``. ``level``: a level name
    or number; default ``LOG_LEVEL`` or ``"INFO"``. Calling it again replaces
    the handler it installed before (other handlers are left alone). Returns
    the handler.
    """
    fmt = (format or os.environ.get("JOBQ_LOG_FORMAT") or "auto").strip().lower()
    if fmt not in ("json", "text", "auto"):
        raise ConfigurationError(f"log format must be json, text or auto, got {fmt!r}")
    resolved_level = _level(level if level is not None else os.environ.get("LOG_LEVEL") or "INFO")
    out = stream if stream is not None else sys.stderr
    if fmt == "auto":
        isatty = getattr(out, "isatty", None)
        fmt = "text" if isatty is not None and isatty() else "json"
    handler: logging.Handler = (
        logging.StreamHandler(out) if stream is not None else _StderrHandler()
    )
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(JobContextFilter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(resolved_level)
    return handler
