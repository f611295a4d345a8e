"""The data import processor: ``import-data`` jobs on the ``imports`` queue.

Job data: ``{"importId", "path", "format": "csv" | "xlsx" (default: the file's
suffix), "mode": "all-or-nothing" | "valid-rows" (default all-or-nothing),
"target": "budget-lines", "allowNegative": false, "requestedBy": ...}``.
Result: ``{"importId", "batchId", "status", "total", "inserted", "updated",
"unchanged", "rejected", "errors": [first 50 {"row", "field", "message", "value"}],
"replayed"}``.

A thin adapter over :func:`ppbe_jobs.services.dataio.import_data`, which runs
in a thread. Idempotent: an import id that already finished returns its
recorded outcome, and the upsert leaves lines already as imported unchanged.
A file with refused rows is an outcome (status ``rejected`` in all-or-nothing
mode), not a job failure. A missing or unreadable file, or a bad request,
fails for good (:class:`~jobq.UnrecoverableError`); database errors
(``OperationalError``...) propagate so the job is retried.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jobq import Job, UnrecoverableError
from ppbe_jobs.processors.services import Services
from ppbe_jobs.services.dataio import (
    DataIOError,
    ImportRequest,
    import_data,
    progress_from_thread,
)

__all__ = ["JOB_NAMES", "QUEUE", "process"]

QUEUE: str = "imports"
"""The named queue this processor serves."""

JOB_NAMES: tuple[str, ...] = ("import-data",)
"""The job names it accepts."""


async def process(job: Job, services: Services) -> dict[str, Any]:
    """Import the file named by the job into the budget lines."""
    try:
        request = ImportRequest.from_data(job.data)
        progress = progress_from_thread(asyncio.get_running_loop(), job.update_progress)
        result = await asyncio.to_thread(import_data, services.database, request, progress)
    except DataIOError as exc:
        raise UnrecoverableError(f"import job {job.id}: {exc}") from exc
    outcome = "previous outcome returned" if result.replayed else result.status.value
    await job.log(
        f"import {request.path} ({outcome}, batch {result.batch_id}): {result.inserted} "
        f"inserted, {result.updated} updated, {result.unchanged} unchanged, "
        f"{result.rejected} rejected"
    )
    return result.as_dict()
