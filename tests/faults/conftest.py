"""Fixtures of the fault-injection suite, and the summary table it prints and writes.

Every scenario that kills, restarts or cuts off Redis gets a private server of
its own (:func:`private_server`); worker processes come from
:func:`spawn_worker`, which kills whatever is left at teardown.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jobq.server import RedisServerProcess
from tests.faults._checker import SUMMARY, ExecutionLog, summary_markdown
from tests.faults._fault_worker import FaultWorker

ServerFactory = Callable[..., RedisServerProcess]
WorkerSpawner = Callable[..., Awaitable[FaultWorker]]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the table of the scenarios that ran, and write it to test-artifacts/."""
    if not SUMMARY:
        return
    table = summary_markdown(SUMMARY)
    terminalreporter.write_sep("=", "fault injection summary")
    terminalreporter.write(table)
    out = Path(terminalreporter.config.rootpath) / "test-artifacts" / "faults-summary.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# Fault injection summary\n\n" + table)
    terminalreporter.write_line(f"written to {out.relative_to(terminalreporter.config.rootpath)}")


@pytest.fixture
def private_server() -> Iterator[ServerFactory]:
    """Start private servers (``RedisServerProcess`` arguments); stopped at teardown."""
    started: list[RedisServerProcess] = []

    def factory(**kwargs: Any) -> RedisServerProcess:
        server = RedisServerProcess(**kwargs)
        started.append(server)
        return server.start()

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def fault_queue() -> str:
    """A queue name no other test uses."""
    return f"f-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def execution_log(tmp_path: Path) -> ExecutionLog:
    """The execution record of this test."""
    return ExecutionLog(tmp_path / "executions.log")


@pytest.fixture
async def spawn_worker(
    execution_log: ExecutionLog, fault_queue: str
) -> AsyncIterator[WorkerSpawner]:
    """Start worker processes (``FaultWorker`` options); killed at teardown."""
    started: list[FaultWorker] = []

    async def spawn(url: str, *, wait_ready: bool = True, **options: object) -> FaultWorker:
        w = FaultWorker(url, fault_queue, execution_log.path, **options)
        started.append(w)
        return await w.start(wait_ready=wait_ready)

    yield spawn
    for w in started:
        await w.stop()
