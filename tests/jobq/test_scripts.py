"""Each Lua script driven directly: KEYS/ARGV in, exact Redis state and return codes out.

The scripts run through :class:`jobq.scripts.QueueScripts` (and, where the loader
itself is under test, through raw ``EVAL``/``EVALSHA``); the state they leave is
read back with a raw client from the keys :class:`jobq.keys.QueueKeys` names.
Lease expiry is produced by moving a lease deadline into the past with
``ZADD XX``, or by a 1 ms lease and polling the server's ``TIME`` until it has
passed; nothing here sleeps for a fixed time.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Sequence
from typing import Any, cast

import pytest
import redis.exceptions
from redis.asyncio import Redis

from jobq._eventwire import expand
from jobq.job import join_data, stored_options
from jobq.keys import QueueKeys
from jobq.options import MAX_PRIORITY
from jobq.scripts import (
    SCRIPT_NAMES,
    ClaimReply,
    FinishItem,
    QueueScripts,
    _shared_but_id_and_data,
    script_source,
)
from tests.jobq.scriptcalls import job_hash

EVENTS = 1000
LEASE = 30_000
PRIO_SHIFT = 2**32
ORDER_MID = 2**31
RATE_LIMITED_FLAG = 1_000_000_000_000_000

JobSpec = tuple[str, str, bytes, bytes, str, int, bool]


# --- fixtures and helpers ------------------------------------------------------------


@pytest.fixture
def keys(queue_name: str) -> QueueKeys:
    return QueueKeys("jobq", queue_name)


@pytest.fixture
def scripts(redis_client: Redis, keys: QueueKeys) -> QueueScripts:
    return QueueScripts(redis_client, keys)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def spec(
    job_id: str = "",
    *,
    name: str = "job",
    data: bytes = b'{"x":1}',
    opts: bytes = b"",
    prio: int | None = None,
    delay: int = 0,
    lifo: bool = False,
) -> JobSpec:
    return (job_id, name, data, opts, "" if prio is None else str(prio), delay, lifo)


async def add1(scripts: QueueScripts, job_id: str = "", **kwargs: Any) -> str:
    [(new_id, created)] = await scripts.add(EVENTS, [spec(job_id, **kwargs)])
    assert created
    return new_id


async def claim(
    scripts: QueueScripts,
    count: int = 1,
    *,
    lease_ms: int = LEASE,
    max_stalled: int = 1,
    limiter_max: int = 0,
    limiter_ms: int = 0,
    worker_id: str = "w1",
) -> ClaimReply:
    return await scripts.claim(
        count=count,
        lease_ms=lease_ms,
        max_stalled=max_stalled,
        limiter_max=limiter_max,
        limiter_ms=limiter_ms,
        worker_id=worker_id,
        events_max_len=EVENTS,
    )


async def finish(
    scripts: QueueScripts,
    items: Sequence[FinishItem],
    *,
    claim_count: int = 0,
    limiter_max: int = 0,
    metrics_minutes: int = 60,
) -> tuple[list[int], ClaimReply | None]:
    return await scripts.finish(
        items,
        claim_count=claim_count,
        lease_ms=LEASE,
        max_stalled=1,
        limiter_max=limiter_max,
        limiter_ms=1000,
        worker_id="w1",
        events_max_len=EVENTS,
        metrics_minutes=metrics_minutes,
    )


async def claim_ids(scripts: QueueScripts, count: int = 1, **kwargs: Any) -> list[str]:
    return [j.id for j in (await claim(scripts, count, **kwargs)).jobs]


async def now_ms(r: Redis) -> int:
    sec, usec = await r.time()
    return int(sec) * 1000 + int(usec) // 1000


async def wait_past(r: Redis, ms: float) -> None:
    """Poll the server clock until it is later than ``ms``."""
    while await now_ms(r) <= ms:
        pass


async def hash_of(r: Redis, key: str) -> dict[str, str]:
    return {_s(k): _s(v) for k, v in (await r.hgetall(key)).items()}


async def lrange(r: Redis, key: str) -> list[str]:
    return [_s(x) for x in await r.lrange(key, 0, -1)]


async def zitems(r: Redis, key: str) -> list[tuple[str, int]]:
    raw = cast(list[tuple[bytes, float]], await r.zrange(key, 0, -1, withscores=True))
    return [(_s(m), int(s)) for m, s in raw]


async def zids(r: Redis, key: str) -> list[str]:
    return [m for m, _ in await zitems(r, key)]


async def zscore(r: Redis, key: str, member: str) -> int:
    score = await r.zscore(key, member)
    assert score is not None, f"{member} not in {key}"
    return int(score)


async def events(r: Redis, keys: QueueKeys) -> list[dict[str, str]]:
    raw = cast(list[tuple[bytes, dict[bytes, bytes]]], await r.xrange(keys.events))
    return [{_s(k): _s(v) for k, v in ev.items()} for _, fields in raw for ev in expand(fields)]


async def marker(r: Redis, keys: QueueKeys) -> list[tuple[str, int]]:
    return await zitems(r, keys.marker)


async def exists(r: Redis, *names: str) -> int:
    return int(await r.exists(*names))


async def expire_lease(r: Redis, keys: QueueKeys, job_id: str) -> None:
    """Move a running job's lease deadline into the past."""
    assert await r.zadd(keys.active, {job_id: 1}, xx=True, ch=True) == 1


async def queue_keys(r: Redis, keys: QueueKeys) -> list[str]:
    pattern = keys.base.replace("{", "\\{").replace("}", "\\}") + "*"
    return sorted([_s(k) async for k in r.scan_iter(match=pattern)])


async def raw(r: Redis, *args: Any) -> Any:
    """Send a command as is (EVAL, EVALSHA)."""
    return await r.execute_command(*args)  # type: ignore[no-untyped-call]


def minute_of(ms: int) -> int:
    return ms // 60_000


# --- loading ---------------------------------------------------------------------------


def test_script_source_expands_includes_and_hashes_the_result() -> None:
    for name in SCRIPT_NAMES:
        text, sha = script_source(name)
        assert "--@include" not in text, name
        assert sha == hashlib.sha1(text.encode()).hexdigest()
        # A script that names a queue key derives it from the queue's base (common.lua).
        if re.search(r"\bK_(?!BASE)[A-Z_]+\b", text):
            assert "local K_BASE = KEYS[1]\n" in text, name
    claim_text, _ = script_source("claim")
    assert "local function recover_expired(" in claim_text
    assert "local function claim(" in claim_text


def test_scripts_carry_only_the_definitions_they_reach() -> None:
    # add uses create_job, which uses enqueue_as, which uses enqueue_group...
    add_text, _ = script_source("add")
    needs = ("create_job", "enqueue_as", "enqueue_group", "push_waiting", "add_data_fields")
    for needed in needs:
        assert f"local function {needed}(" in add_text
    # ...and nothing of finishing, which every call would otherwise define anew, nor
    # enqueue (it reads what create_job already knows).
    absent = ("finish_into", "keep_trim", "count_minute", "place_group", "job_data", "enqueue")
    for name in absent:
        assert f"local function {name}(" not in add_text
    # A definition reached only through another one is kept (finish_into -> keep_trim).
    finish_text, _ = script_source("finish")
    assert "local function keep_trim(" in finish_text
    # Definitions keep their order: each may use the ones above it.
    assert add_text.index("local function enqueue_group(") < add_text.index(
        "local function enqueue_as("
    )


async def test_raw_eval_matches_the_typed_method(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await add1(scripts)
    await add1(scripts, prio=3)
    text, sha = script_source("counts")
    head = (len(keys.script_keys), *keys.script_keys)
    by_eval = await raw(redis_client, "EVAL", text, *head)
    by_sha = await raw(redis_client, "EVALSHA", sha, *head)
    assert [int(x) for x in by_eval] == [2, 0, 0, 0, 0, 0, 1, 0]
    assert [int(x) for x in by_sha] == [2, 0, 0, 0, 0, 0, 1, 0]
    assert await scripts.counts() == [2, 0, 0, 0, 0, 0, 1, 0]


async def test_scripts_reload_after_script_flush(
    redis_client: Redis, scripts: QueueScripts
) -> None:
    shas = [script_source(name)[1] for name in SCRIPT_NAMES]
    await scripts.load_all()
    assert await redis_client.script_exists(*shas) == [True] * len(shas)
    await redis_client.script_flush()
    assert await redis_client.script_exists(*shas) == [False] * len(shas)
    # EVALSHA answers NOSCRIPT; the method loads the script and calls it again.
    assert await scripts.counts() == [0] * 8
    assert await redis_client.script_exists(script_source("counts")[1]) == [True]


# --- add -------------------------------------------------------------------------------


async def test_add_generates_increasing_ids(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    before = await now_ms(redis_client)
    out = await scripts.add(EVENTS, [spec(name="a"), spec(name="b", data=b'{"n":2}')])
    after = await now_ms(redis_client)
    assert out == [("1", True), ("2", True)]
    assert await scripts.add(EVENTS, [spec()]) == [("3", True)]
    assert await redis_client.get(keys.id) == b"3"
    # LPUSH in, RPOP out: the oldest job sits at the right end.
    assert await lrange(redis_client, keys.wait) == ["3", "2", "1"]
    job = await hash_of(redis_client, keys.job("2"))
    assert set(job) == {"n", "d", "t"}
    assert job["n"] == "b"
    assert job["d"] == '{"n":2}'
    assert before <= int(job["t"]) <= after
    assert await marker(redis_client, keys) == [("0", 0)]
    evs = await events(redis_client, keys)
    assert evs == [
        {"e": "added", "id": "1", "name": "a"},
        {"e": "added", "id": "2", "name": "b"},
        {"e": "added", "id": "3", "name": "job"},
    ]


async def test_add_existing_custom_id_writes_nothing(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    assert await scripts.add(EVENTS, [spec("rep-1", data=b'{"v":1}')]) == [("rep-1", True)]
    job_before = await hash_of(redis_client, keys.job("rep-1"))
    events_before = await events(redis_client, keys)
    assert job_before["d"] == '{"v":1}'

    out = await scripts.add(
        EVENTS, [spec("rep-1", name="other", data=b'{"v":2}', prio=3, opts=b'{"attempts":3}')]
    )
    assert out == [("rep-1", False)]
    assert await hash_of(redis_client, keys.job("rep-1")) == job_before
    assert await lrange(redis_client, keys.wait) == ["rep-1"]
    assert await exists(redis_client, keys.prio, keys.id) == 0
    assert await events(redis_client, keys) == events_before

    # A duplicate inside one call: the first one wins.
    out = await scripts.add(EVENTS, [spec("rep-2", data=b"[1]"), spec("rep-2", data=b"[2]")])
    assert out == [("rep-2", True), ("rep-2", False)]
    assert (await hash_of(redis_client, keys.job("rep-2")))["d"] == "[1]"
    assert await lrange(redis_client, keys.wait) == ["rep-2", "rep-1"]


async def test_add_priority_score_and_fifo_within_a_priority(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    a = await add1(scripts, "a", prio=5)
    b = await add1(scripts, "b", prio=5)
    c = await add1(scripts, "c", prio=1)
    d = await add1(scripts, "d")
    assert await zitems(redis_client, keys.prio) == [
        (c, 1 * PRIO_SHIFT + ORDER_MID + 3),
        (a, 5 * PRIO_SHIFT + ORDER_MID + 1),
        (b, 5 * PRIO_SHIFT + ORDER_MID + 2),
    ]
    assert await redis_client.hget(keys.meta, "pc") == b"3"
    assert (await hash_of(redis_client, keys.job(a)))["p"] == "5"
    assert await lrange(redis_client, keys.wait) == [d]
    assert await claim_ids(scripts, 4) == [c, a, b, d]


async def test_add_priority_scores_stay_exact_at_max_priority(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    # MAX_PRIORITY * 2^32 is close to 2^53: the order part must not be rounded away.
    a = await add1(scripts, "a", prio=MAX_PRIORITY)
    b = await add1(scripts, "b", prio=MAX_PRIORITY)
    c = await add1(scripts, "c", prio=MAX_PRIORITY, lifo=True)
    assert await zitems(redis_client, keys.prio) == [
        (c, MAX_PRIORITY * PRIO_SHIFT + ORDER_MID - 3),
        (a, MAX_PRIORITY * PRIO_SHIFT + ORDER_MID + 1),
        (b, MAX_PRIORITY * PRIO_SHIFT + ORDER_MID + 2),
    ]
    reply = await claim(scripts, 3)
    assert [(j.id, j.priority) for j in reply.jobs] == [
        (c, MAX_PRIORITY),
        (a, MAX_PRIORITY),
        (b, MAX_PRIORITY),
    ]


async def test_add_lifo_serves_the_job_next(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    a = await add1(scripts, "a")
    b = await add1(scripts, "b")
    c = await add1(scripts, "c", lifo=True)
    assert await lrange(redis_client, keys.wait) == [b, a, c]
    x = await add1(scripts, "x", prio=2)
    y = await add1(scripts, "y", prio=2, lifo=True)
    assert await zitems(redis_client, keys.prio) == [
        (y, 2 * PRIO_SHIFT + ORDER_MID - 2),
        (x, 2 * PRIO_SHIFT + ORDER_MID + 1),
    ]
    assert await claim_ids(scripts, 5) == [y, x, c, a, b]


async def test_add_delayed_job_is_due_at_server_time_plus_delay(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    before = await now_ms(redis_client)
    job_id = await add1(scripts, "late", delay=5000)
    after = await now_ms(redis_client)
    due = await zscore(redis_client, keys.delayed, job_id)
    assert before + 5000 <= due <= after + 5000
    job = await hash_of(redis_client, keys.job(job_id))
    assert job["dl"] == "5000"
    assert before <= int(job["t"]) <= after
    assert await exists(redis_client, keys.wait, keys.prio) == 0
    assert await events(redis_client, keys) == [
        {"e": "delayed", "id": job_id, "name": "job", "delay": "5000"}
    ]
    # A delayed job wakes a worker too, so it learns the new earliest due time.
    assert await marker(redis_client, keys) == [("0", 0)]


async def test_add_to_paused_queue_sets_no_marker(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    assert await scripts.pause(True, events_max_len=EVENTS)
    plain = await add1(scripts)
    await add1(scripts, delay=1000)
    assert await exists(redis_client, keys.marker) == 0
    assert await lrange(redis_client, keys.wait) == [plain]
    assert await scripts.pause(False, events_max_len=EVENTS)
    assert await marker(redis_client, keys) == [("0", 0)]


async def test_add_stores_options_and_events_can_be_off(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    out = await scripts.add(0, [spec("o-1", opts=b'{"attempts":3}')])
    assert out == [("o-1", True)]
    assert (await hash_of(redis_client, keys.job("o-1")))["o"] == '{"attempts":3}'
    assert await exists(redis_client, keys.events) == 0


async def test_add_reads_each_jobs_own_options_within_one_call(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    # The options of one job are looked at once and reused for the next job
    # with the same ones: a change between neighbours must be seen.
    keep = b'{"keep_completed":[0,-1]}'
    grouped = b'{"group":"g1"}'
    opts = [keep, keep, grouped, b"", grouped, b'{"attempts":3}', keep]
    out = await scripts.add(EVENTS, [spec(f"m-{i}", opts=o) for i, o in enumerate(opts)])
    assert [created for _, created in out] == [True] * len(opts)
    stored = [await hash_of(redis_client, keys.job(f"m-{i}")) for i in range(len(opts))]
    assert [(h.get("kc"), h.get("o"), h.get("g")) for h in stored] == [
        ("0,-1", None, None),
        ("0,-1", None, None),
        (None, '{"group":"g1"}', "g1"),
        (None, None, None),
        (None, '{"group":"g1"}', "g1"),
        (None, '{"attempts":3}', None),
        ("0,-1", None, None),
    ]
    assert len({h["t"] for h in stored}) == 1  # one server time for the call


async def test_a_batch_sharing_all_but_id_and_data_is_stored_as_one_of_mixed_jobs(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    opts = b'{"keep_completed":[0,-1]}'
    same = [spec(f"s-{i}", name="n", data=b'{"i":%d}' % i, opts=opts, prio=2) for i in range(3)]
    mixed = [spec(f"m-{i}", name="n", data=b'{"i":%d}' % i, opts=opts, prio=2) for i in range(3)]
    mixed.append(spec("m-x", name="other"))  # one job apart: every job carries its own
    assert _shared_but_id_and_data(same)
    assert not _shared_but_id_and_data(mixed)
    # The shared form's deduplication specs still point at the right jobs.
    out = await scripts.add(EVENTS, [*same, same[1]], [None, ("k1", 0, False), None, None])
    assert out == [("s-0", True), ("s-1", True), ("s-2", True), ("s-1", False)]
    assert await redis_client.get(keys.dedup_prefix + "k1") == b"s-1"
    assert [c for _, c in await scripts.add(EVENTS, mixed)] == [True] * 4

    def without_time(h: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in h.items() if k not in ("t", "dk")}

    for i in range(3):
        s_hash = await hash_of(redis_client, keys.job(f"s-{i}"))
        m_hash = await hash_of(redis_client, keys.job(f"m-{i}"))
        assert without_time(s_hash) == without_time(m_hash)
    assert (await hash_of(redis_client, keys.job("s-1")))["dk"] == "k1"
    assert sorted(await zids(redis_client, keys.prio)) == sorted(
        ["s-0", "s-1", "s-2", "m-0", "m-1", "m-2"]
    )


# --- claim -----------------------------------------------------------------------------


async def test_claim_prioritised_before_plain_and_count_respected(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    p1 = await add1(scripts, "p1")
    p2 = await add1(scripts, "p2")
    q = await add1(scripts, "q", prio=3)
    reply = await claim(scripts, 2)
    assert [(j.id, j.priority) for j in reply.jobs] == [(q, 3), (p1, None)]
    assert await lrange(redis_client, keys.wait) == [p2]
    assert await exists(redis_client, keys.prio) == 0
    assert sorted(await zids(redis_client, keys.active)) == sorted([q, p1])
    assert await claim_ids(scripts, 5) == [p2]
    assert await claim_ids(scripts, 5) == []


async def test_claim_hands_out_token_lease_and_attempt(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    job_id = await add1(scripts, "j", name="report", data=b'{"r":1}', opts=b'{"attempts":2}')
    created = int((await hash_of(redis_client, keys.job(job_id)))["t"])
    before = await now_ms(redis_client)
    reply = await claim(scripts, lease_ms=LEASE, worker_id="worker-7")
    after = await now_ms(redis_client)
    [job] = reply.jobs
    assert (job.id, job.token, job.name, job.data, job.opts) == (
        job_id,
        "1",
        "report",
        b'{"r":1}',
        b'{"attempts":2}',
    )
    assert (job.priority, job.attempts_made, job.attempts_started) == (None, 0, 1)
    assert (job.created, job.delay, job.progress, job.errors, job.stalls) == (
        created,
        0,
        None,
        None,
        0,
    )
    assert reply.stalled_failed == []
    assert reply.limited_ms == 0
    deadline = await zscore(redis_client, keys.active, job_id)
    assert before + LEASE <= deadline <= after + LEASE
    h = await hash_of(redis_client, keys.job(job_id))
    assert (h["tk"], h["as"]) == ("1", "1")
    assert before <= int(h["pt"]) <= after
    assert {"e": "active", "id": job_id, "w": "worker-7"} in await events(redis_client, keys)

    # Retried, then claimed again: a new token, one more attempt started.
    codes, _ = await finish(scripts, [FinishItem(job_id, "1", "r", b"oops")])
    assert codes == [1]
    [again] = (await claim(scripts)).jobs
    assert (again.token, again.attempts_started, again.attempts_made) == ("2", 2, 1)
    assert (await hash_of(redis_client, keys.job(job_id)))["tk"] == "2"


async def test_claim_promotes_due_delayed_jobs(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    due = await add1(scripts, "due", delay=60_000)
    later = await add1(scripts, "later", delay=60_000)
    assert await redis_client.zadd(keys.delayed, {due: 1}, xx=True, ch=True) == 1
    [job] = (await claim(scripts, 5)).jobs
    assert (job.id, job.delay) == (due, 60_000)
    assert await zids(redis_client, keys.delayed) == [later]
    assert {"e": "waiting", "id": due} in await events(redis_client, keys)

    # A 1 ms delay, with the server clock polled until it has passed.
    soon = await add1(scripts, "soon", delay=1)
    await wait_past(redis_client, await zscore(redis_client, keys.delayed, soon))
    assert await claim_ids(scripts, 5) == [soon]


async def test_claim_next_wake_ms(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    assert (await claim(scripts)).next_wake_ms == -1
    await add1(scripts, "d", delay=10_000)
    due = await zscore(redis_client, keys.delayed, "d")
    before = await now_ms(redis_client)
    reply = await claim(scripts)
    after = await now_ms(redis_client)
    assert reply.jobs == []
    assert due - after <= reply.next_wake_ms <= due - before
    assert 0 < reply.next_wake_ms <= 10_000

    # A running lease that runs out before the delayed job is due wakes sooner.
    await add1(scripts, "run")
    before = await now_ms(redis_client)
    reply = await claim(scripts, lease_ms=2000)
    after = await now_ms(redis_client)
    deadline = await zscore(redis_client, keys.active, "run")
    assert before + 2000 <= deadline <= after + 2000
    assert deadline - after + 1 <= reply.next_wake_ms <= deadline - before + 1


async def test_claim_recovers_an_expired_lease(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    job_id = await add1(scripts, "s")
    other = await add1(scripts, "o")
    [first] = (await claim(scripts, lease_ms=1)).jobs
    assert (first.id, first.token) == (job_id, "1")
    await wait_past(redis_client, await zscore(redis_client, keys.active, job_id))
    await redis_client.delete(keys.marker)

    reply = await claim(scripts, 0, max_stalled=1)
    assert reply.jobs == []
    assert reply.stalled_failed == []
    h = await hash_of(redis_client, keys.job(job_id))
    assert (h["tk"], h["s"]) == ("2", "1")
    assert await exists(redis_client, keys.active) == 0
    # Back at the front of the queue (served before the job that waited).
    assert await lrange(redis_client, keys.wait) == [other, job_id]
    assert await marker(redis_client, keys) == [("0", 0)]
    assert {"e": "stalled", "id": job_id} in await events(redis_client, keys)

    [again] = (await claim(scripts)).jobs
    assert (again.id, again.token, again.stalls, again.attempts_started) == (job_id, "3", 1, 2)
    # The worker that lost the lease is fenced off.
    codes, _ = await finish(scripts, [FinishItem(job_id, "1", "c", b"1")])
    assert codes == [-2]


async def test_claim_fails_a_job_that_stalled_too_often(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    job_id = await add1(scripts, "s")
    await claim(scripts)
    await expire_lease(redis_client, keys, job_id)
    before = await now_ms(redis_client)
    reply = await claim(scripts, 1, max_stalled=0)
    after = await now_ms(redis_client)
    assert reply.jobs == []
    assert reply.stalled_failed == [job_id]
    h = await hash_of(redis_client, keys.job(job_id))
    assert h["fr"].startswith("job stalled more than the allowed 0 time(s)")
    assert (h["a"], h["s"], h["tk"]) == ("1", "1", "2")
    failed_at = await zscore(redis_client, keys.failed, job_id)
    assert before <= failed_at <= after
    assert int(h["ft"]) == failed_at
    assert {"e": "failed", "id": job_id, "reason": h["fr"]} in await events(redis_client, keys)
    assert await exists(redis_client, keys.active, keys.wait) == 0

    # keep_failed from the job's options applies: count 0 deletes the job.
    gone = await add1(scripts, "gone", opts=json.dumps({"keep_failed": [0, -1]}).encode())
    await claim(scripts)
    await expire_lease(redis_client, keys, gone)
    assert (await claim(scripts, 1, max_stalled=0)).stalled_failed == [gone]
    assert await exists(redis_client, keys.job(gone)) == 0
    assert await zids(redis_client, keys.failed) == [job_id]


async def test_claim_rate_limiter(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    for _ in range(5):
        await add1(scripts)
    first = await claim(scripts, 5, limiter_max=2, limiter_ms=60_000)
    assert [j.id for j in first.jobs] == ["1", "2"]
    assert first.limited_ms == 0
    assert await redis_client.get(keys.limiter) == b"2"
    assert 0 < await redis_client.pttl(keys.limiter) <= 60_000

    second = await claim(scripts, 5, limiter_max=2, limiter_ms=60_000)
    assert second.jobs == []
    assert 0 < second.limited_ms <= 60_000
    assert await lrange(redis_client, keys.wait) == ["5", "4", "3"]

    # One slot left in the window: only one job.
    await redis_client.set(keys.limiter, 1, px=60_000)
    assert await claim_ids(scripts, 5, limiter_max=2, limiter_ms=60_000) == ["3"]
    # A limiter counter without a TTL gets one instead of blocking for ever.
    await redis_client.set(keys.limiter, 2)
    third = await claim(scripts, 5, limiter_max=2, limiter_ms=5000)
    assert third.jobs == []
    assert 0 < third.limited_ms <= 5000
    assert 0 < await redis_client.pttl(keys.limiter) <= 5000


async def test_claim_on_paused_queue_returns_no_jobs(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await add1(scripts, "a")
    await add1(scripts, "b", prio=1)
    assert await scripts.pause(True, events_max_len=EVENTS)
    reply = await claim(scripts, 5)
    assert reply.jobs == []
    assert reply.next_wake_ms == -1
    assert await lrange(redis_client, keys.wait) == ["a"]
    assert await zids(redis_client, keys.prio) == ["b"]
    assert await exists(redis_client, keys.active) == 0
    assert await scripts.pause(False, events_max_len=EVENTS)
    assert await claim_ids(scripts, 5) == ["b", "a"]


async def test_claim_passes_the_marker_on_and_reports_drained(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    for _ in range(3):
        await add1(scripts)
    await redis_client.delete(keys.marker)
    assert await claim_ids(scripts, 1) == ["1"]
    assert await marker(redis_client, keys) == [("0", 0)]
    assert (await events(redis_client, keys))[-1]["e"] == "active"

    await redis_client.delete(keys.marker)
    assert await claim_ids(scripts, 5) == ["2", "3"]
    assert await exists(redis_client, keys.marker) == 0
    assert (await events(redis_client, keys))[-1] == {"e": "drained"}


async def test_claim_drops_an_id_without_a_job_hash(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    real = await add1(scripts, "real")
    await redis_client.rpush(keys.wait, "ghost")  # served first
    reply = await claim(scripts, 5)
    assert [j.id for j in reply.jobs] == [real]
    assert await zids(redis_client, keys.active) == [real]
    assert await exists(redis_client, keys.wait, keys.job("ghost")) == 0
    assert {
        "e": "error",
        "id": "ghost",
        "reason": "job id in queue without a job record",
    } in await events(redis_client, keys)


# --- finish ----------------------------------------------------------------------------


async def _running(scripts: QueueScripts, *ids: str) -> None:
    """Add jobs with these ids and claim them all (each gets token '1')."""
    for job_id in ids:
        await add1(scripts, job_id)
    reply = await claim(scripts, len(ids))
    assert sorted(j.id for j in reply.jobs) == sorted(ids)


async def test_finish_completed(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await _running(scripts, "c1", "big")
    before = await now_ms(redis_client)
    codes, reply = await finish(scripts, [FinishItem("c1", "1", "c", b'{"ok":true}')])
    after = await now_ms(redis_client)
    assert (codes, reply) == ([1], None)
    assert await zids(redis_client, keys.active) == ["big"]
    finished = await zscore(redis_client, keys.completed, "c1")
    assert before <= finished <= after
    h = await hash_of(redis_client, keys.job("c1"))
    assert (h["rv"], h["a"], int(h["ft"])) == ('{"ok":true}', "1", finished)
    assert "fr" not in h
    assert {"e": "completed", "id": "c1", "rv": '{"ok":true}'} in await events(redis_client, keys)
    mc = await hash_of(redis_client, keys.metrics_completed)
    assert list(mc.values()) == ["1"]
    assert int(next(iter(mc))) in {minute_of(before), minute_of(after)}
    assert await exists(redis_client, keys.metrics_failed) == 0

    # A large return value is stored but left out of the event.
    big = b'"' + b"x" * 20_000 + b'"'
    assert (await finish(scripts, [FinishItem("big", "1", "c", big)]))[0] == [1]
    assert (await hash_of(redis_client, keys.job("big")))["rv"] == big.decode()
    assert (await events(redis_client, keys))[-1] == {"e": "completed", "id": "big"}


async def test_finish_failed_for_good(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await _running(scripts, "f1")
    before = await now_ms(redis_client)
    item = FinishItem("f1", "1", "f", "boom", errors=b'[{"m":"boom"}]')
    assert (await finish(scripts, [item]))[0] == [1]
    after = await now_ms(redis_client)
    finished = await zscore(redis_client, keys.failed, "f1")
    assert before <= finished <= after
    h = await hash_of(redis_client, keys.job("f1"))
    assert (h["fr"], h["er"], h["a"], int(h["ft"])) == ("boom", '[{"m":"boom"}]', "1", finished)
    assert await exists(redis_client, keys.active, keys.completed, keys.wait) == 0
    assert (await events(redis_client, keys))[-1] == {"e": "failed", "id": "f1", "reason": "boom"}
    assert list((await hash_of(redis_client, keys.metrics_failed)).values()) == ["1"]
    assert await exists(redis_client, keys.metrics_completed) == 0


async def test_finish_retry_with_delay_goes_to_delayed(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await _running(scripts, "r1")
    before = await now_ms(redis_client)
    item = FinishItem("r1", "1", "r", "flaky", errors=b'["flaky"]', delay=5000)
    assert (await finish(scripts, [item]))[0] == [1]
    after = await now_ms(redis_client)
    due = await zscore(redis_client, keys.delayed, "r1")
    assert before + 5000 <= due <= after + 5000
    h = await hash_of(redis_client, keys.job("r1"))
    assert (h["fr"], h["er"], h["a"]) == ("flaky", '["flaky"]', "1")
    assert "ft" not in h
    assert await exists(redis_client, keys.active, keys.wait, keys.failed) == 0
    assert (await events(redis_client, keys))[-1] == {
        "e": "retried",
        "id": "r1",
        "reason": "flaky",
        "delay": "5000",
    }
    assert await exists(redis_client, keys.metrics_failed) == 0


async def test_finish_retry_without_delay_goes_to_the_back_of_the_wait_list(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await _running(scripts, "r1")
    waiting = await add1(scripts, "w")
    await redis_client.delete(keys.marker)
    assert (await finish(scripts, [FinishItem("r1", "1", "r", "again")]))[0] == [1]
    assert await lrange(redis_client, keys.wait) == ["r1", waiting]
    assert await exists(redis_client, keys.delayed, keys.active) == 0
    assert await marker(redis_client, keys) == [("0", 0)]
    assert (await hash_of(redis_client, keys.job("r1")))["a"] == "1"


async def test_finish_rate_limited_holds_the_queue(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await _running(scripts, "l1")
    other = await add1(scripts, "o")
    assert (await finish(scripts, [FinishItem("l1", "1", "l", delay=5000)]))[0] == [1]
    assert await redis_client.get(keys.limiter) == str(RATE_LIMITED_FLAG).encode()
    assert 0 < await redis_client.pttl(keys.limiter) <= 5000
    # At the front: served before the job that was already waiting.
    assert await lrange(redis_client, keys.wait) == [other, "l1"]
    h = await hash_of(redis_client, keys.job("l1"))
    assert (h["as"], h["tk"]) == ("0", "2")
    assert "a" not in h
    assert (await events(redis_client, keys))[-1] == {
        "e": "rate-limited",
        "id": "l1",
        "delay": "5000",
    }
    reply = await claim(scripts, 5)
    assert reply.jobs == []
    assert 0 < reply.limited_ms <= 5000


async def test_finish_handed_back_costs_no_attempt(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await _running(scripts, "h1")
    other = await add1(scripts, "o")
    assert (await finish(scripts, [FinishItem("h1", "1", "h")]))[0] == [1]
    h = await hash_of(redis_client, keys.job("h1"))
    assert (h["as"], h["tk"]) == ("0", "2")
    assert "a" not in h
    assert await lrange(redis_client, keys.wait) == [other, "h1"]
    assert await exists(redis_client, keys.active, keys.limiter) == 0
    assert (await events(redis_client, keys))[-1] == {
        "e": "waiting",
        "id": "h1",
        "reason": "handed back by a stopping worker",
    }
    [again] = (await claim(scripts)).jobs
    assert (again.id, again.token, again.attempts_started, again.attempts_made) == ("h1", "3", 1, 0)


async def test_finish_with_stale_token_writes_nothing(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await _running(scripts, "s1")
    job_before = await hash_of(redis_client, keys.job("s1"))
    active_before = await zitems(redis_client, keys.active)
    events_before = await events(redis_client, keys)
    for kind in ("c", "f", "r", "l", "h"):
        codes, _ = await finish(scripts, [FinishItem("s1", "2", kind, b"x", delay=100)])
        assert codes == [-2], kind
    assert await hash_of(redis_client, keys.job("s1")) == job_before
    assert await zitems(redis_client, keys.active) == active_before
    assert await events(redis_client, keys) == events_before
    assert (
        await exists(
            redis_client,
            keys.completed,
            keys.failed,
            keys.delayed,
            keys.wait,
            keys.limiter,
            keys.metrics_completed,
            keys.metrics_failed,
        )
        == 0
    )
    # A job that is not running any more: the right token is stale too.
    assert (await finish(scripts, [FinishItem("s1", "1", "c", b"1")]))[0] == [1]
    done = await zitems(redis_client, keys.completed)
    job_done = await hash_of(redis_client, keys.job("s1"))
    assert (await finish(scripts, [FinishItem("s1", "1", "f", b"late")]))[0] == [-2]
    assert await zitems(redis_client, keys.completed) == done
    assert await hash_of(redis_client, keys.job("s1")) == job_done
    assert await exists(redis_client, keys.failed) == 0


async def test_finish_keep_count_zero_deletes_the_job_and_its_logs(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await _running(scripts, "k1", "k2")
    assert await scripts.log("k1", "line", 0) == 1
    assert await scripts.log("k2", "line", 0) == 1
    items = [
        FinishItem("k1", "1", "c", b"1", keep_count=0),
        FinishItem("k2", "1", "f", b"no", keep_count=0),
    ]
    assert (await finish(scripts, items))[0] == [1, 1]
    assert (
        await exists(
            redis_client,
            keys.job("k1"),
            keys.logs("k1"),
            keys.job("k2"),
            keys.logs("k2"),
            keys.completed,
            keys.failed,
            keys.active,
        )
        == 0
    )
    # Still counted in the metrics.
    assert list((await hash_of(redis_client, keys.metrics_completed)).values()) == ["1"]
    assert list((await hash_of(redis_client, keys.metrics_failed)).values()) == ["1"]


async def test_finish_keep_count_trims_the_oldest(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    ids = ["a", "b", "c", "d", "e"]
    await _running(scripts, *ids)
    assert (await finish(scripts, [FinishItem(i, "1", "c", b"1") for i in ids[:4]]))[0] == [1] * 4
    # Distinct finish times, oldest first.
    await redis_client.zadd(keys.completed, {"a": 1000, "b": 2000, "c": 3000, "d": 4000}, xx=True)
    assert await scripts.log("a", "line", 0) == 1
    assert (await finish(scripts, [FinishItem("e", "1", "c", b"1", keep_count=2)]))[0] == [1]
    assert await zids(redis_client, keys.completed) == ["d", "e"]
    assert await exists(redis_client, keys.job("a"), keys.job("b"), keys.job("c")) == 0
    assert await exists(redis_client, keys.logs("a")) == 0
    assert await exists(redis_client, keys.job("d"), keys.job("e")) == 2


async def test_finish_keep_age_deletes_older_jobs(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await _running(scripts, "old", "young", "new")
    items = [FinishItem("old", "1", "f", b"x"), FinishItem("young", "1", "f", b"x")]
    assert (await finish(scripts, items))[0] == [1, 1]
    now = await now_ms(redis_client)
    await redis_client.zadd(keys.failed, {"old": now - 60_000, "young": now - 100}, xx=True)
    item = FinishItem("new", "1", "f", b"x", keep_age=30_000)
    assert (await finish(scripts, [item]))[0] == [1]
    assert await zids(redis_client, keys.failed) == ["young", "new"]
    assert await exists(redis_client, keys.job("old")) == 0
    assert await exists(redis_client, keys.job("young"), keys.job("new")) == 2


async def test_finish_counts_finished_jobs_per_minute(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await _running(scripts, "a", "b", "c", "d", "e")
    before = await now_ms(redis_client)
    # Old minutes beyond the window (2 minutes) are dropped once the hash grows.
    for i in range(8):
        await redis_client.hset(keys.metrics_completed, str(minute_of(before) - 100 - i), 9)
    items = [
        FinishItem("a", "1", "c", b"1"),
        FinishItem("b", "1", "c", b"1"),
        FinishItem("c", "1", "f", b"x"),
    ]
    assert (await finish(scripts, items, metrics_minutes=2))[0] == [1, 1, 1]
    after = await now_ms(redis_client)
    minutes = {str(minute_of(before)), str(minute_of(after))}
    mc = await hash_of(redis_client, keys.metrics_completed)
    mf = await hash_of(redis_client, keys.metrics_failed)
    assert len(mc) == 1
    assert next(iter(mc)) in minutes
    assert list(mc.values()) == ["2"]
    assert len(mf) == 1
    assert next(iter(mf)) in minutes
    assert list(mf.values()) == ["1"]
    # A window of 0 turns the metrics off.
    assert (await finish(scripts, [FinishItem("d", "1", "c", b"1")], metrics_minutes=0))[0] == [1]
    assert await hash_of(redis_client, keys.metrics_completed) == mc


async def test_finish_then_claim_in_the_same_call(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await _running(scripts, "a")
    await add1(scripts, "b")
    await add1(scripts, "c")
    codes, reply = await finish(scripts, [FinishItem("a", "1", "c", b"1")], claim_count=1)
    assert codes == [1]
    assert reply is not None
    assert [(j.id, j.token) for j in reply.jobs] == [("b", "1")]
    assert await zids(redis_client, keys.active) == ["b"]
    assert await zids(redis_client, keys.completed) == ["a"]
    assert await lrange(redis_client, keys.wait) == ["c"]
    # The claim honours the limiter like a plain claim.
    await redis_client.set(keys.limiter, 5, px=60_000)
    codes, reply = await finish(
        scripts, [FinishItem("b", "1", "c", b"1")], claim_count=1, limiter_max=5
    )
    assert codes == [1]
    assert reply is not None
    assert reply.jobs == []
    assert reply.limited_ms > 0


# --- extend ----------------------------------------------------------------------------


async def test_finish_checks_each_token_of_a_batch(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await _running(scripts, "a", "b", "c")
    items = [
        FinishItem("a", "1", "c", b"1", keep_count=0),
        FinishItem("b", "2", "c", b"1"),  # stale token
        FinishItem("a", "1", "c", b"1"),  # the same attempt twice in one call
        FinishItem("gone", "1", "c", b"1"),  # never claimed
        FinishItem("c", "1", "c", b"1"),
    ]
    codes, _ = await finish(scripts, items)
    assert codes == [1, -2, -2, -2, 1]
    assert await zids(redis_client, keys.active) == ["b"]
    assert await zids(redis_client, keys.completed) == ["c"]
    assert await exists(redis_client, keys.job("a")) == 0
    h = await hash_of(redis_client, keys.job("c"))
    assert (h["a"], h["rv"], h["tk"]) == ("1", "1", "1")
    assert [e["id"] for e in await events(redis_client, keys) if e["e"] == "completed"] == [
        "a",
        "c",
    ]
    assert list((await hash_of(redis_client, keys.metrics_completed)).values()) == ["2"]


async def test_finish_keep_count_trims_once_per_batch(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    ids = ["a", "b", "c", "d"]
    await _running(scripts, *ids)
    items = [FinishItem(i, "1", "c", b"1", keep_count=2) for i in ids]
    assert (await finish(scripts, items))[0] == [1] * 4
    # Finished in the same millisecond: the set keeps the last two by (time, id).
    assert await zids(redis_client, keys.completed) == ["c", "d"]
    assert await exists(redis_client, *(keys.job(i) for i in ids)) == 2


async def test_small_job_data_is_kept_in_listpack_sized_pieces(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    data = b'{"pad":"' + bytes(range(97, 123)) * 7 + b'"}'  # 192 bytes
    job_id = await add1(scripts, "p", data=data, opts=b'{"keep_completed":[0,-1]}')
    h = await job_hash(redis_client, keys.job(job_id))
    assert [k for k in h if k.startswith(b"d")] == [b"d", b"d1", b"d2"]
    assert all(len(h[k]) <= 64 for k in h)
    assert join_data(h) == data
    assert await redis_client.object("encoding", keys.job(job_id)) == b"listpack"
    [job] = (await claim(scripts)).jobs
    assert job.data == data
    # A piece of exactly 64 bytes then one more: the claim reads the rest too.
    long = b"[" + b"1," * 100 + b"1]"
    await add1(scripts, "q", data=long)
    assert (await claim(scripts)).jobs[0].data == long


async def test_remove_on_complete_alone_is_kept_in_a_short_field(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    keep = b'{"keep_completed":[0,-1]}'
    other = b'{"keep_completed":[5,-1],"keep_failed":[0,-1]}'
    await add1(scripts, "k", opts=keep)
    await add1(scripts, "o", opts=other)
    hk = await job_hash(redis_client, keys.job("k"))
    assert (hk.get(b"o"), hk[b"kc"]) == (None, b"0,-1")
    assert stored_options(hk) == keep
    ho = await job_hash(redis_client, keys.job("o"))
    assert (ho[b"o"], ho.get(b"kc")) == (other, None)
    assert stored_options(ho) == other
    # The worker gets the options byte for byte as they were added.
    assert {j.id: j.opts for j in (await claim(scripts, 2)).jobs} == {"k": keep, "o": other}


async def test_long_data_or_a_long_field_keeps_the_data_whole(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    big = b'"' + b"x" * 1100 + b'"'
    await add1(scripts, "big", data=big)
    await add1(scripts, "named", name="n" * 65, data=b'"' + b"y" * 100 + b'"')
    for job_id in ("big", "named"):
        h = await job_hash(redis_client, keys.job(job_id))
        assert [k for k in h if k.startswith(b"d")] == [b"d"]
    assert {j.id: j.data for j in (await claim(scripts, 2)).jobs}["big"] == big


async def test_debounce_replaces_every_piece_of_the_data(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    first = b'"' + b"a" * 200 + b'"'
    second = b'"' + b"b" * 70 + b'"'
    dd = [("k", 0, True)]
    [(job_id, created)] = await scripts.add(EVENTS, [spec(data=first, delay=60_000)], dd)
    assert created
    [(holder, created)] = await scripts.add(EVENTS, [spec(data=second, delay=60_000)], dd)
    assert (holder, created) == (job_id, False)
    h = await job_hash(redis_client, keys.job(job_id))
    assert [k for k in h if k.startswith(b"d") and k != b"dk" and k != b"dl"] == [b"d", b"d1"]
    assert join_data(h) == second


async def test_extend_renews_only_matching_tokens(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await _running(scripts, "a", "b")
    b_deadline = await zscore(redis_client, keys.active, "b")
    await redis_client.zadd(keys.workers, {"ancient": 1})
    before = await now_ms(redis_client)
    renewed, failed = await scripts.extend(
        [("a", "1"), ("b", "7"), ("nojob", "1")],
        lease_ms=90_000,
        max_stalled=1,
        worker_id="w9",
        events_max_len=EVENTS,
    )
    after = await now_ms(redis_client)
    assert (renewed, failed) == ([True, False, False], [])
    a_deadline = await zscore(redis_client, keys.active, "a")
    assert before + 90_000 <= a_deadline <= after + 90_000
    assert await zscore(redis_client, keys.active, "b") == b_deadline
    assert await exists(redis_client, keys.job("nojob")) == 0
    # The worker is registered for one lease; entries older than a day go.
    [(worker, alive_until)] = await zitems(redis_client, keys.workers)
    assert worker == "w9"
    assert before + 90_000 <= alive_until <= after + 90_000


async def test_extend_recovers_other_workers_expired_leases(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await _running(scripts, "mine", "theirs", "doomed")
    await expire_lease(redis_client, keys, "theirs")
    renewed, failed = await scripts.extend(
        [("mine", "1")], lease_ms=LEASE, max_stalled=1, worker_id="w1", events_max_len=EVENTS
    )
    assert (renewed, failed) == ([True], [])
    assert await lrange(redis_client, keys.wait) == ["theirs"]
    h = await hash_of(redis_client, keys.job("theirs"))
    assert (h["tk"], h["s"]) == ("2", "1")
    assert {"e": "stalled", "id": "theirs"} in await events(redis_client, keys)
    # The worker that lost "theirs" cannot renew it any more.
    renewed, _ = await scripts.extend(
        [("theirs", "1")], lease_ms=LEASE, max_stalled=1, worker_id="w2", events_max_len=EVENTS
    )
    assert renewed == [False]

    await expire_lease(redis_client, keys, "doomed")
    renewed, failed = await scripts.extend(
        [], lease_ms=LEASE, max_stalled=0, worker_id="w1", events_max_len=EVENTS
    )
    assert (renewed, failed) == ([], ["doomed"])
    assert await zids(redis_client, keys.failed) == ["doomed"]
    assert sorted(await zids(redis_client, keys.active)) == ["mine"]


async def test_extend_keeps_a_lease_that_just_ran_out_when_renewed(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await _running(scripts, "late")
    await expire_lease(redis_client, keys, "late")
    renewed, failed = await scripts.extend(
        [("late", "1")], lease_ms=LEASE, max_stalled=0, worker_id="w1", events_max_len=EVENTS
    )
    assert (renewed, failed) == ([True], [])
    assert await zids(redis_client, keys.active) == ["late"]
    assert (await hash_of(redis_client, keys.job("late")))["tk"] == "1"


# --- progress and log ------------------------------------------------------------------


async def test_progress_checks_token_and_job(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await _running(scripts, "p")
    assert await scripts.progress("p", "1", b"50", events_max_len=EVENTS) == 1
    assert (await hash_of(redis_client, keys.job("p")))["pg"] == "50"
    assert (await events(redis_client, keys))[-1] == {"e": "progress", "id": "p", "pg": "50"}
    assert await scripts.progress("p", "2", b"60", events_max_len=EVENTS) == -2
    assert (await hash_of(redis_client, keys.job("p")))["pg"] == "50"
    assert await scripts.progress("p", "", b'{"step":3}', events_max_len=EVENTS) == 1
    assert (await hash_of(redis_client, keys.job("p")))["pg"] == '{"step":3}'
    assert await scripts.progress("missing", "", b"1", events_max_len=EVENTS) == -1
    assert await exists(redis_client, keys.job("missing")) == 0


async def test_log_appends_and_trims_to_max(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    job_id = await add1(scripts, "l")
    kept = [await scripts.log(job_id, f"line {i}", 3) for i in range(1, 6)]
    assert kept == [1, 2, 3, 3, 3]
    assert await lrange(redis_client, keys.logs(job_id)) == ["line 3", "line 4", "line 5"]
    assert await scripts.log(job_id, "line 6", 0) == 4
    assert await scripts.log("missing", "x", 3) == -1
    assert await exists(redis_client, keys.logs("missing")) == 0


# --- state and counts ------------------------------------------------------------------


async def _one_of_each(scripts: QueueScripts) -> None:
    await _running(scripts, "act")
    await _running(scripts, "done")
    assert (await finish(scripts, [FinishItem("done", "1", "c", b"1")]))[0] == [1]
    await _running(scripts, "bad")
    assert (await finish(scripts, [FinishItem("bad", "1", "f", b"x")]))[0] == [1]
    await add1(scripts, "wait")
    await add1(scripts, "prio", prio=4)
    await add1(scripts, "later", delay=60_000)


async def test_state_of_every_kind_of_job(scripts: QueueScripts) -> None:
    await _one_of_each(scripts)
    expected = {
        "act": "active",
        "done": "completed",
        "bad": "failed",
        "wait": "waiting",
        "prio": "prioritized",
        "later": "delayed",
        "missing": "unknown",
    }
    assert {i: await scripts.state(i) for i in expected} == expected
    assert await scripts.pause(True, events_max_len=EVENTS)
    paused = {**expected, "wait": "paused", "prio": "paused"}
    assert {i: await scripts.state(i) for i in paused} == paused


async def test_counts_move_waiting_into_paused(scripts: QueueScripts) -> None:
    await _one_of_each(scripts)
    # waiting, active, completed, failed, delayed, paused, prioritized
    assert await scripts.counts() == [2, 1, 1, 1, 1, 0, 1, 0]
    assert await scripts.pause(True, events_max_len=EVENTS)
    assert await scripts.counts() == [0, 1, 1, 1, 1, 2, 1, 0]


# --- pause, promote, retry, remove -----------------------------------------------------


async def test_pause_and_resume(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    assert await scripts.pause(True, events_max_len=EVENTS) is True
    assert await redis_client.hget(keys.meta, "paused") == b"1"
    assert await events(redis_client, keys) == [{"e": "paused"}]
    assert await scripts.pause(True, events_max_len=EVENTS) is False
    assert await events(redis_client, keys) == [{"e": "paused"}]
    assert await exists(redis_client, keys.marker) == 0

    assert await scripts.pause(False, events_max_len=EVENTS) is True
    assert await redis_client.hexists(keys.meta, "paused") is False
    assert await marker(redis_client, keys) == [("0", 0)]
    assert await events(redis_client, keys) == [{"e": "paused"}, {"e": "resumed"}]
    await redis_client.delete(keys.marker)
    assert await scripts.pause(False, events_max_len=EVENTS) is False
    assert await exists(redis_client, keys.marker) == 0
    assert len(await events(redis_client, keys)) == 2


async def test_promote(redis_client: Redis, scripts: QueueScripts, keys: QueueKeys) -> None:
    await add1(scripts, "d", delay=60_000)
    await add1(scripts, "dp", delay=60_000, prio=2)
    await add1(scripts, "w")
    await redis_client.delete(keys.marker)
    assert await scripts.promote("d", events_max_len=EVENTS) == 1
    assert await lrange(redis_client, keys.wait) == ["d", "w"]
    assert await zids(redis_client, keys.delayed) == ["dp"]
    assert await marker(redis_client, keys) == [("0", 0)]
    assert (await events(redis_client, keys))[-1] == {
        "e": "waiting",
        "id": "d",
        "reason": "promoted",
    }
    assert await scripts.promote("dp", events_max_len=EVENTS) == 1
    assert await zids(redis_client, keys.prio) == ["dp"]
    assert await exists(redis_client, keys.delayed) == 0

    assert await scripts.promote("d", events_max_len=EVENTS) == -3
    assert await scripts.promote("w", events_max_len=EVENTS) == -3
    assert await scripts.promote("missing", events_max_len=EVENTS) == -1
    assert await lrange(redis_client, keys.wait) == ["d", "w"]


async def test_retry_one_failed_job(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await _running(scripts, "f")
    await finish(scripts, [FinishItem("f", "1", "f", b"boom", errors=b'["boom"]')])
    assert await scripts.progress("f", "", b"30", events_max_len=EVENTS) == 1
    await redis_client.delete(keys.marker)
    assert await scripts.retry("f", 0, events_max_len=EVENTS) == 1
    assert await exists(redis_client, keys.failed) == 0
    assert await lrange(redis_client, keys.wait) == ["f"]
    h = await hash_of(redis_client, keys.job("f"))
    assert (h["a"], h["as"], h["s"], h["tk"]) == ("0", "0", "0", "1")
    assert not {"ft", "fr", "rv", "pg"} & set(h)
    assert await marker(redis_client, keys) == [("0", 0)]
    assert (await events(redis_client, keys))[-1] == {
        "e": "retried",
        "id": "f",
        "reason": "retried by hand",
    }
    assert await scripts.retry("f", 0, events_max_len=EVENTS) == -3
    assert await scripts.retry("missing", 0, events_max_len=EVENTS) == -1
    assert await lrange(redis_client, keys.wait) == ["f"]


async def test_retry_all_failed_with_a_limit(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await _running(scripts, "x", "y", "z")
    items = [FinishItem(i, "1", "f", b"no") for i in ("x", "y", "z")]
    assert (await finish(scripts, items))[0] == [1, 1, 1]
    await redis_client.zadd(keys.failed, {"z": 1000, "x": 2000, "y": 3000}, xx=True)
    assert await scripts.retry("", 2, events_max_len=EVENTS) == 2
    assert await zids(redis_client, keys.failed) == ["y"]
    assert await lrange(redis_client, keys.wait) == ["x", "z"]
    assert await scripts.retry("", 10, events_max_len=EVENTS) == 1
    assert await scripts.retry("", 10, events_max_len=EVENTS) == 0
    assert await lrange(redis_client, keys.wait) == ["y", "x", "z"]


async def test_remove(redis_client: Redis, scripts: QueueScripts, keys: QueueKeys) -> None:
    await _running(scripts, "act")
    await _running(scripts, "done")
    await finish(scripts, [FinishItem("done", "1", "c", b"1")])
    await _running(scripts, "bad")
    await finish(scripts, [FinishItem("bad", "1", "f", b"x")])
    for job_id in ("w1", "w2", "w3"):
        await add1(scripts, job_id)
    await add1(scripts, "prio", prio=1)
    await add1(scripts, "later", delay=60_000)
    assert await scripts.log("w2", "line", 0) == 1

    assert await scripts.remove("w2", events_max_len=EVENTS) == 1
    assert await lrange(redis_client, keys.wait) == ["w3", "w1"]
    assert await exists(redis_client, keys.job("w2"), keys.logs("w2")) == 0
    assert (await events(redis_client, keys))[-1] == {"e": "removed", "id": "w2"}

    assert await scripts.remove("act", events_max_len=EVENTS) == -3
    assert await zids(redis_client, keys.active) == ["act"]
    assert await exists(redis_client, keys.job("act")) == 1
    assert await scripts.remove("missing", events_max_len=EVENTS) == -1

    for job_id in ("done", "bad", "prio", "later"):
        assert await scripts.remove(job_id, events_max_len=EVENTS) == 1, job_id
        assert await exists(redis_client, keys.job(job_id)) == 0, job_id
    assert await exists(redis_client, keys.completed, keys.failed, keys.prio, keys.delayed) == 0
    assert await lrange(redis_client, keys.wait) == ["w3", "w1"]


# --- drain, clean, obliterate ----------------------------------------------------------


async def test_drain_in_batches(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    for i in range(1, 6):
        await add1(scripts, f"w{i}")
    await add1(scripts, "p1", prio=1)
    await add1(scripts, "p2", prio=2)
    await add1(scripts, "d1", delay=60_000)
    await add1(scripts, "d2", delay=60_000)
    assert await scripts.log("w1", "line", 0) == 1

    # Oldest plain jobs first, then prioritised ones.
    assert await scripts.drain(False, 3, events_max_len=EVENTS) == 3
    assert await lrange(redis_client, keys.wait) == ["w5", "w4"]
    assert await exists(redis_client, keys.job("w1"), keys.logs("w1"), keys.job("w3")) == 0
    assert await scripts.drain(False, 3, events_max_len=EVENTS) == 3
    assert await exists(redis_client, keys.wait) == 0
    assert await zids(redis_client, keys.prio) == ["p2"]
    assert await scripts.drain(False, 3, events_max_len=EVENTS) == 1
    assert await scripts.drain(False, 3, events_max_len=EVENTS) == 0
    assert (await events(redis_client, keys))[-1] == {"e": "drained"}
    # Delayed jobs survive unless asked for.
    assert await zids(redis_client, keys.delayed) == ["d1", "d2"]
    assert await exists(redis_client, keys.job("d1"), keys.job("d2")) == 2

    assert await scripts.drain(True, 1, events_max_len=EVENTS) == 1
    assert await scripts.drain(True, 1, events_max_len=EVENTS) == 1
    assert await scripts.drain(True, 1, events_max_len=EVENTS) == 0
    assert await exists(redis_client, keys.delayed, keys.job("d1"), keys.job("d2")) == 0
    assert await scripts.counts() == [0] * 8


async def test_clean_finished_jobs_by_grace_and_limit(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await _running(scripts, "c1", "c2", "c3", "f1", "f2")
    items = [FinishItem(i, "1", "c", b"1") for i in ("c1", "c2", "c3")]
    items += [FinishItem(i, "1", "f", b"x") for i in ("f1", "f2")]
    assert (await finish(scripts, items))[0] == [1] * 5
    now = await now_ms(redis_client)
    await redis_client.zadd(keys.completed, {"c1": now - 20_000, "c2": now - 10_000}, xx=True)
    await redis_client.zadd(keys.failed, {"f1": now - 2000, "f2": now - 1000}, xx=True)
    await scripts.log("c1", "line", 0)

    assert await scripts.clean("completed", 5000, 100, events_max_len=EVENTS) == ["c1", "c2"]
    assert await zids(redis_client, keys.completed) == ["c3"]
    assert await exists(redis_client, keys.job("c1"), keys.logs("c1"), keys.job("c2")) == 0
    assert await exists(redis_client, keys.job("c3")) == 1
    assert (await events(redis_client, keys))[-1] == {
        "e": "removed",
        "id": "c2",
        "reason": "cleaned",
    }

    assert await scripts.clean("failed", 0, 1, events_max_len=EVENTS) == ["f1"]
    assert await zids(redis_client, keys.failed) == ["f2"]
    assert await exists(redis_client, keys.job("f1")) == 0
    assert await scripts.clean("failed", 60_000, 10, events_max_len=EVENTS) == []
    assert await zids(redis_client, keys.failed) == ["f2"]


async def test_clean_delayed_and_waiting(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await add1(scripts, "d-old", delay=60_000)
    await add1(scripts, "d-new", delay=60_000)
    now = await now_ms(redis_client)
    await redis_client.zadd(keys.delayed, {"d-old": now - 10_000}, xx=True)
    assert await scripts.clean("delayed", 5000, 10, events_max_len=EVENTS) == ["d-old"]
    assert await zids(redis_client, keys.delayed) == ["d-new"]
    assert await exists(redis_client, keys.job("d-old")) == 0

    await add1(scripts, "w-old")
    await add1(scripts, "w-new")
    await add1(scripts, "p-old", prio=1)
    await add1(scripts, "p-new", prio=1)
    await redis_client.hset(keys.job("w-old"), "t", now - 10_000)
    await redis_client.hset(keys.job("p-old"), "t", now - 10_000)
    cleaned = await scripts.clean("waiting", 5000, 10, events_max_len=EVENTS)
    assert sorted(cleaned) == ["p-old", "w-old"]
    assert await lrange(redis_client, keys.wait) == ["w-new"]
    assert await zids(redis_client, keys.prio) == ["p-new"]
    assert await exists(redis_client, keys.job("w-old"), keys.job("p-old")) == 0

    # The limit counts plain jobs first, then prioritised ones.
    assert await scripts.clean("waiting", 0, 1, events_max_len=EVENTS) == ["w-new"]
    assert await scripts.counts() == [1, 0, 0, 0, 1, 0, 1, 0]


async def test_clean_rejects_an_unknown_state(scripts: QueueScripts) -> None:
    with pytest.raises(redis.exceptions.ResponseError, match="clean cannot take state active"):
        await scripts.clean("active", 0, 10, events_max_len=EVENTS)


async def test_obliterate_refuses_while_jobs_run(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    await _running(scripts, "run")
    await add1(scripts, "w")
    before = await queue_keys(redis_client, keys)
    assert await scripts.obliterate(False, 100) == -4
    assert await queue_keys(redis_client, keys) == before
    assert await redis_client.hexists(keys.meta, "paused") is False
    assert await lrange(redis_client, keys.wait) == ["w"]


async def test_obliterate_deletes_every_key_of_the_queue(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    other_keys = QueueKeys("jobq", f"t-{uuid.uuid4().hex[:12]}")
    other = QueueScripts(redis_client, other_keys)
    await add1(other, "survivor")
    await other.log("survivor", "line", 0)
    other_before = await queue_keys(redis_client, other_keys)
    assert len(other_before) >= 5

    await _one_of_each(scripts)  # 6 jobs, one in every state
    await add1(scripts)  # a generated id: the id counter exists too
    await scripts.log("act", "line", 0)
    await scripts.log("done", "line", 0)
    await scripts.progress("act", "1", b"10", events_max_len=EVENTS)
    await scripts.extend(
        [("act", "1")], lease_ms=LEASE, max_stalled=1, worker_id="w1", events_max_len=EVENTS
    )
    await redis_client.set(keys.limiter, 1, px=60_000)
    present = await queue_keys(redis_client, keys)
    for key in (keys.active, keys.completed, keys.failed, keys.wait, keys.prio, keys.delayed):
        assert key in present
    for key in (keys.meta, keys.events, keys.marker, keys.limiter, keys.id, keys.workers):
        assert key in present
    assert keys.metrics_completed in present
    assert keys.metrics_failed in present

    removed = []
    for _ in range(10):
        n = await scripts.obliterate(True, 2)
        assert 0 <= n <= 2
        removed.append(n)
        if n == 0:
            break
        # Paused while it works, so no worker claims what is being deleted.
        assert await redis_client.hget(keys.meta, "paused") == b"1"
    assert removed[-1] == 0
    assert sum(removed) == 7
    assert await queue_keys(redis_client, keys) == []
    assert await queue_keys(redis_client, other_keys) == other_before
    assert await other.counts() == [1, 0, 0, 0, 0, 0, 0, 0]


async def test_add_debounce_takes_the_options_of_a_signed_add_only(
    redis_client: Redis, scripts: QueueScripts, keys: QueueKeys
) -> None:
    # A signed add's signature covers its options (jobq.signing), so a debounced
    # holder must take them with the name and data; an unsigned add leaves them.
    old = b'{"attempts":2,"sig":"k1:' + b"a" * 64 + b'"}'
    new = b'{"attempts":3,"sig":"k1:' + b"b" * 64 + b'"}'
    await scripts.add(EVENTS, [spec("s", opts=old, delay=60_000)], [("sk", 0, True)])
    await scripts.add(EVENTS, [spec(name="n2", opts=new, delay=500)], [("sk", 0, True)])
    h = await hash_of(redis_client, keys.job("s"))
    assert (h["n"], h["o"]) == ("n2", new.decode())

    unsigned = [("uk", 0, True)]
    await scripts.add(EVENTS, [spec("u", opts=b'{"attempts":2}', delay=60_000)], unsigned)
    await scripts.add(EVENTS, [spec(name="n3", opts=b'{"attempts":5}', delay=500)], unsigned)
    h = await hash_of(redis_client, keys.job("u"))
    assert (h["n"], h["o"]) == ("n3", '{"attempts":2}')
