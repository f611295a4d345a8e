"""The web dashboard, driven through Starlette's TestClient against the real server."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from jobq import JobOptions, SyncQueue
from jobq.cli import cli
from jobq.dashboard import create_app

PROCS = "tests.jobq._cli_procs"


@pytest.fixture
def sq(redis_url: str, queue_name: str) -> Iterator[SyncQueue]:
    with SyncQueue(queue_name, connection=redis_url) as q:
        yield q


@pytest.fixture
def client(redis_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(redis_url, history=False)) as c:
        yield c


def fail_jobs(redis_url: str, sq: SyncQueue, n: int) -> list[str]:
    """Add ``n`` jobs and let a burst worker fail each for good (ValueError 'boom N')."""
    ids = [sq.add("work", {"n": i}).id for i in range(n)]
    res = CliRunner().invoke(
        cli,
        ["worker", f"{PROCS}:boom", "--queue", sq.name, "--burst"],
        env={"REDIS_URL": redis_url},
    )
    assert res.exit_code == 0, res.output
    return ids


def csrf(client: TestClient) -> str:
    """The CSRF token of the client's session, as a page's forms carry it."""
    client.get("/")
    token = client.cookies.get("jobq_csrf")
    assert isinstance(token, str)
    assert token
    return token


def row_counts(html: str, queue: str) -> dict[str, str]:
    row = re.search(rf'<tr data-q="{re.escape(queue)}"[^>]*>(.*?)</tr>', html, re.S)
    assert row, html
    return dict(re.findall(r'data-f="(\w+)"[^>]*>([^<]*)<', row.group(1)))


def test_overview_lists_queue_with_counts(
    client: TestClient, redis_url: str, sq: SyncQueue
) -> None:
    fail_jobs(redis_url, sq, 1)
    for i in range(3):
        sq.add("work", {"n": i})
    sq.add("later", None, JobOptions(delay=60_000))
    res = client.get("/")
    assert res.status_code == 200
    cells = row_counts(res.text, sq.name)
    assert cells["waiting"] == "3"
    assert cells["failed"] == "1"
    assert cells["delayed"] == "1"
    assert cells["active"] == "0"
    assert cells["failure_rate"] == "100.0%"


def test_queue_page_lists_jobs_by_state_and_pages(client: TestClient, sq: SyncQueue) -> None:
    ids = [j.id for j in sq.add_bulk([("work", {"n": i}) for i in range(120)])]
    later = sq.add("later", None, JobOptions(delay=60_000))
    base = f"/queues/{sq.name}"
    first = client.get(base, params={"state": "waiting"})
    assert first.status_code == 200
    shown = re.findall(r'<tr data-job="([^"]+)"', first.text)
    assert shown == ids[:50]  # run order: the oldest plain job first
    third = client.get(base, params={"state": "waiting", "page": 2})
    assert re.findall(r'<tr data-job="([^"]+)"', third.text) == ids[100:]
    assert 'id="next-page"' in first.text
    assert 'id="next-page"' not in third.text
    delayed = client.get(base, params={"state": "delayed"})
    assert re.findall(r'<tr data-job="([^"]+)"', delayed.text) == [later.id]
    assert client.get(base, params={"state": "bogus"}).status_code == 400
    assert client.get(base, params={"page": "x"}).status_code == 400
    assert client.get("/queues/no-such-queue-here").status_code == 404
    assert client.get("/queues/bad{name}").status_code == 404


def test_job_detail_shows_every_error_and_stack(
    client: TestClient, redis_url: str, sq: SyncQueue
) -> None:
    [job_id] = fail_jobs(redis_url, sq, 1)
    res = client.get(f"/queues/{sq.name}/jobs/{job_id}")
    assert res.status_code == 200
    assert "ValueError: boom 0" in res.text
    assert "Traceback" in res.text
    assert "_cli_procs.py" in res.text  # the stack names the processor's file
    assert client.get(f"/queues/{sq.name}/jobs/nope").status_code == 404


def test_job_detail_escapes_payload(client: TestClient, sq: SyncQueue) -> None:
    job = sq.add("<script>alert(1)</script>", {"html": "<img src=x onerror=alert(1)>"})
    res = client.get(f"/queues/{sq.name}/jobs/{job.id}")
    assert "<script>alert(1)" not in res.text
    assert "<img src=x" not in res.text
    assert "&lt;script&gt;" in res.text


def test_retry_needs_csrf_and_moves_job_to_waiting(
    client: TestClient, redis_url: str, sq: SyncQueue
) -> None:
    [job_id] = fail_jobs(redis_url, sq, 1)
    url = f"/queues/{sq.name}/jobs/{job_id}/retry"
    assert client.post(url).status_code == 403
    token = csrf(client)
    assert client.post(url, data={"csrf_token": "x" * 43}).status_code == 403
    assert sq.get_job_state(job_id) == "failed"
    res = client.post(url, data={"csrf_token": token}, follow_redirects=False)
    assert res.status_code == 303
    assert sq.get_job_state(job_id) == "waiting"


def test_promote_remove_pause_resume(client: TestClient, sq: SyncQueue) -> None:
    token = csrf(client)
    delayed = sq.add("later", None, JobOptions(delay=60_000))
    base = f"/queues/{sq.name}"
    form = {"csrf_token": token}
    assert client.post(f"{base}/jobs/{delayed.id}/promote", data=form).status_code == 200
    assert sq.get_job_state(delayed.id) == "waiting"
    assert client.post(f"{base}/pause", data=form).status_code == 200
    assert sq.get_job_counts().paused == 1
    assert client.post(f"{base}/resume", data=form).status_code == 200
    assert sq.get_job_counts().waiting == 1
    assert client.post(f"{base}/jobs/{delayed.id}/remove", data=form).status_code == 200
    assert sq.get_job(delayed.id) is None
    # Promoting a job that is not delayed is refused, not a crash.
    other = sq.add("now", None)
    assert client.post(f"{base}/jobs/{other.id}/promote", data=form).status_code == 409


@pytest.fixture
def failed_job(redis_url: str, sq: SyncQueue) -> tuple[str, str]:
    [job_id] = fail_jobs(redis_url, sq, 1)
    return sq.name, job_id


def test_read_only_refuses_actions(redis_url: str, failed_job: tuple[str, str]) -> None:
    name, job_id = failed_job
    with TestClient(create_app(redis_url, read_only=True, history=False)) as c:
        page = c.get(f"/queues/{name}/jobs/{job_id}")
        assert page.status_code == 200
        assert "/retry" not in page.text  # no action buttons
        token = csrf(c)
        res = c.post(f"/queues/{name}/jobs/{job_id}/retry", data={"csrf_token": token})
        assert res.status_code == 403
    with SyncQueue(name, connection=redis_url) as q:
        assert q.get_job_state(job_id) == "failed"


def test_token_auth(redis_url: str, sq: SyncQueue) -> None:
    with TestClient(create_app(redis_url, token="s3cret", history=False)) as c:
        assert c.get("/").status_code == 401
        assert c.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/metrics").status_code == 401
        assert c.get("/", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/healthz").status_code == 200  # probes stay open
        # ?token= signs in with a cookie (not the token) and drops the token from the URL.
        res = c.get("/", params={"token": "s3cret"}, follow_redirects=False)
        assert res.status_code == 303
        assert "token" not in res.headers["location"]
        assert c.cookies.get("jobq_session") not in (None, "s3cret")
        assert c.get("/").status_code == 200


def test_metrics_and_probes(client: TestClient, sq: SyncQueue) -> None:
    sq.add("work", {})
    res = client.get("/metrics")
    assert res.status_code == 200
    assert f'jobq_queue_jobs{{queue="{sq.name}",state="waiting"}} 1.0' in res.text
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").json() == {"ok": True}
    snap = client.get("/api/snapshot").json()  # the polling fallback
    assert [q["counts"]["waiting"] for q in snap["queues"] if q["queue"] == sq.name] == [1]


def test_readyz_503_when_redis_is_down() -> None:
    with TestClient(create_app("redis://127.0.0.1:1/0", history=False)) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/readyz").status_code == 503


def test_events_stream_starts_with_a_snapshot(client: TestClient, sq: SyncQueue) -> None:
    sq.add("work", {})
    with client.stream("GET", "/events") as res:
        assert res.headers["content-type"].startswith("text/event-stream")
        data = None
        for line in res.iter_lines():
            if line.startswith("data:"):
                data = json.loads(line[len("data:") :])
                break
    assert data is not None
    mine = [q for q in data["queues"] if q["queue"] == sq.name]
    assert mine[0]["counts"]["waiting"] == 1


def test_mounted_under_a_path(redis_url: str, sq: SyncQueue) -> None:
    sq.add("work", {})
    outer = Starlette(routes=[Mount("/ops/jobs", app=create_app(redis_url, history=False))])
    with TestClient(outer) as c:
        res = c.get("/ops/jobs/")
        assert res.status_code == 200
        assert f'href="http://testserver/ops/jobs/queues/{sq.name}"' in res.text
        token = c.cookies.get("jobq_csrf")
        assert token
        res = c.post(f"/ops/jobs/queues/{sq.name}/pause", data={"csrf_token": token})
        assert res.status_code == 200
        assert sq.get_job_counts().paused == 1


def test_events_carry_the_watched_job(client: TestClient, sq: SyncQueue) -> None:
    job = sq.add("x", {"a": 1})
    with client.stream("GET", "/events", params={"job": f"{sq.name}/{job.id}"}) as res:
        payload = None
        for line in res.iter_lines():
            if line.startswith("data:"):
                payload = json.loads(line[len("data:") :])
                break
    assert payload is not None
    assert payload["job"] == {
        "queue": sq.name,
        "id": job.id,
        "name": "x",
        "state": "waiting",
        "progress": 0,
        "attempts_made": 0,
        "failed_reason": None,
        "data": {"a": 1},
    }


def test_readyz_applies_the_health_rules_asked_for(client: TestClient, sq: SyncQueue) -> None:
    for i in range(3):
        sq.add("work", {"n": i})
    assert client.get("/readyz", params={"queue": sq.name, "max_waiting": 5}).json() == {"ok": True}
    res = client.get("/readyz", params={"queue": sq.name, "max_waiting": 2})
    assert res.status_code == 503
    assert res.json()["problems"] == [f"{sq.name}: 3 waiting jobs > 2"]
    res = client.get("/readyz", params={"queue": sq.name, "min_workers": 1})
    assert res.json()["problems"] == [f"{sq.name}: 0 workers alive < 1"]
    assert client.get("/readyz", params={"max_failure_rate": "2"}).status_code == 400
