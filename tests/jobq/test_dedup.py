"""Deduplication and debounce: options, the queue API, workers, and the Lua scripts driven directly.

Everything runs against the private test server. Expiry is waited for by
polling the server's ``TIME``; events are awaited by blocking reads of the
queue's stream, never by sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any, cast

import pytest
from redis.asyncio import BlockingConnectionPool, Redis

from jobq import (
    Backoff,
    BulkJob,
    ConfigurationError,
    Deduplication,
    Job,
    JobFailedError,
    JobOptions,
    Queue,
)
from jobq._eventwire import expand, job_event
from jobq.keys import QueueKeys
from jobq.scripts import FinishItem, QueueScripts
from tests.conftest import WorkerFactory
from tests.jobq import scriptcalls

EVENTS = 1000
LEASE = 30_000
JobSpec = tuple[str, str, bytes, bytes, str, int, bool]


# --- helpers ---------------------------------------------------------------------------


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def now_ms(r: Redis) -> int:
    sec, usec = await r.time()
    return int(sec) * 1000 + int(usec) // 1000


async def wait_past(r: Redis, ms: float) -> None:
    """Poll the server clock until it is later than ``ms``."""
    while await now_ms(r) <= ms:
        pass


async def events(r: Redis, keys: QueueKeys) -> list[dict[str, str]]:
    raw = cast(list[tuple[bytes, dict[bytes, bytes]]], await r.xrange(keys.events))
    return [{_s(k): _s(v) for k, v in ev.items()} for _, fields in raw for ev in expand(fields)]


async def wait_event(r: Redis, keys: QueueKeys, event: str, job_id: str) -> int:
    """Block on the event stream (from its start) until ``event`` for ``job_id``;
    returns the event's server time in ms."""
    last: bytes | str = "0-0"
    while True:
        reply: Any = await r.xread({keys.events: last}, block=5_000, count=100)
        assert reply, f"no {event!r} event for job {job_id} within 5 s"
        for entry_id, fields in reply[0][1]:
            last = entry_id
            ev = job_event(fields, job_id.encode())
            if ev is not None and ev.get(b"e") == event.encode():
                return int(_s(entry_id).split("-", 1)[0])


async def get(r: Redis, key: str) -> str | None:
    raw = await r.get(key)
    return None if raw is None else _s(raw)


async def hash_of(r: Redis, key: str) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in (await r.hgetall(key)).items()}


async def dd_keys(r: Redis, keys: QueueKeys) -> list[str]:
    """Every deduplication key of the queue and its index, found by SCAN."""
    pattern = keys.dedup_index.replace("{", "\\{").replace("}", "\\}") + "*"
    return sorted([_s(k) async for k in r.scan_iter(match=pattern)])


async def index(r: Redis, keys: QueueKeys) -> dict[str, float]:
    raw = cast(list[tuple[bytes, float]], await r.zrange(keys.dedup_index, 0, -1, withscores=True))
    return {_s(m): s for m, s in raw}


def spec(
    job_id: str = "", *, name: str = "job", data: bytes = b'{"x":1}', delay: int = 0
) -> JobSpec:
    return (job_id, name, data, b"", "", delay, False)


@pytest.fixture
def keys(queue_name: str) -> QueueKeys:
    return QueueKeys("jobq", queue_name)


@pytest.fixture
def scripts(redis_client: Redis, keys: QueueKeys) -> QueueScripts:
    return QueueScripts(redis_client, keys)


async def claim_ids(scripts: QueueScripts, count: int = 1, **kwargs: Any) -> list[str]:
    opts: dict[str, Any] = {"lease_ms": LEASE, "worker_id": "w1", "events_max_len": EVENTS}
    opts.update(kwargs)
    reply = await scriptcalls.claim(scripts, count=count, **opts)
    return [j.id for j in reply.jobs]


async def finish(scripts: QueueScripts, items: Sequence[FinishItem]) -> list[int]:
    return await scriptcalls.finish(
        scripts, items, worker_id="w1", lease_ms=LEASE, events_max_len=EVENTS
    )


# --- options -----------------------------------------------------------------------------


def test_deduplication_validates_and_normalises() -> None:
    d = Deduplication(key="k", ttl=timedelta(seconds=2))
    assert (d.key, d.ttl, d.ttl_ms, d.debounce) == ("k", 2000, 2000, False)
    assert Deduplication(key="k").ttl_ms is None
    for bad in ("", None, 5):
        with pytest.raises(ConfigurationError, match=r"deduplication\.key"):
            Deduplication(key=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="longer than 512"):
        Deduplication(key="k" * 513)
    with pytest.raises(ConfigurationError, match=r"deduplication\.ttl must be >= 1 ms"):
        Deduplication(key="k", ttl=0)
    with pytest.raises(ConfigurationError, match=r"deduplication\.debounce"):
        Deduplication(key="k", debounce=1)  # type: ignore[arg-type]


def test_deduplication_from_a_bullmq_dict() -> None:
    assert Deduplication.from_value({"id": "a", "ttl": 500}) == Deduplication(key="a", ttl=500)
    assert Deduplication.from_value({"key": "a", "debounce": True}).debounce
    assert Deduplication.from_value({"id": "a", "replace": True}).debounce
    d = Deduplication(key="same")
    assert Deduplication.from_value(d) is d
    with pytest.raises(ConfigurationError, match="unknown keys: \\['extend'\\]"):
        Deduplication.from_value({"id": "a", "extend": True})
    with pytest.raises(ConfigurationError, match="'id' or 'key', not both"):
        Deduplication.from_value({"id": "a", "key": "b"})
    with pytest.raises(ConfigurationError, match="must be a Deduplication or a dict"):
        Deduplication.from_value("a")  # type: ignore[arg-type]


def test_job_options_take_deduplication_and_store_it_compactly() -> None:
    opts = JobOptions(deduplication={"id": "a", "ttl": 500})
    assert opts.deduplication == opts.dedup == Deduplication(key="a", ttl=500)
    assert JobOptions().dedup is None
    assert JobOptions().to_json() == {}
    assert opts.to_json() == {"dedup": {"key": "a", "ttl": 500}}
    deb = JobOptions(delay=200, deduplication=Deduplication(key="b", debounce=True))
    assert deb.to_json() == {"dedup": {"key": "b", "debounce": True}}
    back = JobOptions.from_json(deb.to_json(), priority=None, delay=200)
    assert back.dedup == Deduplication(key="b", debounce=True)
    with pytest.raises(ConfigurationError, match="debounces, which needs a delay"):
        JobOptions(deduplication=Deduplication(key="b", debounce=True))


# --- the queue ---------------------------------------------------------------------------


@pytest.fixture
async def pooled_queues(redis_url: str, queue_name: str) -> AsyncIterator[list[Queue]]:
    """Four Queue objects on the test queue, each on its own client whose 16
    connections are shared by waiting for one (so 1,000 adds at once fit)."""
    clients = [
        Redis(connection_pool=BlockingConnectionPool.from_url(redis_url, max_connections=16))
        for _ in range(4)
    ]
    queues = [Queue(queue_name, connection=c) for c in clients]
    try:
        for q in queues:
            await q.open()
        yield queues
    finally:
        for q in queues:
            await q.close()
        for c in clients:
            await c.aclose()


async def test_thousand_concurrent_adds_make_one_job(
    pooled_queues: list[Queue], redis_client: Redis
) -> None:
    queues = pooled_queues
    opts = JobOptions(deduplication=Deduplication(key="report-7"))
    jobs = await asyncio.gather(*(queues[i % 4].add("build", {"n": i}, opts) for i in range(1000)))
    ids = {j.id for j in jobs}
    assert len(ids) == 1
    [job_id] = ids
    q = queues[0]
    counts = await q.get_job_counts()
    assert (counts.waiting, counts.delayed, counts.active) == (1, 0, 0)
    assert await q.get_job_ids("waiting") == [job_id]
    assert await q.get_deduplication_job_id("report-7") == job_id
    stored = await q.get_job(job_id)
    assert stored is not None
    # Every add returned the stored job, whose data is the winner's.
    assert all(j.data == stored.data for j in jobs)
    evs = await events(redis_client, q.keys)
    assert [e["e"] for e in evs].count("added") == 1
    absorbed = [e for e in evs if e["e"] == "deduplicated"]
    assert len(absorbed) == 999
    assert all(e["id"] == job_id and e["dk"] == "report-7" for e in absorbed)


async def test_key_is_released_on_completion(
    queue: Queue, start_worker: WorkerFactory, redis_client: Redis
) -> None:
    opts = JobOptions(deduplication=Deduplication(key="k"))
    gate = asyncio.Event()

    async def process(job: Job) -> int:
        await gate.wait()
        return int(job.data)

    first = await queue.add("j", 1, opts)
    await start_worker(process)
    await wait_event(redis_client, queue.keys, "active", first.id)
    # Active still holds the key.
    again = await queue.add("j", 2, opts)
    assert again.id == first.id
    assert again.data == 1
    gate.set()
    assert await first.wait_until_finished(10) == 1
    assert await queue.get_deduplication_job_id("k") is None
    assert await dd_keys(redis_client, queue.keys) == []
    second = await queue.add("j", 3, opts)
    assert second.id != first.id
    assert await second.wait_until_finished(10) == 3


async def test_key_is_released_on_final_failure_and_kept_while_retrying(
    queue: Queue, start_worker: WorkerFactory, redis_client: Redis
) -> None:
    opts = JobOptions(
        deduplication=Deduplication(key="flaky"), attempts=2, backoff=Backoff.fixed(60_000)
    )

    async def process(job: Job) -> None:
        raise RuntimeError("boom")

    job = await queue.add("f", None, opts)
    await start_worker(process)
    await wait_event(redis_client, queue.keys, "retried", job.id)
    # Between attempts (delayed for the backoff) the job is still pending.
    assert await queue.get_job_state(job.id) == "delayed"
    assert await queue.get_deduplication_job_id("flaky") == job.id
    assert (await queue.add("f", "other", opts)).id == job.id
    await queue.promote(job.id)
    with pytest.raises(JobFailedError, match="boom"):
        await job.wait_until_finished(10)
    assert await queue.get_deduplication_job_id("flaky") is None
    assert (await queue.add("f", None, opts)).id != job.id


async def test_ttl_holds_after_completion_until_it_runs_out(
    queue: Queue, start_worker: WorkerFactory, redis_client: Redis
) -> None:
    opts = JobOptions(deduplication=Deduplication(key="t", ttl=600))

    async def process(job: Job) -> str:
        return "done"

    first = await queue.add("j", None, opts)
    await start_worker(process)
    assert await first.wait_until_finished(10) == "done"
    added_at = (await first.refresh()).timestamp  # server ms of the first add
    # Finished but within the TTL: later adds get the completed job.
    again = await queue.add("j", None, opts)
    assert again.id == first.id
    assert await again.get_state() == "completed"
    assert await now_ms(redis_client) < added_at + 600, "too slow to check within the TTL"
    await wait_past(redis_client, added_at + 600)
    assert await queue.get_deduplication_job_id("t") is None
    second = await queue.add("j", None, opts)
    assert second.id != first.id
    assert await second.wait_until_finished(10) == "done"


async def test_debounce_keeps_the_last_data_and_runs_once_after_the_quiet_time(
    queue: Queue, start_worker: WorkerFactory, redis_client: Redis
) -> None:
    runs: list[tuple[str, Any]] = []

    async def process(job: Job) -> None:
        runs.append((job.name, job.data))

    await start_worker(process)
    opts = JobOptions(delay=200, deduplication=Deduplication(key="save", debounce=True))
    jobs = []
    for i in range(3):
        if i:
            await asyncio.sleep(0.05)  # the input: adds 50 ms apart
        jobs.append(await queue.add(f"save-{i}", {"rev": i}, opts))
    assert len({j.id for j in jobs}) == 1
    job = jobs[-1]
    assert (job.name, job.data) == ("save-2", {"rev": 2})
    await job.wait_until_finished(10)
    processed_on = (await job.refresh()).processed_on
    stream = cast(
        list[tuple[bytes, dict[bytes, bytes]]], await redis_client.xrange(queue.keys.events)
    )
    last_add = max(int(_s(sid).split("-", 1)[0]) for sid, f in stream if f[b"e"] == b"debounced")
    assert len(runs) == 1
    assert runs[0] == ("save-2", {"rev": 2})
    assert processed_on is not None
    # Due 200 ms after the last add (server clock), run promptly then.
    assert 200 <= processed_on - last_add < 280
    kinds = [e["e"] for e in await events(redis_client, queue.keys) if e.get("id") == job.id]
    assert kinds[:3] == ["delayed", "debounced", "debounced"]
    assert kinds.count("active") == 1


async def test_debounce_of_a_running_job_is_a_plain_duplicate(
    queue: Queue, start_worker: WorkerFactory, redis_client: Redis
) -> None:
    gate = asyncio.Event()
    seen: list[Any] = []

    async def process(job: Job) -> None:
        seen.append(job.data)
        await gate.wait()

    opts = JobOptions(delay=1, deduplication=Deduplication(key="d", debounce=True))
    first = await queue.add("j", "first", opts)
    await start_worker(process)
    await wait_event(redis_client, queue.keys, "active", first.id)
    again = await queue.add("j", "second", opts)
    assert (again.id, again.data) == (first.id, "first")
    evs = [e for e in await events(redis_client, queue.keys) if e["e"] == "deduplicated"]
    assert evs == [{"e": "deduplicated", "id": first.id, "name": "j", "dk": "d"}]
    gate.set()
    await first.wait_until_finished(10)
    assert seen == ["first"]


async def test_add_bulk_deduplicates_within_the_batch(queue: Queue, redis_client: Redis) -> None:
    a = JobOptions(deduplication=Deduplication(key="a"))
    held = await queue.add("old", "held", JobOptions(deduplication=Deduplication(key="held")))
    jobs = await queue.add_bulk(
        [
            BulkJob("one", 1, a),
            BulkJob("two", 2, a),
            BulkJob("plain", 3),
            BulkJob("three", 4, JobOptions(deduplication=Deduplication(key="held"))),
        ]
    )
    assert jobs[0].id == jobs[1].id
    assert (jobs[1].name, jobs[1].data) == ("one", 1)  # the stored job, not the absorbed add
    assert jobs[3].id == held.id
    assert (jobs[3].name, jobs[3].data) == ("old", "held")
    assert len({j.id for j in jobs}) == 3
    assert (await queue.get_job_counts()).waiting == 3
    assert await queue.get_deduplication_job_id("a") == jobs[0].id


async def test_remove_releases_the_key(queue: Queue, redis_client: Redis) -> None:
    opts = JobOptions(deduplication=Deduplication(key="r", ttl=60_000))
    job = await queue.add("j", None, opts)
    assert (await queue.add("j", None, opts)).id == job.id
    await queue.remove(job.id)
    assert await queue.get_deduplication_job_id("r") is None
    assert await dd_keys(redis_client, queue.keys) == []
    assert (await queue.add("j", None, opts)).id != job.id


async def test_remove_deduplication_key_by_hand(queue: Queue) -> None:
    opts = JobOptions(deduplication=Deduplication(key="h"))
    job = await queue.add("j", None, opts)
    assert await queue.remove_deduplication_key("h") is True
    assert await queue.remove_deduplication_key("h") is False
    assert await queue.get_deduplication_job_id("h") is None
    other = await queue.add("j", None, opts)
    assert other.id != job.id
    assert await queue.get_job_state(job.id) == "waiting"  # the job itself stays


async def test_obliterate_leaves_no_dedup_keys(
    queue: Queue, start_worker: WorkerFactory, redis_client: Redis
) -> None:
    # One pending, and one whose TTL outlives its job (removed on completion).
    await queue.add("p", None, JobOptions(delay=60_000, deduplication=Deduplication(key="pending")))
    gone = await queue.add(
        "g",
        None,
        JobOptions(
            deduplication=Deduplication(key="throttle", ttl=60_000), remove_on_complete=True
        ),
    )
    worker = await start_worker(lambda job: None)
    await gone.wait_until_finished(10)
    await worker.close()
    assert await queue.get_job(gone.id) is None
    assert await dd_keys(redis_client, queue.keys) == [
        queue.keys.dedup_index,
        queue.keys.dedup("pending"),
        queue.keys.dedup("throttle"),
    ]
    await queue.obliterate(force=True)
    assert await dd_keys(redis_client, queue.keys) == []


async def test_plain_adds_touch_no_dedup_state(queue: Queue, redis_client: Redis) -> None:
    job = await queue.add("plain", {"a": 1})
    jobs = await queue.add_bulk([("b1", 1), ("b2", 2)])
    for j in (job, *jobs):
        assert "dk" not in await hash_of(redis_client, queue.keys.job(j.id))
    assert await dd_keys(redis_client, queue.keys) == []


# --- the scripts, driven directly -----------------------------------------------------


async def test_add_script_writes_key_index_field_and_events(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    before = await now_ms(redis_client)
    out = await scripts.add(
        EVENTS,
        [spec("a1"), spec(), spec(), spec("a4"), spec()],
        [("plain", 0, False), None, ("ttl", 5000, False), ("plain", 0, False)],
    )
    after = await now_ms(redis_client)
    assert out == [("a1", True), ("1", True), ("2", True), ("a1", False), ("3", True)]
    # A deduplicated add without an id spends none.
    assert await scripts.add(EVENTS, [spec()], [("ttl", 5000, False)]) == [("2", False)]
    assert await get(redis_client, keys.id) == "3"
    assert await get(redis_client, keys.dedup("plain")) == "a1"
    assert await redis_client.pttl(keys.dedup("plain")) == -1
    assert await get(redis_client, keys.dedup("ttl")) == "2"
    assert 4000 < await redis_client.pttl(keys.dedup("ttl")) <= 5000
    idx = await index(redis_client, keys)
    assert idx["plain"] == float("inf")
    assert before + 5000 <= idx["ttl"] <= after + 5000
    assert (await hash_of(redis_client, keys.job("a1")))["dk"] == "plain"
    assert "dk" not in await hash_of(redis_client, keys.job("1"))
    assert await redis_client.exists(keys.job("a4")) == 0
    evs = await events(redis_client, keys)
    assert {"e": "deduplicated", "id": "a1", "name": "job", "dk": "plain"} in evs
    assert evs[-1] == {"e": "deduplicated", "id": "2", "name": "job", "dk": "ttl"}
    assert [e["e"] for e in evs].count("added") == 4
    assert await redis_client.llen(keys.wait) == 4


async def test_add_script_job_id_wins_over_dedup_and_stale_keys_are_ignored(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await scripts.add(EVENTS, [spec("x")], [("k", 0, False)])
    # An existing id returns that job even when the key is held by another.
    await scripts.add(EVENTS, [spec("y")])
    assert await scripts.add(EVENTS, [spec("y")], [("k", 0, False)]) == [("y", False)]
    # A key without a TTL whose job was deleted by hand holds nothing.
    await redis_client.delete(keys.job("x"))
    assert await scripts.add(EVENTS, [spec("z")], [("k", 0, False)]) == [("z", True)]
    assert await get(redis_client, keys.dedup("k")) == "z"
    # ...but a key with a TTL holds on its own (throttling), job or no job.
    await scripts.add(EVENTS, [spec("t1")], [("tk", 60_000, False)])
    await redis_client.delete(keys.job("t1"))
    assert await scripts.add(EVENTS, [spec("t2")], [("tk", 60_000, False)]) == [("t1", False)]


async def test_add_script_drops_expired_index_entries(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await scripts.add(EVENTS, [spec("s1")], [("short", 1, False)])
    t = (await index(redis_client, keys))["short"]
    await wait_past(redis_client, t)
    assert await redis_client.get(keys.dedup("short")) is None
    assert await scripts.add(EVENTS, [spec("s2")], [("short", 1, False)]) == [("s2", True)]
    await wait_past(redis_client, (await index(redis_client, keys))["short"])
    await scripts.add(EVENTS, [spec("o")], [("other", 0, False)])
    assert list(await index(redis_client, keys)) == ["other"]


async def test_add_script_debounces_a_delayed_job_that_never_started(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await scripts.add(EVENTS, [spec("d", delay=60_000)], [("deb", 0, True)])
    created = (await hash_of(redis_client, keys.job("d")))["t"]
    await redis_client.delete(keys.marker)
    before = await now_ms(redis_client)
    out = await scripts.add(EVENTS, [spec(name="new", data=b'"v2"', delay=500)], [("deb", 0, True)])
    after = await now_ms(redis_client)
    assert out == [("d", False)]
    due = await redis_client.zscore(keys.delayed, "d")
    assert due is not None
    assert before + 500 <= due <= after + 500
    h = await hash_of(redis_client, keys.job("d"))
    assert (h["n"], h["d"], h["dl"], h["t"]) == ("new", '"v2"', "500", created)
    evs = await events(redis_client, keys)
    assert evs[-1] == {"e": "debounced", "id": "d", "name": "new", "dk": "deb", "delay": "500"}
    # The moved due time may be earlier: idle workers are woken to learn it.
    assert await redis_client.zcard(keys.marker) == 1
    assert await redis_client.get(keys.id) is None  # no id spent


async def test_add_script_does_not_debounce_a_started_job(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await scripts.add(EVENTS, [spec("r", delay=1)], [("deb", 0, True)])
    await wait_past(redis_client, await redis_client.zscore(keys.delayed, "r") or 0)
    assert await claim_ids(scripts) == ["r"]
    # Failed once, waiting 60 s for its retry: delayed, but it has started.
    assert await finish(scripts, [FinishItem("r", "1", "r", b"x", delay=60_000)]) == [1]
    due = await redis_client.zscore(keys.delayed, "r")
    out = await scripts.add(EVENTS, [spec(data=b'"v2"', delay=5)], [("deb", 0, True)])
    assert out == [("r", False)]
    assert await redis_client.zscore(keys.delayed, "r") == due
    assert (await hash_of(redis_client, keys.job("r")))["d"] == '{"x":1}'
    assert (await events(redis_client, keys))[-1]["e"] == "deduplicated"
    # The retry still holds the key.
    assert await get(redis_client, keys.dedup("deb")) == "r"


async def test_finish_releases_on_complete_and_fail_not_on_retry_nor_with_ttl(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await scripts.add(
        EVENTS,
        [spec("c"), spec("f"), spec("r"), spec("t"), spec("z")],
        [("kc", 0, False), ("kf", 0, False), ("kr", 0, False), ("kt", 60_000, False), None],
    )
    assert sorted(await claim_ids(scripts, 5)) == ["c", "f", "r", "t", "z"]
    items = [
        FinishItem("c", "1", "c", b"1"),
        FinishItem("f", "1", "f", b"bad"),
        FinishItem("r", "1", "r", b"again", delay=60_000),
        FinishItem("t", "1", "c", b"1", keep_count=0),  # deleted at once; the TTL key stays
        FinishItem("z", "1", "c", b"1"),
    ]
    assert await finish(scripts, items) == [1] * 5
    assert await dd_keys(redis_client, keys) == sorted(
        [keys.dedup_index, keys.dedup("kr"), keys.dedup("kt")]
    )
    assert set(await index(redis_client, keys)) == {"kr", "kt"}
    assert await redis_client.exists(keys.job("t")) == 0


async def test_finish_leaves_a_key_that_points_to_another_job(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await scripts.add(EVENTS, [spec("old")], [("k", 0, False)])
    assert await claim_ids(scripts) == ["old"]
    await redis_client.set(keys.dedup("k"), "new")  # taken over (by hand, say)
    assert await finish(scripts, [FinishItem("old", "1", "c", b"1")]) == [1]
    assert await get(redis_client, keys.dedup("k")) == "new"


async def test_stalled_job_failed_for_good_releases_its_key(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await scripts.add(EVENTS, [spec("s")], [("ks", 0, False)])
    assert await claim_ids(scripts) == ["s"]
    assert await redis_client.zadd(keys.active, {"s": 1}, xx=True, ch=True) == 1
    reply = await scripts.claim(
        count=0,
        lease_ms=LEASE,
        max_stalled=0,
        limiter_max=0,
        limiter_ms=0,
        worker_id="w2",
        events_max_len=EVENTS,
    )
    assert reply.stalled_failed == ["s"]
    assert await redis_client.get(keys.dedup("ks")) is None
    assert await index(redis_client, keys) == {}


async def test_remove_drain_and_clean_release_keys_even_with_ttl(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await scripts.add(
        EVENTS,
        [spec("rm"), spec("w"), spec("d", delay=60_000), spec("cl")],
        [("krm", 60_000, False), ("kw", 0, False), ("kd", 60_000, False), ("kcl", 60_000, False)],
    )
    assert await scripts.remove("rm", events_max_len=EVENTS) == 1
    assert await redis_client.get(keys.dedup("krm")) is None
    assert await scripts.drain(False, 1, events_max_len=EVENTS) == 1  # the oldest waiting: w
    assert await redis_client.get(keys.dedup("kw")) is None
    assert await scripts.clean("waiting", 0, 10, events_max_len=EVENTS) == ["cl"]
    assert await redis_client.get(keys.dedup("kcl")) is None
    assert await scripts.drain(True, 10, events_max_len=EVENTS) == 1
    assert await dd_keys(redis_client, keys) == []


async def test_clean_completed_with_ttl_frees_the_key(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await scripts.add(EVENTS, [spec("c")], [("k", 60_000, False)])
    assert await claim_ids(scripts) == ["c"]
    assert await finish(scripts, [FinishItem("c", "1", "c", b"1")]) == [1]
    assert await get(redis_client, keys.dedup("k")) == "c"  # held for its TTL
    assert await scripts.clean("completed", 0, 10, events_max_len=EVENTS) == ["c"]
    assert await dd_keys(redis_client, keys) == []


async def test_obliterate_script_deletes_dedup_keys_in_batches(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await scripts.add(
        EVENTS,
        [spec(f"j{i}") for i in range(3)],
        [(f"k{i}", 60_000 if i else 0, False) for i in range(3)],
    )
    await redis_client.delete(keys.job("j1"), keys.job("j2"))
    await redis_client.lrem(keys.wait, 0, "j1")
    await redis_client.lrem(keys.wait, 0, "j2")  # orphaned TTL keys, as after removal
    # The one job, then keys while the batch has room; then the rest of the keys.
    assert await scripts.obliterate(False, 2) == 2
    assert await redis_client.zcard(keys.dedup_index) == 2
    assert await scripts.obliterate(False, 2) == 2
    assert await scripts.obliterate(False, 2) == 0
    assert await dd_keys(redis_client, keys) == []
