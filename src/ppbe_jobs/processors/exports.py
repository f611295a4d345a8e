"""The data export processor: ``export-data`` jobs on the ``exports`` queue.

Job data: ``{"exportId", "dataset": "line-items" | "execution" | "program-elements",
"format": "csv" | "xlsx" | "jsonl", "filters": {"fiscalYear", "color", ...}}``.
Result: ``{"exportId", "filePath", "rows", "checksum", "bytes", "format", "dataset"}``.

A thin adapter over :func:`ppbe_jobs.services.dataio.export_data`, which runs in
a thread. Idempotent by export id: a rerun writes the same file name and
replaces the previous file in one step. A bad request fails for good
(:class:`~jobq.UnrecoverableError` naming the field); database errors are
retried.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jobq import Job, UnrecoverableError
from ppbe_jobs.processors.services import Services
from ppbe_jobs.services.dataio import (
    DataIOError,
    ExportRequest,
    export_data,
    progress_from_thread,
)

__all__ = ["JOB_NAMES", "QUEUE", "process"]

QUEUE: str = "exports"
"""The named queue this processor serves."""

JOB_NAMES: tuple[str, ...] = ("export-data",)
"""The job names it accepts."""


async def process(job: Job, services: Services) -> dict[str, Any]:
    """Write the requested rows to ``services.output_dir/exports/<exportId>.<format>``."""
    try:
        request = ExportRequest.from_data(job.data)
        progress = progress_from_thread(asyncio.get_running_loop(), job.update_progress)
        result = await asyncio.to_thread(
            export_data, services.database, services.output_dir, request, progress
        )
    except DataIOError as exc:
        raise UnrecoverableError(f"export job {job.id}: {exc}") from exc
    await job.log(
        f"exported {result.rows} {result.dataset.value} rows as {result.format.value} "
        f"to {result.path} (sha256 {result.checksum})"
    )
    return result.as_dict()
