"""Private servers for the security tests: ACL users, a requirepass server, TLS.

Every server here is started for these tests alone, in a fresh temporary
directory, on a free loopback port (and its own unix socket for the readiness
check), and stopped at teardown. Nothing talks to a shared server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from jobq import Worker
from jobq.errors import ConnectionSetupError
from jobq.server import RedisServerProcess, find_server_binary

PASSWORD = "pw-" + uuid.uuid4().hex


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def running_worker(name: str, processor: Any, **kwargs: Any) -> AsyncIterator[Worker]:
    """A worker running in the background for the block; closed (grace 0) after it."""
    kwargs.setdefault("install_signal_handlers", False)
    worker = Worker(name, processor, **kwargs)
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        if not task.done():
            await worker.close(grace=0)
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- ACL ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def acl_server() -> Iterator[RedisServerProcess]:
    """A private server whose default user stays the admin (no password)."""
    with RedisServerProcess(tcp=True) as server:
        yield server


@pytest.fixture
async def acl_admin(acl_server: RedisServerProcess) -> AsyncIterator[Redis]:
    """An admin client of the ACL server."""
    assert acl_server.port is not None
    client = Redis(host="127.0.0.1", port=acl_server.port)
    try:
        yield client
    finally:
        await client.aclose()


UserFactory = Callable[[str], Awaitable[tuple[str, str]]]


@pytest.fixture
async def make_user(acl_server: RedisServerProcess, acl_admin: Redis) -> AsyncIterator[UserFactory]:
    """``await make_user("<ACL rules>")``: a fresh user with those rules (the user
    name and password are added); returns ``(user name, its redis:// URL)``."""
    made: list[str] = []
    admin: Any = acl_admin

    async def factory(rules: str) -> tuple[str, str]:
        user = f"u{uuid.uuid4().hex[:10]}"
        await admin.execute_command("ACL", "SETUSER", user, *rules.split())
        made.append(user)
        return user, f"redis://{user}:{PASSWORD}@127.0.0.1:{acl_server.port}/0"

    yield factory
    if made:
        await admin.execute_command("ACL", "DELUSER", *made)


# --- requirepass -------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_server() -> Iterator[RedisServerProcess]:
    """A private server whose default user needs the password ``PASSWORD``."""
    with RedisServerProcess(tcp=True, config={"requirepass": PASSWORD}) as server:
        yield server


# --- TLS ---------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(where: Path) -> dict[str, Path]:
    """A CA, a server certificate it signs (for 127.0.0.1 and localhost), and a
    second, unrelated CA; made with the ``openssl`` command."""
    subj = "/O=jobq tests/CN="
    for ca in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-subj", subj + ca, cwd=where,
        )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
        "-out", "server.csr", "-subj", subj + "localhost", cwd=where,
    )  # fmt: skip
    (where / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.cnf", cwd=where,
    )  # fmt: skip
    return {name: where / f"{name}.crt" for name in ("ca", "other-ca", "server")} | {
        "server-key": where / "server.key"
    }


def _tls_candidates() -> list[str]:
    found: list[str] = []
    for name in (os.environ.get("JOBQ_TEST_SERVER"), None, "valkey-server", "redis-server"):
        with contextlib.suppress(ConnectionSetupError):
            path = find_server_binary(name) if name is not None else find_server_binary()
            if path not in found:
                found.append(path)
    return found


class TlsServer:
    """A started TLS server: its port, certificates and binary."""

    def __init__(self, process: RedisServerProcess, port: int, certs: dict[str, Path]) -> None:
        self.process = process
        self.port = port
        self.certs = certs

    def url(self, ca: str = "ca") -> str:
        """A rediss:// URL trusting the named CA certificate."""
        return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.certs[ca]}"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    """A private server that speaks only TLS on its TCP port (plain on a unix
    socket for the readiness check). Skipped when no server binary here has TLS,
    or ``openssl`` is missing, unless ``JOBQ_REQUIRE_TLS=1``."""
    required = os.environ.get("JOBQ_REQUIRE_TLS") == "1"

    def unavailable(reason: str) -> None:
        if required:
            pytest.fail(f"JOBQ_REQUIRE_TLS=1 but {reason}")
        pytest.skip(reason)

    if shutil.which("openssl") is None:
        unavailable("the openssl command is not installed (needed to make test certificates)")
    certs = make_certificates(tmp_path_factory.mktemp("tls"))
    tried = []
    for binary in _tls_candidates():
        port = free_port()
        server = RedisServerProcess(
            binary,
            extra_args=[
                "--tls-port", str(port),
                "--tls-cert-file", str(certs["server"]),
                "--tls-key-file", str(certs["server-key"]),
                "--tls-ca-cert-file", str(certs["ca"]),
                "--tls-auth-clients", "no",
            ],
        )  # fmt: skip
        try:
            server.start()
        except ConnectionSetupError:
            tried.append(binary)  # built without TLS ("Failed finding TLS support")
            continue
        try:
            yield TlsServer(server, port, certs)
        finally:
            server.stop()
        return
    unavailable(f"no server binary with TLS support here (tried: {', '.join(tried) or 'none'})")
