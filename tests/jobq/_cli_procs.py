"""Processors for the CLI tests, imported by dotted path (``tests.jobq._cli_procs:...``)."""

from __future__ import annotations

from typing import Any

from jobq import Job


async def double(job: Job) -> int:
    """Return twice the job's number."""
    return int(job.data["n"]) * 2


async def boom(job: Job) -> Any:
    """Fail every attempt."""
    raise ValueError(f"boom {job.data['n']}")
