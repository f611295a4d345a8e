"""Events written in batches: a bulk add, a claim and a batch of completions each
write one stream entry for all their jobs, and every reader gives one event per job.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from jobq import JobOptions, Queue, QueueEvent, QueueEvents
from jobq._eventwire import expand, job_event
from jobq.scripts import FinishItem
from tests.jobq import scriptcalls

# Ids and names of varied lengths, with the characters a naive split would trip on.
IDS = ["a", "b,c", "ünï-cödé", "x" * 40]


async def entries(queue: Queue) -> list[tuple[bytes, dict[bytes, bytes]]]:
    raw: Any = await queue.client.xrange(queue.keys.events)
    return list(raw)


async def events(queue: Queue) -> list[QueueEvent]:
    return [e for sid, f in await entries(queue) for e in QueueEvent.from_entry(sid, f)]


async def test_a_bulk_add_writes_one_added_entry_read_back_per_job(queue: Queue) -> None:
    jobs = await queue.add_bulk(
        [(f"name-{i}", {"i": i}, JobOptions(job_id=job_id)) for i, job_id in enumerate(IDS)]
    )
    assert [j.id for j in jobs] == IDS

    [(sid, fields)] = await entries(queue)
    assert b"id#" in fields  # one entry for the four jobs
    got = QueueEvent.from_entry(sid, fields)
    assert [(e.event, e.job_id, e.fields) for e in got] == [
        ("added", job_id, {"name": f"name-{i}"}) for i, job_id in enumerate(IDS)
    ]
    assert {e.stream_id for e in got} == {sid.decode()}


async def test_a_single_job_is_a_plain_entry(queue: Queue) -> None:
    await queue.add("one", {}, JobOptions(job_id="solo"))
    [(_, fields)] = await entries(queue)
    assert fields == {b"e": b"added", b"id": b"solo", b"name": b"one"}


async def test_a_claim_and_a_finish_write_one_entry_each(queue: Queue) -> None:
    await queue.add_bulk([("job", {}, JobOptions(job_id=job_id)) for job_id in IDS])
    reply = await scriptcalls.claim(queue.scripts, count=len(IDS), worker_id="w-1")
    assert [j.id for j in reply.jobs] == IDS
    # A return value too large for the stream is left out of its event.
    big = b'"' + b"x" * 20_000 + b'"'
    values = [b'{"ok":true}', b"null", big, b'"\\u00fc,"']
    codes = await scriptcalls.finish(
        queue.scripts,
        [
            FinishItem(j.id, j.token, "c", value)
            for j, value in zip(reply.jobs, values, strict=True)
        ],
    )
    assert codes == [1, 1, 1, 1]

    raw = await entries(queue)
    # One entry each for the added, active and completed events, whatever the count.
    assert [f[b"e"] for _, f in raw] == [b"added", b"active", b"drained", b"completed"]
    active, completed = raw[1][1], raw[3][1]
    assert (active[b"e"], b"id#" in active) == (b"active", True)
    assert (completed[b"e"], b"id#" in completed) == (b"completed", True)
    got = await events(queue)
    assert [(e.event, e.job_id, e.fields) for e in got[len(IDS) :]] == [
        *[("active", job_id, {"w": "w-1"}) for job_id in IDS],
        ("drained", None, {}),
        ("completed", IDS[0], {"rv": '{"ok":true}'}),
        ("completed", IDS[1], {"rv": "null"}),
        ("completed", IDS[2], {}),
        ("completed", IDS[3], {"rv": '"\\u00fc,"'}),
    ]


async def test_a_value_every_job_of_a_batch_shares_is_written_once(queue: Queue) -> None:
    await queue.add_bulk([("same", {}, JobOptions(job_id=job_id)) for job_id in IDS])
    [(sid, fields)] = await entries(queue)
    assert fields[b"name"] == b"same"
    assert b"name#" not in fields
    assert [(e.job_id, e.fields) for e in QueueEvent.from_entry(sid, fields)] == [
        (job_id, {"name": "same"}) for job_id in IDS
    ]


BIG = b'"' + b"x" * 20_000 + b'"'  # too large for the stream: the job's event has no value


@pytest.mark.parametrize(
    "values",
    [
        [b"1", b"1", b"2", b"1"],  # differs after a run of the same
        [b"1", b"1", b"1", BIG],  # the last has none
        [BIG, b"1", b"1", b"1"],  # the first has none
        [b"1", BIG, BIG, b"1"],
    ],
)
async def test_values_that_differ_within_a_batch_are_each_kept(
    queue: Queue, values: list[bytes]
) -> None:
    await queue.add_bulk([("job", {}, JobOptions(job_id=job_id)) for job_id in IDS])
    reply = await scriptcalls.claim(queue.scripts, count=len(IDS))
    items = [FinishItem(j.id, j.token, "c", v) for j, v in zip(reply.jobs, values, strict=True)]
    await scriptcalls.finish(queue.scripts, items)
    raw = await entries(queue)
    assert b"rv#" in raw[-1][1]
    got = [e for e in await events(queue) if e.event == "completed"]
    assert [(e.job_id, e.fields.get("rv")) for e in got] == [
        (job_id, None if v is BIG else v.decode()) for job_id, v in zip(IDS, values, strict=True)
    ]


async def test_wait_for_job_finds_a_removed_jobs_result_inside_a_batch(queue: Queue) -> None:
    await queue.add_bulk([("job", {}, JobOptions(job_id=j)) for j in IDS])
    reply = await scriptcalls.claim(queue.scripts, count=len(IDS))
    # keep_count=0: removed on completion, as a worker reports remove_on_complete.
    await scriptcalls.finish(
        queue.scripts,
        [
            FinishItem(j.id, j.token, "c", f'{{"n":{i}}}', keep_count=0)
            for i, j in enumerate(reply.jobs)
        ],
    )
    assert await queue.get_job_state(IDS[2]) == "unknown"  # only its event is left
    for i, job_id in enumerate(IDS):
        assert await queue.wait_for_job(job_id, timeout=5) == {"n": i}


async def test_queue_events_follows_batches_and_skips_a_malformed_entry(
    queue: Queue, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with QueueEvents(queue.name, connection=redis_url, block_ms=2_000) as follower:
        # Written by hand: lengths that claim more bytes than the entry holds.
        await queue.client.xadd(queue.keys.events, {"e": "added", "id": "ab", "id#": "1,5"})
        await queue.add_bulk([("job", {}, JobOptions(job_id=j)) for j in IDS])
        with caplog.at_level(logging.WARNING, logger="jobq.events"):
            got: list[QueueEvent] = []
            while len(got) < len(IDS):
                batch = await follower.read()
                assert batch, "no events within 2 s"
                got.extend(batch)
    assert [(e.event, e.job_id) for e in got] == [("added", j) for j in IDS]
    assert any("do not add up" in r.getMessage() for r in caplog.records)


def test_expand_reads_both_forms() -> None:
    plain = {b"e": b"failed", b"id": b"7", b"reason": b"boom"}
    assert expand(plain) == [plain]
    batch = {
        b"e": b"completed",
        b"id": b"12345",
        b"id#": b"2,1,2",
        b"rv": b"1null",
        b"rv#": b"1,-,4",
        b"w": b"w1",
    }
    assert expand(batch) == [
        {b"e": b"completed", b"w": b"w1", b"id": b"12", b"rv": b"1"},
        {b"e": b"completed", b"w": b"w1", b"id": b"3"},
        {b"e": b"completed", b"w": b"w1", b"id": b"45", b"rv": b"null"},
    ]
    assert job_event(batch, b"3") == {b"e": b"completed", b"w": b"w1", b"id": b"3"}
    assert job_event(batch, b"4") is None  # in the joined ids, but no job's id
    assert job_event(plain, b"7") is plain


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({b"id": b"abc", b"id#": b"1,1"}, "do not add up"),
        ({b"id": b"abc", b"id#": b"1,x,1"}, "bad length"),
        ({b"id": b"ab", b"id#": b"1,1", b"rv": b"1", b"rv#": b"1"}, "1 values of b'rv' for 2 ids"),
    ],
)
def test_expand_refuses_a_malformed_batch(fields: dict[bytes, bytes], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        expand(fields)


async def test_a_batch_entry_holds_at_most_100_events_and_16_kb(queue: Queue) -> None:
    await queue.add_bulk([("job", {}, JobOptions(job_id=f"j{i}")) for i in range(250)])
    sizes = [len(QueueEvent.from_entry(sid, f)) for sid, f in await entries(queue)]
    assert sizes == [100, 100, 50]

    reply = await scriptcalls.claim(queue.scripts, count=3)
    values = [b'"' + bytes([97 + i]) * 6_000 + b'"' for i in range(3)]
    await scriptcalls.finish(
        queue.scripts,
        [FinishItem(j.id, j.token, "c", v) for j, v in zip(reply.jobs, values, strict=True)],
    )
    raw = await entries(queue)
    completed = [f for _, f in raw if f[b"e"] == b"completed"]
    # Two values fit in 16 KB, the third starts a new entry (a plain one).
    assert [b"id#" in f for f in completed] == [True, False]
    got = [e for e in await events(queue) if e.event == "completed"]
    assert [e.fields["rv"] for e in got] == [v.decode() for v in values]


async def test_the_stream_keeps_about_events_max_len_events(make_queue: Any) -> None:
    queue = await make_queue(events_max_len=300)
    for b in range(30):
        await queue.add_bulk([("job", {}, JobOptions(job_id=f"b{b}-{i}")) for i in range(100)])
    kept = await events(queue)
    # 3,000 added events; whole stream nodes are trimmed, so a little more stays.
    assert 300 <= len(kept) <= 900
    assert kept[-1].job_id == "b29-99"
