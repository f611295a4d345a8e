"""Signed job envelopes: producers seal, workers that require signatures refuse
anything else without running it, and every path that copies a job (scheduler
ticks, flows, debounce, dead-letter replays) keeps a valid signature or is
refused on purpose. Also: error messages about payloads never show values."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from jobq import (
    DeadLetters,
    Deduplication,
    FlowJob,
    FlowProducer,
    Job,
    JobOptions,
    Queue,
    WorkerOptions,
)
from jobq.errors import ConfigurationError, PayloadError, UnrecoverableError
from jobq.serialization import decode, encode
from jobq.signing import ENV_KEYS, SIGNATURE_INVALID, JobSigner
from tests.conftest import QueueFactory, WorkerFactory

K1 = b"k" * 32
K2 = b"\x02" * 32
SIGNER = JobSigner({"k1": K1})
SECRET = "4111-1111-1111-1111"


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    """Poll ``check`` until it returns something truthy (a condition, not a sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` holds (checked between event-loop turns)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


class Recorder:
    """A processor that records what it ran, and a failed-job hook that records why."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, Any]] = []
        self.failed: dict[str, BaseException] = {}

    async def __call__(self, job: Job) -> Any:
        self.ran.append((job.name, job.data))
        if job.data == "fail":
            raise RuntimeError("asked to fail")
        return job.data

    def hook(self, job: Job, exc: BaseException) -> None:
        self.failed[job.id] = exc


# --- keys and the envelope, without a server ---------------------------------------------


def test_keys_from_the_environment_first_signs_all_verify() -> None:
    env = {ENV_KEYS: f"new:{_b64(K2)}, old:{_b64(K1)}"}
    rotated = JobSigner.from_env(env)
    assert rotated is not None
    assert rotated.key_ids == ("new", "old")
    assert rotated.required
    old_job = SIGNER.seal("jobq", "q", "n", b"1", b"")
    assert old_job.startswith(b'{"sig":"k1:')
    assert JobSigner({"k1": K1, "x": K2}).verify("jobq", "q", "n", b"1", old_job) is None
    new_job = rotated.seal("jobq", "q", "n", b"1", b"")
    assert new_job.startswith(b'{"sig":"new:')
    assert JobSigner({"old": K1}).verify("jobq", "q", "n", b"1", new_job) == (
        f"{SIGNATURE_INVALID}: signed with key id 'new', which this worker does not have "
        "(it has 'old')"
    )
    assert JobSigner.from_env({}) is None
    lax = JobSigner.from_env({ENV_KEYS: f"a:{_b64(K1)}", "JOBQ_SIGNING_REQUIRED": "0"})
    assert lax is not None
    assert not lax.required


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("k1", "entry 1 must look like kid:<base64 key>"),
        ("k1:%%%notbase64", "the key of entry 1 ('k1') is not valid base64"),
        (f"k1:{_b64(b'short')}", "signing key 'k1' must be at least 16 bytes"),
        (f"bad id:{_b64(K1)}", "signing key id 'bad id' must be 1-64 characters"),
        (f"a:{_b64(K1)},a:{_b64(K2)}", "signing key id 'a' appears twice"),
        (" , ", "holds no keys"),
    ],
)
def test_bad_keys_are_refused_without_showing_them(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^JOBQ_SIGNING_KEYS") as info:
        JobSigner.parse(text)
    assert message in str(info.value)
    assert _b64(K1) not in str(info.value)
    assert K1.decode() not in repr(SIGNER)  # the repr names key ids only


def test_the_signature_is_the_last_member_and_covers_queue_name_data_and_options() -> None:
    opts = b'{"attempts":3,"tc":{"traceparent":"00-ab"}}'
    sealed = SIGNER.seal("jobq", "q", "report", b'{"x":1}', opts)
    assert sealed.startswith(opts[:-1] + b',"sig":"k1:')
    assert JobSigner.unsealed(sealed) == opts
    assert JobSigner.unsealed(opts) == opts
    assert SIGNER.verify("jobq", "q", "report", b'{"x":1}', sealed) is None

    mismatch = f"{SIGNATURE_INVALID}: the signature (key id 'k1') does not match"
    for prefix, queue, name, data, options in [
        ("other", "q", "report", b'{"x":1}', sealed),
        ("jobq", "q2", "report", b'{"x":1}', sealed),
        ("jobq", "q", "reporT", b'{"x":1}', sealed),
        ("jobq", "q", "report", b'{"x":2}', sealed),
        ("jobq", "q", "report", b'{"x":1}', sealed.replace(b'"attempts":3', b'"attempts":9')),
    ]:
        reason = SIGNER.verify(prefix, queue, name, data, options)
        assert reason is not None
        assert reason.startswith(mismatch)
    assert SIGNER.verify("jobq", "q", "report", b"1", opts) == (
        f"{SIGNATURE_INVALID}: the job is not signed, and this worker only runs signed jobs "
        "(set JOBQ_SIGNING_KEYS for the producer that adds it)"
    )
    assert SIGNER.verify("jobq", "q", "report", b"1", None) is not None
    assert SIGNER.verify("jobq", "q", "report", b"1", b'{"sig":"k1:xyz"}') == (
        f"{SIGNATURE_INVALID}: the signature is malformed"
    )
    lax = JobSigner({"k1": K1}, required=False)
    assert lax.verify("jobq", "q", "report", b"1", opts) is None
    assert lax.verify("jobq", "q", "report", b"2", SIGNER.seal("jobq", "q", "report", b"1", b""))
    # Signing again replaces the old signature (an edited dead-letter replay does this).
    again = SIGNER.seal("jobq", "q", "report", b"2", sealed)
    assert again.count(b'"sig"') == 1
    assert SIGNER.verify("jobq", "q", "report", b"2", again) is None


@pytest.mark.parametrize(
    "value",
    [
        {"card": {SECRET}},
        {"card": float("nan"), "pin": SECRET},
        {"card": SECRET + "\ud800"},
        {"card": object(), "note": SECRET},
        {"card": [SECRET] * 50_000},
    ],
)
def test_payload_errors_name_the_field_never_the_value(value: Any) -> None:
    with pytest.raises(PayloadError) as info:
        encode(value, limit=100_000, what="data")
    text = str(info.value)
    assert SECRET not in text
    assert text.startswith("data")
    if not isinstance(value["card"], list):  # the size error names no path
        assert '["card"]' in text


def test_corrupt_records_are_reported_without_their_text() -> None:
    for raw in (('{"card": "' + SECRET + '"').encode(), b'{"card": "' + b"\xff" + b'"}'):
        with pytest.raises(PayloadError) as info:
            decode(raw, what="job 7 data")
        assert SECRET not in str(info.value)
        assert str(info.value).startswith("job 7 data: corrupt record")


# --- producers and workers ------------------------------------------------------------------


async def test_signed_jobs_run_and_forged_ones_fail_unrun_and_are_dead_lettered(
    make_queue: QueueFactory,
    start_worker: WorkerFactory,
    redis_client: Redis,
    redis_url: str,
) -> None:
    dlq = f"dlq-{uuid.uuid4().hex[:8]}"
    q = await make_queue(signing=SIGNER)
    await q.set_dead_letter_queue(dlq)
    rec = Recorder()
    await start_worker(rec, signing=SIGNER, failed_job_handler=rec.hook)

    good = await q.add("pay", {"amount": 5})
    raw: Any = await redis_client.hget(q.keys.job(good.id), "o")
    assert raw is not None
    assert raw.startswith(b'{"sig":"k1:')
    assert await q.wait_for_job(good.id, timeout=10) == {"amount": 5}

    # Write access to Redis alone: a job written by hand, and one by an unsigned queue.
    k = q.keys
    await redis_client.hset(k.job("evil"), mapping={"n": "pay", "d": '"' + SECRET + '"', "t": 0})
    await redis_client.lpush(k.wait, "evil")
    await redis_client.zadd(k.marker, {"0": 0})
    unsigned = await (await make_queue(signing=False)).add("pay", {"amount": 6})

    await until(lambda: {"evil", unsigned.id} <= rec.failed.keys())
    assert rec.ran == [("pay", {"amount": 5})]
    for job_id in ("evil", unsigned.id):
        exc = rec.failed[job_id]
        assert isinstance(exc, UnrecoverableError)
        assert str(exc).startswith(f"{SIGNATURE_INVALID}: the job is not signed")
        assert SECRET not in str(exc)
    async with DeadLetters(connection=redis_url, name=dlq) as dead:
        entries = await eventually(lambda: _two(dead))
        assert sorted(e.job_id for e in entries) == sorted(["evil", unsigned.id])
        assert all((e.failed_reason or "").startswith(SIGNATURE_INVALID) for e in entries)
        assert all(e.attempts_made == 1 for e in entries)


async def test_a_changed_job_or_one_moved_to_another_queue_is_refused(
    make_queue: QueueFactory, start_worker: WorkerFactory, redis_client: Redis
) -> None:
    q = await make_queue(signing=SIGNER)
    other = await make_queue(f"other-{uuid.uuid4().hex[:8]}", signing=SIGNER)
    await q.pause()
    changed = await q.add("pay", {"amount": 5})
    await redis_client.hset(q.keys.job(changed.id), "d", '{"amount":5000}')
    # The whole signed record copied into another queue: signed for q, not for other.
    h: Any = await redis_client.hgetall(q.keys.job(changed.id))
    await redis_client.hset(other.keys.job("moved"), mapping=h)
    await redis_client.hset(other.keys.job("moved"), "d", '{"amount":5}')
    await redis_client.lpush(other.keys.wait, "moved")

    rec = Recorder()
    await start_worker(rec, signing=SIGNER, failed_job_handler=rec.hook)
    await start_worker(rec, name=other.name, signing=SIGNER, failed_job_handler=rec.hook)
    await q.resume()
    await until(lambda: len(rec.failed) == 2)
    assert rec.ran == []
    for exc in rec.failed.values():
        assert str(exc).startswith(f"{SIGNATURE_INVALID}: the signature (key id 'k1') does not")
    stored = await q.get_job(changed.id)
    assert stored is not None
    assert (stored.failed_reason or "").startswith(SIGNATURE_INVALID)
    assert stored.attempts_made == 1


async def test_batch_workers_refuse_forged_jobs_and_run_the_rest_of_the_batch(
    make_queue: QueueFactory, start_worker: WorkerFactory, redis_client: Redis
) -> None:
    q = await make_queue(signing=SIGNER)
    good = [await q.add("n", i) for i in range(3)]
    await redis_client.hset(q.keys.job("evil"), mapping={"n": "n", "d": "99", "t": 0})
    await redis_client.lpush(q.keys.wait, "evil")
    batches: list[list[Any]] = []
    failed: dict[str, BaseException] = {}

    async def batch(jobs: list[Job]) -> list[Any]:
        batches.append([j.data for j in jobs])
        return [j.data * 10 for j in jobs]

    await start_worker(
        batch,
        signing=SIGNER,
        options=WorkerOptions(batch_size=4, batch_wait=0),
        failed_job_handler=lambda job, exc: failed.update({job.id: exc}),
    )
    for job in good:
        assert await q.wait_for_job(job.id, timeout=10) == job.data * 10
    await until(lambda: "evil" in failed)
    assert str(failed["evil"]).startswith(f"{SIGNATURE_INVALID}: the job is not signed")
    assert sorted(d for b in batches for d in b) == [0, 1, 2]


async def test_a_worker_with_signing_off_ignores_signatures(
    make_queue: QueueFactory, start_worker: WorkerFactory
) -> None:
    signed = await make_queue(signing=SIGNER)
    plain = await make_queue(signing=False)
    rec = Recorder()
    await start_worker(rec, signing=False)
    a, b = await signed.add("a", 1), await plain.add("b", 2)
    assert await signed.wait_for_job(a.id, timeout=10) == 1
    assert await plain.wait_for_job(b.id, timeout=10) == 2


async def test_not_required_runs_unsigned_jobs_but_still_refuses_bad_signatures(
    make_queue: QueueFactory, start_worker: WorkerFactory, redis_client: Redis
) -> None:
    lax = JobSigner({"k1": K1}, required=False)
    q = await make_queue(signing=SIGNER)
    plain = await make_queue(signing=False)  # the same queue, adding unsigned jobs
    bad = await q.add("pay", 1)  # no worker yet: changed before anyone claims it
    await redis_client.hset(q.keys.job(bad.id), "n", "refund")
    rec = Recorder()
    await start_worker(rec, signing=lax, failed_job_handler=rec.hook)
    unsigned = await plain.add("pay", 2)
    assert await plain.wait_for_job(unsigned.id, timeout=10) == 2
    await until(lambda: bad.id in rec.failed)
    assert rec.ran == [("pay", 2)]


async def test_environment_keys_sign_and_verify(
    make_queue: QueueFactory, start_worker: WorkerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_KEYS, f"envkey:{_b64(K2)}")
    q = await make_queue()
    assert q.signer is not None
    assert q.signer.key_ids == ("envkey",)
    rec = Recorder()
    w = await start_worker(rec)
    assert w.queue.signer is not None
    job = await q.add("n", 3)
    assert await q.wait_for_job(job.id, timeout=10) == 3
    assert (await make_queue(signing=False)).signer is None  # False wins over the environment


# --- paths that copy jobs ------------------------------------------------------------------


async def test_scheduler_ticks_inherit_the_template_signature_and_a_forged_template_fails(
    make_queue: QueueFactory, start_worker: WorkerFactory, redis_client: Redis
) -> None:
    q = await make_queue(signing=SIGNER)
    rec = Recorder()
    ticked = asyncio.Event()

    async def tick(job: Job) -> Any:
        if job.data == "tick":
            ticked.set()
        return await rec(job)

    await start_worker(tick, signing=SIGNER, failed_job_handler=rec.hook)
    await q.upsert_scheduler("s", every=50, name="tick", data="tick")
    await asyncio.wait_for(ticked.wait(), 10)
    assert rec.failed == {}

    # Somebody rewrites the stored template: the ticks it makes are refused.
    await redis_client.hset(q.keys.scheduler("s"), "d", '"forged"')
    await until(lambda: bool(rec.failed))
    assert ("tick", "forged") not in rec.ran
    assert all(str(e).startswith(SIGNATURE_INVALID) for e in rec.failed.values())
    await q.remove_scheduler("s")


async def test_flow_nodes_are_signed_in_their_own_queues(
    make_queue: QueueFactory,
    start_worker: WorkerFactory,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_KEYS, f"k1:{_b64(K1)}")  # FlowProducer's queues read it
    parent_q = await make_queue(signing=SIGNER)
    child_q = await make_queue(f"child-{uuid.uuid4().hex[:8]}", signing=SIGNER)
    rec = Recorder()

    async def parent(job: Job) -> Any:
        return sorted((await job.get_children_values()).values())

    await start_worker(parent, signing=SIGNER)
    await start_worker(rec, name=child_q.name, signing=SIGNER)
    async with FlowProducer(connection=redis_url) as flows:
        node = await flows.add(
            FlowJob(
                name="sum",
                queue=parent_q.name,
                children=[FlowJob(name="part", queue=child_q.name, data=i) for i in (1, 2)],
            )
        )
    assert await parent_q.wait_for_job(node.job.id, timeout=10) == [1, 2]
    assert sorted(rec.ran) == [("part", 1), ("part", 2)]


async def test_a_debounced_signed_job_keeps_a_valid_signature(
    make_queue: QueueFactory, start_worker: WorkerFactory
) -> None:
    q = await make_queue(signing=SIGNER)
    deb = Deduplication(key="doc-7", debounce=True)
    first = await q.add("save", "v1", JobOptions(delay=60_000, deduplication=deb))
    last = await q.add("save", "v2", JobOptions(delay=50, deduplication=deb, attempts=2))
    assert last.id == first.id
    rec = Recorder()
    await start_worker(rec, signing=SIGNER, failed_job_handler=rec.hook)
    assert await q.wait_for_job(first.id, timeout=10) == "v2"
    assert rec.failed == {}


async def test_dead_letter_replays_keep_or_renew_the_signature_but_never_launder(
    make_queue: QueueFactory,
    start_worker: WorkerFactory,
    redis_client: Redis,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dlq = f"dlq-{uuid.uuid4().hex[:8]}"
    q = await make_queue(signing=SIGNER)
    await q.set_dead_letter_queue(dlq)
    await q.pause()
    failing = await q.add("pay", "fail")
    await redis_client.hset(q.keys.job("evil"), mapping={"n": "pay", "d": '"x"', "t": 0})
    await redis_client.lpush(q.keys.wait, "evil")
    rec = Recorder()
    await start_worker(rec, signing=SIGNER, failed_job_handler=rec.hook)
    await q.resume()

    # This process has no keys yet: an unedited replay keeps the producer's
    # signature (and runs); the forged job stays refused.
    async with DeadLetters(connection=redis_url, name=dlq) as dead:
        entries = {e.original_id: e for e in await eventually(lambda: _two(dead))}
        kept = await dead.replay(entries[failing.id].id, by="test")
        assert await _outcome(q, kept.id) == ("failed", "asked to fail")
        refused = await dead.replay(entries["evil"].id, by="test")
        assert (await _outcome(q, refused.id))[1].startswith(SIGNATURE_INVALID)
    assert rec.ran == [("pay", "fail"), ("pay", "fail")]

    # With keys, an edited replay is signed anew, unless the job failed for its signature.
    monkeypatch.setenv(ENV_KEYS, f"k1:{_b64(K1)}")
    async with DeadLetters(connection=redis_url, name=dlq) as dead:
        fixed = await dead.replay(entries[failing.id].id, data="fixed", by="test")
        assert await _outcome(q, fixed.id) == ("completed", "fixed")
        again = await dead.replay(entries["evil"].id, data="now trusted?", by="test")
        assert (await _outcome(q, again.id))[1].startswith(SIGNATURE_INVALID)
    assert ("pay", "x") not in rec.ran
    assert ("pay", "now trusted?") not in rec.ran


async def _two(dead: DeadLetters) -> list[Any]:
    entries = await dead.list()
    return entries if len(entries) >= 2 else []


async def _outcome(q: Queue, job_id: str) -> tuple[str, Any]:
    """Wait for a job to finish: ("completed", value) or ("failed", reason)."""
    from jobq import JobFailedError

    try:
        return "completed", await q.wait_for_job(job_id, timeout=10)
    except JobFailedError as exc:
        return "failed", exc.reason
