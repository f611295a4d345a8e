"""Cluster and Sentinel URLs, durable-add settings and the clients they build (no server)."""

from __future__ import annotations

from typing import Any

import pytest
import redis.exceptions
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool

from jobq.connection import ConnectionSettings, _transient, create_client, redact_url
from jobq.errors import ConfigurationError


def test_cluster_url_lists_nodes_with_default_port() -> None:
    s = ConnectionSettings.from_url("valkey+cluster://u:pw@a:7000,b,[::1]:7002")
    assert s.url == "redis+cluster://u:pw@a:7000,b,[::1]:7002"
    assert s.topology == "cluster"
    assert s.nodes == (("a", 7000), ("b", 6379), ("::1", 7002))
    assert s.service_name is None
    assert ConnectionSettings.from_url("redis://h").topology == "single"
    assert ConnectionSettings.from_url("redis://h").nodes == ()


def test_sentinel_url_names_the_service_and_db() -> None:
    s = ConnectionSettings.from_url("rediss+sentinel://s1,s2:26380/mymaster/2")
    assert s.topology == "sentinel"
    assert s.nodes == (("s1", 26379), ("s2", 26380))
    assert s.service_name == "mymaster"
    shown = redact_url("redis+sentinel://u:secret@s1/m?sentinel_password=hush")
    assert "secret" not in shown
    assert "hush" not in shown


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://", "no host:port"),
        ("redis+cluster://a:0", "not a host"),
        ("redis+cluster://a:99999", "not a host"),
        ("redis+cluster://a:1/3", "only database 0"),
        ("redis+sentinel://a:1", "name the monitored primary"),
        ("redis+sentinel://a:1/m/x", "unexpected path"),
        ("redis+cluster://a b:1", "not a host"),
    ],
)
def test_bad_multi_node_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ConnectionSettings.from_url(url)


def test_durable_adds_settings() -> None:
    assert ConnectionSettings.from_url("redis://h").durable_adds == 0
    s = ConnectionSettings.from_url("redis://h", durable_adds=2, durable_timeout=0.5)
    assert (s.durable_adds, s.durable_timeout) == (2, 0.5)
    for bad in (-1, True, 1.5):
        with pytest.raises(ConfigurationError, match="durable_adds"):
            ConnectionSettings.from_url("redis://h", durable_adds=bad)
    with pytest.raises(ConfigurationError, match="durable_timeout"):
        ConnectionSettings.from_url("redis://h", durable_timeout=0)
    env = ConnectionSettings.from_env({"REDIS_URL": "redis://h", "JOBQ_DURABLE_ADDS": "1"})
    assert env is not None
    assert env.durable_adds == 1
    with pytest.raises(ConfigurationError, match="JOBQ_DURABLE_ADDS"):
        ConnectionSettings.from_env({"REDIS_URL": "redis://h", "JOBQ_DURABLE_ADDS": "x"})


async def test_cluster_clients_carry_the_settings() -> None:
    settings = ConnectionSettings.from_url(
        "redis+cluster://u:pw@a:7000,b:7001", socket_timeout=3, max_connections=7
    )
    plain: Any = create_client(settings)
    blocking: Any = create_client(settings, blocking=True, block_timeout=5)
    try:
        for c in (plain, blocking):
            assert isinstance(c, RedisCluster)
            assert [(n.host, n.port) for n in c.startup_nodes] == [("a", 7000), ("b", 7001)]
            assert c.connection_kwargs["password"] == "pw"
            assert c.connection_kwargs["protocol"] == 2
            assert c.retry.get_retries() == 0
        assert plain.connection_kwargs["socket_timeout"] == 3
        assert plain.connection_kwargs["max_connections"] == 7
        assert blocking.connection_kwargs["socket_timeout"] == 8
        assert blocking.connection_kwargs["max_connections"] == 1
    finally:
        await plain.aclose()
        await blocking.aclose()
    with pytest.raises(ConfigurationError, match="not supported for a cluster"):
        create_client(ConnectionSettings.from_url("redis+cluster://a?ssl_password=x&foo=1"))


async def test_sentinel_client_pool_is_sentinel_managed() -> None:
    settings = ConnectionSettings.from_url(
        "redis+sentinel://u:pw@s1:26379/m/3?sentinel_password=sp", max_connections=9
    )
    c: Any = create_client(settings)
    try:
        pool = c.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.service_name == "m"
        assert pool.max_connections == 9
        assert pool.connection_kwargs["db"] == 3
        assert pool.connection_kwargs["password"] == "pw"
        [sentinel] = pool.sentinel_manager.sentinels
        assert sentinel.connection_pool.connection_kwargs["password"] == "sp"
    finally:
        await c.aclose()


def test_cluster_in_flux_errors_become_connection_errors() -> None:
    for exc in (
        redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"),
        redis.exceptions.MasterDownError("MASTERDOWN"),
        redis.exceptions.TryAgainError("TRYAGAIN"),
        redis.exceptions.SlotNotCoveredError('Slot "1" is not covered'),
        redis.exceptions.ClusterError("TTL exhausted."),
        redis.exceptions.RedisClusterException("Redis Cluster cannot be connected."),
    ):
        assert isinstance(_transient(exc), redis.exceptions.ConnectionError), exc
    # Real mistakes stay what they are.
    assert _transient(redis.exceptions.ResponseError("CROSSSLOT Keys")) is None
    assert _transient(redis.exceptions.RedisClusterException("keys in request differ")) is None
