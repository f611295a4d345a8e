"""The dashboard's roles, audit log, bulk actions, schedulers, dead letters, workers,
search and redaction, driven over ASGI against the real server."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from starlette.applications import Starlette

from jobq import DeadLetters, Job, JobOptions, Queue
from jobq.audit import AuditLog
from jobq.cli import cli
from jobq.dashboard import User, create_app, hash_password, verify_password
from tests.conftest import QueueFactory

pytestmark = pytest.mark.timeout(60)

Factory = Callable[..., Any]
PASSWORDS = {"vera": "viewer-pw", "otto": "operator-pw", "ada": "admin-pw"}
ROLE_OF = {"vera": "viewer", "otto": "operator", "ada": "admin"}


@pytest.fixture(scope="module")
def users() -> dict[str, User]:
    return {n: User(hash_password(pw), ROLE_OF[n]) for n, pw in PASSWORDS.items()}  # type: ignore[arg-type]


@pytest.fixture
async def make_client(redis_url: str) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    made: list[tuple[httpx.AsyncClient, Starlette]] = []

    def factory(app: Starlette | None = None, **kwargs: Any) -> httpx.AsyncClient:
        kwargs.setdefault("history", False)
        app = app or create_app(redis_url, **kwargs)
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        made.append((c, app))
        return c

    yield factory
    for c, app in made:
        await c.aclose()
        dash = app.state.jobq_dashboard
        if dash.history is not None:
            await dash.history.aclose()
        await app.state.jobq_backend.aclose()


async def csrf(c: httpx.AsyncClient, path: str = "/login") -> str:
    await c.get(path)
    token = c.cookies.get("jobq_csrf")
    assert token
    return str(token)


async def sign_in(c: httpx.AsyncClient, user: str) -> str:
    token = await csrf(c)
    res = await c.post(
        "/login", data={"csrf_token": token, "user": user, "password": PASSWORDS[user]}
    )
    assert res.status_code == 303, res.text
    return token


async def failed_jobs(queue: Queue, start_worker: Factory, n: int, **opts: Any) -> list[str]:
    async def boom(job: Job) -> None:
        raise ValueError(f"boom {job.data['n']}")

    jobs = [await queue.add(opts.pop("name", "work"), {"n": i}) for i in range(n)]
    await start_worker(boom, queue.name)
    for j in jobs:
        with pytest.raises(Exception, match="boom"):
            await queue.wait_for_job(j.id, timeout=10)
    return [j.id for j in jobs]


# -- sign-in and roles ------------------------------------------------------------------
def test_password_hashes_verify_and_are_salted() -> None:
    a, b = hash_password("pw"), hash_password("pw")
    assert a != b
    assert a.startswith("scrypt$")
    assert verify_password("pw", a)
    assert not verify_password("px", a)
    assert not verify_password("pw", "not-a-hash")
    with pytest.raises(Exception, match="password_hash"):
        User("plaintext", "admin")
    with pytest.raises(Exception, match="role"):
        User(a, "root")  # type: ignore[arg-type]


async def test_browser_is_sent_to_sign_in_and_back(
    make_client: Factory, users: dict[str, User], queue: Queue
) -> None:
    await queue.add("x", {})
    c = make_client(users=users, secret_key="k")
    res = await c.get(f"/queues/{queue.name}", headers={"accept": "text/html"})
    assert res.status_code == 303
    assert res.headers["location"].endswith(f"/login?next=%2Fqueues%2F{queue.name}")
    assert (await c.get("/api/snapshot")).status_code == 401  # machines get 401
    token = await csrf(c)
    bad = await c.post(
        "/login",
        data={"csrf_token": token, "user": "otto", "password": "nope", "next": "/"},
    )
    assert bad.status_code == 401
    assert "wrong user name" in bad.text
    res = await c.post(
        "/login",
        data={
            "csrf_token": token,
            "user": "otto",
            "password": PASSWORDS["otto"],
            "next": f"/queues/{queue.name}",
        },
    )
    assert res.status_code == 303
    assert res.headers["location"] == f"/queues/{queue.name}"
    page = await c.get(f"/queues/{queue.name}")
    assert page.status_code == 200
    assert '<span id="who">otto</span>' in page.text
    # An open redirect is refused: only paths on this site.
    res = await c.post(
        "/login",
        data={
            "csrf_token": token,
            "user": "otto",
            "password": PASSWORDS["otto"],
            "next": "//evil.example/",
        },
    )
    assert res.headers["location"] == "/"
    entries = await AuditLog(queue.client, "jobq").entries(limit=20)
    actions = [(e.actor, e.action) for e in entries]
    assert ("otto", "sign-in") in actions
    assert ("otto", "sign-in-failed") in actions


async def test_session_cookie_cannot_be_forged_and_follows_the_user_list(
    redis_url: str, make_client: Factory, users: dict[str, User]
) -> None:
    c = make_client(users=users, secret_key="k1")
    await sign_in(c, "vera")
    assert (await c.get("/api/snapshot")).status_code == 200
    cookie = str(c.cookies.get("jobq_session"))
    body, _, mac = cookie.partition(".")
    import base64

    forged_body = (
        base64.urlsafe_b64encode(
            base64.urlsafe_b64decode(body + "==").replace(b"|viewer|", b"|admin|")
        )
        .decode()
        .rstrip("=")
    )
    c.cookies.set("jobq_session", forged_body + "." + mac)
    assert (await c.get("/api/snapshot")).status_code == 401
    # Another dashboard with another secret does not accept the cookie ...
    other = make_client(users=users, secret_key="k2")
    other.cookies.set("jobq_session", cookie)
    assert (await other.get("/api/snapshot")).status_code == 401
    # ... one with the same secret does, and drops a user no longer configured.
    same = make_client(users=users, secret_key="k1")
    same.cookies.set("jobq_session", cookie)
    assert (await same.get("/api/snapshot")).status_code == 200
    fewer = make_client(users={"ada": users["ada"]}, secret_key="k1")
    fewer.cookies.set("jobq_session", cookie)
    assert (await fewer.get("/api/snapshot")).status_code == 401


async def test_roles_gate_actions(
    make_client: Factory, users: dict[str, User], queue: Queue, start_worker: Factory
) -> None:
    [a, b] = await failed_jobs(queue, start_worker, 2)
    base = f"/queues/{queue.name}/jobs"
    viewer, operator, admin = (make_client(users=users, secret_key="k") for _ in range(3))
    vt, ot, at = (
        await sign_in(viewer, "vera"),
        await sign_in(operator, "otto"),
        await sign_in(admin, "ada"),
    )
    page = await viewer.get(f"{base}/{a}")
    assert "/retry" not in page.text
    assert "/remove" not in page.text
    res = await viewer.post(f"{base}/{a}/retry", data={"csrf_token": vt})
    assert res.status_code == 403
    assert "needs the operator role" in res.text
    assert await queue.get_job_state(a) == "failed"
    page = await operator.get(f"{base}/{a}")
    assert "/retry" in page.text
    assert "/remove" not in page.text
    assert (await operator.post(f"{base}/{a}/retry", data={"csrf_token": ot})).status_code == 303
    assert await queue.get_job_state(a) in ("waiting", "active", "failed")
    res = await operator.post(f"{base}/{b}/remove", data={"csrf_token": ot})
    assert res.status_code == 403
    assert "needs the admin role" in res.text
    assert (await admin.post(f"{base}/{b}/remove", data={"csrf_token": at})).status_code == 303
    assert await queue.get_job(b) is None
    entries = await AuditLog(queue.client, "jobq").entries(queue=queue.name)
    assert [(e.actor, e.role, e.action, e.target, e.count) for e in entries] == [
        ("ada", "admin", "remove", b, 1),
        ("otto", "operator", "retry", a, 1),
    ]


async def test_token_roles_and_bearer(make_client: Factory, queue: Queue) -> None:
    await queue.add("x", {})
    c = make_client(tokens={"view-tok": "viewer"}, token="admin-tok")
    c.cookies.set("jobq_csrf", "a" * 40)
    res = await c.get("/api/snapshot", headers={"authorization": "Bearer view-tok"})
    assert res.status_code == 200
    res = await c.post(
        f"/queues/{queue.name}/pause",
        headers={"authorization": "Bearer view-tok", "x-csrf-token": "a" * 40},
    )
    assert res.status_code == 403
    res = await c.post(
        f"/queues/{queue.name}/pause",
        headers={"authorization": "Bearer admin-tok", "x-csrf-token": "a" * 40},
    )
    assert res.status_code == 303
    assert await queue.is_paused()
    [entry] = await AuditLog(queue.client, "jobq").entries(queue=queue.name, limit=1)
    assert entry.action == "pause"
    assert entry.actor.startswith("token:")
    assert "admin-tok" not in entry.actor  # a token never lands in the log


# -- bulk actions with the count shown first ---------------------------------------------
async def test_retry_all_shows_the_count_then_retries_and_audits(
    make_client: Factory, queue: Queue, start_worker: Factory
) -> None:
    ids = await failed_jobs(queue, start_worker, 3)
    c = make_client()
    page = await c.get(f"/queues/{queue.name}/retry-all")
    assert re.search(r"puts <strong>3</strong> failed job", page.text)
    token = str(c.cookies.get("jobq_csrf"))
    res = await c.post(
        f"/queues/{queue.name}/retry-all",
        data={"csrf_token": token, "expected": "3"},
        follow_redirects=True,
    )
    assert "retried 3 failed job(s)" in res.text
    states = {await queue.get_job_state(i) for i in ids}
    assert states <= {"waiting", "active", "failed"}
    assert ids
    [entry] = await AuditLog(queue.client, "jobq").entries(queue=queue.name, action="retry-all")
    assert entry.count == 3
    assert entry.detail == "confirmed 3"
    assert entry.actor == "anonymous"
    audit = await c.get("/audit", params={"queue": queue.name})
    assert re.search(r'<tr data-action="retry-all">.*?<td class="num">3</td>', audit.text, re.S)


async def test_clean_counts_then_deletes_finished_jobs(
    make_client: Factory, queue: Queue, start_worker: Factory
) -> None:
    ids = await failed_jobs(queue, start_worker, 4)
    c = make_client()
    page = await c.get(f"/queues/{queue.name}/clean", params={"state": "failed", "grace": 0})
    assert "deletes <strong>4</strong> failed job" in page.text
    far = await c.get(f"/queues/{queue.name}/clean", params={"state": "failed", "grace": 3600})
    assert "deletes <strong>0</strong>" in far.text
    assert (
        await c.get(f"/queues/{queue.name}/clean", params={"state": "active"})
    ).status_code == 400
    token = str(c.cookies.get("jobq_csrf"))
    res = await c.post(
        f"/queues/{queue.name}/clean",
        data={"csrf_token": token, "state": "failed", "grace": "0"},
        follow_redirects=True,
    )
    assert "cleaned 4 failed job(s)" in res.text
    assert all([await queue.get_job(i) is None for i in ids])
    [entry] = await AuditLog(queue.client, "jobq").entries(queue=queue.name, action="clean")
    assert entry.count == 4


# -- schedulers, dead letters, workers ----------------------------------------------------
async def test_schedulers_page_and_run_now(make_client: Factory, queue: Queue) -> None:
    await queue.upsert_scheduler("nightly", cron="0 2 * * *", name="rollup", data={"k": 1})
    c = make_client()
    page = await c.get("/schedulers")
    row = re.search(r'<tr data-scheduler="nightly">(.*?)</tr>', page.text, re.S)
    assert row
    assert "0 2 * * *" in row.group(1)
    assert "T02:00:00" in row.group(1)
    token = str(c.cookies.get("jobq_csrf"))
    before = (await queue.get_job_counts()).waiting
    res = await c.post(
        "/schedulers/run-now",
        data={"csrf_token": token, "queue": queue.name, "id": "nightly"},
        follow_redirects=True,
    )
    assert "scheduler nightly ran now" in res.text
    assert (await queue.get_job_counts()).waiting == before + 1
    res = await c.post(
        "/schedulers/run-now", data={"csrf_token": token, "queue": queue.name, "id": "nope"}
    )
    assert res.status_code == 404


async def test_dead_letters_replay_with_edited_data_and_discard(
    make_client: Factory,
    redis_url: str,
    make_queue: QueueFactory,
    queue: Queue,
    start_worker: Factory,
) -> None:
    dlq_name = queue.name + "-dlq"
    await queue.set_dead_letter_queue(dlq_name)
    await failed_jobs(queue, start_worker, 2)
    async with DeadLetters(connection=redis_url, name=dlq_name) as dl:
        for _ in range(200):
            if await dl.count() == 2:
                break
            await asyncio.sleep(0.05)  # routing happens in the worker, after the failure
        entries = await dl.list()
        assert len(entries) == 2
    await queue.pause()  # the replayed job waits where the test can read it
    c = make_client()
    page = await c.get("/dead-letters", params={"dlq": dlq_name})
    assert all(f'data-entry="{e.id}"' in page.text for e in entries)
    one, two = entries
    detail = await c.get(f"/dead-letters/{dlq_name}/entries/{one.id}")
    assert "boom" in detail.text
    assert 'id="replay-data"' in detail.text
    token = str(c.cookies.get("jobq_csrf"))
    res = await c.post(
        f"/dead-letters/{dlq_name}/replay",
        data={"csrf_token": token, "entry": one.id, "edit": "1", "data": '{"n": 99}'},
    )
    assert res.status_code == 303
    job_id = res.headers["location"].split("/jobs/")[1].split("?")[0]
    replayed = await queue.get_job(job_id)
    assert replayed is not None
    assert replayed.data == {"n": 99}
    bad = await c.post(
        f"/dead-letters/{dlq_name}/replay",
        data={"csrf_token": token, "entry": two.id, "edit": "1", "data": "{nope"},
    )
    assert bad.status_code == 400
    assert "not valid JSON" in bad.text
    res = await c.post(
        f"/dead-letters/{dlq_name}/discard", data={"csrf_token": token, "entry": two.id}
    )
    assert res.status_code == 303
    async with DeadLetters(connection=redis_url, name=dlq_name) as dl:
        assert await dl.get(two.id) is None
    actions = [e.action for e in await AuditLog(queue.client, "jobq").entries(limit=10)]
    assert "dlq-replay" in actions
    assert "dlq-discard" in actions


async def test_workers_page_shows_live_workers(
    make_client: Factory, queue: Queue, start_worker: Factory
) -> None:
    gate = asyncio.Event()

    async def hold(job: Job) -> None:
        await gate.wait()

    w = await start_worker(hold, queue.name, concurrency=3)
    c = make_client()
    for _ in range(200):
        page = await c.get("/workers")
        if f'data-worker="{w.id}"' in page.text:
            break
        await asyncio.sleep(0.05)
    row = re.search(rf'<tr data-worker="{re.escape(w.id)}">(.*?)</tr>', page.text, re.S)
    assert row, page.text
    assert "/ 3" in row.group(1)
    gate.set()


# -- redaction, search, live data ---------------------------------------------------------
async def test_payload_fields_are_redacted_everywhere_shown(
    make_client: Factory, queue: Queue
) -> None:
    job = await queue.add(
        "signup", {"user": "kim", "password": "hunter2", "nested": [{"SSN": "123-45-6789"}]}
    )
    c = make_client(redact=["password", "ssn"])
    page = await c.get(f"/queues/{queue.name}/jobs/{job.id}")
    assert "hunter2" not in page.text
    assert "123-45-6789" not in page.text
    assert "[redacted]" in page.text
    assert "kim" in page.text
    live = await c.get("/api/snapshot", params={"job": f"{queue.name}/{job.id}"})
    assert live.json()["job"]["data"]["password"] == "[redacted]"
    assert "hunter2" not in live.text


async def test_search_over_history_and_live_states(
    redis_url: str, make_client: Factory, queue: Queue, start_worker: Factory
) -> None:
    async def work(job: Job) -> None:
        if job.data.get("fail"):
            raise RuntimeError("ledger mismatch for " + job.data["acct"])

    ok = await queue.add("post-ledger", {"acct": "acct-1001", "memo": "quarterly close"})
    bad = await queue.add("post-ledger", {"acct": "acct-2002", "fail": True, "token": "t0p"})
    await start_worker(work, queue.name)
    await queue.wait_for_job(ok.id, timeout=10)
    with pytest.raises(Exception, match="ledger mismatch"):
        await queue.wait_for_job(bad.id, timeout=10)
    waiting = await queue.add("post-ledger", {"acct": "acct-3003"}, JobOptions(delay=60_000))
    app = create_app(redis_url, history=True, redact=["token"])
    c = make_client(app)
    # No refresh by hand: a search first brings the index up to date.

    async def hits(**params: str) -> list[str]:
        res = await c.get("/search", params={"queue": queue.name, **params})
        assert res.status_code == 200, res.text
        return re.findall(r'<tr data-hit="[^/"]+/([^"]+)"', res.text)

    assert await hits(text="quarterly") == [ok.id]
    assert await hits(error="mismatch") == [bad.id]
    assert await hits(text="t0p") == []  # a redacted value is not findable
    assert await hits(name="post-*", state="delayed") == [waiting.id]
    assert set(await hits(name="post-ledger")) == {ok.id, bad.id, waiting.id}
    assert await hits(text='") OR NEAR(') == []  # hostile input is plain text
    res = await c.get("/search", params={"since": "not a date"})
    assert res.status_code == 400


async def test_pages_use_only_packaged_assets_under_a_strict_policy(
    make_client: Factory, queue: Queue
) -> None:
    await queue.add("x", {})
    c = make_client(history=True)
    for path in (
        "/",
        f"/queues/{queue.name}",
        "/search",
        "/schedulers",
        "/workers",
        "/audit",
        "/dead-letters",
        "/login",
    ):
        res = await c.get(path)
        assert res.status_code == 200, path
        assert "script-src 'self'" in res.headers["content-security-policy"]
        assert not re.search(r'(src|href)="(https?:)?//(?!testserver)', res.text), path
        assert "<script>" not in res.text  # no inline script: the policy forbids it
    htmx = await c.get("/static/htmx.min.js")
    assert htmx.status_code == 200
    assert "htmx" in htmx.text[:2000]
    assert (await c.get("/static/dashboard.js")).status_code == 200


# -- the command line ----------------------------------------------------------------------
def test_cli_hash_password_and_refusal_to_serve_open_on_a_network(redis_url: str) -> None:
    res = CliRunner().invoke(cli, ["dashboard", "hash-password", "--password", "pw"])
    assert res.exit_code == 0, res.output
    assert verify_password("pw", res.output.strip())
    res = CliRunner().invoke(
        cli, ["--url", redis_url, "dashboard", "--host", "0.0.0.0", "--port", "0"]
    )
    assert res.exit_code == 2
    assert "refusing to serve an open dashboard" in res.output


async def test_cli_retry_by_filter_counts_first_and_audits(
    redis_url: str, queue: Queue, start_worker: Factory
) -> None:
    async def boom(job: Job) -> None:
        raise ValueError(f"{job.name} broke")

    a = await queue.add("import-file", {})
    b = await queue.add("send-mail", {})
    await start_worker(boom, queue.name)
    for j in (a, b):
        with pytest.raises(Exception, match="broke"):
            await queue.wait_for_job(j.id, timeout=10)
    args = ["--url", redis_url, "retry", queue.name, "--name", "import-file"]
    refused = await asyncio.to_thread(CliRunner().invoke, cli, args, input="n\n")
    assert "1 failed job(s) in queue" in refused.output
    assert refused.exit_code == 1
    done = await asyncio.to_thread(CliRunner().invoke, cli, [*args, "--yes"])
    assert done.exit_code == 0, done.output
    assert "retried 1 job(s)" in done.output
    assert await queue.get_job_state(b.id) == "failed"
    [entry] = await AuditLog(queue.client, "jobq").entries(
        queue=queue.name, action="retry-matching"
    )
    assert entry.count == 1
    assert entry.actor.startswith("cli:")
    assert "name=import-file" in entry.detail
