"""Connection settings, the Redis client factory and the start-up server check.

jobq talks to Redis through ``redis.asyncio`` clients that this module builds
with every timeout and retry setting spelled out, because redis-py's defaults
changed between versions (redis-py 8: 5 s socket timeouts, RESP3, and
``Redis(...)`` retrying 10 times with backoff). jobq's clients never retry by
themselves: jobq's own loops decide when to reconnect.

Where the connection comes from (:func:`resolve`): an explicit URL, settings or
client; else the environment (:meth:`ConnectionSettings.from_env`); else the
embedded Valkey server of :mod:`jobq.server`.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Self
from urllib.parse import SplitResult, parse_qsl, quote, urlencode, urlsplit

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from .errors import ConfigurationError, ConnectionSetupError, ServerUnreachableError
from .keys import validate_name
from .server import embedded_server

__all__ = [
    "MIN_SERVER_VERSION",
    "RESP_PROTOCOL",
    "ConnectionSettings",
    "ServerInfo",
    "check_server",
    "clone_client",
    "create_client",
    "redact_url",
    "resolve",
    "server_time_ms",
]

logger = logging.getLogger("jobq")

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
_SECRET_QUERY_KEYS = {"password", "ssl_password"}
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
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigurationError(f"invalid Redis URL {shown!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ConfigurationError(
            f"invalid Redis URL {shown!r}: the scheme must be one of "
            "redis://, rediss://, unix://, valkey://, valkeys://"
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
            ``redis(s)://``).
        prefix: first part of every jobq key.
        socket_timeout: seconds a command may take before the client gives up;
            blocking clients add their block time to it.
        connect_timeout: seconds to open a connection.
        health_check_interval: seconds of idleness after which a connection is
            PINGed before use (0 disables).
        client_name: ``CLIENT SETNAME`` for the connections, if any.
        max_connections: size of the connection pool; more concurrent commands
            wait for a free connection (up to the socket plus connect timeout).
    """

    url: str
    prefix: str = "jobq"
    socket_timeout: float = _DEFAULT_SOCKET_TIMEOUT
    connect_timeout: float = 5.0
    health_check_interval: float = 15.0
    client_name: str | None = None
    max_connections: int = 64

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
        key prefix. Empty values count as unset.

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
        "connection must be a Redis URL, ConnectionSettings, a redis.asyncio.Redis client "
        f"or None, got {type(connection).__name__}"
    )


def create_client(
    settings: ConnectionSettings, *, blocking: bool = False, block_timeout: float = 0.0
) -> redis.asyncio.Redis:
    """Build a ``redis.asyncio.Redis`` client (bytes replies, RESP2, no retries).

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
    pool = client.connection_pool
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k not in _POOL_INTERNAL_KEYS}
    base = kwargs.get("socket_timeout", _DEFAULT_SOCKET_TIMEOUT)
    kwargs["socket_timeout"] = None if base is None else float(base) + float(block_timeout)
    kwargs["retry"] = Retry(NoBackoff(), 0)
    kwargs["retry_on_error"] = []
    kwargs["max_connections"] = 1
    new_pool = redis.asyncio.ConnectionPool(connection_class=pool.connection_class, **kwargs)
    return redis.asyncio.Redis.from_pool(new_pool)


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
    kw = client.connection_pool.connection_kwargs
    if "path" in kw:
        return f"unix://{kw['path']}"
    return f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"


async def _maxmemory_policy(client: redis.asyncio.Redis) -> str:
    try:
        reply = await client.config_get("maxmemory-policy")
        for key, value in dict(reply).items():
            if _text(key) == "maxmemory-policy":
                return _text(value)
    except redis.exceptions.ResponseError:
        pass  # CONFIG renamed away, disabled, or denied by ACL
    try:
        memory = await client.info("memory")
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
    where = _where(client)
    try:
        server = dict(await client.info("server"))
        policy = await _maxmemory_policy(client)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        # redis-py 8 wraps the AuthenticationError of the handshake in a ConnectionError.
        auth = redis.exceptions.AuthenticationError
        if isinstance(exc, auth) or isinstance(exc.__cause__, auth):
            raise ConnectionSetupError(f"Redis at {where} refused the credentials: {exc}") from exc
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


async def server_time_ms(client: redis.asyncio.Redis) -> int:
    """The server's clock in ms: jobq decides every time with it, never a local clock."""
    reply: Any = await client.time()
    sec, usec = reply
    return int(sec) * 1000 + int(usec) // 1000
