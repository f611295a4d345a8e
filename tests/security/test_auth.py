"""A server with ``requirepass``: the password from the URL or from
``REDIS_PASSWORD`` works; a wrong or missing one fails at once with a message
that names the server and the URL but never the password."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from jobq import Job, Queue, Worker
from jobq.connection import ConnectionSettings
from jobq.errors import ConnectionSetupError, ServerUnreachableError
from jobq.server import RedisServerProcess
from tests.security.conftest import PASSWORD, running_worker


def _name() -> str:
    return f"auth-{uuid.uuid4().hex[:10]}"


async def _round_trip(connection: Any) -> None:
    """Add a job, have a worker on the same connection complete it."""
    name = _name()

    async def double(job: Job) -> int:
        return int(job.data) * 2

    async with (
        Queue(name, connection=connection) as q,
        running_worker(name, double, connection=connection),
    ):
        job = await q.add("double", 21)
        assert await q.wait_for_job(job.id, timeout=10) == 42


async def test_password_in_the_url(auth_server: RedisServerProcess) -> None:
    await _round_trip(f"redis://:{PASSWORD}@127.0.0.1:{auth_server.port}/0")


async def test_password_from_redis_password(auth_server: RedisServerProcess) -> None:
    settings = ConnectionSettings.from_env(
        {
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(auth_server.port),
            "REDIS_PASSWORD": PASSWORD,
        }
    )
    assert settings is not None
    assert PASSWORD not in settings.redacted_url
    await _round_trip(settings)


@pytest.mark.parametrize("userinfo", [":wrong-password@", "", "someone:wrong-password@"])
async def test_a_refused_login_is_a_clear_setup_error_without_the_password(
    auth_server: RedisServerProcess, userinfo: str
) -> None:
    url = f"redis://{userinfo}127.0.0.1:{auth_server.port}/0"
    settings = ConnectionSettings.from_url(url)
    q = Queue(_name(), connection=settings)
    started = time.monotonic()
    with pytest.raises(ConnectionSetupError) as info:
        await q.open()
    await q.close()
    assert time.monotonic() - started < 5
    assert not isinstance(info.value, ServerUnreachableError)  # no use retrying
    text = str(info.value)
    assert f"Redis at 127.0.0.1:{auth_server.port} refused the credentials" in text
    assert f"(URL {settings.redacted_url})" in text
    assert "wrong-password" not in text
    if userinfo:
        assert settings.redacted_url.startswith(f"redis://{userinfo.split(':')[0]}:***@")


async def test_a_worker_with_a_wrong_password_stops_instead_of_retrying(
    auth_server: RedisServerProcess,
) -> None:
    url = f"redis://:wrong-password@127.0.0.1:{auth_server.port}/0"

    async def never(job: Job) -> None:
        raise AssertionError("unreachable")

    worker = Worker(_name(), never, connection=url, install_signal_handlers=False)
    with pytest.raises(ConnectionSetupError, match="refused the credentials") as info:
        await asyncio.wait_for(worker.run(), 10)
    assert "wrong-password" not in str(info.value)
