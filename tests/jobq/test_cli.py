"""The ``jobq`` command line, driven through click's CliRunner against the test server.

The tests are plain ``def``: CliRunner runs ``asyncio.run`` inside, so data is
prepared with ``asyncio.run`` of small helpers (or a SyncQueue) before invoking.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from click.testing import CliRunner, Result

from jobq import DeadLetters, JobOptions, Queue, SyncQueue
from jobq.cli import cli

PROCS = "tests.jobq._cli_procs"


def invoke(redis_url: str, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env={"REDIS_URL": redis_url}, input=input)


def on_queue(redis_url: str, name: str, fn: Callable[[Queue], Coroutine[Any, Any, Any]]) -> Any:
    async def go() -> Any:
        async with Queue(name, connection=redis_url) as q:
            return await fn(q)

    return asyncio.run(go())


def add_jobs(redis_url: str, name: str, n: int, **opts: Any) -> list[str]:
    with SyncQueue(name, connection=redis_url) as sq:
        return [sq.add("work", {"n": i}, JobOptions(**opts)).id for i in range(n)]


def fail_jobs(redis_url: str, name: str, n: int) -> list[str]:
    """Add ``n`` jobs and let a burst worker fail each one for good."""
    ids = add_jobs(redis_url, name, n)
    res = invoke(redis_url, "worker", f"{PROCS}:boom", "--queue", name, "--burst")
    assert res.exit_code == 0, res.output
    return ids


def counts(redis_url: str, name: str) -> dict[str, int]:
    with SyncQueue(name, connection=redis_url) as sq:
        return sq.get_job_counts().to_dict()


# -- connection and errors ------------------------------------------------------


def test_no_connection_configured_is_an_error() -> None:
    res = CliRunner().invoke(
        cli, ["info"], env={"REDIS_URL": "", "REDIS_HOST": "", "REDIS_PORT": ""}
    )
    assert res.exit_code == 2
    assert res.output.strip() == "error: set REDIS_URL or pass --url"


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["worker", "--help"],
        ["info", "--help"],
        ["jobs", "list", "--help"],
        ["jobs", "show", "--help"],
        ["retry", "--help"],
        ["dlq", "replay", "--help"],
        ["clean", "--help"],
        ["drain", "--help"],
        ["obliterate", "--help"],
        ["schedulers", "run-now", "--help"],
        ["check", "--help"],
    ],
)
def test_help_everywhere(args: list[str]) -> None:
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0
    assert "Usage:" in res.output


def test_user_mistakes_are_one_error_line(redis_url: str, queue_name: str) -> None:
    unknown = invoke(redis_url, "jobs", "show", queue_name, "nope")
    bad_state = invoke(redis_url, "jobs", "list", queue_name, "--state", "bogus")
    bad_json = invoke(redis_url, "dlq", "replay", "x", "--data", "{oops", "--by", "me")
    for res in (unknown, bad_state, bad_json):
        assert res.exit_code == 2, res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == 1, res.output
        assert lines[0].startswith("error: "), res.output
        assert "Traceback" not in res.output
    assert "nope" in unknown.output
    assert "--data" in bad_json.output


# -- info, jobs -----------------------------------------------------------------------


def test_info_json_shows_counts_and_oldest_age(redis_url: str, queue_name: str) -> None:
    add_jobs(redis_url, queue_name, 3)
    add_jobs(redis_url, queue_name, 1, delay=60_000)
    res = invoke(redis_url, "info", queue_name, "--json")
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.output)
    assert row["queue"] == queue_name
    assert row["counts"]["waiting"] == 3
    assert row["counts"]["delayed"] == 1
    assert row["failure_rate"] is None
    assert row["oldest_waiting_seconds"] is not None
    assert row["oldest_waiting_seconds"] >= 0
    assert row["workers_alive"] == 0


def test_info_discovers_queues_and_watch_is_bounded(redis_url: str, queue_name: str) -> None:
    add_jobs(redis_url, queue_name, 1)
    res = invoke(redis_url, "info", "--json")
    assert queue_name in [r["queue"] for r in json.loads(res.output)]
    res = invoke(redis_url, "info", queue_name, "--watch", "0.1", "--count", "2")
    assert res.exit_code == 0
    assert res.output.count(queue_name) == 2


def test_jobs_list_and_show(redis_url: str, queue_name: str) -> None:
    ids = add_jobs(redis_url, queue_name, 2)
    res = invoke(redis_url, "jobs", "list", queue_name, "--json")
    assert res.exit_code == 0, res.output
    assert [r["id"] for r in json.loads(res.output)] == ids
    res = invoke(redis_url, "jobs", "show", queue_name, ids[1], "--json")
    detail = json.loads(res.output)
    assert detail["data"] == {"n": 1}
    assert detail["state"] == "waiting"
    assert detail["timestamps"]["created"] is not None


def test_jobs_show_lists_every_error_with_stack(redis_url: str, queue_name: str) -> None:
    [job_id] = fail_jobs(redis_url, queue_name, 1)
    res = invoke(redis_url, "jobs", "show", queue_name, job_id, "--json")
    detail = json.loads(res.output)
    assert detail["state"] == "failed"
    [err] = detail["errors"]
    assert err["type"] == "ValueError"
    assert "boom 0" in err["reason"]
    assert "Traceback" in err["stack"] or "boom" in err["stack"]
    text = invoke(redis_url, "jobs", "show", queue_name, job_id)
    assert "ValueError" in text.output


# -- worker, retry ----------------------------------------------------------------


def test_worker_burst_drains_the_queue(redis_url: str, queue_name: str) -> None:
    ids = add_jobs(redis_url, queue_name, 5)
    res = invoke(
        redis_url, "worker", f"{PROCS}:double", "--queue", queue_name, "--burst", "-c", "2"
    )
    assert res.exit_code == 0, res.output
    assert counts(redis_url, queue_name)["completed"] == 5
    with SyncQueue(queue_name, connection=redis_url) as sq:
        job = sq.get_job(ids[3])
        assert job is not None
        assert job.return_value == 6


def test_worker_takes_a_comma_separated_list_of_queues(redis_url: str, queue_name: str) -> None:
    other = queue_name + "-b"
    add_jobs(redis_url, queue_name, 2)
    add_jobs(redis_url, other, 3)
    res = invoke(
        redis_url, "worker", f"{PROCS}:double", "--queues", f"{queue_name},{other}", "--burst"
    )
    assert res.exit_code == 0, res.output
    assert counts(redis_url, queue_name)["completed"] == 2
    assert counts(redis_url, other)["completed"] == 3


def test_worker_bad_processor_path(redis_url: str, queue_name: str) -> None:
    res = invoke(redis_url, "worker", "no_such_module_xyz:f", "--queue", queue_name)
    assert res.exit_code == 2
    assert res.output.startswith("error: cannot import")
    res = invoke(redis_url, "worker", "justamodule", "--queue", queue_name)
    assert res.exit_code == 2
    assert "MODULE:ATTR" in res.output


def test_retry_all_failed_asks_unless_yes(redis_url: str, queue_name: str) -> None:
    fail_jobs(redis_url, queue_name, 3)
    res = invoke(redis_url, "retry", queue_name, "--all-failed", input="n\n")
    assert res.exit_code == 1
    assert "3 failed job(s)" in res.output
    assert counts(redis_url, queue_name)["failed"] == 3
    res = invoke(redis_url, "retry", queue_name, "--all-failed", input="y\n")
    assert res.exit_code == 0, res.output
    assert counts(redis_url, queue_name)["waiting"] == 3
    fail_jobs(redis_url, queue_name, 0)  # fail the retried ones again
    res = invoke(redis_url, "retry", queue_name, "--all-failed", "--yes")
    assert res.exit_code == 0
    assert "retried 3 job(s)" in res.output
    assert counts(redis_url, queue_name)["failed"] == 0


def test_retry_one_and_not_failed(redis_url: str, queue_name: str) -> None:
    [failed] = fail_jobs(redis_url, queue_name, 1)
    [waiting] = add_jobs(redis_url, queue_name, 1)
    assert invoke(redis_url, "retry", queue_name, failed).exit_code == 0
    res = invoke(redis_url, "retry", queue_name, waiting)
    assert res.exit_code == 2
    assert res.output.startswith("error: ")
    res = invoke(redis_url, "retry", queue_name)
    assert res.exit_code == 2


def test_promote_pause_resume(redis_url: str, queue_name: str) -> None:
    [job_id] = add_jobs(redis_url, queue_name, 1, delay=600_000)
    assert invoke(redis_url, "promote", queue_name, job_id).exit_code == 0
    assert counts(redis_url, queue_name)["waiting"] == 1
    assert "paused" in invoke(redis_url, "pause", queue_name).output
    assert on_queue(redis_url, queue_name, lambda q: q.is_paused()) is True
    assert invoke(redis_url, "resume", queue_name).exit_code == 0
    assert on_queue(redis_url, queue_name, lambda q: q.is_paused()) is False


# -- destructive commands ------------------------------------------------------------


def test_clean_refuses_without_yes_then_acts(redis_url: str, queue_name: str) -> None:
    fail_jobs(redis_url, queue_name, 2)
    res = invoke(redis_url, "clean", queue_name, "--state", "failed")
    assert res.exit_code == 1
    assert "2 failed job(s)" in res.output
    assert "--yes" in res.output
    assert counts(redis_url, queue_name)["failed"] == 2
    res = invoke(redis_url, "clean", queue_name, "--state", "failed", "--yes")
    assert res.exit_code == 0
    assert "deleted 2" in res.output
    assert counts(redis_url, queue_name)["failed"] == 0


def test_drain_refuses_without_yes_then_acts(redis_url: str, queue_name: str) -> None:
    add_jobs(redis_url, queue_name, 3)
    add_jobs(redis_url, queue_name, 1, delay=600_000)
    res = invoke(redis_url, "drain", queue_name)
    assert res.exit_code == 1
    assert "3 job(s)" in res.output
    assert "--yes" in res.output
    assert counts(redis_url, queue_name)["waiting"] == 3
    res = invoke(redis_url, "drain", queue_name, "--delayed", "--yes")
    assert res.exit_code == 0
    assert "deleted 4" in res.output
    c = counts(redis_url, queue_name)
    assert c["waiting"] == 0
    assert c["delayed"] == 0


def test_obliterate_refuses_without_yes_then_acts(redis_url: str, queue_name: str) -> None:
    add_jobs(redis_url, queue_name, 2)
    res = invoke(redis_url, "obliterate", queue_name)
    assert res.exit_code == 1
    assert "2 job(s)" in res.output
    assert "--yes" in res.output
    assert counts(redis_url, queue_name)["waiting"] == 2
    res = invoke(redis_url, "obliterate", queue_name, "--yes")
    assert res.exit_code == 0
    assert sum(counts(redis_url, queue_name).values()) == 0


# -- dead letters ------------------------------------------------------------------


def test_dlq_list_show_replay_discard(redis_url: str, queue_name: str) -> None:
    dlq = f"{queue_name}-dlq"
    on_queue(redis_url, queue_name, lambda q: q.set_dead_letter_queue(dlq))
    [job_id] = fail_jobs(redis_url, queue_name, 1)

    async def entry_count() -> int:
        async with DeadLetters(connection=redis_url, name=dlq) as dl:
            return await dl.count()

    if asyncio.run(entry_count()) == 0:  # routing is asynchronous in the worker

        async def route() -> None:
            async with DeadLetters(connection=redis_url, name=dlq) as dl:
                await dl.route(queue_name, job_id)

        asyncio.run(route())

    res = invoke(redis_url, "dlq", "--dlq", dlq, "list", "--queue", queue_name, "--json")
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.output)
    assert row["job_id"] == job_id
    assert "boom" in row["failed_reason"]
    none = invoke(redis_url, "dlq", "--dlq", dlq, "list", "--error", "no-such-text", "--json")
    assert json.loads(none.output) == []
    shown = invoke(redis_url, "dlq", "--dlq", dlq, "show", row["id"])
    assert "ValueError" in shown.output

    res = invoke(
        redis_url, "dlq", "--dlq", dlq, "replay", row["id"], "--data", '{"n": 21}', "--by", "ops"
    )
    assert res.exit_code == 0, res.output
    assert counts(redis_url, queue_name)["waiting"] == 1
    with SyncQueue(queue_name, connection=redis_url) as sq:
        [job] = sq.get_jobs("waiting")
        assert job.data == {"n": 21}

    res = invoke(redis_url, "dlq", "--dlq", dlq, "discard", row["id"])
    assert res.exit_code == 1
    assert "--yes" in res.output
    res = invoke(redis_url, "dlq", "--dlq", dlq, "discard", row["id"], "--yes")
    assert res.exit_code == 0
    assert asyncio.run(entry_count()) == 0
    res = invoke(redis_url, "dlq", "--dlq", dlq, "show", row["id"])
    assert res.exit_code == 2
    assert res.output.startswith("error: ")


# -- schedulers ---------------------------------------------------------------------


def test_schedulers_list_run_now_remove(redis_url: str, queue_name: str) -> None:
    with SyncQueue(queue_name, connection=redis_url) as sq:
        sq.upsert_scheduler("hourly", every=3_600_000, name="tick", data={"n": 1})
    res = invoke(redis_url, "schedulers", "list", queue_name, "--json")
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.output)
    assert row["id"] == "hourly"
    assert row["every_ms"] == 3_600_000
    before = sum(counts(redis_url, queue_name).values())
    res = invoke(redis_url, "schedulers", "run-now", queue_name, "hourly")
    assert res.exit_code == 0, res.output
    assert sum(counts(redis_url, queue_name).values()) == before + 1
    assert invoke(redis_url, "schedulers", "remove", queue_name, "hourly").exit_code == 1
    assert invoke(redis_url, "schedulers", "remove", queue_name, "hourly", "--yes").exit_code == 0
    res = invoke(redis_url, "schedulers", "list", queue_name, "--json")
    assert json.loads(res.output) == []
    res = invoke(redis_url, "schedulers", "run-now", queue_name, "hourly")
    assert res.exit_code == 2


# -- check --------------------------------------------------------------------------


def test_check_exit_codes(redis_url: str, queue_name: str) -> None:
    add_jobs(redis_url, queue_name, 3)
    res = invoke(redis_url, "check", queue_name, "--max-waiting", "5")
    assert res.exit_code == 0, res.output
    res = invoke(redis_url, "check", queue_name, "--max-waiting", "2")
    assert res.exit_code == 1
    assert res.output.strip() == f"{queue_name}: 3 waiting jobs > 2"


def test_check_failure_rate(redis_url: str, queue_name: str) -> None:
    fail_jobs(redis_url, queue_name, 2)
    res = invoke(redis_url, "check", queue_name, "--max-failure-rate", "0.5")
    assert res.exit_code == 1
    assert "failure rate 100.0%" in res.output


def test_check_unreachable_is_2() -> None:
    res = CliRunner().invoke(cli, ["--url", "redis://127.0.0.1:1", "check"])
    assert res.exit_code == 2
    assert res.output.startswith("error: cannot reach Redis")


def test_jobs_show_redacts_secret_fields(redis_url: str, queue_name: str) -> None:
    with SyncQueue(queue_name, connection=redis_url) as sq:
        job = sq.add("signup", {"user": "kim", "password": "hunter2", "pin": "1234"})
    shown = invoke(redis_url, "jobs", "show", queue_name, job.id, "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["data"] == {
        "user": "kim",
        "password": "[redacted]",
        "pin": "1234",
    }
    custom = invoke(redis_url, "--redact", "pin", "jobs", "show", queue_name, job.id, "--json")
    assert json.loads(custom.output)["data"]["pin"] == "[redacted]"
    assert "hunter2" in invoke(redis_url, "--redact", "", "jobs", "show", queue_name, job.id).output
