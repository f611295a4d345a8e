"""Fixtures of the render tests."""

from __future__ import annotations

import pytest

from ppbe_jobs.render import ReportTable

from .data import all_reports


@pytest.fixture(params=["budget_summary", "rdte_exhibit", "execution_report", "fydp_table"])
def report(request: pytest.FixtureRequest) -> ReportTable:
    """Each report type in turn."""
    return all_reports()[request.param]
