"""Writers replace files atomically, report progress, and leave nothing half-written."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from ppbe_jobs.render import (
    ProgressCallback,
    RenderedFile,
    ReportTable,
    fydp_table,
    write_csv,
    write_pdf,
    write_xlsx,
)

from .data import CONTEXT, all_reports, program_amounts

Writer = Callable[..., RenderedFile]
WRITERS: dict[str, Writer] = {"pdf": write_pdf, "xlsx": write_xlsx, "csv": write_csv}


@pytest.fixture(params=list(WRITERS))
def writer(request: pytest.FixtureRequest) -> tuple[str, Writer]:
    """Each writer with its file suffix."""
    return request.param, WRITERS[request.param]


def _other_table() -> ReportTable:
    """The FYDP table with one amount changed by a dollar."""
    amounts = program_amounts()
    changed = [replace(amounts[0], amount=amounts[0].amount + Decimal("0.001")), *amounts[1:]]
    return fydp_table(changed, CONTEXT)


def _folder_listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_result_describes_the_file(tmp_path: Path, writer: tuple[str, Writer]) -> None:
    suffix, write = writer
    rendered = write(all_reports()["fydp_table"], tmp_path / f"r.{suffix}")
    data = rendered.path.read_bytes()
    assert rendered.path == tmp_path / f"r.{suffix}"
    assert rendered.sha256 == hashlib.sha256(data).hexdigest()
    assert rendered.bytes == len(data)
    assert rendered.format == suffix
    assert _folder_listing(tmp_path) == [f"r.{suffix}"]  # no temporary file left behind


def test_same_table_gives_the_same_bytes(tmp_path: Path, writer: tuple[str, Writer]) -> None:
    suffix, write = writer
    first = write(all_reports()["fydp_table"], tmp_path / f"a.{suffix}")
    second = write(all_reports()["fydp_table"], tmp_path / f"b.{suffix}")
    assert first.sha256 == second.sha256


def test_rerun_replaces_the_file(tmp_path: Path, writer: tuple[str, Writer]) -> None:
    suffix, write = writer
    path = tmp_path / "out" / f"report.{suffix}"  # the folder is created
    first = write(all_reports()["fydp_table"], path)
    second = write(_other_table(), path)
    assert second.sha256 != first.sha256
    assert hashlib.sha256(path.read_bytes()).hexdigest() == second.sha256
    assert _folder_listing(path.parent) == [path.name]


class Crash(Exception):
    """Stands for a worker dying in the middle of rendering."""


def test_crash_midway_keeps_the_old_file(tmp_path: Path, writer: tuple[str, Writer]) -> None:
    suffix, write = writer
    path = tmp_path / f"report.{suffix}"
    old = write(all_reports()["fydp_table"], path)
    seen: list[int] = []

    def crash_halfway(percent: int) -> None:
        seen.append(percent)
        if percent >= 50:
            raise Crash

    with pytest.raises(Crash):
        write(_other_table(), path, on_progress=crash_halfway)
    assert seen[-1] < 95  # it really stopped while rendering rows
    assert hashlib.sha256(path.read_bytes()).hexdigest() == old.sha256
    assert _folder_listing(tmp_path) == [path.name]


def test_crash_with_no_previous_file_leaves_no_file(
    tmp_path: Path, writer: tuple[str, Writer]
) -> None:
    suffix, write = writer

    def crash(percent: int) -> None:
        if percent > 0:
            raise Crash

    with pytest.raises(Crash):
        write(all_reports()["budget_summary"], tmp_path / f"r.{suffix}", on_progress=crash)
    assert _folder_listing(tmp_path) == []


def test_progress_climbs_from_0_to_100(tmp_path: Path, writer: tuple[str, Writer]) -> None:
    suffix, write = writer
    seen: list[int] = []
    on_progress: ProgressCallback = seen.append
    write(all_reports()["budget_summary"], tmp_path / f"r.{suffix}", on_progress=on_progress)
    assert seen[0] == 0
    assert seen[-1] == 100
    assert seen == sorted(set(seen))  # increasing, no repeats
    assert len(seen) >= 5  # reported while rows were written, not just at the ends
