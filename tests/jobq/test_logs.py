"""Structured logs: JSON and text lines, the running job bound to every line, no payloads."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from click.testing import CliRunner

from jobq import ConfigurationError, Job, JobFailedError, JobOptions, Queue, logs
from jobq.cli import cli
from jobq.logs import configure_logging, job_context
from ppbe_jobs.cli import main as ppbe_main
from tests.conftest import WorkerFactory

SECRET = "s3cr3t-marker-7f1d"


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put the root logger back as it was (configure_logging changes it)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def _lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


async def test_json_lines_carry_the_job_of_any_logger_in_a_processor(
    queue: Queue, start_worker: WorkerFactory, root_logging: None
) -> None:
    buf = io.StringIO()
    configure_logging("json", "INFO", stream=buf)
    app = logging.getLogger("app.reports")
    seen: dict[str, Any] = {}

    async def process(job: Job) -> None:
        seen["context"] = job_context()
        app.info("rendered %d pages", 3, extra={"pages": 3})

    job = await queue.add("render", None, JobOptions(job_id="report-1"))
    worker = await start_worker(process)
    await job.wait_until_finished(10)

    [line] = [x for x in _lines(buf) if x["logger"] == "app.reports"]
    expected = {
        "job_id": "report-1",
        "queue": queue.name,
        "job_name": "render",
        "attempt": 1,
        "worker_id": worker.id,
    }
    assert seen["context"] == expected
    assert line == {
        "ts": line["ts"],
        "level": "INFO",
        "logger": "app.reports",
        "message": "rendered 3 pages",
        **expected,
        "pages": 3,
    }
    assert line["ts"].endswith("Z")
    datetime.fromisoformat(line["ts"])
    assert job_context() == {}  # unbound once the processor returned


async def test_a_def_processor_in_a_thread_sees_its_job_too(
    queue: Queue, start_worker: WorkerFactory
) -> None:
    main = threading.get_ident()
    seen: dict[str, Any] = {}

    def process(job: Job) -> None:
        assert threading.get_ident() != main
        seen.update(job_context())

    job = await queue.add("render")
    await start_worker(process)
    await job.wait_until_finished(10)
    assert seen["job_id"] == job.id
    assert seen["queue"] == queue.name
    assert seen["attempt"] == 1


def test_text_lines_are_readable() -> None:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(logs.TextFormatter())
    handler.addFilter(logs.JobContextFilter())
    log = logging.getLogger("test.text")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("job %s failed", "42", extra={"job_id": "42", "queue": "my queue"})
    finally:
        log.removeHandler(handler)
        log.propagate = True
    text = buf.getvalue().rstrip("\n")
    stamp, rest = text.split(" ", 1)
    datetime.fromisoformat(stamp)
    assert rest == 'WARNING test.text: job 42 failed  job_id=42 queue="my queue"'


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_text_on_a_terminal_and_json_otherwise(root_logging: None) -> None:
    assert isinstance(configure_logging("auto", stream=_Tty()).formatter, logs.TextFormatter)
    assert isinstance(configure_logging("auto", stream=io.StringIO()).formatter, logs.JsonFormatter)
    # A second call replaces the handler of the first.
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_jobq_handler", False)]
    assert len(ours) == 1


def test_format_and_level_come_from_the_environment(
    root_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBQ_LOG_FORMAT", "text")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    handler = configure_logging(stream=io.StringIO())
    assert isinstance(handler.formatter, logs.TextFormatter)
    assert logging.getLogger().level == logging.DEBUG
    with pytest.raises(ConfigurationError, match="log format"):
        configure_logging("xml")
    with pytest.raises(ConfigurationError, match="log level"):
        configure_logging("json", "LOUD")


async def test_payloads_never_reach_the_logs(
    queue: Queue, start_worker: WorkerFactory, root_logging: None
) -> None:
    buf = io.StringIO()
    configure_logging("json", "DEBUG", stream=buf)

    async def process(job: Job) -> Any:
        if job.name == "fails":
            # The message quotes the data, as real errors often do.
            raise ValueError(f"cannot use {job.data}")
        return {"echo": job.data}

    failing = await queue.add("fails", {"token": SECRET}, JobOptions(attempts=3))
    passing = await queue.add("passes", {"token": SECRET})
    await start_worker(process)
    with pytest.raises(JobFailedError) as info:
        await failing.wait_until_finished(10)
    assert SECRET in str(info.value)  # the reason is kept in the job, for people to read
    assert await passing.wait_until_finished(10) == {"echo": {"token": SECRET}}

    text = buf.getvalue()
    assert SECRET not in text
    about = [x for x in _lines(buf) if x.get("job_id") == failing.id]
    assert [x["attempt"] for x in about] == [1, 2, 3]
    assert all(x["queue"] == queue.name and x["job_name"] == "fails" for x in about)
    assert all("ValueError" in x["message"] for x in about)
    assert about[-1]["level"] == "WARNING"
    assert "failed for good" in about[-1]["message"]


@pytest.mark.parametrize(("command", "args"), [(cli, ["worker"]), (ppbe_main, ["worker"])])
def test_the_worker_commands_take_the_log_options(command: Any, args: list[str]) -> None:
    res = CliRunner().invoke(command, [*args, "--help"])
    assert res.exit_code == 0, res.output
    assert "--log-format [auto|json|text]" in res.output
    assert "--log-level" in res.output
    assert "JOBQ_LOG_FORMAT" in res.output
    assert "LOG_LEVEL" in res.output
