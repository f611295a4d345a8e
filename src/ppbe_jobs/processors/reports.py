"""The report job: generate a report file, record it, and ask for its "report ready" notification.

A thin adapter over :mod:`ppbe_jobs.services.reporting`. Job data, as the spec
sends it::

    {"reportId": "report-123", "reportType": "budget-summary", "format": "pdf",
     "fiscalYear": "FY2026", "parameters": {"kind": "request"},
     "requestedBy": "user-456"}

(``reportType``: ``budget-summary``, ``r1``, ``execution`` or ``fydp``;
``format``: ``pdf``, ``xlsx`` or ``csv``; ``fiscalYearId`` is read as
``fiscalYear``; optional ``notify: {channel, recipient}`` says who hears that
the report is ready, by default ``requestedBy`` in the application.)

The result is ``{"reportId", "filePath", "checksum", "bytes", "format"}`` plus
``notificationKey`` (None when nobody is to be told).

Errors:

* an invalid request, or no figures to report: :class:`jobq.UnrecoverableError`
  naming the field; the job fails at once (and goes to the dead-letter queue),
  the report row, if any, is marked ``failed`` with the reason;
* anything else (the database busy or unreachable, the disk full): raised as
  it is, so the job is retried with backoff; the report row is marked
  ``failed`` when the last attempt fails.

Idempotent by report id: a rerun rewrites the file atomically (same bytes when
the figures did not change), updates the row, and asks for the same
notification (job id and ``notificationKey`` ``report-ready:<reportId>``), which
is then neither queued twice nor sent twice.

The database and file work runs in a thread (``asyncio.to_thread``), so the
worker's event loop keeps its heartbeats and other jobs going; progress reaches
the job from that thread through :func:`relay_progress`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from jobq import Job, UnrecoverableError
from ppbe_jobs.processors.services import Services
from ppbe_jobs.services.reporting import (
    ReportError,
    ReportRequestError,
    ReportService,
    parse_report_request,
    report_ready_notification,
)

__all__ = [
    "JOB_NAMES",
    "NOTIFICATION_JOB_NAME",
    "NOTIFICATION_QUEUE",
    "QUEUE",
    "process",
    "relay_progress",
]

log = logging.getLogger("ppbe_jobs.processors.reports")

QUEUE = "reports"
"""The named queue report jobs are added to."""

JOB_NAMES: tuple[str, ...] = ("generate-report", "generate-budget-report")
"""The job names this processor handles (the second is the spec's)."""

NOTIFICATION_QUEUE = "notifications"
"""Where the "report ready" notification job goes."""

NOTIFICATION_JOB_NAME = "send-notification"
"""The name of that job."""


@contextlib.asynccontextmanager
async def relay_progress(job: Job) -> AsyncIterator[Callable[[int], None]]:
    """A progress callback any thread may call; the job's progress follows, in order.

    Calls are handed to the event loop, and one task sends them with
    :meth:`jobq.Job.update_progress`, one at a time, skipping values that a
    newer one has overtaken (only the latest matters) and any that would go
    backwards. What was reported is sent before the block ends; an error
    sending it (the lease was lost) is raised then, unless the block itself
    raised.
    """
    loop = asyncio.get_running_loop()
    values: asyncio.Queue[int | None] = asyncio.Queue()

    async def pump() -> None:
        sent = -1
        while True:
            latest = await values.get()
            finished = latest is None
            while not values.empty():
                newer = values.get_nowait()
                if newer is None:
                    finished = True
                else:
                    latest = newer if latest is None else max(latest, newer)
            if latest is not None and latest > sent:
                await job.update_progress(latest)
                sent = latest
            if finished:
                return

    task = asyncio.create_task(pump(), name=f"progress-{job.id}")

    def report(percent: int) -> None:
        loop.call_soon_threadsafe(values.put_nowait, int(percent))

    try:
        yield report
    except BaseException:
        # Let the pump finish rather than cancel it in the middle of a Redis
        # command; its own error must not hide the one on its way out.
        values.put_nowait(None)
        with contextlib.suppress(Exception):
            await task
        raise
    # The thread's calls were queued on the loop before its result was, so
    # they are all in ``values`` by now.
    values.put_nowait(None)
    await task


def _last_attempt(job: Job) -> bool:
    return job.attempts_made + 1 >= job.options.attempts


def _where(job: Job) -> str:
    return f"report job {job.id} ({job.name!r}) in queue {job.queue_name!r}"


async def _record_failure(service: ReportService, report_id: object, error: str) -> None:
    """Mark the report row failed; never hide the job's own error behind this one."""
    if not isinstance(report_id, str):
        return
    try:
        await asyncio.to_thread(service.fail, report_id, error)
    except Exception as exc:
        # The type only: a database error's text quotes its SQL parameters (the job's error).
        log.error(
            "report %s: could not record the failure in the database (%s)",
            report_id,
            type(exc).__name__,
        )


async def process(job: Job, services: Services) -> dict[str, Any]:
    """Generate the report ``job.data`` asks for (see the module docstring).

    Bind ``services`` with :func:`functools.partial` to register it.
    """
    service = ReportService(services.database, services.output_dir)
    data = job.data if isinstance(job.data, dict) else {}
    try:
        request = parse_report_request(job.data)
    except ReportRequestError as exc:
        reason = f"{_where(job)}: invalid request, {exc}"
        await _record_failure(service, data.get("reportId"), reason)
        raise UnrecoverableError(reason) from exc
    if request.ignored_parameters:
        await job.log(
            f"parameters not used by a {request.report_type} report: "
            f"{', '.join(request.ignored_parameters)}"
        )

    try:
        async with relay_progress(job) as on_progress:
            generated = await asyncio.to_thread(service.generate, request, on_progress=on_progress)
    except ReportError as exc:
        reason = f"{_where(job)}: {exc}"
        await _record_failure(service, request.report_id, reason)
        raise UnrecoverableError(reason) from exc
    except Exception as exc:
        if _last_attempt(job):
            await _record_failure(
                service, request.report_id, f"{_where(job)}: {type(exc).__name__}: {exc}"
            )
        raise

    rendered = generated.rendered
    await job.log(
        f"{generated.title}: {rendered.path} ({rendered.bytes} bytes, sha256 {rendered.sha256})"
    )
    result = generated.to_result()
    follow_up = report_ready_notification(generated)
    result["notificationKey"] = None
    if follow_up is not None:
        key = follow_up["notificationKey"]
        # The job id makes a rerun find the job already queued instead of adding another.
        await services.manager.add_job(
            NOTIFICATION_QUEUE, NOTIFICATION_JOB_NAME, follow_up, {"jobId": key}
        )
        result["notificationKey"] = key
    return result
