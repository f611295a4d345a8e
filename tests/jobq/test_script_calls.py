"""How scripts are called: one key per script, and the dedicated connection of a queue."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from importlib import resources
from typing import Any

import pytest
import redis.exceptions
from redis.asyncio.connection import Connection

from jobq import JobOptions, Queue
from jobq.connection import ConnectionSettings, create_client
from jobq.keys import QueueKeys
from jobq.scripts import _pack
from tests.conftest import QueueFactory


def test_common_lua_derives_the_key_names_keys_py_builds() -> None:
    """Scripts get only the base (KEYS[1]); the names they derive must be keys.py's."""
    keys = QueueKeys("jobq", "names")
    assert keys.script_keys == (keys.base,)
    common = resources.files("jobq.scripts").joinpath("lua", "includes", "common.lua").read_text()
    derived = set(re.findall(r"K_BASE \.\. '([^']+)'", common))
    built = {
        getattr(keys, slot)[len(keys.base) :]
        for slot in QueueKeys.__slots__
        if isinstance(getattr(keys, slot), str) and getattr(keys, slot).startswith(keys.base)
    }
    built |= {keys.group("")[len(keys.base) :], keys.group_rate("")[len(keys.base) :]}
    standard = {
        keys.wait, keys.prio, keys.delayed, keys.active, keys.completed, keys.failed,
        keys.meta, keys.events, keys.marker, keys.limiter, keys.id,
        keys.metrics_completed, keys.metrics_failed, keys.workers,
    }  # fmt: skip
    assert {k[len(keys.base) :] for k in standard} <= derived
    assert derived <= built, derived - built


def test_pack_matches_redis_py() -> None:
    conn = Connection()
    command = ("EVALSHA", "a" * 40, 1, "{jobq:q}", "é", b"\x00\r\n", 0, -7, 1.5, 10**20, "")
    assert _pack(conn, command) == b"".join(conn.pack_command(*command))
    # Repeated arguments are packed once; equal-looking ones of other types apart.
    payload = b"p" * 100
    repeated = ("EVALSHA", 1, "1", b"1", 1, "", "", 0, 0.0, payload, payload, "1", b"1", 1.0, 1)
    assert _pack(conn, repeated) == b"".join(conn.pack_command(*repeated))
    with pytest.raises(redis.exceptions.DataError):
        _pack(conn, ("EVALSHA", True))
    with pytest.raises(redis.exceptions.DataError):
        _pack(conn, ("EVALSHA", 1, True))  # not taken for the 1 packed before


async def test_dedicated_connection_serves_calls_and_recovers(make_queue: QueueFactory) -> None:
    q = await make_queue()
    scripts = q.scripts
    pool: Any = q.client.connection_pool
    assert scripts._dedicated
    job = await q.add("a", {"n": 1})
    [wire] = scripts._wires
    conn = wire.conn
    assert conn in pool._in_use_connections
    # Concurrent adds: two take the dedicated connections, the others the pool's.
    jobs = await asyncio.gather(*(q.add("b", {"n": i}) for i in range(30)))
    assert len({j.id for j in jobs} | {job.id}) == 31
    assert len(scripts._wires) == 2
    assert scripts._wires[0] is wire
    assert sorted(map(id, scripts._idle)) == sorted(map(id, scripts._wires))
    # A call cancelled while waiting for its reply must not leave that reply for the next.
    task = asyncio.create_task(q.add("c", None, JobOptions(job_id="cancelled-1")))
    for _ in range(3):
        await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    after = await q.add("d", None, JobOptions(job_id="after-1"))
    assert after.id == "after-1"
    assert (await q.get_job("after-1")) is not None
    # NOSCRIPT on the dedicated connection: loaded again and called again.
    await q.client.script_flush()
    assert (await q.add("e", None, JobOptions(job_id="reloaded-1"))).id == "reloaded-1"
    assert await scripts.state("reloaded-1") == "waiting"
    # close() gives the connection back to the pool.
    await scripts.close()
    assert scripts._wires == []
    assert conn not in pool._in_use_connections
    assert await scripts.state("reloaded-1") == "waiting"  # through the client now


async def test_a_client_passed_in_gets_no_dedicated_connection(redis_url: str) -> None:
    client = create_client(ConnectionSettings.from_url(redis_url))
    try:
        async with Queue("plain", connection=client) as q:
            assert not q.scripts._dedicated
            await q.add("a", None)
            assert q.scripts._wires == []
    finally:
        await client.aclose()


async def test_dedicated_connection_killed_by_the_server_is_reported_then_replaced(
    make_queue: QueueFactory,
) -> None:
    q = await make_queue()
    await q.add("a", None)
    [wire] = q.scripts._wires
    conn_id = await wire.call(b"*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n")
    assert await q.client.client_kill_filter(_id=conn_id) == 1
    # The call that finds the connection gone fails as redis-py's would; none is retried.
    with pytest.raises(redis.exceptions.ConnectionError):
        await q.add("lost", None, JobOptions(job_id="maybe-1"))
    # The next call connects again, on the same pooled connection.
    assert (await q.add("b", None, JobOptions(job_id="after-kill"))).id == "after-kill"
    assert q.scripts._wires == [wire]
    assert await wire.call(b"*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n") != conn_id


async def test_dedicated_connection_times_out_and_recovers(redis_url: str) -> None:
    settings = ConnectionSettings.from_url(redis_url, socket_timeout=0.3)
    async with Queue(f"wire-{uuid.uuid4().hex[:8]}", connection=settings) as q:
        await q.add("a", None)
        assert q.scripts._dedicated
        admin = create_client(ConnectionSettings.from_url(redis_url))
        try:
            # Every write command waits 1 s: the add's reply comes too late.
            await admin.client_pause(1000, all=False)
            with pytest.raises(redis.exceptions.TimeoutError):
                await q.add("slow", None)
            await admin.client_unpause()
        finally:
            await admin.aclose()
        # The late reply was dropped with the connection: the next add gets its own.
        job = await q.add("b", None, JobOptions(job_id="after-timeout"))
        assert job.id == "after-timeout"
        assert await q.scripts.state("after-timeout") == "waiting"


async def test_a_reply_error_keeps_the_connection(make_queue: QueueFactory) -> None:
    q = await make_queue()
    await q.add("a", None)
    [wire] = q.scripts._wires
    with pytest.raises(redis.exceptions.ResponseError, match="unknown command"):
        await wire.call(b"*1\r\n$9\r\nNOSUCHCMD\r\n")
    assert wire.conn.is_connected
    assert await wire.call(b"*1\r\n$4\r\nPING\r\n") in (b"PONG", "PONG")
