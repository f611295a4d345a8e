"""Tests for jobq.connection: settings, the client factory and the server check."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import redis.asyncio
import redis.exceptions
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url

import jobq.server
from jobq.connection import (
    ConnectionSettings,
    ServerInfo,
    check_server,
    clone_client,
    create_client,
    redact_url,
    resolve,
)
from jobq.errors import ConfigurationError, ConnectionSetupError
from jobq.server import RedisServerProcess

_ENV_VARS = (
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_PASSWORD",
    "REDIS_USERNAME",
    "REDIS_QUEUE_DB",
    "JOBQ_PREFIX",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServerProcess]:
    with RedisServerProcess(tmp_root=tmp_path_factory.mktemp("conn")) as srv:
        yield srv


@pytest.fixture
async def client(server: RedisServerProcess) -> AsyncIterator[redis.asyncio.Redis]:
    c = create_client(ConnectionSettings(url=server.url))
    yield c
    await c.aclose()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in _ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- ConnectionSettings.from_env -----------------------------------------------------


def test_from_env_nothing_configured() -> None:
    assert ConnectionSettings.from_env({}) is None
    assert ConnectionSettings.from_env({"REDIS_URL": "", "REDIS_HOST": " "}) is None
    # A prefix alone configures no server.
    assert ConnectionSettings.from_env({"JOBQ_PREFIX": "app"}) is None


def test_from_env_reads_os_environ(clean_env: pytest.MonkeyPatch) -> None:
    assert ConnectionSettings.from_env() is None
    clean_env.setenv("REDIS_URL", "redis://envhost:6390/2")
    settings = ConnectionSettings.from_env()
    assert settings is not None
    assert settings.url == "redis://envhost:6390/2"


def test_from_env_redis_url_wins() -> None:
    env = {"REDIS_URL": "redis://a:1/3", "REDIS_HOST": "b", "REDIS_PORT": "2", "JOBQ_PREFIX": "p"}
    assert ConnectionSettings.from_env(env) == ConnectionSettings(url="redis://a:1/3", prefix="p")


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({"REDIS_HOST": "cache"}, "redis://cache:6379/0"),
        ({"REDIS_PORT": "6380"}, "redis://localhost:6380/0"),
        ({"REDIS_HOST": "cache", "REDIS_PORT": "7000"}, "redis://cache:7000/0"),
        ({"REDIS_HOST": "cache", "REDIS_QUEUE_DB": "5"}, "redis://cache:6379/5"),
        ({"REDIS_HOST": "cache", "REDIS_PASSWORD": "pw"}, "redis://:pw@cache:6379/0"),
        (
            {"REDIS_HOST": "cache", "REDIS_USERNAME": "jobs", "REDIS_PASSWORD": "pw"},
            "redis://jobs:pw@cache:6379/0",
        ),
        ({"REDIS_HOST": "cache", "REDIS_USERNAME": "jobs"}, "redis://jobs@cache:6379/0"),
        ({"REDIS_HOST": "::1"}, "redis://[::1]:6379/0"),
    ],
)
def test_from_env_host_variables(env: dict[str, str], url: str) -> None:
    settings = ConnectionSettings.from_env(env)
    assert settings is not None
    assert settings.url == url
    assert settings.prefix == "jobq"


def test_from_env_password_is_quoted_and_round_trips() -> None:
    password = "p@ss:w/rd?#%"
    settings = ConnectionSettings.from_env(
        {"REDIS_HOST": "cache", "REDIS_USERNAME": "u:s", "REDIS_PASSWORD": password}
    )
    assert settings is not None
    parsed = parse_url(settings.url)
    assert parsed["password"] == password
    assert parsed["username"] == "u:s"
    assert parsed["host"] == "cache"
    assert "p@ss" not in settings.redacted_url
    assert "***" in settings.redacted_url


def test_from_env_prefix() -> None:
    settings = ConnectionSettings.from_env({"REDIS_HOST": "h", "JOBQ_PREFIX": "myapp"})
    assert settings is not None
    assert settings.prefix == "myapp"


@pytest.mark.parametrize("bad", ["abc", "0", "65536", "-1", "6379.0", "63 79"])
def test_from_env_bad_port(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="REDIS_PORT") as info:
        ConnectionSettings.from_env({"REDIS_HOST": "h", "REDIS_PORT": bad})
    assert repr(bad.strip()) in str(info.value)


@pytest.mark.parametrize("bad", ["x", "-1", "1.5"])
def test_from_env_bad_db(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="REDIS_QUEUE_DB") as info:
        ConnectionSettings.from_env({"REDIS_HOST": "h", "REDIS_QUEUE_DB": bad})
    assert repr(bad) in str(info.value)


def test_from_env_bad_url() -> None:
    with pytest.raises(ConfigurationError, match="REDIS_URL") as info:
        ConnectionSettings.from_env({"REDIS_URL": "http://u:hunter2@h:1"})
    assert "hunter2" not in str(info.value)


def test_from_env_bad_host() -> None:
    with pytest.raises(ConfigurationError, match="REDIS_HOST"):
        ConnectionSettings.from_env({"REDIS_HOST": "redis://h:1"})


def test_from_env_bad_prefix() -> None:
    with pytest.raises(ConfigurationError, match="JOBQ_PREFIX"):
        ConnectionSettings.from_env({"REDIS_HOST": "h", "JOBQ_PREFIX": "a{b}"})


# --- ConnectionSettings.from_url / validation ---------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://user:hunter2@host:6379",
        "localhost:6379",
        "tcp://host:6379",
        "redis+sentinel://host",
        "unix://relative/sock",
        "redis://host:99999",
        "redis://host:0",
        "",
    ],
)
def test_from_url_rejects(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        ConnectionSettings.from_url(url)
    assert "hunter2" not in str(info.value)
    if "hunter2" in url:
        assert "user:***@host" in str(info.value)


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("redis://h:1/0", "redis://h:1/0"),
        ("rediss://h:1/0?ssl_cert_reqs=none", "rediss://h:1/0?ssl_cert_reqs=none"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
        ("unix:///run/redis.sock?db=2&password=x", "unix:///run/redis.sock?db=2&password=x"),
        ("valkey://h:1/0", "redis://h:1/0"),
        ("valkeys://h:1/0", "rediss://h:1/0"),
        ("REDIS://h:1", "redis://h:1"),
    ],
)
def test_from_url_accepts(url: str, stored: str) -> None:
    settings = ConnectionSettings.from_url(url, prefix="p", socket_timeout=3)
    assert settings.url == stored
    assert settings.prefix == "p"
    assert settings.socket_timeout == 3


@pytest.mark.parametrize(
    "kw",
    [
        {"socket_timeout": 0},
        {"connect_timeout": -1},
        {"health_check_interval": -1},
        {"prefix": ""},
        {"prefix": "has space"},
        {"client_name": "two words"},
    ],
)
def test_settings_validate_fields(kw: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        ConnectionSettings(url="redis://h", **kw)


def test_settings_are_frozen() -> None:
    settings = ConnectionSettings(url="redis://h")
    with pytest.raises(AttributeError):
        settings.url = "redis://other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://:secret@h:1/0", "redis://:***@h:1/0"),
        ("redis://user:secret@h:1/0", "redis://user:***@h:1/0"),
        (
            "rediss://user:s%40cret@h:1/0?ssl_cert_reqs=none",
            "rediss://user:***@h:1/0?ssl_cert_reqs=none",
        ),
        ("unix:///s.sock?password=secret&db=1", "unix:///s.sock?password=***&db=1"),
        ("redis://user@h:1/0", "redis://user@h:1/0"),
        ("redis://h:1/0", "redis://h:1/0"),
    ],
)
def test_redacted_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted
    assert ConnectionSettings(url=url).redacted_url == redacted
    assert "secret" not in repr(redact_url(url))


# --- resolve --------------------------------------------------------------------------


async def test_resolve(clean_env: pytest.MonkeyPatch, client: redis.asyncio.Redis) -> None:
    settings = ConnectionSettings(url="redis://h:1")
    assert resolve(settings) is settings
    assert resolve(client) is client
    assert resolve("valkey://h:2/1") == ConnectionSettings(url="redis://h:2/1")
    clean_env.setenv("REDIS_HOST", "envhost")
    assert resolve(None) == ConnectionSettings(url="redis://envhost:6379/0")
    with pytest.raises(ConfigurationError, match="int"):
        resolve(42)  # type: ignore[arg-type]


async def test_resolve_none_uses_embedded_server(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("JOBQ_PREFIX", "embedded")
    settings = resolve(None)
    assert isinstance(settings, ConnectionSettings)
    assert settings.url == jobq.server.embedded_server().url
    assert settings.url.startswith("unix:///")
    assert settings.prefix == "embedded"
    c = create_client(settings)
    assert await c.ping() is True
    await c.aclose()


# --- create_client ---------------------------------------------------------------------


def _connection(c: redis.asyncio.Redis) -> Any:
    """A (not yet connected) connection of ``c``'s pool, to inspect its settings."""
    make: Callable[[], Any] = c.connection_pool.make_connection  # untyped in redis-py
    return make()


async def test_create_client_unix(server: RedisServerProcess) -> None:
    settings = ConnectionSettings(url=server.url, client_name="jobq-test", socket_timeout=7)
    c = create_client(settings)
    try:
        assert await c.ping() is True
        assert await c.client_getname() == "jobq-test"  # redis-py decodes this one reply
        assert await c.echo("x") == b"x"  # decode_responses=False
        conn = _connection(c)
        assert isinstance(conn, UnixDomainSocketConnection)
        assert conn.socket_timeout == 7
        assert conn.socket_connect_timeout == 5
        assert conn.health_check_interval == 15
        assert conn.retry.get_retries() == 0
        assert conn.protocol == 2
    finally:
        await c.aclose()


async def test_create_client_tcp(tmp_path: Path) -> None:
    with RedisServerProcess(tcp=True, tmp_root=tmp_path) as srv:
        c = create_client(ConnectionSettings(url=srv.url.replace("redis://", "valkey://")))
        try:
            assert await c.ping() is True
            conn = _connection(c)
            assert conn.socket_keepalive is True
            assert conn.retry.get_retries() == 0
        finally:
            await c.aclose()


async def test_create_client_rediss_query_params() -> None:
    url = "valkeys://u:pw@tls-host:6380/3?ssl_cert_reqs=none&ssl_ca_certs=/etc/ca.pem"
    c = create_client(ConnectionSettings(url=url))
    try:
        conn = _connection(c)
        assert isinstance(conn, SSLConnection)
        assert conn.host == "tls-host"
        assert conn.port == 6380
        assert conn.db == 3
        assert conn.ssl_context.cert_reqs.name == "CERT_NONE"
        assert conn.ssl_context.ca_certs == "/etc/ca.pem"
    finally:
        await c.aclose()


async def test_create_client_unreachable(tmp_path: Path) -> None:
    c = create_client(ConnectionSettings(url=f"unix://{tmp_path}/nothing.sock"))
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            await c.ping()
    finally:
        await c.aclose()


async def test_blocking_client_outlasts_its_block(server: RedisServerProcess) -> None:
    settings = ConnectionSettings(url=server.url, socket_timeout=1.0)
    blocking = create_client(settings, blocking=True, block_timeout=3)
    plain = create_client(settings)
    try:
        assert _connection(blocking).socket_timeout == 4.0
        assert blocking.connection_pool.max_connections == 1
        started = time.monotonic()
        assert await blocking.blpop(["jobq-test:empty"], timeout=3) is None
        assert time.monotonic() - started >= 2.5
        # The same block on an ordinary client hits its 1 s socket timeout.
        with pytest.raises(redis.exceptions.TimeoutError):
            await plain.blpop(["jobq-test:empty"], timeout=3)
    finally:
        await blocking.aclose()
        await plain.aclose()


def test_blocking_client_needs_block_timeout() -> None:
    settings = ConnectionSettings(url="redis://h")
    with pytest.raises(ConfigurationError, match="block_timeout"):
        create_client(settings, blocking=True)
    with pytest.raises(ConfigurationError, match="block_timeout"):
        create_client(settings, block_timeout=3)


async def test_clone_client(server: RedisServerProcess) -> None:
    user = redis.asyncio.Redis(unix_socket_path=server.socket_path, decode_responses=True)
    clone = clone_client(user, block_timeout=2)
    try:
        conn = _connection(clone)
        assert conn.socket_timeout == 5 + 2  # redis-py's default 5 s + the block
        assert conn.retry.get_retries() == 0
        await user.rpush("jobq-test:clone", "x")
        assert await clone.blpop(["jobq-test:clone"], timeout=2) == ("jobq-test:clone", "x")
        assert await clone.blpop(["jobq-test:clone"], timeout=2) is None
    finally:
        await clone.aclose()
    assert await user.ping() is True  # closing the clone left the user's client alone
    await user.aclose()
    with pytest.raises(ConfigurationError):
        clone_client(user, block_timeout=0)


# --- check_server ----------------------------------------------------------------------


async def test_check_server_healthy(client: redis.asyncio.Redis, caplog: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with caplog.at_level(logging.WARNING, logger="jobq"):
            info = await check_server(client)
    assert info.flavor == "valkey"
    assert info.version >= (7, 2, 0)
    assert info.maxmemory_policy == "noeviction"
    assert caplog.records == []
    with pytest.raises(AttributeError):
        info.version = (1, 0, 0)  # type: ignore[misc]


async def test_check_server_warns_about_eviction(tmp_path: Path, caplog: Any) -> None:
    with RedisServerProcess(tmp_root=tmp_path) as srv:
        c = create_client(ConnectionSettings(url=srv.url))
        try:
            await c.config_set("maxmemory-policy", "allkeys-lru")
            with (
                pytest.warns(RuntimeWarning, match="noeviction") as record,
                caplog.at_level(logging.WARNING, logger="jobq"),
            ):
                info = await check_server(c, queue_name_for_messages="emails")
            assert info.maxmemory_policy == "allkeys-lru"
            text = str(record[0].message)
            assert "allkeys-lru" in text
            assert "lose jobs" in text
            assert "CONFIG SET maxmemory-policy noeviction" in text
            assert "'emails'" in text
            logged = [r for r in caplog.records if r.name == "jobq"]
            assert len(logged) == 1
            assert logged[0].levelno == logging.WARNING
            assert "allkeys-lru" in logged[0].getMessage()
        finally:
            await c.aclose()


async def test_check_server_without_config_permission(
    server: RedisServerProcess, client: redis.asyncio.Redis
) -> None:
    await client.acl_setuser(
        "noconfig", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-config"]
    )
    try:
        limited = create_client(ConnectionSettings(url=f"unix://noconfig:pw@{server.socket_path}"))
        try:
            with pytest.raises(redis.exceptions.NoPermissionError):
                await limited.config_get("maxmemory-policy")
            info = await check_server(limited)
            assert info.maxmemory_policy == "noeviction"  # read from INFO memory
        finally:
            await limited.aclose()
    finally:
        await client.acl_deluser("noconfig")


async def test_check_server_with_config_renamed_away(tmp_path: Path) -> None:
    with RedisServerProcess(
        tmp_root=tmp_path, extra_args=["--rename-command", "CONFIG", ""]
    ) as srv:
        c = create_client(ConnectionSettings(url=srv.url))
        try:
            info = await check_server(c)
            assert info.maxmemory_policy == "noeviction"
        finally:
            await c.aclose()


class _FakeRedis:
    """Just enough of a client for check_server to inspect canned INFO replies."""

    def __init__(self, server: dict[str, Any]) -> None:
        self._server = server
        self.connection_pool = type("Pool", (), {"connection_kwargs": {"host": "old", "port": 1}})

    async def info(self, section: str) -> dict[str, Any]:
        return self._server if section == "server" else {"maxmemory_policy": "noeviction"}

    async def config_get(self, name: str) -> dict[bytes, bytes]:
        return {b"maxmemory-policy": b"noeviction"}


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ({"redis_version": "7.2.5"}, ServerInfo((7, 2, 5), "redis", "noeviction")),
        ({"redis_version": "6.2.0"}, ServerInfo((6, 2, 0), "redis", "noeviction")),
        (
            {"redis_version": "7.2.4", "server_name": "valkey", "valkey_version": "8.1.1"},
            ServerInfo((8, 1, 1), "valkey", "noeviction"),
        ),
    ],
)
async def test_check_server_versions(server: dict[str, Any], expected: ServerInfo) -> None:
    assert await check_server(cast(redis.asyncio.Redis, _FakeRedis(server))) == expected


@pytest.mark.parametrize("version", ["6.0.16", "5.0.7", "garbage"])
async def test_check_server_rejects_old_servers(version: str) -> None:
    fake = cast(redis.asyncio.Redis, _FakeRedis({"redis_version": version}))
    with pytest.raises(ConnectionSetupError, match=r"6\.2|version"):
        await check_server(fake)


async def test_check_server_unreachable(tmp_path: Path) -> None:
    c = create_client(ConnectionSettings(url=f"unix://{tmp_path}/nothing.sock"))
    try:
        with pytest.raises(ConnectionSetupError, match="cannot reach"):
            await check_server(c)
    finally:
        await c.aclose()


async def test_check_server_bad_password(server: RedisServerProcess) -> None:
    c = create_client(ConnectionSettings(url=f"unix://nobody:wrong@{server.socket_path}"))
    try:
        with pytest.raises(ConnectionSetupError, match="credentials"):
            await check_server(c)
    finally:
        await c.aclose()
