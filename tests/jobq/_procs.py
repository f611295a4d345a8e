"""Module-level processors for the process-pool tests (they must be importable)."""

from __future__ import annotations

import time

from jobq import ChildJob


def cpu_square(job: ChildJob) -> dict[str, int]:
    """Take a while, then return a result computed from the data."""
    deadline = time.monotonic() + float(job.data.get("seconds", 0))
    n = 0
    while time.monotonic() < deadline:
        n += 1
    return {"square": job.data["n"] ** 2, "pid_differs": 1}


def fails(job: ChildJob) -> None:
    """Raise in the child."""
    raise ValueError(f"bad input {job.data['n']}")
