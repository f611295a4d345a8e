"""ACL users: the documented rule set runs all of jobq, and a user missing a
command or key is refused at start with a message that says what to grant."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from jobq import (
    Backoff,
    DeadLetters,
    Deduplication,
    FlowJob,
    FlowProducer,
    Job,
    JobFailedError,
    JobOptions,
    Queue,
    QueueEvents,
    RateLimit,
    Worker,
)
from jobq.connection import ConnectionSettings
from jobq.dashboard._backend import Backend
from jobq.errors import ConnectionSetupError
from jobq.keys import QueueKeys
from jobq.scripts import SCRIPT_NAMES, script_source
from jobq.security import ALL_COMMANDS, QUEUE_COMMANDS, acl_setuser_line, check_permissions
from tests.security.conftest import PASSWORD, UserFactory, running_worker


def _name() -> str:
    return f"acl-{uuid.uuid4().hex[:10]}"


def _line_rules(user: str = "x") -> str:
    """The documented line's rules (after the user name), with the test password."""
    line = acl_setuser_line("jobq", user, PASSWORD)
    return line.split(" ", 3)[3]


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    """Poll ``check`` until it returns something truthy (the condition, not a sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


async def acl_denials(admin: Redis, user: str) -> list[str]:
    """What the server's ACL log holds against ``user``: 'reason:object' strings.

    Left out on purpose: CONFIG GET (the start-up check reads maxmemory-policy
    from INFO when it is denied, and it would reveal secrets such as
    requirepass) and CLIENT SETINFO (sent by redis-py, which ignores a denial).
    """
    log: Any = await admin.acl_log(count=1000)
    expected = {"config|get", "client|setinfo"}
    return sorted(
        {
            f"{e['reason']}:{e['object']}"
            for e in log
            if e["username"] == user and e["object"] not in expected
        }
    )


def test_the_line_lists_hash_tagged_key_patterns_and_no_channels() -> None:
    line = acl_setuser_line("app", "worker", "s3cret")
    assert line.startswith("ACL SETUSER worker on >s3cret resetkeys ~{app:* ~{app}:* ")
    assert " resetchannels -@all " in line
    for needed in ("+evalsha", "+script|load", "+bzpopmin", "+xadd", "+multi", "+discard"):
        assert f" {needed}" in line
    for absent in ("+config", "+eval ", "+@", "+flushall", "+keys "):
        assert absent not in line
    assert acl_setuser_line("a*b").count("~{a\\*b:*") == 1  # glob characters escaped


async def test_the_documented_user_runs_every_engine_feature(
    make_user: UserFactory, acl_admin: Redis
) -> None:
    user, url = await make_user(_line_rules())
    name, dlq = _name(), _name()
    ticks: list[Job] = []
    ticked = asyncio.Event()

    async def processor(job: Job) -> Any:
        if job.name == "fail":
            raise RuntimeError("always fails")
        if job.name == "flaky" and job.attempts_made == 0:
            raise RuntimeError("fails once")
        if job.name == "tick":
            ticks.append(job)
            if len(ticks) >= 2:
                ticked.set()
        if job.name == "parent":
            return sorted(v["echo"] for v in (await job.get_children_values()).values())
        await job.update_progress(50)
        await job.log("a line")
        return {"echo": job.data}

    async with (
        Queue(name, connection=url) as q,
        QueueEvents(name, connection=url, block_ms=2000) as watch,
    ):
        await q.set_dead_letter_queue(dlq)
        await q.set_group_limits("g", concurrency=1, rate=RateLimit(max=100, duration=1000))
        async with running_worker(name, processor, connection=url, concurrency=4):
            ok = await q.add("ok", {"n": 1})
            assert await q.wait_for_job(ok.id, timeout=10) == {"echo": {"n": 1}}
            assert await (await q.get_job(ok.id) or ok).get_logs() == ["a line"]
            seen: list[tuple[str, str | None]] = []
            while ("completed", ok.id) not in seen:
                seen += [(e.event, e.job_id) for e in await watch.read()]
            assert ("added", ok.id) in seen

            twice = JobOptions(attempts=2, backoff=Backoff(type="fixed", delay=5))
            retried = await q.add("flaky", 2, twice)
            delayed = await q.add("ok", 3, JobOptions(delay=30_000))
            await q.promote(delayed.id)
            prio = await q.add("ok", 4, JobOptions(priority=3))
            grouped = await q.add("ok", 5, JobOptions(group="g"))
            dd = JobOptions(deduplication=Deduplication(key="k1"))
            first, again = await q.add("ok", 6, dd), await q.add("ok", 7, dd)
            assert first.id == again.id
            for job in (retried, delayed, prio, grouped, first):
                assert await q.wait_for_job(job.id, timeout=10) is not None

            failing = await q.add("fail", 8)
            with pytest.raises(JobFailedError):
                await q.wait_for_job(failing.id, timeout=10)

            async with FlowProducer(connection=url) as flows:
                node = await flows.add(
                    FlowJob(
                        name="parent",
                        queue=name,
                        children=[FlowJob(name="ok", queue=name, data=i) for i in (1, 2)],
                    )
                )
            assert await q.wait_for_job(node.job.id, timeout=10) == [1, 2]

            await q.upsert_scheduler("every-50ms", every=50, name="tick", data="t")
            await asyncio.wait_for(ticked.wait(), 10)
            assert await q.remove_scheduler("every-50ms")

            async with DeadLetters(connection=url, name=dlq) as dead:
                entries = await eventually(dead.list)
                assert [e.job_id for e in entries] == [failing.id]
                replay = await dead.replay(entries[0].id, data="fixed", by="acl-test")
                with pytest.raises(JobFailedError):  # its name still says "fail"
                    await q.wait_for_job(replay.id, timeout=10)

            assert await q.pause()
            assert await q.is_paused()
            assert await q.resume()
            assert (await q.get_job_counts()).completed >= 6
            assert await q.get_jobs("completed", 0, 1)
            assert await q.find_failed(name="fail") == []  # routed to the dead letters
            assert await q.get_workers()
            assert await q.get_time_series(5)

        parked = await q.add("ok", 9, JobOptions(delay=60_000))
        assert await q.get_job_state(parked.id) == "delayed"
        await q.remove(parked.id)
        assert await q.clean("completed", 0, 100)
        assert await q.retry_all_failed() == 0
        await q.add("ok", 10)
        assert await q.drain() == 1

    backend = Backend(url, None, 100)
    try:
        assert name in await backend.discover()
        assert dlq in await backend.dead_letter_queues()
        assert await backend.exists(name)
        snap = await backend.snapshot([name, dlq])
        assert {s.queue for s in snap.queues} == {name, dlq}
        audit = await backend.audit()
        await audit.record("acl-test", "replay", queue=name, target="1")
        assert [e.actor for e in await audit.entries(queue=name)] == ["acl-test"]
    finally:
        await backend.aclose()

    async with Queue(name, connection=url) as q:
        assert await q.obliterate(force=True) >= 0
    assert await acl_denials(acl_admin, user) == []


async def test_queue_open_refuses_a_user_without_evalsha_and_says_what_to_grant(
    make_user: UserFactory, acl_admin: Redis
) -> None:
    user, url = await make_user(_line_rules() + " -evalsha -script|load")
    name = _name()
    q = Queue(name, connection=url)
    with pytest.raises(ConnectionSetupError) as info:
        await q.open()
    await q.close()
    text = str(info.value)
    assert f"user {user!r}, may not run EVALSHA, SCRIPT LOAD (grant them" in text
    assert f"ACL SETUSER {user} +evalsha +script|load" in text
    assert acl_setuser_line("jobq", user) in text
    assert PASSWORD not in text
    # Checked, not tried: nothing of the queue was written.
    assert await acl_admin.keys("{jobq:" + name + "}*") == []


async def test_a_worker_without_bzpopmin_refuses_to_start(make_user: UserFactory) -> None:
    _, url = await make_user(_line_rules() + " -bzpopmin")
    name = _name()
    async with Queue(name, connection=url) as q:  # a producer needs no BZPOPMIN
        await q.add("ok", 1)

    async def never(job: Job) -> None:
        raise AssertionError("a refused worker ran a job")

    worker = Worker(name, never, connection=url, install_signal_handlers=False)
    with pytest.raises(ConnectionSetupError, match=r"may not run BZPOPMIN \(grant them"):
        await asyncio.wait_for(worker.run(), 10)
    assert worker.jobs_processed == 0
    # connect() raises the same before any work is due.
    early = Worker(name, never, connection=url, install_signal_handlers=False)
    with pytest.raises(ConnectionSetupError, match=r"may not run BZPOPMIN \(grant them"):
        await asyncio.wait_for(early.connect(), 10)


async def test_a_user_limited_to_other_keys_is_refused_naming_the_key_pattern(
    make_user: UserFactory,
) -> None:
    _, url = await make_user(_line_rules().replace("~{jobq:*", "~{other:*"))
    q = Queue(_name(), connection=url)
    with pytest.raises(ConnectionSetupError, match=r"may not touch the keys .* ~\{jobq:\*\)"):
        await q.open()
    await q.close()


async def test_the_line_for_another_prefix_covers_that_prefix_only(
    make_user: UserFactory,
) -> None:
    line = acl_setuser_line("tenant-a", "x", PASSWORD)
    _, url = await make_user(line.split(" ", 3)[3])
    async with Queue(_name(), connection=url, prefix="tenant-a") as q:
        await q.add("ok", 1)
    q = Queue(_name(), connection=url)  # prefix "jobq"
    with pytest.raises(ConnectionSetupError, match="may not touch the keys"):
        await q.open()
    await q.close()


async def test_without_multi_the_check_falls_back_to_acl_dryrun_and_writes_nothing(
    make_user: UserFactory, acl_admin: Redis
) -> None:
    name = _name()
    keys = QueueKeys("jobq", name)
    await acl_admin.lpush(keys.wait, "7")  # a waiting job id the check must not pop
    # MULTI denied but ACL DRYRUN allowed: the check still finds what is missing.
    _, url = await make_user("on >" + PASSWORD + " ~* +@all -multi -hset")
    client = Redis.from_url(url)
    try:
        with pytest.raises(ConnectionSetupError, match=r"may not run HSET \("):
            await check_permissions(client, keys, commands=ALL_COMMANDS)
    finally:
        await client.aclose()
    # Neither: the check names MULTI, which jobq needs anyway.
    _, url = await make_user("on >" + PASSWORD + " ~* +@all -multi -acl")
    client = Redis.from_url(url)
    try:
        with pytest.raises(ConnectionSetupError, match=r"may not run DISCARD, MULTI"):
            await check_permissions(client, keys, commands=ALL_COMMANDS)
    finally:
        await client.aclose()
    assert await acl_admin.keys("{jobq:" + name + "}*") == [keys.wait.encode()]
    assert await acl_admin.lrange(keys.wait, 0, -1) == [b"7"]


async def test_the_line_allows_a_client_name(make_user: UserFactory, acl_admin: Redis) -> None:
    user, url = await make_user(_line_rules())
    settings = ConnectionSettings.from_url(url, client_name="jobq-acl-test")
    async with Queue(_name(), connection=settings) as q:
        await q.add("ok", 1)
    assert await acl_denials(acl_admin, user) == []


def test_every_command_a_script_runs_is_in_the_documented_rules() -> None:
    # ACL rules apply inside scripts too: a command a script starts to use
    # must join QUEUE_COMMANDS, or a deployment on the documented user fails
    # mid-script (only on the path that runs it).
    called = set()
    for name in SCRIPT_NAMES:
        text, _ = script_source(name)
        called |= {c.lower() for c in re.findall(r"(?:redis\.call|call_many)\('(\w+)'", text)}
    assert "zmscore" in called  # the scan sees the calls (finish.lua's batch read)
    assert sorted(called - set(QUEUE_COMMANDS)) == []
