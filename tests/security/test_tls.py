"""TLS: jobq works over ``rediss://`` with the CA given in ``ssl_ca_certs``, and a
certificate that does not verify is a setup error at once, not an outage a
worker waits out.

The server is a private one started with ``--tls-port`` (see the ``tls_server``
fixture); without a TLS-capable server binary these tests are skipped, unless
``JOBQ_REQUIRE_TLS=1``.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from redis.asyncio.connection import SSLConnection

from jobq import Job, Queue, Worker
from jobq.errors import ConnectionSetupError, ServerUnreachableError
from tests.security.conftest import TlsServer, running_worker


def _name() -> str:
    return f"tls-{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("scheme", ["rediss", "valkeys"])
async def test_add_claim_complete_over_tls(tls_server: TlsServer, scheme: str) -> None:
    url = tls_server.url().replace("rediss://", f"{scheme}://")
    name = _name()
    seen: list[tuple[str, object]] = []

    async def work(job: Job) -> str:
        seen.append((job.name, job.data))
        await job.update_progress(100)
        return f"done {job.data}"

    async with Queue(name, connection=url) as q, running_worker(name, work, connection=url):
        job = await q.add("encrypt", {"n": 1})
        assert await q.wait_for_job(job.id, timeout=10) == "done {'n': 1}"
        stored = await q.get_job(job.id)
        assert stored is not None
        assert stored.progress == 100
        # The server's only TCP port speaks TLS, and the client used TLS for it.
        assert issubclass(q.client.connection_pool.connection_class, SSLConnection)
    assert seen == [("encrypt", {"n": 1})]


@pytest.mark.parametrize("ca", ["other-ca", None])
async def test_an_untrusted_certificate_is_a_setup_error_at_once(
    tls_server: TlsServer, ca: str | None
) -> None:
    url = tls_server.url(ca) if ca else f"rediss://127.0.0.1:{tls_server.port}/0"
    q = Queue(_name(), connection=url)
    started = time.monotonic()
    with pytest.raises(ConnectionSetupError, match="TLS certificate does not verify") as info:
        await q.open()
    await q.close()
    assert time.monotonic() - started < 5
    assert not isinstance(info.value, ServerUnreachableError)
    assert "ssl_ca_certs" in str(info.value)


async def test_a_worker_with_the_wrong_ca_stops_instead_of_waiting(tls_server: TlsServer) -> None:
    async def never(job: Job) -> None:
        raise AssertionError("unreachable")

    worker = Worker(
        _name(), never, connection=tls_server.url("other-ca"), install_signal_handlers=False
    )
    with pytest.raises(ConnectionSetupError, match="TLS certificate does not verify"):
        await asyncio.wait_for(worker.run(), 10)
