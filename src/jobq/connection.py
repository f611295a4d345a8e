"""Connection settings, the Redis client factory and the start-up server check.

jobq talks to Redis through ``redis.asyncio`` clients that this module builds
with every timeout and retry setting spelled out, because redis-py's defaults
changed between versions (redis-py 8: 5 s socket timeouts, RESP3, and
``Redis(...)`` retrying 10 times with backoff). jobq's clients never retry by
themselves: jobq's own loops decide when to reconnect.

Where the connection comes from (:func:`resolve`): an explicit URL, settings or
client; else the environment (:meth:`ConnectionSettings.from_env`); else the
embedded Valkey server of :mod:`jobq.server`.

Besides a single server, a URL can name a Redis Cluster
(``redis+cluster://host:port,host:port``) or a Sentinel-managed primary
(``redis+sentinel://host:port,host:port/service``); see docs/scale-out.md.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Self, cast
from urllib.parse import SplitResult, parse_qsl, quote, urlencode, urlsplit

import redis.asyncio
import redis.exceptions
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from .errors import (
    ConfigurationError,
    ConnectionSetupError,
    NotReplicatedError,
    ServerUnreachableError,
)
from .keys import validate_name
from .security import tls_failure
from .server import embedded_server

__all__ = [
    "MIN_SERVER_VERSION",
    "NETWORK_ERRORS",
    "RESP_PROTOCOL",
    "ConnectionSettings",
    "ServerInfo",
    "check_server",
    "clone_client",
    "create_client",
    "execute_replicated",
    "is_cluster",
    "raise_if_not_replicated",
    "redact_url",
    "resolve",
    "server_time_ms",
]

logger = logging.getLogger("jobq")

#: What a call that could not reach Redis raises: its client's connection and
#: timeout errors, and the socket's own (``ConnectionError`` is an ``OSError``).
NETWORK_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

#: The oldest Redis jobq runs on (it needs 6.2 commands such as ZRANGE BYSCORE/LMOVE).
MIN_SERVER_VERSION = (6, 2, 0)
#: The wire protocol jobq's clients speak. Pinned: redis-py 8 defaults to RESP3,
#: under which Lua ``true``/``false`` replies arrive as booleans, not ``1``/``None``.
RESP_PROTOCOL = 2

_SCHEMES = {
    "redis": "redis",
    "rediss": "rediss",
    "unix": "unix",
    "valkey": "redis",
    "valkeys": "rediss",
}
#: Schemes naming several nodes: (TLS or not, "cluster" or "sentinel").
_MULTI_SCHEMES: dict[str, tuple[str, Literal["cluster", "sentinel"]]] = {
    f"{base}+{kind}": (target, kind)
    for base, target in (("redis", "redis"), ("rediss", "rediss"))
    for kind in ("cluster", "sentinel")
} | {
    f"{base}+{kind}": (target, kind)
    for base, target in (("valkey", "redis"), ("valkeys", "rediss"))
    for kind in ("cluster", "sentinel")
}
_DEFAULT_PORTS = {"cluster": 6379, "sentinel": 26379}
_SECRET_QUERY_KEYS = {"password", "ssl_password", "sentinel_password"}
_DEFAULT_SOCKET_TIMEOUT = 10.0


def redact_url(url: str) -> str:
    """Return ``url`` with any password (userinfo or query) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(k in _SECRET_QUERY_KEYS for k, _ in pairs):
        masked = [(k, "***" if k in _SECRET_QUERY_KEYS else v) for k, v in pairs]
        query = urlencode(masked, safe="*/")
    if netloc == parts.netloc and query == parts.query:
        return url  # nothing secret in it
    # Built by hand: urlunsplit would turn unix:///path into unix:/path.
    text = (
        f"{parts.scheme}://{netloc}"
        if parts.netloc or url[len(parts.scheme) :].startswith("://")
        else f"{parts.scheme}:"
    )
    text += parts.path
    if query:
        text += f"?{query}"
    if parts.fragment:
        text += f"#{parts.fragment}"
    return text


def _check_url(url: object) -> str:
    """Validate a Redis URL and return it with valkey(s):// mapped to redis(s)://."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"the Redis URL must be a non-empty string, got {url!r}")
    url = url.strip()
    shown = redact_url(url)
    scheme_part = url.partition(":")[0].lower()
    if scheme_part in _MULTI_SCHEMES:
        _parse_multi(url, shown)  # validates
        target, kind = _MULTI_SCHEMES[scheme_part]
        return f"{target}+{kind}" + url[len(scheme_part) :]
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigurationError(f"invalid Redis URL {shown!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"invalid Redis URL {shown!r}: the scheme must be one of "
            "redis://, rediss://, unix://, valkey://, valkeys://, or redis+cluster://, "
            "redis+sentinel:// (also with rediss, valkey, valkeys)"
        )
    if scheme == "unix":
        if not parts.path or parts.netloc.rpartition("@")[2]:
            raise ConfigurationError(
                f"invalid Redis URL {shown!r}: a unix URL needs an absolute socket path, "
                "as in unix:///run/redis.sock"
            )
    elif port == 0:
        raise ConfigurationError(f"invalid Redis URL {shown!r}: port 0")
    return _SCHEMES[scheme] + url[len(parts.scheme) :]


@dataclass(frozen=True, slots=True)
class _MultiURL:
    """A parsed ``redis+cluster://`` or ``redis+sentinel://`` URL."""

    kind: Literal["cluster", "sentinel"]
    scheme: str  # redis or rediss
    userinfo: str  # "user:pw@" or ""
    nodes: tuple[tuple[str, int], ...]
    service: str | None
    db: int
    query: str

    def single_url(self, host: str, port: int) -> str:
        """A plain URL for one node, so that redis-py parses credentials, TLS and options."""
        host_text = f"[{host}]" if ":" in host else host
        url = f"{self.scheme}://{self.userinfo}{host_text}:{port}/{self.db}"
        return f"{url}?{self.query}" if self.query else url


def _parse_multi(url: str, shown: str) -> _MultiURL:
    """Parse a multi-node URL; ConfigurationError (naming the URL, masked) if malformed."""
    scheme, _, rest = url.partition("://")
    target, kind = _MULTI_SCHEMES[scheme.lower()]
    if not _:
        raise ConfigurationError(f"invalid Redis URL {shown!r}: expected {scheme}://host:port,...")
    rest = rest.partition("#")[0]
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    nodes: list[tuple[str, int]] = []
    for item in hosts.split(","):
        item = item.strip()
        if not item:
            continue
        match = re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^\[\]:/\s]+)(?::(\d+))?", item)
        port = int(match.group(2)) if match and match.group(2) else _DEFAULT_PORTS[kind]
        if match is None or not 0 < port < 65536:
            raise ConfigurationError(
                f"invalid Redis URL {shown!r}: {item!r} is not a host[:port] "
                "(list nodes as host:port,host:port)"
            )
        nodes.append((match.group(1).strip("[]"), port))
    if not nodes:
        raise ConfigurationError(f"invalid Redis URL {shown!r}: no host:port given")
    segments = [p for p in path.split("/") if p] if slash else []
    service: str | None = None
    db = 0
    if kind == "sentinel":
        if not segments:
            raise ConfigurationError(
                f"invalid Redis URL {shown!r}: name the monitored primary after the hosts, "
                "as in redis+sentinel://host:26379,host:26380/mymaster"
            )
        service, segments = segments[0], segments[1:]
    if len(segments) > 1 or (segments and not segments[0].isdigit()):
        raise ConfigurationError(f"invalid Redis URL {shown!r}: unexpected path {path!r}")
    if segments:
        db = int(segments[0])
    if kind == "cluster" and db != 0:
        raise ConfigurationError(
            f"invalid Redis URL {shown!r}: Redis Cluster has only database 0, got {db}"
        )
    return _MultiURL(kind, target, userinfo + at, tuple(nodes), service, db, query)


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def _env_int(environ: Mapping[str, str], name: str, low: int, high: int | None) -> int | None:
    raw = _env(environ, name)
    if raw is None:
        return None
    try:
        value = int(raw, 10)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ConfigurationError(f"{name} must be an integer {bound}, got {raw!r}")
    return value


@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectionSettings:
    """How to reach Redis, and the key prefix jobq uses there.

    Attributes:
        url: ``redis://``, ``rediss://`` (with redis-py's ``ssl_*`` query
            parameters), ``unix:///path`` or ``valkey(s)://`` (stored as
            ``redis(s)://``); for a Redis Cluster
            ``redis+cluster://host:port,host:port`` (any reachable nodes; the
            others are discovered), for a primary managed by Sentinel
            ``redis+sentinel://host:port,host:port/service[/db]`` (the
            sentinels' addresses; ``sentinel_username``/``sentinel_password``
            query parameters if the sentinels need credentials of their own).
            ``rediss+`` and ``valkey(s)+`` variants work alike.
        prefix: first part of every jobq key.
        socket_timeout: seconds a command may take before the client gives up;
            blocking clients add their block time to it.
        connect_timeout: seconds to open a connection.
        health_check_interval: seconds of idleness after which a connection is
            PINGed before use (0 disables).
        client_name: ``CLIENT SETNAME`` for the connections, if any.
        max_connections: size of the connection pool; more concurrent commands
            wait for a free connection (up to the socket plus connect timeout).
            For a cluster: per node, and a command beyond it fails at once.
        durable_adds: 0, or how many replicas must hold added jobs before
            ``Queue.add``/``add_bulk`` return: each add is followed by
            ``WAIT durable_adds durable_timeout`` on the same connection, and
            :class:`~jobq.errors.NotReplicatedError` is raised if fewer
            replicas acknowledged it in time.
        durable_timeout: seconds an add waits for its replicas.
    """

    url: str
    prefix: str = "jobq"
    socket_timeout: float = _DEFAULT_SOCKET_TIMEOUT
    connect_timeout: float = 5.0
    health_check_interval: float = 15.0
    client_name: str | None = None
    max_connections: int = 64
    durable_adds: int = 0
    durable_timeout: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", _check_url(self.url))
        validate_name(self.prefix, "prefix")
        for name in ("socket_timeout", "connect_timeout"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                raise ConfigurationError(f"{name} must be a number > 0, got {value!r}")
        hci = self.health_check_interval
        if not isinstance(hci, int | float) or isinstance(hci, bool) or not hci >= 0:
            raise ConfigurationError(f"health_check_interval must be a number >= 0, got {hci!r}")
        mc = self.max_connections
        if isinstance(mc, bool) or not isinstance(mc, int) or mc < 1:
            raise ConfigurationError(f"max_connections must be an integer >= 1, got {mc!r}")
        da = self.durable_adds
        if isinstance(da, bool) or not isinstance(da, int) or da < 0:
            raise ConfigurationError(f"durable_adds must be an integer >= 0, got {da!r}")
        dt = self.durable_timeout
        if not isinstance(dt, int | float) or isinstance(dt, bool) or not dt > 0:
            raise ConfigurationError(f"durable_timeout must be a number > 0, got {dt!r}")
        name_ = self.client_name
        if name_ is not None and (not name_ or re.search(r"\s", name_)):
            raise ConfigurationError(
                f"client_name must be non-empty and contain no spaces, got {name_!r}"
            )

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> Self:
        """Settings for ``url``; ``kw`` sets the other fields.

        Raises:
            ConfigurationError: unsupported scheme or malformed URL (the message
                shows the URL with its password masked).
        """
        return cls(url=url, **kw)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self | None:
        """Settings from environment variables, or None if none are set.

        ``REDIS_URL`` wins if set. Otherwise, if ``REDIS_HOST`` or ``REDIS_PORT``
        is set, the URL is built from ``REDIS_HOST`` (default ``localhost``),
        ``REDIS_PORT`` (default 6379), ``REDIS_USERNAME`` and ``REDIS_PASSWORD``
        (optional) and ``REDIS_QUEUE_DB`` (default 0). ``JOBQ_PREFIX`` sets the
        key prefix and ``JOBQ_DURABLE_ADDS`` :attr:`durable_adds`. Empty
        values count as unset.

        Raises:
            ConfigurationError: a variable has an unusable value; the message
                names the variable.
        """
        env = os.environ if environ is None else environ
        kw: dict[str, Any] = {}
        prefix = _env(env, "JOBQ_PREFIX")
        if prefix is not None:
            validate_name(prefix, "JOBQ_PREFIX")
            kw["prefix"] = prefix
        durable = _env_int(env, "JOBQ_DURABLE_ADDS", 0, None)
        if durable is not None:
            kw["durable_adds"] = durable
        url = _env(env, "REDIS_URL")
        if url is not None:
            try:
                return cls(url=url, **kw)
            except ConfigurationError as exc:
                raise ConfigurationError(f"REDIS_URL: {exc}") from None
        host = _env(env, "REDIS_HOST")
        port = _env_int(env, "REDIS_PORT", 1, 65535)
        if host is None and port is None:
            return None
        db = _env_int(env, "REDIS_QUEUE_DB", 0, None) or 0
        host = host or "localhost"
        if re.search(r"[/@?#\s]", host):
            raise ConfigurationError(f"REDIS_HOST must be a host name or address, got {host!r}")
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # IPv6 literal
        userinfo = ""
        username = _env(env, "REDIS_USERNAME")
        password = env.get("REDIS_PASSWORD") or None  # passwords are not stripped
        if username is not None:
            userinfo = quote(username, safe="")
        if password is not None:
            userinfo += ":" + quote(password, safe="")
        if userinfo:
            userinfo += "@"
        return cls(url=f"redis://{userinfo}{host}:{port or 6379}/{db}", **kw)

    @property
    def redacted_url(self) -> str:
        """The URL with its password replaced by ``***``, for logs and messages."""
        return redact_url(self.url)

    @property
    def topology(self) -> Literal["single", "cluster", "sentinel"]:
        """``"cluster"`` or ``"sentinel"`` for those URLs, else ``"single"``."""
        scheme = self.url.partition(":")[0]
        return _MULTI_SCHEMES[scheme][1] if scheme in _MULTI_SCHEMES else "single"

    @property
    def nodes(self) -> tuple[tuple[str, int], ...]:
        """The (host, port) pairs a cluster or sentinel URL lists; () for a single server."""
        if self.topology == "single":
            return ()
        return _parse_multi(self.url, self.redacted_url).nodes

    @property
    def service_name(self) -> str | None:
        """The Sentinel service (monitored primary) name, or None."""
        if self.topology != "sentinel":
            return None
        return _parse_multi(self.url, self.redacted_url).service


def resolve(
    connection: str | ConnectionSettings | redis.asyncio.Redis | None,
) -> ConnectionSettings | redis.asyncio.Redis:
    """Turn what a user passed as ``connection`` into settings or a client.

    A URL string becomes settings; settings and clients are returned as they
    are; None means the environment (:meth:`ConnectionSettings.from_env`) or,
    if it configures nothing, the embedded server (:func:`jobq.server.embedded_server`),
    with ``JOBQ_PREFIX`` still honoured.
    """
    if isinstance(connection, ConnectionSettings | redis.asyncio.Redis):
        return connection
    if isinstance(connection, RedisCluster):
        return cast(redis.asyncio.Redis, connection)  # see is_cluster()
    if isinstance(connection, str):
        return ConnectionSettings.from_url(connection)
    if connection is None:
        settings = ConnectionSettings.from_env()
        if settings is not None:
            return settings
        prefix = _env(os.environ, "JOBQ_PREFIX")
        url = embedded_server().url
        return ConnectionSettings(url=url, prefix=prefix) if prefix else ConnectionSettings(url=url)
    raise ConfigurationError(
        "connection must be a Redis URL, ConnectionSettings, a redis.asyncio.Redis or "
        f"RedisCluster client, or None, got {type(connection).__name__}"
    )


def create_client(
    settings: ConnectionSettings, *, blocking: bool = False, block_timeout: float = 0.0
) -> redis.asyncio.Redis:
    """Build a ``redis.asyncio.Redis`` client (bytes replies, RESP2, no retries).

    For a ``redis+cluster://`` URL the client is a ``redis.asyncio.cluster.RedisCluster``
    (typed as ``Redis`` for jobq's callers; see :func:`is_cluster`) that routes
    each command, script and pipeline by key and follows MOVED/ASK; for a
    ``redis+sentinel://`` URL, a ``Redis`` whose connections ask the sentinels
    where the primary is (``Sentinel.master_for``), so that it follows a failover.

    With ``blocking=True`` the client is meant for one task's blocking commands
    (BZPOPMIN, BLMOVE, XREAD BLOCK ...): it has a single connection, and its
    socket timeout is ``block_timeout + settings.socket_timeout`` so that a
    command blocking for up to ``block_timeout`` seconds is not cut off.
    ``block_timeout`` must be the longest block the caller will ask for, in
    seconds (XREAD BLOCK takes milliseconds); 0 ("forever") is refused because
    it would need an unbounded socket timeout.

    Raises:
        ConfigurationError: ``blocking`` without a positive ``block_timeout``.
    """
    socket_timeout = float(settings.socket_timeout)
    kwargs: dict[str, Any] = {}
    if blocking:
        if not block_timeout > 0:
            raise ConfigurationError(
                f"a blocking client needs block_timeout > 0 (seconds), got {block_timeout!r}"
            )
        socket_timeout += float(block_timeout)
        kwargs["max_connections"] = 1
    elif block_timeout:
        raise ConfigurationError("block_timeout is only meaningful with blocking=True")
    if not settings.url.startswith("unix:"):
        # TCP only: redis-py's unix socket connection rejects this argument.
        kwargs["socket_keepalive"] = True
    common: dict[str, Any] = {
        "decode_responses": False,
        "protocol": RESP_PROTOCOL,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": float(settings.connect_timeout),
        "health_check_interval": settings.health_check_interval,
        "retry": Retry(NoBackoff(), 0),
        "retry_on_error": [],
        "client_name": settings.client_name,
    }
    topology = settings.topology
    if topology == "cluster":
        return _cluster_client(settings, common, blocking=blocking)
    if topology == "sentinel":
        return _sentinel_client(settings, common, blocking=blocking)
    if blocking:
        return redis.asyncio.Redis.from_url(settings.url, **common, **kwargs)
    # A bounded pool that makes callers wait for a free connection: with redis-py's
    # default pool, the 101st concurrent command fails with "Too many connections".
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        settings.url,
        max_connections=settings.max_connections,
        timeout=float(settings.socket_timeout) + float(settings.connect_timeout),
        **common,
        **kwargs,
    )
    client = redis.asyncio.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # aclose() closes the pool we made
    return client


def is_cluster(client: object) -> bool:
    """Whether ``client`` is a Redis Cluster client (``RedisCluster``).

    jobq types its clients as ``redis.asyncio.Redis``; the cluster client
    offers the same commands but routes them by key, has no single
    connection pool and refuses commands whose keys span slots.
    """
    return isinstance(client, RedisCluster)


#: Errors of a cluster in flux (a failover, a restarting node, slots not yet
#: covered). jobq's clients turn them into ConnectionError, so every loop of
#: jobq that waits out a lost connection also waits out a failover.
_CLUSTER_TRANSIENT: tuple[type[BaseException], ...] = (
    redis.exceptions.ClusterDownError,  # also MasterDownError
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.TryAgainError,
)


def _transient(exc: BaseException) -> redis.exceptions.ConnectionError | None:
    """The ConnectionError to raise instead of ``exc``, or None to let it through."""
    text = str(exc)
    if isinstance(exc, _CLUSTER_TRANSIENT):
        return redis.exceptions.ConnectionError(f"Redis Cluster unavailable: {text}")
    if isinstance(exc, redis.exceptions.ClusterError) and "TTL exhausted" in text:
        return redis.exceptions.ConnectionError(f"Redis Cluster redirections: {text}")
    if isinstance(exc, redis.exceptions.RedisClusterException) and (
        "cannot be connected" in text
        or isinstance(exc.__cause__, redis.exceptions.ConnectionError | OSError | TimeoutError)
    ):
        return redis.exceptions.ConnectionError(f"Redis Cluster unreachable: {text}")
    return None


class _NodePools:
    """Stands in for ``Redis.connection_pool`` on a cluster client: disconnecting
    it drops every connection to every node (this cuts a blocked BZPOPMIN)."""

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self.connection_kwargs: dict[str, Any] = client.connection_kwargs

    async def disconnect(self, inuse_connections: bool = True) -> None:
        nodes = list(self._client.nodes_manager.nodes_cache.values())
        for node in nodes:
            await node.disconnect()


class _ClusterPipeline(ClusterPipeline):
    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        # redis-py 8 hands the cache-only ``keys`` argument on to the reply callbacks
        # of a cluster transaction (MULTI/EXEC), which then fail with a TypeError.
        kwargs.pop("keys", None)
        return super().execute_command(*args, **kwargs)

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        try:
            return await super().execute(raise_on_error, allow_redirections)
        except Exception as exc:
            replacement = _transient(exc)
            if replacement is None:
                raise
            raise replacement from exc


class _ClusterClient(RedisCluster):
    """redis-py's cluster client as jobq uses it: transient cluster errors come
    out as ConnectionError, and ``connection_pool.disconnect()`` works."""

    @property
    def connection_pool(self) -> _NodePools:
        return _NodePools(self)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except Exception as exc:
            replacement = _transient(exc)
            if replacement is None:
                raise
            raise replacement from exc

    async def initialize(self, *args: Any, **kwargs: Any) -> RedisCluster:
        try:
            return await super().initialize(*args, **kwargs)
        except Exception as exc:
            replacement = _transient(exc)
            if replacement is None:
                raise
            raise replacement from exc

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if shard_hint:
            raise redis.exceptions.RedisClusterException("shard_hint is not supported")
        return _ClusterPipeline(self, transaction)  # type: ignore[abstract]


#: Connection options of redis-py that the cluster client takes by name.
_CLUSTER_KWARGS = frozenset(
    {
        "username",
        "password",
        "credential_provider",
        "client_name",
        "encoding",
        "encoding_errors",
        "decode_responses",
        "health_check_interval",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "socket_keepalive_options",
        "socket_read_size",
        "protocol",
        "ssl_ca_certs",
        "ssl_ca_data",
        "ssl_cert_reqs",
        "ssl_certfile",
        "ssl_check_hostname",
        "ssl_keyfile",
        "ssl_min_version",
        "ssl_ciphers",
    }
)


def _url_kwargs(
    settings: ConnectionSettings, host: str, port: int
) -> tuple[_MultiURL, dict[str, Any]]:
    """Credentials, TLS and query options of a multi-node URL, parsed by redis-py."""
    multi = _parse_multi(settings.url, settings.redacted_url)
    kw: dict[str, Any] = dict(parse_url(multi.single_url(host, port)))
    for key in ("host", "port", "path", "db"):
        kw.pop(key, None)
    if kw.pop("connection_class", None) is SSLConnection:
        kw["ssl"] = True
    return multi, kw


def _cluster_client(
    settings: ConnectionSettings, common: dict[str, Any], *, blocking: bool
) -> redis.asyncio.Redis:
    host, port = settings.nodes[0]
    multi, kw = _url_kwargs(settings, host, port)
    kw.update(common)
    kw.pop("retry_on_error", None)
    unknown = sorted(set(kw) - _CLUSTER_KWARGS - {"ssl", "retry"})
    if unknown:
        raise ConfigurationError(
            f"Redis URL {settings.redacted_url!r}: option(s) {', '.join(unknown)} are not "
            "supported for a cluster"
        )
    client = _ClusterClient(
        startup_nodes=[ClusterNode(h, p) for h, p in multi.nodes],
        max_connections=1 if blocking else settings.max_connections,
        socket_keepalive=True,
        **kw,
    )
    return cast(redis.asyncio.Redis, client)


class _SentinelPool(SentinelConnectionPool, redis.asyncio.BlockingConnectionPool):
    """A Sentinel-managed pool that makes callers wait for a free connection."""


class _SentinelClient(redis.asyncio.Redis):
    """The primary's client; closing it also closes the connections to the sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        pool = self.connection_pool
        await super().aclose(close_connection_pool)
        manager = getattr(pool, "sentinel_manager", None)
        if manager is not None and getattr(pool, "_jobq_owns_sentinels", False):
            for sentinel in manager.sentinels:
                await sentinel.aclose()


def _sentinel_client(
    settings: ConnectionSettings, common: dict[str, Any], *, blocking: bool
) -> redis.asyncio.Redis:
    host, port = settings.nodes[0]
    multi, kw = _url_kwargs(settings, host, port)
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": float(settings.socket_timeout),
        "socket_connect_timeout": float(settings.connect_timeout),
        "protocol": RESP_PROTOCOL,
        "retry": Retry(NoBackoff(), 0),
        "retry_on_error": [],
    }
    for name in ("username", "password"):
        value = kw.pop(f"sentinel_{name}", None)
        if value is not None:
            sentinel_kwargs[name] = value
    manager = Sentinel(list(multi.nodes), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call, unused-ignore]
    ssl = bool(kw.pop("ssl", False))
    kw.update(common)
    kw["db"] = multi.db
    kw["socket_keepalive"] = True
    pool_kwargs: dict[str, Any] = {"ssl": ssl} if ssl else {}
    if blocking:
        pool: SentinelConnectionPool = SentinelConnectionPool(  # type: ignore[no-untyped-call]
            multi.service, manager, max_connections=1, **pool_kwargs, **kw
        )
    else:
        pool = _SentinelPool(  # type: ignore[no-untyped-call]
            multi.service,
            manager,
            max_connections=settings.max_connections,
            timeout=float(settings.socket_timeout) + float(settings.connect_timeout),
            **pool_kwargs,
            **kw,
        )
    pool._jobq_owns_sentinels = True  # type: ignore[attr-defined]
    client = _SentinelClient(connection_pool=pool)
    client.auto_close_connection_pool = True
    return client


#: Connection-pool bookkeeping of redis-py that must not be shared with a new pool.
_POOL_INTERNAL_KEYS = frozenset(
    {
        "himport_registry",
        "maint_notifications_pool_handler",
        "orig_host_address",
        "orig_socket_timeout",
        "orig_socket_connect_timeout",
    }
)


def clone_client(client: redis.asyncio.Redis, *, block_timeout: float) -> redis.asyncio.Redis:
    """A blocking-read companion to a user-supplied client (see :func:`create_client`).

    The new client connects where ``client`` does, with the same credentials,
    TLS, database and reply decoding, but has one connection of its own, no
    retries, and a socket timeout of ``block_timeout`` plus ``client``'s (10 s
    if it has none set; none stays none). Closing it does not touch ``client``.

    Raises:
        ConfigurationError: ``block_timeout`` is not positive.
    """
    if not block_timeout > 0:
        raise ConfigurationError(
            f"a blocking client needs block_timeout > 0 (seconds), got {block_timeout!r}"
        )
    if isinstance(client, RedisCluster):
        return _clone_cluster(client, block_timeout)
    pool = client.connection_pool
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k not in _POOL_INTERNAL_KEYS}
    base = kwargs.get("socket_timeout", _DEFAULT_SOCKET_TIMEOUT)
    kwargs["socket_timeout"] = None if base is None else float(base) + float(block_timeout)
    kwargs["retry"] = Retry(NoBackoff(), 0)
    kwargs["retry_on_error"] = []
    kwargs["max_connections"] = 1
    if isinstance(pool, SentinelConnectionPool):
        # Same sentinels and service; the new pool asks them where the primary is.
        kwargs.pop("connection_pool", None)
        sentinel_pool = SentinelConnectionPool(  # type: ignore[no-untyped-call]
            pool.service_name,
            pool.sentinel_manager,
            is_master=pool.is_master,
            check_connection=pool.check_connection,
            **kwargs,
        )
        return redis.asyncio.Redis.from_pool(sentinel_pool)
    new_pool = redis.asyncio.ConnectionPool(connection_class=pool.connection_class, **kwargs)
    return redis.asyncio.Redis.from_pool(new_pool)


def _clone_cluster(client: RedisCluster, block_timeout: float) -> redis.asyncio.Redis:
    source = client.connection_kwargs
    kw = {k: v for k, v in source.items() if k in _CLUSTER_KWARGS}
    if source.get("connection_class") is SSLConnection:
        kw["ssl"] = True
    base = kw.get("socket_timeout", _DEFAULT_SOCKET_TIMEOUT)
    kw["socket_timeout"] = None if base is None else float(base) + float(block_timeout)
    nodes = client.get_nodes() or client.startup_nodes
    clone = _ClusterClient(
        startup_nodes=[ClusterNode(n.host, n.port) for n in nodes],
        max_connections=1,
        retry=Retry(NoBackoff(), 0),
        **kw,
    )
    return cast(redis.asyncio.Redis, clone)


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What :func:`check_server` found out about the server.

    ``version`` is Valkey's own version for Valkey (which reports
    ``redis_version`` 7.2.4 for compatibility) and ``redis_version`` otherwise.
    ``maxmemory_policy`` is ``"unknown"`` if the server would not tell.
    """

    version: tuple[int, int, int]
    flavor: Literal["redis", "valkey"]
    maxmemory_policy: str


def _parse_version(raw: object) -> tuple[int, int, int] | None:
    match = re.match(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", str(raw))
    if match is None:
        return None
    major, minor, patch = (int(g) if g else 0 for g in match.groups())
    return (major, minor, patch)


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _where(client: redis.asyncio.Redis) -> str:
    if isinstance(client, RedisCluster):
        nodes = client.get_nodes() or list(client.startup_nodes)
        return "Redis Cluster " + ",".join(n.name for n in nodes)
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        return f"the primary of Sentinel service {pool.service_name!r}"
    kw = pool.connection_kwargs
    if "path" in kw:
        return f"unix://{kw['path']}"
    return f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"


async def _maxmemory_policy(client: redis.asyncio.Redis, **target: Any) -> str:
    try:
        reply = await client.config_get("maxmemory-policy", **target)
        for key, value in dict(reply).items():
            if _text(key) == "maxmemory-policy":
                return _text(value)
    except redis.exceptions.ResponseError:
        pass  # CONFIG renamed away, disabled, or denied by ACL
    try:
        memory = await client.info("memory", **target)
    except redis.exceptions.ResponseError:
        return "unknown"
    value = dict(memory).get("maxmemory_policy")
    return _text(value) if value is not None else "unknown"


async def check_server(
    client: redis.asyncio.Redis, *, queue_name_for_messages: str = ""
) -> ServerInfo:
    """Check that the server is reachable and fit for jobq, and describe it.

    Warns (``RuntimeWarning`` and a warning on the ``jobq`` logger) when the
    server may evict keys (``maxmemory-policy`` other than ``noeviction``).

    Raises:
        ConnectionSetupError: the server cannot be reached, refuses the
            credentials or INFO, or is older than Redis 6.2.
    """
    if isinstance(client, RedisCluster):
        return await _check_cluster(client, queue_name_for_messages)
    return await _check_one(client, _where(client), {}, queue_name_for_messages)


async def _check_cluster(client: RedisCluster, queue_name: str) -> ServerInfo:
    """Check every primary of a cluster; the oldest version is the one reported."""
    try:
        await client.initialize()
    except NETWORK_ERRORS as exc:
        raise ServerUnreachableError(f"cannot reach {_where(cast(Any, client))}: {exc}") from exc
    except redis.exceptions.RedisClusterException as exc:
        raise ConnectionSetupError(f"{_where(cast(Any, client))}: {exc}") from exc
    infos = [
        await _check_one(
            cast(redis.asyncio.Redis, client),
            f"cluster node {node.name}",
            {"target_nodes": node},
            queue_name,
        )
        for node in client.get_primaries()
    ]
    return min(infos, key=lambda info: info.version)


async def _check_one(
    client: redis.asyncio.Redis, where: str, target: dict[str, Any], queue_name_for_messages: str
) -> ServerInfo:
    try:
        server = dict(await client.info("server", **target))
        policy = await _maxmemory_policy(client, **target)
    except NETWORK_ERRORS as exc:
        # redis-py 8 wraps the AuthenticationError of the handshake in a ConnectionError.
        auth = redis.exceptions.AuthenticationError
        if isinstance(exc, auth) or isinstance(exc.__cause__, auth):
            raise ConnectionSetupError(f"Redis at {where} refused the credentials: {exc}") from exc
        if (tls := tls_failure(where, exc)) is not None:
            raise ConnectionSetupError(tls) from exc  # no use waiting: it cannot succeed
        raise ServerUnreachableError(f"cannot reach Redis at {where}: {exc}") from exc
    except redis.exceptions.ResponseError as exc:
        raise ConnectionSetupError(f"Redis at {where} refused INFO: {exc}") from exc

    flavor: Literal["redis", "valkey"]
    if "valkey_version" in server or _text(server.get("server_name", "")).lower() == "valkey":
        flavor = "valkey"
        raw_version = server.get("valkey_version", server.get("redis_version"))
    else:
        flavor = "redis"
        raw_version = server.get("redis_version")
    version = _parse_version(raw_version)
    if version is None:
        raise ConnectionSetupError(f"Redis at {where} reports no usable version ({raw_version!r})")
    if version < MIN_SERVER_VERSION:
        need = ".".join(map(str, MIN_SERVER_VERSION))
        raise ConnectionSetupError(
            f"Redis at {where} is version {'.'.join(map(str, version))}; jobq needs {need} or newer"
        )

    about = f"queue {queue_name_for_messages!r}: " if queue_name_for_messages else ""
    if policy == "unknown":
        logger.warning(
            "jobq: %scould not read maxmemory-policy of the server at %s; make sure it is "
            "'noeviction', or Redis may evict job data and lose jobs",
            about,
            where,
        )
    elif policy != "noeviction":
        message = (
            f"jobq: {about}the server at {where} has maxmemory-policy {policy!r}: when it "
            "reaches maxmemory, Redis may evict job data and lose jobs. Set it to "
            "'noeviction' (CONFIG SET maxmemory-policy noeviction, and "
            "'maxmemory-policy noeviction' in redis.conf)"
        )
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        logger.warning("%s", message)
    return ServerInfo(version=version, flavor=flavor, maxmemory_policy=policy)


async def execute_replicated(
    client: redis.asyncio.Redis,
    args: tuple[Any, ...],
    *,
    key: str,
    replicas: int,
    timeout_ms: int,
) -> tuple[Any, int]:
    """Run one write command, then ``WAIT replicas timeout_ms`` on the same connection.

    WAIT counts the replicas that have every write of *its own connection*,
    so the two go out in one pipeline; on a cluster the WAIT is pinned to the
    node that owns ``key`` (the slot the command writes). Returns the
    command's reply and the number of replicas that acknowledged. An error
    reply of the command is raised (NOSCRIPT included, for the caller to
    reload the script and call again).
    """
    if isinstance(client, RedisCluster):
        await client.initialize()  # a no-op once the slots are known
    pipe: Any = client.pipeline(transaction=False)
    pipe.execute_command(*args)
    if isinstance(client, RedisCluster):
        pipe.execute_command(
            "WAIT", replicas, timeout_ms, target_nodes=client.get_node_from_key(key)
        )
    else:
        pipe.execute_command("WAIT", replicas, timeout_ms)
    reply, acked = await pipe.execute(raise_on_error=False)
    if isinstance(reply, BaseException):
        raise reply
    if isinstance(acked, BaseException):
        raise acked
    return reply, int(acked)


def raise_if_not_replicated(acked: int, wanted: int, job_ids: list[str], where: str) -> None:
    """Raise :class:`~jobq.errors.NotReplicatedError` if ``acked < wanted``."""
    if acked >= wanted:
        return
    raise NotReplicatedError(
        f"{where}: {len(job_ids)} job(s) written on the primary but acknowledged by "
        f"{acked} of the {wanted} replica(s) asked for (durable_adds) in time; a failover "
        "now could lose them. Add them again with the same job_id, or check them later",
        job_ids=job_ids,
        replicas=acked,
        wanted=wanted,
    )


async def server_time_ms(client: redis.asyncio.Redis) -> int:
    """The server's clock in ms: jobq decides every time with it, never a local clock."""
    reply: Any = await client.time()
    sec, usec = reply
    return int(sec) * 1000 + int(usec) // 1000
