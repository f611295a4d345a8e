"""Budget calculation jobs on the seeded database, through a real worker."""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from jobq import JobFailedError
from ppbe_jobs.config import load_settings
from ppbe_jobs.db import BudgetLine, CalculationResult, Database
from ppbe_jobs.manager import QueueManager
from ppbe_jobs.processors import calculations
from ppbe_jobs.processors.services import Services


@pytest.fixture
async def manager(
    redis_url: str, sqlite_db: Database, tmp_path: Path
) -> AsyncIterator[tuple[QueueManager, str]]:
    queue = f"calc-{uuid.uuid4().hex[:8]}"
    async with QueueManager(load_settings({}), connection=redis_url) as m:
        services = Services(database=sqlite_db, output_dir=tmp_path, smtp=None, manager=m)
        m.register_processor(queue, functools.partial(calculations.process, services=services))
        await m.start_workers()
        yield m, queue


async def test_fydp_rollup_matches_the_database_and_is_stored_once(
    manager: tuple[QueueManager, str], sqlite_db: Database
) -> None:
    m, queue = manager
    data = {
        "calculationId": "calc-fydp-1",
        "kind": "fydp-rollup",
        "parameters": {"fydpStart": 2026},
        "filters": {"budgetKind": "request", "color": "O&M"},
    }
    job = await m.add_job(queue, "calculate", data)
    result = await job.wait_until_finished(30)
    assert result["computed"] is True
    with sqlite_db.session() as s:
        row = s.get(CalculationResult, result["resultId"])
        assert row is not None
        stored = row.result["results"]["fydp-rollup"]
        expected = s.scalar(
            select(func.sum(BudgetLine.amount_k)).where(
                BudgetLine.kind == "request",
                BudgetLine.fiscal_year.between(2026, 2030),
                BudgetLine.appropriation.has(color="O&M"),
            )
        )
    assert expected is not None
    assert Decimal(stored["grand_total"]) == expected
    again = await m.add_job(queue, "calculate", data)
    second = await again.wait_until_finished(30)
    assert second["computed"] is False
    assert second["resultId"] == result["resultId"]


async def test_bad_kind_fails_for_good_naming_the_field(
    manager: tuple[QueueManager, str],
) -> None:
    m, queue = manager
    job = await m.add_job(queue, "calculate", {"calculationId": "c-bad", "kind": "guess"})
    with pytest.raises(JobFailedError, match="guess"):
        await job.wait_until_finished(30)
    assert (await job.refresh()).attempts_made == 1
