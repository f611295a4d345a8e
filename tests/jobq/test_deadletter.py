"""Dead letters: routing by workers and sweeps, the entry, filters, replay, on a real server.

A test waits for routing on the original queue's ``dead-lettered`` event (the
second routing step emits it), or on state; nothing sleeps for a fixed time.
Jobs that must fail without a worker are claimed and failed by the scripts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from jobq import (
    AttemptError,
    ConfigurationError,
    DeadLetters,
    Job,
    JobNotFoundError,
    JobOptions,
    PayloadError,
    Queue,
    QueueEvents,
    UnrecoverableError,
    Worker,
    WorkerOptions,
)
from jobq.deadletter import _add_entry
from jobq.job import join_data
from jobq.keys import QueueKeys
from jobq.scripts import FinishItem, QueueScripts
from tests.conftest import QueueFactory, WorkerFactory
from tests.jobq import scriptcalls

TIMEOUT = 10


# --- helpers ---------------------------------------------------------------------


@pytest.fixture
def dlq_name(queue_name: str) -> str:
    """A dead-letter queue of this test only."""
    return f"{queue_name}-dead"


@pytest.fixture
async def dead_letters(redis_url: str, dlq_name: str) -> AsyncIterator[DeadLetters]:
    async with DeadLetters(connection=redis_url, name=dlq_name) as dl:
        yield dl


@pytest.fixture
async def events(redis_url: str, queue_name: str) -> AsyncIterator[QueueEvents]:
    """The test queue's events, from before anything happens."""
    async with QueueEvents(queue_name, connection=redis_url, block_ms=200) as ev:
        yield ev


async def dead_lettered(events: QueueEvents, job_id: str) -> dict[str, str]:
    """Wait for the event of the second routing step for ``job_id``."""

    async def wait() -> dict[str, str]:
        async for ev in events:
            if ev.event == "dead-lettered" and ev.job_id == job_id:
                return ev.fields
        raise AssertionError("event stream ended")

    return await asyncio.wait_for(wait(), TIMEOUT)


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Wait for state that a background task produces (no event marks it)."""

    async def loop() -> None:
        while not await check():  # noqa: ASYNC110 - no event marks this state
            await asyncio.sleep(0.01)

    await asyncio.wait_for(loop(), TIMEOUT)


async def server_ms(r: Redis) -> int:
    sec, usec = await r.time()
    return int(sec) * 1000 + int(usec) // 1000


async def wait_past(r: Redis, ms: int) -> None:
    """Poll the server clock until it is later than ``ms``."""
    while await server_ms(r) <= ms:
        pass


async def fail_directly(
    queue: Queue, name: str, data: Any, reason: str, *, error_type: str = "RuntimeError"
) -> str:
    """Add a job and fail it for good through the scripts, with no worker."""
    job = await queue.add(name, data)
    reply = await scriptcalls.claim(queue.scripts)
    [claimed] = reply.jobs
    assert claimed.id == job.id
    err = AttemptError(1, reason, error_type, f"Traceback ...\n{error_type}: {reason}\n", 0)
    codes = await scriptcalls.finish(
        queue.scripts,
        [FinishItem(job.id, claimed.token, "f", reason, json.dumps([err.to_json()]).encode())],
    )
    assert codes == [1]
    return job.id


# --- configuration ---------------------------------------------------------------


async def test_routing_is_stored_per_queue(queue: Queue, redis_client: Redis) -> None:
    assert await queue.get_dead_letter_queue() is None
    await queue.set_dead_letter_queue("dead-letter")
    assert await queue.get_dead_letter_queue() == "dead-letter"
    assert await redis_client.hget(queue.keys.meta, "dlq") == b"dead-letter"
    with pytest.raises(ConfigurationError, match="its own dead-letter queue"):
        await queue.set_dead_letter_queue(queue.name)
    with pytest.raises(ConfigurationError, match="queue name"):
        await queue.set_dead_letter_queue("bad name")
    await queue.set_dead_letter_queue(None)
    assert await queue.get_dead_letter_queue() is None


# --- routing by the worker -------------------------------------------------------


async def test_attempts_spent_files_an_entry_with_every_attempt(
    queue: Queue,
    start_worker: WorkerFactory,
    dead_letters: DeadLetters,
    dlq_name: str,
    events: QueueEvents,
) -> None:
    await queue.set_dead_letter_queue(dlq_name)
    handled: asyncio.Queue[Job] = asyncio.Queue()

    async def process(job: Job) -> None:
        raise ValueError(f"boom {job.attempts_made + 1}")

    async def on_failed(job: Job, exc: BaseException) -> None:
        await handled.put(job)

    await start_worker(process, failed_job_handler=on_failed)
    job = await queue.add("reconcile", {"org": "navy", "fy": 2024}, JobOptions(attempts=3))
    fields = await dead_lettered(events, job.id)
    assert fields["dlq"] == dlq_name
    # The failed-job handler still runs.
    assert (await asyncio.wait_for(handled.get(), TIMEOUT)).id == job.id

    # The original is gone from failed.
    assert await queue.get_job(job.id) is None
    assert await queue.get_job_ids("failed") == []

    entry = await dead_letters.get(f"{queue.name}:{job.id}")
    assert entry is not None
    assert (entry.queue, entry.prefix, entry.job_id, entry.name) == (
        queue.name,
        "jobq",
        job.id,
        "reconcile",
    )
    assert entry.data == {"org": "navy", "fy": 2024}
    assert entry.options == {"attempts": 3}
    assert [e.reason for e in entry.errors] == ["boom 1", "boom 2", "boom 3"]
    assert [e.attempt for e in entry.errors] == [1, 2, 3]
    assert all("ValueError: boom" in s for s in entry.stacktraces)
    assert all("Traceback" in s for s in entry.stacktraces)
    assert entry.failed_reason == "boom 3"
    assert entry.attempts_made == 3
    assert entry.created_at is not None
    assert entry.processed_at is not None
    assert entry.failed_at is not None
    assert entry.dead_lettered_at is not None
    assert entry.created_at <= entry.processed_at <= entry.failed_at <= entry.dead_lettered_at
    assert (entry.replay_count, entry.replays) == (0, ())
    assert await dead_letters.count() == 1

    # The entry is an ordinary job of the dead-letter queue, with the documented data.
    raw = await dead_letters.queue.get_job(entry.id)
    assert raw is not None
    assert raw.name == "reconcile"
    assert raw.data["queue"] == queue.name
    assert raw.data["id"] == job.id
    assert raw.data["failedReason"] == "boom 3"
    assert len(raw.data["errors"]) == 3
    assert set(raw.data["timestamps"]) == {"created", "processed", "finished"}
    assert await dead_letters.queue.get_job_state(entry.id) == "waiting"


async def test_unrecoverable_error_is_dead_lettered(
    queue: Queue,
    start_worker: WorkerFactory,
    dead_letters: DeadLetters,
    dlq_name: str,
    events: QueueEvents,
) -> None:
    await queue.set_dead_letter_queue(dlq_name)
    runs = 0

    async def process(job: Job) -> None:
        nonlocal runs
        runs += 1
        raise UnrecoverableError("fiscal year 1999 is closed")

    await start_worker(process)
    job = await queue.add("close-year", {"fy": 1999}, JobOptions(attempts=5))
    await dead_lettered(events, job.id)
    assert runs == 1
    [entry] = await dead_letters.list()
    assert entry.job_id == job.id
    assert entry.failed_reason == "fiscal year 1999 is closed"
    assert [e.type for e in entry.errors] == ["UnrecoverableError"]


async def test_corrupt_record_is_dead_lettered_with_its_raw_data(
    queue: Queue,
    start_worker: WorkerFactory,
    redis_client: Redis,
    dead_letters: DeadLetters,
    dlq_name: str,
    events: QueueEvents,
) -> None:
    await queue.set_dead_letter_queue(dlq_name)
    await redis_client.hset(
        queue.keys.job("corrupt-1"), mapping={"n": "x", "d": b"{not json", "t": 1}
    )
    await redis_client.lpush(queue.keys.wait, "corrupt-1")

    async def process(job: Job) -> str:
        return "fine"

    await start_worker(process)
    await dead_lettered(events, "corrupt-1")
    entry = await dead_letters.get(f"{queue.name}:corrupt-1")
    assert entry is not None
    assert entry.failed_reason is not None
    assert "corrupt record" in entry.failed_reason
    assert entry.data is None
    assert entry.raw_data == "{not json"
    # Replaying it needs new data; with it, it runs.
    with pytest.raises(PayloadError, match="corrupt"):
        await dead_letters.replay(entry.id, by="ops")
    job = await dead_letters.replay(entry.id, data={"fixed": True}, by="ops")
    assert job.id == "corrupt-1"
    assert await job.wait_until_finished(TIMEOUT) == "fine"


async def test_job_stalled_too_often_is_dead_lettered(
    queue: Queue,
    start_worker: WorkerFactory,
    redis_client: Redis,
    dead_letters: DeadLetters,
    dlq_name: str,
    events: QueueEvents,
) -> None:
    await queue.set_dead_letter_queue(dlq_name)
    job = await queue.add("hangs", {"n": 1})
    # A worker that is gone claimed it; its lease ran out.
    reply = await scriptcalls.claim(queue.scripts, worker_id="gone", max_stalled=0)
    assert [j.id for j in reply.jobs] == [job.id]
    assert await redis_client.zadd(queue.keys.active, {job.id: 1}, xx=True, ch=True) == 1
    handled: asyncio.Queue[tuple[Job, BaseException]] = asyncio.Queue()

    async def on_failed(job: Job, exc: BaseException) -> None:
        await handled.put((job, exc))

    async def process(job: Job) -> None:
        raise AssertionError("the stalled job must not run again")

    await start_worker(process, options=WorkerOptions(max_stalled=0), failed_job_handler=on_failed)
    await dead_lettered(events, job.id)
    got, _exc = await asyncio.wait_for(handled.get(), TIMEOUT)
    assert got.id == job.id  # the handler saw the job before routing deleted it
    entry = await dead_letters.get(f"{queue.name}:{job.id}")
    assert entry is not None
    assert entry.failed_reason is not None
    assert entry.failed_reason.startswith("job stalled more than the allowed 0 time(s)")
    assert entry.stalls == 1
    assert await queue.get_job(job.id) is None


async def test_queue_without_dead_letter_queue_keeps_failed_jobs(
    queue: Queue, start_worker: WorkerFactory, dead_letters: DeadLetters
) -> None:
    async def process(job: Job) -> None:
        raise UnrecoverableError("nope")

    worker = await start_worker(process)
    job = await queue.add("stays")
    with pytest.raises(Exception, match="nope"):
        await job.wait_until_finished(TIMEOUT)
    await worker.close()  # lets any routing in progress finish
    assert await queue.get_job_state(job.id) == "failed"
    assert await dead_letters.count() == 0
    assert await dead_letters.sweep(queue) == 0  # not a routed queue


async def test_worker_follows_a_setting_changed_while_it_runs(
    queue: Queue,
    start_worker: WorkerFactory,
    dead_letters: DeadLetters,
    dlq_name: str,
    events: QueueEvents,
) -> None:
    async def process(job: Job) -> None:
        raise UnrecoverableError("late")

    worker = await start_worker(process, options=WorkerOptions(lease=300))
    await queue.set_dead_letter_queue(dlq_name)
    await until(lambda: _target_is(worker, dlq_name))  # the next heartbeat read it
    job = await queue.add("late")
    await dead_lettered(events, job.id)
    assert await dead_letters.count() == 1


async def _target_is(worker: Any, name: str) -> bool:
    return bool(worker._dead_letters.target == name)


# --- replay ----------------------------------------------------------------------


async def test_replay_with_edited_data_runs_again_and_is_counted(
    queue: Queue,
    start_worker: WorkerFactory,
    dead_letters: DeadLetters,
    dlq_name: str,
    events: QueueEvents,
) -> None:
    await queue.set_dead_letter_queue(dlq_name)

    async def process(job: Job) -> str:
        if not job.data.get("ok"):
            raise UnrecoverableError("bad account code")
        return f"posted {job.data['account']}"

    await start_worker(process)
    job = await queue.add(
        "post", {"account": "X1", "ok": False}, JobOptions(attempts=2, priority=3)
    )
    await dead_lettered(events, job.id)
    entry_id = f"{queue.name}:{job.id}"

    replayed = await dead_letters.replay(entry_id, data={"account": "X1", "ok": True}, by="alice")
    assert replayed.id == job.id  # the id was free: the job keeps its identity
    assert replayed.queue_name == queue.name
    assert replayed.name == "post"
    assert replayed.options.attempts == 2
    assert replayed.options.priority == 3
    assert await replayed.wait_until_finished(TIMEOUT) == "posted X1"
    done = await replayed.refresh()
    assert done.attempts_made == 1  # attempts were reset

    entry = await dead_letters.get(entry_id)
    assert entry is not None
    assert entry.replay_count == 1
    [r] = entry.replays
    assert (r.number, r.by, r.job_id, r.data_edited) == (1, "alice", job.id, True)
    assert r.at is not None
    assert entry.dead_lettered_at is not None
    assert r.at >= entry.dead_lettered_at

    # Again, with the original data: the id is taken (completed), so a suffix;
    # it fails again and updates the same entry.
    again = await dead_letters.replay(entry_id, by="bob")
    assert again.id == f"{job.id}:replay-2"
    assert again.data == {"account": "X1", "ok": False}
    await dead_lettered(events, again.id)
    assert await dead_letters.count() == 1
    entry = await dead_letters.get(entry_id)
    assert entry is not None
    assert entry.job_id == again.id
    assert entry.replay_count == 2
    assert [(r.by, r.job_id, r.data_edited) for r in entry.replays] == [
        ("alice", job.id, True),
        ("bob", again.id, False),
    ]
    assert entry.original_id == job.id


async def test_replay_of_a_missing_entry_and_without_by(dead_letters: DeadLetters) -> None:
    with pytest.raises(JobNotFoundError, match="no entry"):
        await dead_letters.replay("nope:1", by="ops")
    with pytest.raises(ConfigurationError, match="by="):
        await dead_letters.replay("nope:1", by="")


async def test_filters_and_replay_matching(
    make_queue: QueueFactory,
    queue_name: str,
    redis_client: Redis,
    dead_letters: DeadLetters,
    dlq_name: str,
) -> None:
    q1 = await make_queue(f"{queue_name}-a")
    q2 = await make_queue(f"{queue_name}-b")
    for q in (q1, q2):
        await q.set_dead_letter_queue(dlq_name)
    a1 = await fail_directly(q1, "send-email", {"to": "a@x"}, "SMTP timeout")
    a2 = await fail_directly(q1, "render", {"page": 1}, "missing 'total'", error_type="KeyError")
    await dead_letters.sweep(q1)
    # Everything above failed before `cut`; everything below after it.
    await wait_past(redis_client, await server_ms(redis_client))
    cut_ms = await server_ms(redis_client)
    await wait_past(redis_client, cut_ms)
    b1 = await fail_directly(q2, "send-email", {"to": "b@x"}, "SMTP refused")
    assert await dead_letters.sweep(q2) == 1
    cut = datetime.fromtimestamp(cut_ms / 1000, tz=UTC)

    def ids(entries: list[Any]) -> list[str]:
        return [e.job_id for e in entries]

    assert await dead_letters.count() == 3
    assert ids(await dead_letters.list()) == [b1, a2, a1]  # newest failure first
    assert ids(await dead_letters.list(start=1, end=1)) == [a2]
    assert ids(await dead_letters.list(queue=q1.name)) == [a2, a1]
    assert ids(await dead_letters.list(name="send-email")) == [b1, a1]
    assert ids(await dead_letters.list(error_contains="SMTP")) == [b1, a1]
    assert ids(await dead_letters.list(error_contains="KeyError")) == [a2]
    assert ids(await dead_letters.list(queue=q2.name, error_contains="SMTP")) == [b1]
    assert await dead_letters.list(error_contains="smtp") == []  # case-sensitive
    assert ids(await dead_letters.list(older_than=cut)) == [a2, a1]
    assert ids(await dead_letters.list(newer_than=cut)) == [b1]
    assert await dead_letters.list(older_than=timedelta(hours=1)) == []
    assert len(await dead_letters.list(newer_than=timedelta(hours=1))) == 3

    jobs = await dead_letters.replay_matching(
        name="send-email", older_than=cut, data_update={"retry": True}, by="bob"
    )
    assert [(j.queue_name, j.id, j.data) for j in jobs] == [
        (q1.name, a1, {"to": "a@x", "retry": True})
    ]
    assert (await q1.get_job(a1)) is not None
    assert await q1.get_job_state(a1) == "waiting"

    jobs = await dead_letters.replay_matching(
        error_contains="SMTP", data_update=lambda d: {**d, "n": 2}, by="carol"
    )
    assert [(j.id, j.data) for j in jobs] == [
        (f"{a1}:replay-2", {"to": "a@x", "n": 2}),  # a1 waits still: its id is taken
        (b1, {"to": "b@x", "n": 2}),
    ]
    counts = {e.id: e.replay_count for e in await dead_letters.list()}
    assert counts == {f"{q1.name}:{a1}": 2, f"{q1.name}:{a2}": 0, f"{q2.name}:{b1}": 1}

    # One bad entry replays none.
    q3 = await make_queue(f"{queue_name}-c")
    await q3.set_dead_letter_queue(dlq_name)
    await fail_directly(q3, "odd", [1, 2], "list data")
    assert await dead_letters.sweep(q3) == 1
    with pytest.raises(ConfigurationError, match="merges into a dict"):
        await dead_letters.replay_matching(data_update={"x": 1}, by="dave")
    after = {e.id: e.replay_count for e in await dead_letters.list()}
    assert after == {**counts, f"{q3.name}:1": 0}


async def test_discard(queue: Queue, dead_letters: DeadLetters, dlq_name: str) -> None:
    await queue.set_dead_letter_queue(dlq_name)
    job_id = await fail_directly(queue, "x", None, "r")
    entry_id = await dead_letters.route(queue, job_id)
    assert entry_id == f"{queue.name}:{job_id}"
    assert await dead_letters.discard(entry_id) is True
    assert await dead_letters.get(entry_id) is None
    assert await dead_letters.count() == 0
    assert await dead_letters.discard(entry_id) is False


# --- crash safety ----------------------------------------------------------------


async def test_routing_the_same_failed_job_twice_files_one_entry(
    queue: Queue, redis_client: Redis, dead_letters: DeadLetters, dlq_name: str
) -> None:
    await queue.set_dead_letter_queue(dlq_name)
    job_id = await fail_directly(queue, "twice", {"n": 1}, "broken")
    dlq = dead_letters.keys
    # Step 1 twice, as after a crash before step 2: one entry, the job still failed.
    first = await _add_entry(redis_client, queue.keys, job_id, dlq, 1000)
    entry_before = await redis_client.hgetall(dlq.job(f"{queue.name}:{job_id}"))
    second = await _add_entry(redis_client, queue.keys, job_id, dlq, 1000)
    assert first == second
    assert await redis_client.hgetall(dlq.job(f"{queue.name}:{job_id}")) == entry_before
    assert await dead_letters.count() == 1
    assert await dead_letters.queue.get_job_ids("waiting") == [f"{queue.name}:{job_id}"]
    assert await queue.get_job_state(job_id) == "failed"

    # The sweep finishes the job: step 1 again (a no-op), then step 2.
    assert await dead_letters.sweep(queue) == 1
    assert await queue.get_job(job_id) is None
    assert await dead_letters.count() == 1
    assert await dead_letters.route(queue, job_id) is None  # nothing left to route


async def test_sweep_routes_a_failed_job_left_behind(
    queue: Queue, dead_letters: DeadLetters, dlq_name: str, events: QueueEvents
) -> None:
    job_id = await fail_directly(queue, "left", {"n": 1}, "worker died before routing")
    assert await dead_letters.sweep(queue) == 0  # not routed yet
    assert await queue.get_job_state(job_id) == "failed"
    await queue.set_dead_letter_queue(dlq_name)
    assert await dead_letters.sweep(queue, min_age=timedelta(hours=1)) == 0  # too young
    assert await dead_letters.sweep(queue) == 1
    await dead_lettered(events, job_id)
    entry = await dead_letters.get(f"{queue.name}:{job_id}")
    assert entry is not None
    assert entry.failed_reason == "worker died before routing"
    assert await queue.get_job_ids("failed") == []


async def test_worker_heartbeat_sweeps_failed_jobs_left_behind(
    redis_url: str,
    queue: Queue,
    start_worker: WorkerFactory,
    dead_letters: DeadLetters,
    dlq_name: str,
    events: QueueEvents,
) -> None:
    job_id = await fail_directly(queue, "orphan", None, "its worker died")
    await queue.set_dead_letter_queue(dlq_name)

    async def process(job: Job) -> None:
        return None

    worker = Worker(queue.name, process, connection=redis_url, install_signal_handlers=False)
    # The worker's sweep leaves jobs younger than 30 s to the worker that failed them.
    assert worker._dead_letters.sweep_min_age_ms == 30_000
    worker._dead_letters.sweep_min_age_ms = 0
    task = asyncio.create_task(worker.run())
    try:
        await dead_lettered(events, job_id)  # the sweep at start (then once a minute)
    finally:
        await worker.close(grace=0)
        await task
    assert await dead_letters.count() == 1


async def test_release_leaves_a_job_retried_since_alone(
    queue: Queue, redis_client: Redis, dead_letters: DeadLetters
) -> None:
    job_id = await fail_directly(queue, "retried", None, "r")
    filed = await _add_entry(redis_client, queue.keys, job_id, dead_letters.keys, 1000)
    assert filed is not None
    await queue.retry(job_id)  # between the two steps
    code = await queue.scripts.dead_letter_release(
        job_id, filed[1], dead_letters.name, events_max_len=1000
    )
    assert code == 0
    assert await queue.get_job_state(job_id) == "waiting"


# --- the scripts, driven directly --------------------------------------------------


async def test_dead_letter_scripts_directly(redis_client: Redis, queue_name: str) -> None:
    dlq = QueueKeys("jobq", f"{queue_name}-dead")
    s = QueueScripts(redis_client, dlq)
    origin = ("jobq", "src", "7")

    async def add(failed_at: int, *, job: str = "7", same: bool = True, text: str = "E") -> int:
        return await s.dead_letter_add(
            "src:7",
            "n",
            b'{"v":1}',
            b"",
            (origin[0], origin[1], job),
            failed_at,
            text,
            same_job=same,
            events_max_len=100,
        )

    assert await add(1000) == 1
    h = await scriptcalls.job_hash(redis_client, dlq.job("src:7"))
    assert (h[b"dq"], h[b"dp"], h[b"di"], h[b"df"]) == (b"src", b"jobq", b"7", b"1000")
    assert await redis_client.zrange(dlq.dead_letters, 0, -1, withscores=True) == [
        (b"src:7", 1000.0)
    ]
    assert await redis_client.lrange(dlq.wait, 0, -1) == [b"src:7"]
    assert await add(1000) == 0  # the same failure: nothing written
    assert await add(2000, job="8") == -5  # another job under this id
    # A consumer finished the entry; a newer failure (of a replay) brings it back.
    await redis_client.rpop(dlq.wait)
    await redis_client.zadd(dlq.completed, {"src:7": 1})
    assert await add(2000, job="7:replay-1", same=False, text="F") == 2
    h = await scriptcalls.job_hash(redis_client, dlq.job("src:7"))
    assert (h[b"di"], h[b"df"], h[b"de"]) == (b"7:replay-1", b"2000", b"F")
    assert await redis_client.zcard(dlq.completed) == 0
    assert await redis_client.lrange(dlq.wait, 0, -1) == [b"src:7"]

    assert await s.dead_letter_replay("nope", "ops", "j", False, 10) is None
    for i in range(1, 4):
        recorded = await s.dead_letter_replay("src:7", "ops", f"j{i}", i == 2, 2)
        assert recorded is not None
        assert recorded[0] == i
        assert recorded[1] > 0
    raw_history = await redis_client.hget(dlq.job("src:7"), "dr")
    assert raw_history is not None
    history = json.loads(raw_history)
    assert [(r["n"], r["job"], r["edited"]) for r in history] == [(2, "j2", True), (3, "j3", False)]

    assert await s.dead_letter_scan(
        "-inf", "+inf", 0, 10, newest_first=True, queue="", name="", text=""
    ) == (1, ["src:7"])
    assert await s.dead_letter_scan(
        "-inf", "+inf", 0, 10, newest_first=True, queue="other", name="", text=""
    ) == (1, [])
    assert await s.dead_letter_scan(
        2001, "+inf", 0, 10, newest_first=False, queue="", name="", text=""
    ) == (0, [])
    assert await s.dead_letter_scan(
        "-inf", "+inf", 0, 10, newest_first=False, queue="src", name="n", text="F"
    ) == (1, ["src:7"])

    src = QueueKeys("jobq", f"{queue_name}-src")
    o = QueueScripts(redis_client, src)
    await redis_client.hset(src.job("9"), mapping={"n": "x", "d": "1", "t": 1})
    await redis_client.zadd(src.failed, {"9": 5000})
    assert await o.dead_letter_release("9", 4999, "dlq", events_max_len=100) == 0
    assert await o.dead_letter_release("9", 5000, "dlq", events_max_len=100) == 1
    assert await redis_client.exists(src.job("9"), src.failed) == 0


async def test_an_updated_entry_keeps_only_its_new_data(
    redis_client: Redis, queue_name: str
) -> None:
    # The first entry's data is long enough to be stored in pieces; the newer
    # failure's shorter data must not be read back with the old pieces glued on.
    dlq = QueueKeys("jobq", f"{queue_name}-dead")
    s = QueueScripts(redis_client, dlq)
    long_data = b'{"v":"' + b"x" * 150 + b'"}'

    async def add(data: bytes, failed_at: int) -> int:
        return await s.dead_letter_add(
            "src:7",
            "n",
            data,
            b"",
            ("jobq", "src", "7"),
            failed_at,
            "E",
            same_job=True,
            events_max_len=100,
        )

    assert await add(long_data, 1000) == 1
    h = await scriptcalls.job_hash(redis_client, dlq.job("src:7"))
    assert b"d1" in h  # stored in pieces
    assert join_data(h) == long_data
    assert await add(b'{"v":2}', 2000) == 2
    h = await scriptcalls.job_hash(redis_client, dlq.job("src:7"))
    assert join_data(h) == b'{"v":2}'
    assert not [f for f in h if f.startswith(b"d") and f[1:].isdigit()]
