"""Checking at start that the server lets jobq run every command it needs.

A Redis/Valkey ACL user for jobq can be limited to jobq's keys and to the
commands jobq sends, directly or from its Lua scripts (ACL rules apply inside
scripts too). :func:`acl_setuser_line` writes that user's ``ACL SETUSER`` line
(also in docs/security.md).

Without a check, a missing command shows up only when a script first needs it,
possibly hours later and in the middle of a job's transition. So
:meth:`jobq.Queue.open` and a worker's start ask the server up front
(:func:`check_permissions`): every command jobq may send is *queued* inside
``MULTI`` and the transaction is then dropped with ``DISCARD``. The server
checks command and key permissions when it queues a command, so each denied
one answers ``NOPERM`` at once, and nothing is ever executed. A user that may
not even run ``MULTI`` is checked with ``ACL DRYRUN`` instead, if it may run
that; otherwise the check reports ``MULTI`` as missing.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Sequence
from typing import Any, Final

import redis.asyncio
import redis.exceptions

from .errors import ConnectionSetupError, ServerUnreachableError
from .keys import QueueKeys

__all__ = [
    "ALL_COMMANDS",
    "OPERATOR_COMMANDS",
    "OPTIONAL_COMMANDS",
    "QUEUE_COMMANDS",
    "WORKER_COMMANDS",
    "acl_setuser_line",
    "check_permissions",
    "tls_failure",
]

#: Commands a Queue needs (adding, reading, steering; and every command its Lua
#: scripts run), as ACL rule names (``script|load`` is SCRIPT LOAD).
QUEUE_COMMANDS: Final[tuple[str, ...]] = (
    "del",
    "discard",
    "evalsha",
    "exec",
    "exists",
    "expire",
    "get",
    "hdel",
    "hexists",
    "hget",
    "hgetall",
    "hincrby",
    "hkeys",
    "hlen",
    "hmget",
    "hset",
    "hsetnx",
    "incr",
    "incrby",
    "info",
    "lindex",
    "llen",
    "lpush",
    "lrange",
    "lrem",
    "ltrim",
    "multi",
    "pexpire",
    "ping",
    "pttl",
    "rpop",
    "rpush",
    "sadd",
    "scard",
    "script|load",
    "set",
    "smembers",
    "srem",
    "time",
    "xadd",
    "xlen",
    "xread",
    "xrevrange",
    "zadd",
    "zcard",
    "zcount",
    "zmscore",
    "zpopmin",
    "zrange",
    "zrangebyscore",
    "zrem",
    "zremrangebyrank",
    "zremrangebyscore",
    "zrevrange",
    "zrevrangebyscore",
    "zscore",
)
#: Commands only a Worker adds (the blocking wait for new jobs, its statistics).
WORKER_COMMANDS: Final[tuple[str, ...]] = ("bzpopmin", "hincrbyfloat")
#: Commands operator tools add: queue discovery (dashboard, ``jobq`` command).
OPERATOR_COMMANDS: Final[tuple[str, ...]] = ("scan",)
#: Sent by redis-py when it connects: CLIENT SETNAME when a ``client_name`` is set
#: (needed then). CLIENT SETINFO (Redis 7.2+ and Valkey only, so not in the line,
#: which must work on 6.2 too) may be denied: redis-py ignores that, the server's
#: ACL log records it; add ``+client|setinfo`` there to keep the log quiet.
OPTIONAL_COMMANDS: Final[tuple[str, ...]] = ("client|setname",)
#: Everything in the documented ACL line.
ALL_COMMANDS: Final[tuple[str, ...]] = tuple(
    sorted({*QUEUE_COMMANDS, *WORKER_COMMANDS, *OPERATOR_COMMANDS, *OPTIONAL_COMMANDS})
)

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def acl_setuser_line(prefix: str = "jobq", user: str = "jobq", password: str = "<password>") -> str:
    """The ``ACL SETUSER`` line of a user that can run jobq under ``prefix`` and nothing else.

    Keys: every key of every queue (``{prefix:<queue>}:...``, dead-letter queues
    included) and the prefix's audit stream (``{prefix}:audit``). No pub/sub
    channels (jobq uses none). Commands: :data:`ALL_COMMANDS`.
    """
    p = _GLOB_SPECIAL.sub(r"\\\1", prefix)
    cmds = " ".join(f"+{c}" for c in ALL_COMMANDS)
    return (
        f"ACL SETUSER {user} on >{password} resetkeys ~{{{p}:* ~{{{p}}}:* "
        f"resetchannels -@all {cmds}"
    )


def _probes(keys: QueueKeys, commands: Sequence[str]) -> list[tuple[str, tuple[Any, ...]]]:
    """One harmless invocation per command, on keys of this queue (never executed)."""
    k = keys
    table: dict[str, tuple[Any, ...]] = {
        "bzpopmin": ("BZPOPMIN", k.marker, 1),
        "del": ("DEL", k.limiter),
        "discard": (),  # checked by the probe itself
        "evalsha": ("EVALSHA", "0" * 40, len(k.script_keys), *k.script_keys),
        "exec": (),  # cannot be queued: it would run the probe transaction
        "exists": ("EXISTS", k.job("acl-probe")),
        "expire": ("EXPIRE", k.job("acl-probe"), 1),
        "get": ("GET", k.limiter),
        "hdel": ("HDEL", k.meta, "acl-probe"),
        "hexists": ("HEXISTS", k.meta, "paused"),
        "hget": ("HGET", k.meta, "dlq"),
        "hincrbyfloat": ("HINCRBYFLOAT", k.stats_minute(0), "acl-probe", 0),
        "hgetall": ("HGETALL", k.job("acl-probe")),
        "hincrby": ("HINCRBY", k.meta, "acl-probe", 0),
        "hkeys": ("HKEYS", k.metrics_completed),
        "hlen": ("HLEN", k.metrics_completed),
        "hmget": ("HMGET", k.job("acl-probe"), "n"),
        "hset": ("HSET", k.job("acl-probe"), "n", "x"),
        "hsetnx": ("HSETNX", k.job("acl-probe"), "n", "x"),
        "incr": ("INCR", k.id),
        "incrby": ("INCRBY", k.id, 0),
        "info": ("INFO", "server"),
        "lindex": ("LINDEX", k.wait, 0),
        "llen": ("LLEN", k.wait),
        "lpush": ("LPUSH", k.wait, "acl-probe"),
        "lrange": ("LRANGE", k.wait, 0, 0),
        "lrem": ("LREM", k.wait, 0, "acl-probe"),
        "ltrim": ("LTRIM", k.logs("acl-probe"), 0, -1),
        "multi": (),  # checked by the probe itself
        "pexpire": ("PEXPIRE", k.limiter, 1),
        "ping": ("PING",),
        "pttl": ("PTTL", k.limiter),
        "rpop": ("RPOP", k.wait),
        "rpush": ("RPUSH", k.wait, "acl-probe"),
        "sadd": ("SADD", k.job("acl-probe") + ":deps", "x"),
        "scan": ("SCAN", 0, "MATCH", k.base + ":meta", "COUNT", 1),
        "scard": ("SCARD", k.job("acl-probe") + ":deps"),
        "script|load": ("SCRIPT", "LOAD", "return 1"),
        "set": ("SET", k.limiter, "0"),
        "smembers": ("SMEMBERS", k.job("acl-probe") + ":deps"),
        "srem": ("SREM", k.job("acl-probe") + ":deps", "x"),
        "time": ("TIME",),
        "xadd": ("XADD", k.events, "MAXLEN", "~", 1, "*", "e", "acl-probe"),
        "xlen": ("XLEN", k.events),
        "xread": ("XREAD", "COUNT", 1, "STREAMS", k.events, "0-0"),
        "xrevrange": ("XREVRANGE", k.events, "+", "-", "COUNT", 1),
        "zadd": ("ZADD", k.marker, 0, "0"),
        "zcard": ("ZCARD", k.delayed),
        "zcount": ("ZCOUNT", k.workers, 0, "+inf"),
        "zmscore": ("ZMSCORE", k.active, "acl-probe"),
        "zpopmin": ("ZPOPMIN", k.prio, 1),
        "zrange": ("ZRANGE", k.delayed, 0, 0),
        "zrangebyscore": ("ZRANGEBYSCORE", k.delayed, "-inf", 0),
        "zrem": ("ZREM", k.delayed, "acl-probe"),
        "zremrangebyrank": ("ZREMRANGEBYRANK", k.completed, 0, -1),
        "zremrangebyscore": ("ZREMRANGEBYSCORE", k.dedup_index, "-inf", 0),
        "zrevrange": ("ZREVRANGE", k.completed, 0, 0),
        "zrevrangebyscore": ("ZREVRANGEBYSCORE", k.failed, "+inf", "-inf"),
        "zscore": ("ZSCORE", k.completed, "acl-probe"),
    }
    return [(c, table[c]) for c in commands if table.get(c)]


def _user(client: redis.asyncio.Redis) -> str:
    return str(client.connection_pool.connection_kwargs.get("username") or "default")


def _where(client: redis.asyncio.Redis) -> str:
    kw = client.connection_pool.connection_kwargs
    if "path" in kw:
        return f"unix://{kw['path']}"
    return f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"


def _denial(exc: BaseException) -> str | None:
    """What an error reply to a queued probe says is missing, or None if not a denial."""
    text = str(exc)
    low = text.lower()
    if isinstance(exc, redis.exceptions.NoPermissionError) or low.startswith("noperm"):
        if "key" in low:
            return "key"
        if "channel" in low:
            return "channel"
        return "command"
    if "unknown command" in low or "unknown subcommand" in low:
        return "unknown"
    return None


async def _probe_multi(
    client: redis.asyncio.Redis, probes: list[tuple[str, tuple[Any, ...]]]
) -> list[tuple[str, str]] | None:
    """(command, kind of denial) per denied probe; None if MULTI itself is refused."""
    pool: Any = client.connection_pool
    conn: Any = await pool.get_connection()
    clean = False
    try:
        # MULTI alone first: were it refused, the probes sent after it would run.
        await conn.send_command("MULTI")
        try:
            await conn.read_response()
        except redis.exceptions.ResponseError as exc:
            if _denial(exc) is None:
                raise
            clean = True
            return None
        commands = [*(args for _, args in probes), ("DISCARD",)]
        await conn.send_packed_command(conn.pack_commands(commands))
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await conn.read_response())
            except redis.exceptions.ResponseError as exc:
                replies.append(exc)
        clean = True
    finally:
        if not clean:
            await conn.disconnect()  # mid-transaction state must not go back to the pool
        await pool.release(conn)
    denied = []
    for (command, _), reply in zip(probes, replies[:-1], strict=True):
        if isinstance(reply, BaseException):
            kind = _denial(reply)
            if kind is not None:
                denied.append((command, kind))
    if isinstance(replies[-1], BaseException) and _denial(replies[-1]) is not None:
        denied.append(("discard", "command"))
    return denied


async def _probe_dryrun(
    client: redis.asyncio.Redis, probes: list[tuple[str, tuple[Any, ...]]]
) -> list[tuple[str, str]] | None:
    """The same check with ACL DRYRUN (Redis 7+, Valkey); None if that is refused too."""
    c: Any = client
    try:
        user = await c.execute_command("ACL", "WHOAMI")
        denied = []
        for command, args in probes:
            reply = await c.execute_command("ACL", "DRYRUN", user, *args)
            text = reply.decode() if isinstance(reply, bytes) else str(reply)
            if text != "OK":
                denied.append((command, "key" if "key" in text.lower() else "command"))
    except redis.exceptions.ResponseError:
        return None
    return denied


async def check_permissions(
    client: redis.asyncio.Redis, keys: QueueKeys, *, commands: Sequence[str] = QUEUE_COMMANDS
) -> None:
    """Make sure the server lets this connection run ``commands`` on ``keys``' queue.

    Sends nothing that changes data (see the module docstring). Clients other
    than a plain ``redis.asyncio.Redis`` (a Cluster client, say) are not checked.

    Raises:
        ConnectionSetupError: a command or key is denied, or unknown to the
            server (renamed away); the message names each and the ACL rules
            that would allow them.
        ServerUnreachableError: the connection failed meanwhile.
    """
    if not isinstance(client, redis.asyncio.Redis):
        return
    probes = _probes(keys, commands)
    user, where = _user(client), _where(client)
    try:
        denied = await _probe_multi(client, probes)
        if denied is None:
            denied = await _probe_dryrun(client, probes)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise ServerUnreachableError(f"cannot reach Redis at {where}: {exc}") from exc
    if denied is None:
        denied = [("multi", "command"), ("discard", "command")]
    if not denied:
        return
    missing = sorted({c for c, kind in denied if kind in ("command", "channel")})
    unknown = sorted({c for c, kind in denied if kind == "unknown"})
    keyed = sorted({c for c, kind in denied if kind == "key"})
    parts = []
    if missing:
        shown = ", ".join(c.upper().replace("|", " ") for c in missing)
        rules = " ".join(f"+{c}" for c in missing)
        parts.append(f"may not run {shown} (grant them: ACL SETUSER {user} {rules})")
    if keyed:
        shown = ", ".join(c.upper().replace("|", " ") for c in keyed[:4])
        if len(keyed) > 4:
            shown += f" and {len(keyed) - 4} more"
        pattern = "~{" + _GLOB_SPECIAL.sub(r"\\\1", keys.prefix) + ":*"
        parts.append(
            f"may not touch the keys of queue {keys.name!r} ({keys.base}:...) with {shown} "
            f"(grant them: ACL SETUSER {user} {pattern})"
        )
    if unknown:
        shown = ", ".join(c.upper().replace("|", " ") for c in unknown)
        parts.append(f"does not know {shown} (renamed or disabled in the server's config?)")
    raise ConnectionSetupError(
        f"Redis at {where}, user {user!r}, "
        + "; and ".join(parts)
        + f". jobq needs them for queue {keys.name!r}. The full rule set for prefix "
        f"{keys.prefix!r} is: {acl_setuser_line(keys.prefix, user)} (see docs/security.md)"
    )


def tls_failure(where: str, exc: BaseException) -> str | None:
    """The message for a TLS handshake that can never succeed (the server's
    certificate does not verify, or the peer answered with something that is
    not TLS), else None. A plain Redis port does not answer a handshake at all:
    that is a timeout, indistinguishable from an outage, and not covered.

    Such a failure is a setup error, not an outage: retrying cannot fix it, so
    a worker must stop instead of waiting for the server.
    """
    seen: set[int] = set()
    chain: BaseException | None = exc
    text = ""
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        if isinstance(chain, ssl.SSLCertVerificationError):
            text = "CERTIFICATE_VERIFY_FAILED"
        text += " " + str(chain)
        chain = chain.__cause__ or chain.__context__
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            f"Redis at {where}: the server's TLS certificate does not verify ({exc}). "
            "Pass the CA that signed it as ssl_ca_certs=/path/ca.pem in the rediss:// URL, "
            "and make sure the certificate names the host you connect to"
        )
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        return (
            f"Redis at {where}: the port does not speak TLS ({exc}); use redis:// for a "
            "plain port, or the server's tls-port with rediss://"
        )
    return None
