"""The job history index: incremental indexing and search, on a real server."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from jobq import Job, JobFailedError, JobOptions, KeepJobs, Queue
from jobq.errors import ConfigurationError
from jobq.history import JobHistoryIndex, SearchQuery, SearchResult
from tests.conftest import WorkerFactory

IndexFactory = Callable[..., Awaitable[JobHistoryIndex]]


@pytest.fixture
async def make_index(redis_url: str, queue_name: str) -> AsyncIterator[IndexFactory]:
    """Open history indexes (by default over this test's queue); closed at teardown."""
    opened: list[JobHistoryIndex] = []

    async def factory(**kwargs: Any) -> JobHistoryIndex:
        kwargs.setdefault("connection", redis_url)
        index = JobHistoryIndex(kwargs.pop("queues", [queue_name]), **kwargs)
        await index.open()
        opened.append(index)
        return index

    yield factory
    for index in opened:
        await index.close()


async def _process(job: Job) -> str:
    if job.data.get("fail"):
        raise ValueError(f"card declined for {job.data['acct']}")
    return "ok"


async def _finish_all(jobs: list[Job]) -> None:
    for job in jobs:
        with contextlib.suppress(JobFailedError):
            await job.wait_until_finished(10)


def _read_all(folder: Path, prefix: str) -> bytes:
    return b"".join(p.read_bytes() for p in folder.iterdir() if p.name.startswith(prefix))


def _ids(result: SearchResult) -> list[str]:
    return [h.id for h in result.hits]


async def test_search_history_by_every_field(
    queue: Queue, start_worker: WorkerFactory, make_index: IndexFactory
) -> None:
    await start_worker(_process)
    invoices = [
        await queue.add("invoice", {"acct": f"acct-{i}", "amount": i * 10, "note": "quarterly"})
        for i in range(4)
    ]
    failing = await queue.add("invoice", {"acct": "acct-99", "fail": True, "note": "yearly"})
    grouped = await queue.add(
        "email", {"to": "ann@example.org", "subject": "Überweisung"}, JobOptions(group="tenant-7")
    )
    jobs = [*invoices, failing, grouped]
    await _finish_all(jobs)
    index = await make_index()
    assert await index.refresh() == len(jobs)

    one = await index.search(SearchQuery(id=invoices[2].id))
    assert _ids(one) == [invoices[2].id]
    assert one.total == 1
    assert one.hits[0].state == "completed"
    assert one.hits[0].name == "invoice"
    assert one.hits[0].finished_at is not None

    # Prefix: every id of this queue starts with its first digit(s).
    prefix = await index.search(SearchQuery(id=invoices[0].id[:-1] + "*", states=["completed"]))
    assert invoices[0].id in _ids(prefix)

    names = await index.search(SearchQuery(name="email"))
    assert _ids(names) == [grouped.id]
    assert names.hits[0].group == "tenant-7"
    name_prefix = await index.search(SearchQuery(name="inv*"))
    assert set(_ids(name_prefix)) == {j.id for j in [*invoices, failing]}

    words = await index.search(SearchQuery(text="acct-2 quarterly"))
    assert _ids(words) == [invoices[2].id]
    assert "[acct-2]" in words.hits[0].snippet
    assert set(_ids(await index.search(SearchQuery(text="quarter*")))) == {j.id for j in invoices}
    # Accents and case fold like the tokenizer: "uberweisung" finds "Überweisung".
    assert _ids(await index.search(SearchQuery(text="uberweisung"))) == [grouped.id]

    errors = await index.search(SearchQuery(error="declined"))
    assert _ids(errors) == [failing.id]
    assert errors.hits[0].state == "failed"
    assert errors.hits[0].failed_reason == "card declined for acct-99"
    # An error word is not a data word and the other way round.
    assert _ids(await index.search(SearchQuery(text="declined"))) == []
    assert _ids(await index.search(SearchQuery(error="quarterly"))) == []
    assert _ids(await index.search(SearchQuery(text="yearly", states=["completed"]))) == []

    assert _ids(await index.search(SearchQuery(group="tenant-7"))) == [grouped.id]
    assert _ids(await index.search(SearchQuery(group="tenant-8"))) == []

    finished = sorted([(await j.refresh()).finished_on or 0 for j in jobs])
    window = await index.search(SearchQuery(since=finished[0], until=finished[0]))
    assert window.hits
    assert all(h.finished_ms == finished[0] for h in window.hits)
    later = await index.search(SearchQuery(since=finished[-1] + 1))
    assert later.hits == []
    as_dt = datetime.fromtimestamp(finished[-1] / 1000, tz=UTC)
    newest = await index.search(SearchQuery(since=as_dt, until=as_dt))
    assert newest.hits
    assert {h.finished_ms for h in newest.hits} == {finished[-1]}

    combined = await index.search(
        SearchQuery(name="invoice", text="acct", error="declined", states=["failed"])
    )
    assert _ids(combined) == [failing.id]
    assert combined.total == 1
    assert combined.total_exact
    assert combined.indexed_up_to is not None


async def test_paging_walks_every_hit_once_newest_first(
    queue: Queue, start_worker: WorkerFactory, make_index: IndexFactory
) -> None:
    await start_worker(_process)
    jobs = [await queue.add("page", {"i": i}) for i in range(7)]
    await _finish_all(jobs)
    index = await make_index()
    await index.refresh()
    seen: list[str] = []
    finished: list[int] = []
    cursor = None
    pages = 0
    while True:
        result = await index.search(SearchQuery(name="page", limit=3, cursor=cursor))
        assert result.total == 7
        seen.extend(_ids(result))
        finished.extend(h.finished_ms or 0 for h in result.hits)
        pages += 1
        cursor = result.next_cursor
        if cursor is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(j.id for j in jobs)
    assert finished == sorted(finished, reverse=True)
    with pytest.raises(ConfigurationError, match="cursor"):
        await index.search(SearchQuery(cursor="not-a-cursor"))
    with pytest.raises(ConfigurationError, match="limit"):
        SearchQuery(limit=501)
    with pytest.raises(ConfigurationError, match="redact"):
        JobHistoryIndex([queue.name], redact="password")
    with pytest.raises(ConfigurationError, match="unknown state"):
        SearchQuery(states=["done"])
    with pytest.raises(ConfigurationError, match="aware"):
        SearchQuery(since=datetime(2026, 1, 1))


async def test_a_retried_job_shows_its_live_state(
    queue: Queue, start_worker: WorkerFactory, make_index: IndexFactory
) -> None:
    worker = await start_worker(_process)
    job = await queue.add("charge", {"acct": "acct-5", "fail": True})
    await _finish_all([job])
    index = await make_index()
    assert await index.refresh() == 1
    await worker.close(grace=0)
    await queue.retry(job.id)

    found = await index.search(SearchQuery(name="charge"))
    assert [(h.id, h.state) for h in found.hits] == [(job.id, "waiting")]
    assert (found.total, found.dropped) == (1, 0)
    assert found.hits[0].finished_ms is None
    # The index still says failed, but the job is not: a failed-only search drops it.
    failed_only = await index.search(SearchQuery(name="charge", states=["failed"]))
    assert failed_only.hits == []
    assert failed_only.dropped == 1


async def test_jobs_deleted_by_retention_disappear(
    queue: Queue, start_worker: WorkerFactory, make_index: IndexFactory
) -> None:
    await start_worker(_process)
    first = [
        await queue.add("keep", {"i": i}, JobOptions(remove_on_complete=KeepJobs(count=3)))
        for i in range(3)
    ]
    await _finish_all(first)
    index = await make_index()
    assert await index.refresh() == 3

    # Removed by hand: the search drops it, and the index forgets it.
    await queue.remove(first[0].id)
    result = await index.search(SearchQuery(name="keep"))
    assert first[0].id not in _ids(result)
    assert result.dropped == 1
    assert (await index.stats()).queues[0].completed == 2

    # Trimmed by the keep-count: the next refresh prunes what the set no longer holds.
    more = [
        await queue.add("keep", {"i": i}, JobOptions(remove_on_complete=KeepJobs(count=3)))
        for i in range(3, 6)
    ]
    await _finish_all(more)
    assert await index.refresh() == 3
    stats = await index.stats()
    assert stats.queues[0].completed == 3
    assert set(_ids(await index.search(SearchQuery(name="keep")))) == {j.id for j in more}


async def test_redacted_fields_are_neither_stored_nor_findable(
    queue: Queue, start_worker: WorkerFactory, make_index: IndexFactory, tmp_path: Path
) -> None:
    data = {"user": "ann", "auth": [{"PassWord": "hunter2secret", "token": {"x": "tok9zz"}}]}
    worker = await start_worker(_process)
    done = await queue.add("login", data)
    await _finish_all([done])
    await worker.close(grace=0)
    waiting = await queue.add("login", data)
    db = tmp_path / "history.db"
    index = await make_index(path=db, redact={"password", "TOKEN"})
    assert await index.refresh() == 1

    for secret in ("hunter2secret", "hunter2*", "tok9zz"):
        assert (await index.search(SearchQuery(text=secret))).hits == []
    found = await index.search(SearchQuery(text="ann"))
    assert {h.id for h in found.hits} == {done.id, waiting.id}
    assert found.live_scanned >= 1
    for hit in found.hits:
        assert "hunter2" not in hit.snippet
        assert "[redacted]" in hit.snippet
    await index.close()
    stored = await asyncio.to_thread(_read_all, tmp_path, "history")
    assert b"ann" in stored
    assert b"hunter2" not in stored
    assert b"tok9zz" not in stored


async def test_refresh_is_incremental_and_never_doubles_a_job_at_the_cursor(
    queue: Queue, start_worker: WorkerFactory, make_index: IndexFactory, redis_client: Redis
) -> None:
    await start_worker(_process)
    await _finish_all([await queue.add("inc", {"i": i}) for i in range(5)])
    index = await make_index(batch_size=2)
    assert await index.refresh() == 5
    assert await index.refresh() == 0

    await _finish_all([await queue.add("inc", {"i": i}) for i in range(5, 8)])
    assert await index.refresh() == 3
    stats = (await index.stats()).queues[0]
    assert (stats.completed, stats.pending) == (8, 0)
    cursor = stats.cursor_ms
    assert cursor is not None

    # A job finishes a moment before the cursor (a server clock that stepped back),
    # then another in the very millisecond of the cursor: each is picked up, once.
    client: Any = redis_client
    for job_id, at in (("stepped-back", cursor - 5), ("same-ms", cursor)):
        await client.hset(
            queue.keys.job(job_id),
            mapping={"n": "inc", "d": '{"late":true}', "t": at - 1, "ft": at, "a": 1},
        )
        await client.zadd(queue.keys.completed, {job_id: at})
        # Not after the cursor: a tail that only read past it would miss it.
        assert (await index.stats()).queues[0].pending == 0
        assert await index.refresh() == 1
        assert await index.refresh() == 0
    assert (await index.stats()).queues[0].completed == 10
    late = await index.search(SearchQuery(text="late"))
    assert sorted(_ids(late)) == ["same-ms", "stepped-back"]
    everything = await index.search(SearchQuery(name="inc", limit=500))
    assert len(_ids(everything)) == len(set(_ids(everything))) == 10


@pytest.mark.parametrize(
    "words",
    [
        '"',
        '"unterminated',
        "((",
        "a) OR (b",
        "NEAR(acct 99)",
        "*",
        "-acct",
        "acct -99",
        "data:acct",
        "{data error}: x",
        "^acct",
        "AND OR NOT",
        "acct* NEAR/2 99",
        "'; DROP TABLE jobs; --",
    ],
)
async def test_hostile_text_queries_do_not_raise(
    queue: Queue, start_worker: WorkerFactory, make_index: IndexFactory, words: str
) -> None:
    await start_worker(_process)
    await _finish_all([await queue.add("h", {"acct": "acct-99", "fail": True})])
    index = await make_index()
    await index.refresh()
    for query in (SearchQuery(text=words), SearchQuery(error=words), SearchQuery(id=words)):
        result = await index.search(query)
        assert result.total >= 0
    # Operators are plain words: "NEAR" and "OR" must be in the data to match.
    assert (await index.search(SearchQuery(text="acct OR nothing"))).hits == []
    assert len((await index.search(SearchQuery(text="(acct) 99"))).hits) == 1


async def test_live_search_finds_waiting_and_delayed_jobs(
    make_queue: Callable[..., Awaitable[Queue]], make_index: IndexFactory, queue_name: str
) -> None:
    queue = await make_queue()
    now = await queue.add("mail", {"to": "bob", "topic": "welcome"})
    later = await queue.add("mail", {"to": "bob", "topic": "reminder"}, JobOptions(delay=60_000))
    other = await queue.add("sms", {"to": "eve"})
    index = await make_index(live_limit=50)
    assert await index.refresh() == 0

    result = await index.search(SearchQuery(text="bob"))
    assert {(h.id, h.state, h.indexed) for h in result.hits} == {
        (now.id, "waiting", False),
        (later.id, "delayed", False),
    }
    assert result.live_scanned == 3
    assert all("to [bob]" in h.snippet for h in result.hits)
    assert not result.live_truncated
    assert _ids(await index.search(SearchQuery(text="bob", states=["delayed"]))) == [later.id]
    assert _ids(await index.search(SearchQuery(name="sms"))) == [other.id]
    assert _ids(await index.search(SearchQuery(id=later.id))) == [later.id]
    assert (await index.search(SearchQuery(text="bob", states=["completed"]))).live_scanned == 0

    # Paused, the waiting job says so; the walk stops at live_limit per state.
    await queue.pause()
    paused = await index.search(SearchQuery(id=now.id))
    assert [h.state for h in paused.hits] == ["paused"]
    small = await make_index(live_limit=1)
    await queue.add("mail", {"to": "bob"})
    capped = await small.search(SearchQuery(text="bob", states=["waiting", "paused"]))
    assert capped.live_truncated
    assert not capped.total_exact


async def test_run_refreshes_until_stopped_and_stats_tell_the_lag(
    queue: Queue, start_worker: WorkerFactory, make_index: IndexFactory, queue_name: str
) -> None:
    await start_worker(_process)
    await _finish_all([await queue.add("r", {"i": i}) for i in range(2)])

    async def discover() -> list[str]:
        return [queue_name]

    index = await make_index(queues=discover)
    stop = asyncio.Event()
    task = asyncio.create_task(index.run(0.05, stop=stop))
    await index.wait_for_passes(1, timeout=10)
    await _finish_all([await queue.add("r", {"i": 9})])
    await index.wait_for_passes(index.passes + 1, timeout=10)
    stop.set()
    await asyncio.wait_for(task, 10)
    stats = await index.stats()
    assert stats.total == 3
    assert stats.queues[0].queue == queue_name
    assert stats.lag_seconds is not None
    assert stats.indexed_up_to is not None
    assert stats.passes >= 2


async def test_queries_use_indexes_not_scans(make_index: IndexFactory) -> None:
    from jobq.history._store import HistoryFilter

    index = await make_index()
    base: dict[str, Any] = {
        "queues": None, "states": None, "id": None, "id_prefix": False, "name": None,
        "name_prefix": False, "group": None, "since_ms": None, "until_ms": None, "match": None,
    }  # fmt: skip
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "name": ({"name": "x"}, "INDEX jobs_name"),
        "id": ({"id": "7", "id_prefix": True}, "INDEX jobs_id"),
        "group": ({"group": "g"}, "INDEX jobs_grp"),
        "queue": ({"queues": ("q",)}, "INDEX jobs_queue"),
        "failed": ({"states": ("failed",)}, "INDEX jobs_state"),
        "text": ({"match": 'data : "x"'}, "VIRTUAL TABLE INDEX"),
        "time": ({"since_ms": 1, "until_ms": 2}, "INTEGER PRIMARY KEY"),
    }
    for what, (change, expected) in cases.items():
        plan = " | ".join(index.store.plan(HistoryFilter(**{**base, **change}), 50))
        assert expected in plan, (what, plan)
        assert "TEMP B-TREE" not in plan or what == "id", (what, plan)
    # With text and column filters, FTS5 drives the count too (not a column index
    # running MATCH once per row).
    both = HistoryFilter(**{**base, "match": 'data : "x"', "name": "n", "queues": ("q",)})
    for count in (False, True):
        steps = index.store.plan(both, 50, count=count)
        assert any("job_fts VIRTUAL TABLE INDEX" in s for s in steps[:2]), steps
        assert not any("SEARCH j USING INDEX" in s for s in steps), steps


async def test_a_file_index_carries_on_after_reopening(
    queue: Queue, start_worker: WorkerFactory, make_index: IndexFactory, tmp_path: Path
) -> None:
    await start_worker(_process)
    await _finish_all([await queue.add("file", {"i": i}) for i in range(3)])
    db = tmp_path / "h.db"
    first = await make_index(path=db)
    assert await first.refresh() == 3
    await first.close()

    again = await make_index(path=db)
    assert (await again.stats()).indexed_up_to is not None
    assert await again.refresh() == 0
    assert len((await again.search(SearchQuery(name="file"))).hits) == 3
    await again.close()
    # Built for another key prefix: a cache of something else, so it starts again.
    other = await make_index(path=db, prefix="other")
    assert (await other.stats()).total == 0


async def test_two_jobs_wanting_one_row_id_are_both_kept(
    queue: Queue, make_index: IndexFactory, redis_client: Redis
) -> None:
    from jobq.history._store import row_id

    # Row ids are finished ms << 20 | a 20-bit hash of (queue, id): find two ids that
    # collide, and finish both in the same millisecond.
    at = 1_780_000_000_000
    # Random ids: CRC32 is linear, so ids that differ only in a counter may never
    # collide; random ones do after about 1,300 on average (birthday bound of 2^20).
    seen: dict[int, str] = {}
    pair: tuple[str, str] | None = None
    while pair is None:
        job_id = uuid.uuid4().hex
        rid = row_id(at, queue.name, job_id)
        pair = (seen[rid], job_id) if rid in seen else None
        seen[rid] = job_id
    client: Any = redis_client
    for job_id in pair:
        await client.hset(
            queue.keys.job(job_id), mapping={"n": "twin", "d": '{"twin":1}', "t": at, "ft": at}
        )
        await client.zadd(queue.keys.completed, {job_id: at})
    index = await make_index()
    assert await index.refresh() == 2
    assert await index.refresh() == 0
    found = await index.search(SearchQuery(text="twin"))
    assert sorted(_ids(found)) == sorted(pair)
    assert all(h.finished_ms == at for h in found.hits)
