"""A small TCP proxy between workers and a private server, that can break the network.

- :meth:`ChaosProxy.reset_all` resets every open connection (RST, as a
  restarted load balancer or a dropped NAT entry does);
- :meth:`ChaosProxy.blackhole` stops forwarding without closing anything:
  bytes stay unread in the kernel's buffers, new connections are accepted but
  get nothing, exactly as when packets are silently dropped and TCP keeps
  retransmitting; :meth:`ChaosProxy.heal` resumes, delivering what was held
  (what retransmission does once the path is back).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct


class ChaosProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port``; ``async with``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections = 0  # accepted in all
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The URL workers connect to."""
        return f"redis://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ChaosProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.heal()
        if self._server is not None:
            self._server.close()
        await self.reset_all()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    @property
    def open_connections(self) -> int:
        """Connection pairs forwarding now."""
        return len(self._pairs)

    def blackhole(self) -> None:
        """Stop forwarding (nothing is closed, nothing is answered)."""
        self._flowing.clear()

    def heal(self) -> None:
        """Forward again, held bytes first."""
        self._flowing.set()

    async def reset_all(self) -> None:
        """Reset every open connection, both sides."""
        for client_w, upstream_w in list(self._pairs):
            for w in (client_w, upstream_w):
                sock = w.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                w.close()
        self._pairs.clear()
        await asyncio.sleep(0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._flowing.wait()  # a black hole answers no handshake either
            try:
                up_r, up_w = await asyncio.open_connection(*self.target)
            except OSError:
                writer.close()
                return
            pair = (writer, up_w)
            self._pairs.add(pair)
            try:
                await asyncio.gather(self._pump(reader, up_w), self._pump(up_r, writer))
            finally:
                self._pairs.discard(pair)
                for w in pair:
                    w.close()
        finally:
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while True:
                await self._flowing.wait()
                data = await reader.read(65536)
                if not data:
                    break
                await self._flowing.wait()  # read just before the hole opened: hold it
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()
