"""One pooled connection driven directly: write a packed command, parse the reply.

redis-py's asyncio call costs ~90 µs of client CPU per round trip on a small
machine (a task per timed write, a timeout context and the parser's own
buffering per read, the pool's health probe); a sequential producer pays it
on every add. A queue that keeps one connection for its script calls
(:class:`jobq.scripts.QueueScripts`) sends through this instead: the bytes go
straight to the connection's stream and a hiredis reader of its own turns what
comes back into a reply, for ~40 µs.

The connection stays redis-py's: it connects it (handshake, AUTH, SELECT, TLS)
and gets it back clean. Errors keep redis-py's types and its rule: on any
failure or cancellation mid-call the connection is dropped, and the next call
connects it again; nothing is retried here.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

hiredis: Any
try:
    import hiredis
    from redis._parsers.base import BaseParser
except ImportError:  # pragma: no cover - hiredis is a dependency; without it, redis-py's path
    hiredis = None

_READ_SIZE = 65536
_DRAIN_ABOVE = 1 << 16


def wire_capable(conn: Any) -> bool:
    """Whether ``conn`` (a redis-py asyncio connection) can be driven directly."""
    return hiredis is not None and hasattr(conn, "_reader") and hasattr(conn, "_writer")


class Wire:
    """Calls over one connection of a pool, one at a time (the caller ensures it)."""

    __slots__ = ("_parser", "conn")

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._parser: Any = None

    async def call(self, packed: bytes) -> Any:
        """Send one packed command and return its reply (an error reply is raised)."""
        conn = self.conn
        parser = self._parser
        if parser is None or not conn.is_connected:
            await conn.connect()
            parser = self._parser = hiredis.Reader(
                protocolError=InvalidResponse, replyError=BaseParser.parse_error
            )
        reader, writer = conn._reader, conn._writer
        try:
            writer.write(packed)
            if writer.transport.get_write_buffer_size() > _DRAIN_ABOVE:
                await writer.drain()
            reply = parser.gets()
            while reply is False:
                timeout = conn.socket_timeout
                if timeout is None:
                    data = await reader.read(_READ_SIZE)
                else:
                    async with asyncio.timeout(timeout):
                        data = await reader.read(_READ_SIZE)
                if not data:
                    raise RedisConnectionError("Connection closed by server.")
                parser.feed(data)
                reply = parser.gets()
        except BaseException as exc:
            self._parser = None
            await conn.disconnect(nowait=True)
            if isinstance(exc, TimeoutError):
                raise RedisTimeoutError(f"Timeout reading from {_where(conn)}") from exc
            if isinstance(exc, OSError):
                raise RedisConnectionError(
                    f"Error {exc.errno} while talking to {_where(conn)}: {exc}"
                ) from exc
            raise
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    def clean(self) -> bool:
        """Whether nothing unread is pending (the connection can go back to its pool)."""
        return self._parser is None or self._parser.gets() is False


def _where(conn: Any) -> str:
    host_error = getattr(conn, "_host_error", None)
    return str(host_error()) if callable(host_error) else "the server"
