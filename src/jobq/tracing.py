"""OpenTelemetry tracing of jobs, from the code that adds a job to the worker that runs it.

Optional: install the ``otel`` extra (``pip install 'ppbe-jobs[otel]'``, which
brings ``opentelemetry-api`` and ``opentelemetry-sdk``). Without it jobq runs
unchanged, and so it does while tracing is off: the queue and the worker test
one module flag, :data:`enabled`, and do nothing else.

Switching it on:

- automatically, when a queue (or a worker's queue) opens, if the
  OpenTelemetry API is importable and the application has configured a global
  tracer provider (``opentelemetry.trace.set_tracer_provider``) before that;
- explicitly, with :func:`enable` (optionally with a tracer provider of its
  own), and off with :func:`disable`; an explicit choice is never overridden
  by the automatic one;
- by the environment: ``JOBQ_TRACING=off`` (or ``0``/``false``) stops the
  automatic switch-on; ``JOBQ_TRACING=on`` turns tracing on at the first open
  even with no global provider configured yet (spans then go to whichever
  provider is set later).

What is traced (OpenTelemetry messaging semantic conventions):

- :meth:`Queue.add <jobq.Queue.add>` and :meth:`Queue.add_bulk
  <jobq.Queue.add_bulk>` make a PRODUCER span ``"<queue> publish"``
  (``messaging.operation.type="send"``, ``messaging.operation.name="publish"``),
  and store its context (W3C ``traceparent``/``tracestate``, through the global
  propagator) in the job's options, under the compact key ``tc``
  (:attr:`JobOptions.trace_context <jobq.JobOptions.trace_context>`).
- The worker wraps each processor call in a CONSUMER span ``"<queue> process"``.
  For one job, the stored context is the span's parent *and* a link, so the
  job's run continues the trace of the request that added it; a batch (a
  processor with ``batch_size``) gets one span with a link to each job's
  context and no remote parent, as the conventions ask for batches. The span
  records an exception raised by the processor and sets an error status, and
  marks a lease lost while the job ran (``jobq.lease_lost``).

Jobs added with tracing off, by a scheduler tick or as part of a flow carry no
context: their consumer span starts a trace of its own.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Awaitable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from .job import Job

__all__ = ["disable", "enable", "enabled", "is_enabled"]

#: True while jobs are traced. The hot paths read this one flag and nothing else.
enabled = False

# None until decided: by enable()/disable(), or by the first open (auto-detection).
_decided: bool | None = None
_tracer: Tracer | None = None
_INSTRUMENTATION = "jobq"
_SYSTEM = "jobq"
# The carrier of the publish span being made now: Queue._prepare stores it with each job.
_CARRIER: ContextVar[dict[str, str] | None] = ContextVar("jobq_trace_carrier", default=None)

_INSTALL_HINT = (
    "jobq tracing needs the OpenTelemetry API: install the 'otel' extra "
    "(pip install 'ppbe-jobs[otel]') or opentelemetry-api and opentelemetry-sdk"
)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("ppbe-jobs")
    except Exception:  # pragma: no cover - running from a source tree without metadata
        return "0"


def enable(tracer_provider: TracerProvider | None = None) -> None:
    """Trace jobs from now on, with ``tracer_provider`` (default: the global one).

    Raises :class:`~jobq.ConfigurationError` when the OpenTelemetry API is not
    installed.
    """
    global enabled, _decided, _tracer
    try:
        from opentelemetry import trace
    except ImportError:
        raise ConfigurationError(_INSTALL_HINT) from None
    if tracer_provider is None:
        _tracer = trace.get_tracer(_INSTRUMENTATION, _version())
    else:
        _tracer = tracer_provider.get_tracer(_INSTRUMENTATION, _version())
    _decided = True
    enabled = True


def disable() -> None:
    """Stop tracing jobs (and stop the automatic switch-on at the next open)."""
    global enabled, _decided, _tracer
    enabled = False
    _decided = False
    _tracer = None


def is_enabled() -> bool:
    """Whether jobs are traced now."""
    return enabled


def detect() -> None:
    """Turn tracing on if nothing was decided yet and the environment says so.

    Called when a queue opens; after the first decision it returns at once.
    """
    global _decided
    if _decided is not None:
        return
    setting = os.environ.get("JOBQ_TRACING", "auto").strip().lower()
    if setting in ("0", "off", "false", "no"):
        _decided = False
        return
    if setting in ("1", "on", "true", "yes"):
        try:
            enable()
        except ConfigurationError as exc:
            _decided = False
            logging.getLogger("jobq").warning("JOBQ_TRACING=%s, but %s", setting, exc)
        return
    # A configured provider means the application imported OpenTelemetry already:
    # otherwise there is nothing to find, and nothing is imported here.
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return
    provider = trace.get_tracer_provider()
    # The API's defaults (a proxy or a no-op provider) mean nobody configured one yet:
    # look again at the next open.
    if type(provider).__name__ not in ("ProxyTracerProvider", "NoOpTracerProvider"):
        enable()


# -- producer ------------------------------------------------------------------------


def inject(stored: dict[str, Any]) -> None:
    """Store the context of the publish span being made now with a job's options
    (``stored``, their JSON form), unless the options carry one already."""
    tc = _CARRIER.get()
    if tc is not None and "tc" not in stored:
        stored["tc"] = tc


async def publish(queue: str, adding: Awaitable[Any], *, bulk: bool = False) -> Any:
    """Await ``adding`` (the add of one job, or of a bulk) inside a PRODUCER span."""
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    tracer = _tracer
    if tracer is None:  # disabled meanwhile
        return await adding
    attributes: dict[str, Any] = {
        "messaging.system": _SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": queue,
    }
    span = tracer.start_span(f"{queue} publish", kind=SpanKind.PRODUCER, attributes=attributes)
    with trace.use_span(
        span, end_on_exit=True, record_exception=False, set_status_on_exception=False
    ):
        tc: dict[str, str] = {}
        propagate.inject(tc)
        token = _CARRIER.set(tc or None)
        try:
            result = await adding
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            _CARRIER.reset(token)
        if bulk:
            span.set_attribute("messaging.batch.message_count", len(result))
        else:
            span.set_attribute("messaging.message.id", result.id)
        return result


# -- consumer ------------------------------------------------------------------------


def _context_of(job: Job) -> Any:
    """The OpenTelemetry context stored with ``job`` (None if it has none)."""
    tc = job.options.trace_context
    if not tc:
        return None
    from opentelemetry import propagate, trace

    ctx = propagate.extract(dict(tc))
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


async def process(queue: str, worker_id: str, arg: Job | list[Job], running: Awaitable[Any]) -> Any:
    """Await ``running`` (the processor's call on one job or a batch) inside a CONSUMER span."""
    from opentelemetry import trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode

    tracer = _tracer
    if tracer is None:  # disabled meanwhile
        return await running
    jobs = arg if isinstance(arg, list) else [arg]
    attributes: dict[str, Any] = {
        "messaging.system": _SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": queue,
        "messaging.client.id": worker_id,
    }
    parent = None
    links = []
    for job in jobs:
        ctx = _context_of(job)
        if ctx is not None:
            links.append(Link(trace.get_current_span(ctx).get_span_context()))
            parent = ctx
    if isinstance(arg, list):
        parent = None  # a batch has many origins: links only
        attributes["messaging.batch.message_count"] = len(jobs)
    else:
        attributes["messaging.message.id"] = arg.id
        attributes["jobq.job.name"] = arg.name
        attributes["jobq.job.attempt"] = arg.attempts_made + 1
    span: Span = tracer.start_span(
        f"{queue} process",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        links=links,
    )
    with trace.use_span(
        span, end_on_exit=True, record_exception=False, set_status_on_exception=False
    ):
        try:
            return await running
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}"))
            raise
        finally:
            if any(j.lease_lost for j in jobs):
                span.set_attribute("jobq.lease_lost", True)
                span.set_status(Status(StatusCode.ERROR, "lease lost while running"))
