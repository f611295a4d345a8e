"""Budget calculation jobs: a thin adapter over :mod:`ppbe_jobs.services.calculations`.

Job data::

    {"calculationId": "calc-2026-q2", "kind": "full",
     "parameters": {"fiscalYear": 2026, "fiscalMonth": 6},
     "filters": {"color": "O&M", "organization": "NAVY", "fiscalYears": [2026]}}

``kind`` is one of escalation, fydp-rollup, execution-rates, burn-rate,
variance, ada-check, full. The result is stored under the calculation id, so a
rerun returns the stored result. Bad input fails the job for good; a database
error is retried.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jobq import Job, UnrecoverableError
from ppbe_jobs.processors.services import Services
from ppbe_jobs.services.calculations import CalculationFilters, run_and_store

__all__ = ["JOB_NAMES", "QUEUE", "process"]

QUEUE = "budget-calculations"
JOB_NAMES = ("calculate", "budget-calculation")


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    """A small digest of a stored result, for the job's return value."""
    results = result.get("results", {})
    out: dict[str, Any] = {"sections": sorted(k for k, v in results.items() if v is not None)}
    ada = results.get("ada-check")
    if isinstance(ada, dict):
        out["adaFindings"] = len(ada.get("findings", []))
    return out


async def process(job: Job, services: Services) -> dict[str, Any]:
    """Run (or find) the calculation the job asks for."""
    data = job.data if isinstance(job.data, dict) else {}
    calculation_id = data.get("calculationId") or f"job-{job.queue_name}-{job.id}"
    kind = data.get("kind")
    if not isinstance(kind, str):
        raise UnrecoverableError("data.kind is required (e.g. 'full' or 'execution-rates')")
    try:
        filters = CalculationFilters.from_mapping(data.get("filters") or {})
    except ValueError as exc:
        raise UnrecoverableError(f"data.filters: {exc}") from exc
    await job.update_progress(10)
    try:
        row_id, result, computed = await asyncio.to_thread(
            run_and_store,
            services.database,
            str(calculation_id),
            kind,
            data.get("parameters") or {},
            filters,
        )
    except ValueError as exc:  # the domain names the field at fault
        raise UnrecoverableError(f"calculation {calculation_id}: {exc}") from exc
    await job.update_progress(100)
    return {
        "calculationId": calculation_id,
        "kind": kind,
        "resultId": row_id,
        "computed": computed,
        **_summary(result),
    }
