"""Queue: adding, reading and steering jobs, against the real server."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from redis.asyncio import Redis

from jobq import (
    Backoff,
    BulkJob,
    ConfigurationError,
    Deduplication,
    InvalidJobStateError,
    JobNotFoundError,
    JobOptions,
    KeepJobs,
    PayloadTooLargeError,
    Queue,
    SerializationError,
    SyncQueue,
)
from tests.conftest import QueueFactory
from tests.jobq import scriptcalls


async def queue_keys(client: Redis, queue: Queue) -> list[bytes]:
    """Every key of the queue (they share its hash tag)."""
    pattern = queue.keys.base.replace("{", "\\{").replace("}", "\\}") + "*"
    return sorted([k async for k in client.scan_iter(match=pattern)])


async def test_add_and_get_round_trips_data_and_options(queue: Queue) -> None:
    data = {
        "reportId": "r-1",
        "amount": Decimal("1234567.89"),
        "asOf": date(2025, 10, 1),
        "at": datetime(2025, 10, 1, 12, 30, tzinfo=UTC),
        "requestId": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    }
    opts = JobOptions(priority=5, attempts=3, backoff=Backoff.exponential(2000), timeout=60_000)
    job = await queue.add("generate-budget-report", data, opts)
    got = await queue.get_job(job.id)
    assert got is not None
    assert got.name == "generate-budget-report"
    assert got.data == data
    assert isinstance(got.data["amount"], Decimal)
    assert got.options.priority == 5
    assert got.options.attempts == 3
    assert got.options.backoff == Backoff.exponential(2000)
    assert got.options.timeout_ms == 60_000
    assert got.attempts_made == 0
    assert got.timestamp > 0
    assert await queue.get_job_state(job.id) == "prioritized"


async def test_generated_ids_are_unique_and_increasing(queue: Queue) -> None:
    ids = [int((await queue.add("n", {"i": i})).id) for i in range(5)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 5


async def test_existing_job_id_returns_existing_job_and_writes_nothing(
    queue: Queue, redis_client: Redis
) -> None:
    first = await queue.add("report", {"v": 1}, JobOptions(job_id="report-42"))
    before = await redis_client.hgetall(queue.keys.job("report-42"))
    second = await queue.add("report", {"v": 2}, JobOptions(job_id="report-42"))
    assert second.id == first.id == "report-42"
    assert second.data == {"v": 1}
    assert await redis_client.hgetall(queue.keys.job("report-42")) == before
    counts = await queue.get_job_counts()
    assert counts.waiting == 1


def test_all_digit_job_id_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="job_id"):
        JobOptions(job_id="123")


@pytest.mark.parametrize("priority", [0, -1, 2_000_001, True])
def test_priority_out_of_range_names_the_field(priority: Any) -> None:
    with pytest.raises(ConfigurationError, match="priority"):
        JobOptions(priority=priority)


async def test_waiting_order_priority_first_then_fifo(queue: Queue) -> None:
    await queue.add("plain-1")
    await queue.add("plain-2")
    await queue.add("p5-a", None, JobOptions(priority=5))
    await queue.add("p1", None, JobOptions(priority=1))
    await queue.add("p5-b", None, JobOptions(priority=5))
    await queue.add("plain-lifo", None, JobOptions(lifo=True))
    jobs = await queue.get_jobs("waiting")
    assert [j.name for j in jobs] == ["p1", "p5-a", "p5-b", "plain-lifo", "plain-1", "plain-2"]
    counts = await queue.get_job_counts()
    assert counts.waiting == 6
    assert counts.prioritized == 3


async def test_delayed_job_counts_and_promote(queue: Queue) -> None:
    job = await queue.add("later", {"x": 1}, JobOptions(delay=timedelta(hours=1)))
    assert await queue.get_job_state(job.id) == "delayed"
    assert (await queue.get_job_counts()).delayed == 1
    await queue.promote(job.id)
    assert await queue.get_job_state(job.id) == "waiting"
    with pytest.raises(InvalidJobStateError):
        await queue.promote(job.id)
    with pytest.raises(JobNotFoundError):
        await queue.promote("no-such-job")


async def test_pause_moves_waiting_into_paused_count(queue: Queue) -> None:
    await queue.add("a")
    assert await queue.pause() is True
    assert await queue.pause() is False
    assert await queue.is_paused()
    counts = await queue.get_job_counts()
    assert (counts.waiting, counts.paused) == (0, 1)
    assert await queue.resume() is True
    counts = await queue.get_job_counts()
    assert (counts.waiting, counts.paused) == (1, 0)


async def test_oversize_payload_refused_and_nothing_written(
    make_queue: QueueFactory, redis_client: Redis
) -> None:
    queue = await make_queue(max_payload_bytes=1024)
    with pytest.raises(PayloadTooLargeError, match="1024"):
        await queue.add("big", {"blob": "x" * 2000})
    assert await queue_keys(redis_client, queue) == []


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"when": object()}, "when"),
        ({"items": [1, {"x": float("nan")}]}, "items"),
        ({"s": {1, 2}}, "s"),
        ({1: "int key"}, "1"),
    ],
)
async def test_unserialisable_payload_refused_naming_the_field(
    queue: Queue, redis_client: Redis, data: Any, path: str
) -> None:
    with pytest.raises(SerializationError, match=path):
        await queue.add("bad", data)
    assert await queue_keys(redis_client, queue) == []


async def test_add_bulk_one_bad_item_refuses_the_whole_batch(
    queue: Queue, redis_client: Redis
) -> None:
    with pytest.raises(SerializationError, match="item 2"):
        await queue.add_bulk([("a", {}), ("b", {}), ("c", {"x": object()})])
    assert await queue_keys(redis_client, queue) == []


async def test_add_bulk_adds_all_in_order(queue: Queue) -> None:
    jobs = await queue.add_bulk(
        [BulkJob("a", {"i": 0}), ("b", {"i": 1}), ("c", {"i": 2}, JobOptions(priority=3))]
    )
    assert [j.name for j in jobs] == ["a", "b", "c"]
    waiting = await queue.get_jobs("waiting")
    assert [j.name for j in waiting] == ["c", "a", "b"]


def _mixed_batch(n: int) -> list[tuple[str, Any, JobOptions | None]]:
    """Plain, LIFO, prioritised, grouped, delayed and named-id jobs, interleaved."""
    items: list[tuple[str, Any, JobOptions | None]] = []
    for i in range(n):
        opts: JobOptions | None = None
        if i % 7 == 3:
            opts = JobOptions(lifo=True)
        elif i % 11 == 5:
            opts = JobOptions(job_id=f"named-{i}")
        elif i % 13 == 6:
            opts = JobOptions(priority=i % 4 + 1)
        elif i % 17 == 8:
            opts = JobOptions(group=f"g{i % 3}")
        elif i % 19 == 9:
            opts = JobOptions(delay=60_000)
        items.append((f"job-{i}", {"i": i}, opts))
    return items


async def _placement(client: Redis, queue: Queue) -> dict[str, Any]:
    k = queue.keys
    return {
        "wait": await client.lrange(k.wait, 0, -1),
        "prio": await client.zrange(k.prio, 0, -1),
        "delayed": sorted(await client.zrange(k.delayed, 0, -1)),
        "groups": {g: await client.lrange(k.group(g), 0, -1) for g in ("g0", "g1", "g2")},
        "ring": sorted(await client.lrange(k.groups, 0, -1)),
        "next id": await client.get(k.id),
    }


async def test_add_bulk_places_jobs_as_adds_one_at_a_time_do(
    make_queue: QueueFactory, redis_client: Redis, queue_name: str
) -> None:
    # Large enough that the batched wait-list push runs in several chunks.
    items = _mixed_batch(9_000)
    one_by_one = await make_queue(queue_name + "-single")
    for name, data, opts in items:
        await one_by_one.add(name, data, opts)
    bulk = await make_queue(queue_name + "-bulk")
    jobs = await bulk.add_bulk(items)
    assert [j.name for j in jobs] == [name for name, _, _ in items]
    expected = await _placement(redis_client, one_by_one)
    assert len(expected["wait"]) > 7_000
    assert expected["prio"]
    assert expected["delayed"]
    assert all(expected["groups"].values())
    assert await _placement(redis_client, bulk) == expected
    # The ids handed back are the stored ones: generated ids follow each other.
    assert [j.id for j in jobs[:4]] == ["1", "2", "3", "4"]
    assert jobs[5].id == "named-5"
    stored = await bulk.get_job(jobs[8_999].id)
    assert stored is not None
    assert stored.data == {"i": 8_999}


@pytest.mark.parametrize(
    "opts",
    [
        None,
        JobOptions(remove_on_complete=True),
        JobOptions(priority=2),
        JobOptions(delay=60_000),
        JobOptions(lifo=True),
        JobOptions(group="g1"),
    ],
    ids=["plain", "keep", "priority", "delay", "lifo", "group"],
)
async def test_add_bulk_of_alike_jobs_stores_what_adds_one_at_a_time_do(
    make_queue: QueueFactory, redis_client: Redis, queue_name: str, opts: JobOptions | None
) -> None:
    # One name and one options object for all: the batch is sent as alike jobs.
    items = [("alike", {"i": i, "pad": "x" * (i % 150)}, opts) for i in range(250)]
    one_by_one = await make_queue(queue_name + "-single")
    for name, data, o in items:
        await one_by_one.add(name, data, o)
    bulk = await make_queue(queue_name + "-bulk")
    jobs = await bulk.add_bulk(items)
    assert [j.id for j in jobs] == [str(i) for i in range(1, 251)]
    assert [j.data for j in jobs] == [data for _, data, _ in items]
    assert await _placement(redis_client, bulk) == await _placement(redis_client, one_by_one)

    async def stored(queue: Queue, job_id: str) -> dict[bytes, bytes]:
        h = await scriptcalls.job_hash(redis_client, queue.keys.job(job_id))
        del h[b"t"]  # the time each was added
        return h

    for job_id in ("1", "2", "125", "250"):
        assert await stored(bulk, job_id) == await stored(one_by_one, job_id)
    for i in (0, 60, 100, 149):  # one, two and three data pieces
        got = await bulk.get_job(str(i + 1))
        assert got is not None
        assert got.data == items[i][1]


@pytest.mark.parametrize(
    ("bad", "error"),
    [({"x": object()}, SerializationError), ({"x": "y" * 2_000}, PayloadTooLargeError)],
)
async def test_add_bulk_of_alike_jobs_refuses_a_bad_one_by_its_index(
    make_queue: QueueFactory, redis_client: Redis, bad: Any, error: type[Exception]
) -> None:
    queue = await make_queue(max_payload_bytes=1024)
    opts = JobOptions(attempts=2)
    with pytest.raises(error, match=r"add_bulk item 3 \('same'\)"):
        await queue.add_bulk([("same", {"i": i}, opts) for i in range(3)] + [("same", bad, opts)])
    assert await queue_keys(redis_client, queue) == []


async def test_remove_deletes_job_and_its_logs(queue: Queue, redis_client: Redis) -> None:
    job = await queue.add("a")
    await job.log("hello")
    await queue.remove(job.id)
    assert await queue.get_job(job.id) is None
    assert await redis_client.exists(queue.keys.logs(job.id)) == 0
    assert (await queue.get_job_counts()).waiting == 0
    with pytest.raises(JobNotFoundError):
        await queue.remove(job.id)


async def test_drain_removes_waiting_and_optionally_delayed(queue: Queue) -> None:
    await queue.add_bulk([("w", {"i": i}) for i in range(25)])
    await queue.add("p", None, JobOptions(priority=2))
    await queue.add("d", None, JobOptions(delay=60_000))
    assert await queue.drain(batch=10) == 26
    counts = await queue.get_job_counts()
    assert (counts.waiting, counts.delayed) == (0, 1)
    assert await queue.drain(delayed=True) == 1
    assert (await queue.get_job_counts()).delayed == 0


async def test_clean_waiting_respects_grace_and_limit(queue: Queue) -> None:
    await queue.add_bulk([("w", {"i": i}) for i in range(5)])
    assert await queue.clean("waiting", grace=timedelta(hours=1)) == []
    removed = await queue.clean("waiting", grace=0, limit=3)
    assert len(removed) == 3
    assert (await queue.get_job_counts()).waiting == 2
    with pytest.raises(ConfigurationError, match="state"):
        await queue.clean("active", 0)  # type: ignore[arg-type]


async def test_obliterate_deletes_every_key_but_not_other_queues(
    make_queue: QueueFactory, redis_client: Redis
) -> None:
    q1 = await make_queue()
    q2 = await make_queue(f"other-{uuid.uuid4().hex[:8]}")
    await q1.add_bulk([("a", {"i": i}) for i in range(30)])
    await q1.add("d", None, JobOptions(delay=60_000))
    await q2.add("keep-me")
    assert await q1.obliterate(batch=7) == 31
    assert await queue_keys(redis_client, q1) == []
    assert (await q2.get_job_counts()).waiting == 1


async def test_get_metrics_are_zero_for_an_idle_queue(queue: Queue) -> None:
    assert await queue.get_metrics("completed", minutes=5) == [0, 0, 0, 0, 0]
    assert await queue.get_metrics("failed", minutes=2) == [0, 0]


def test_keep_jobs_accepts_bullmq_shapes() -> None:
    assert KeepJobs.from_value(True, "f") == KeepJobs(count=0)
    assert KeepJobs.from_value(False, "f") == KeepJobs()
    assert KeepJobs.from_value(50, "f") == KeepJobs(count=50)
    # BullMQ's dict gives age in seconds.
    assert KeepJobs.from_value({"age": 3600, "count": 10}, "f") == KeepJobs(count=10, age=3_600_000)
    with pytest.raises(ConfigurationError, match="remove_on_complete"):
        JobOptions(remove_on_complete="yes")  # type: ignore[arg-type]


def test_backoff_from_bullmq_dict_and_compute() -> None:
    b = Backoff.from_value({"type": "exponential", "delay": 2000})
    assert [b.compute(n) for n in (1, 2, 3)] == [2000, 4000, 8000]
    capped = Backoff.exponential(1000, max_delay=3000)
    assert capped.compute(5) == 3000
    jittered = Backoff.fixed(1000, jitter=0.5)
    values = {jittered.compute(1) for _ in range(50)}
    assert all(v is not None and 500 <= v <= 1000 for v in values)
    assert len(values) > 1
    assert Backoff.custom("mine").compute(1) is None


def test_queue_name_with_reserved_characters_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="queue name"):
        Queue("bad{name}")


def test_sync_queue_adds_and_reads(redis_url: str, queue_name: str) -> None:
    with SyncQueue(queue_name, connection=redis_url) as q:
        job = q.add("sync-job", {"amount": Decimal("10.50")})
        got = q.get_job(job.id)
        assert got is not None
        assert got.data == {"amount": Decimal("10.50")}
        assert q.get_job_counts().waiting == 1
        assert q.get_job_state(job.id) == "waiting"
        q.remove(job.id)
        assert q.get_job(job.id) is None
        info = q.upsert_scheduler("nightly", cron="0 2 * * *", name="cleanup")
        assert [s.id for s in q.list_schedulers()] == [info.id]
        assert q.run_scheduler_now("nightly").name == "cleanup"
        assert q.remove_scheduler("nightly") is True
        dedup = JobOptions(deduplication=Deduplication(key="once"))
        first = q.add("d", None, dedup)
        assert q.add("d", None, dedup).id == first.id
        assert q.get_deduplication_job_id("once") == first.id
        assert q.remove_deduplication_key("once") is True


async def test_many_concurrent_adds_on_one_queue_wait_for_a_connection(queue: Queue) -> None:
    # More concurrent commands than the pool has connections: callers wait, none fails.
    jobs = await asyncio.gather(*(queue.add("burst", {"i": i}) for i in range(300)))
    assert len({j.id for j in jobs}) == 300
    assert (await queue.get_job_counts()).waiting == 300


async def test_obliterate_removes_schedulers_dedup_keys_and_flows_too(
    queue: Queue, redis_client: Redis, redis_url: str
) -> None:
    from jobq import Deduplication, FlowJob, FlowProducer

    await queue.upsert_scheduler("nightly", cron="0 2 * * *", name="cleanup")
    await queue.add("once", None, JobOptions(deduplication=Deduplication(key="k", ttl=60_000)))
    async with FlowProducer(connection=redis_url) as flows:
        await flows.add(
            FlowJob(name="parent", queue=queue.name, children=[FlowJob(name="c", queue=queue.name)])
        )
    assert await queue_keys(redis_client, queue) != []
    await queue.obliterate(batch=2)
    assert await queue_keys(redis_client, queue) == []


async def test_waiting_ids_page_through_prioritised_and_plain_jobs_in_run_order(
    queue: Queue,
) -> None:
    plain = [(await queue.add("p", i)).id for i in range(5)]
    prio = [(await queue.add("h", i, JobOptions(priority=1 + i))).id for i in range(3)]
    everything = await queue.get_job_ids("waiting")
    assert everything == prio + plain
    pages = [await queue.get_job_ids("waiting", s, s + 2) for s in range(0, 8, 3)]
    assert [i for page in pages for i in page] == everything
    assert await queue.get_job_ids("waiting", 2, 3) == [prio[2], plain[0]]
    assert await queue.get_job_ids("waiting", 6, -1) == plain[3:]
    assert await queue.get_job_ids("waiting", 8, 20) == []
