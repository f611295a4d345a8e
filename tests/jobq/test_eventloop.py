"""jobq.eventloop: asyncio with timers that are neither late by the epoll rounding nor early."""

from __future__ import annotations

import asyncio
import selectors
import socket
import sys
import threading
import time

import pytest

from jobq import eventloop

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="epoll is Linux")


def test_the_loop_uses_the_precise_selector() -> None:
    loop = eventloop.new_event_loop()
    try:
        assert isinstance(loop, asyncio.SelectorEventLoop)
        assert isinstance(loop._selector, eventloop.PreciseEpollSelector)  # type: ignore[attr-defined]
    finally:
        loop.close()


@pytest.mark.parametrize("timeout", [0.0004, 0.0025, 0.0101])
def test_select_never_returns_before_its_timeout_when_nothing_is_ready(timeout: float) -> None:
    sel = eventloop.PreciseEpollSelector()
    a, b = socket.socketpair()
    try:
        sel.register(a, selectors.EVENT_READ)
        t0 = time.monotonic()
        assert sel.select(timeout) == []
        assert time.monotonic() - t0 >= timeout
    finally:
        sel.close()
        a.close()
        b.close()


def test_select_reports_ready_data_at_once_whatever_the_timeout() -> None:
    sel = eventloop.PreciseEpollSelector()
    a, b = socket.socketpair()
    try:
        key = sel.register(a, selectors.EVENT_READ)
        b.send(b"x")
        for timeout in (0.0004, 0.0025, 5.0):
            t0 = time.monotonic()
            assert sel.select(timeout) == [(key, selectors.EVENT_READ)]
            assert time.monotonic() - t0 < 1.0  # returned with the data, not at the timeout
    finally:
        sel.close()
        a.close()
        b.close()


def test_run_runs_timers_in_order_and_wakes_on_io_during_a_long_wait() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        seen: list[str] = []
        due: list[tuple[float, float]] = []
        for delay in (0.0031, 0.0007, 0.0102):
            when = loop.time() + delay

            def fire(d: float = delay, w: float = when) -> None:
                due.append((w, loop.time()))
                seen.append(f"timer {d}")

            loop.call_at(when, fire)
        await asyncio.sleep(0.02)
        assert all(fired >= when for when, fired in due)  # never early
        # A far timer must not delay I/O: data written by a thread wakes the loop.
        reader, writer = await asyncio.open_connection(*_server_pair())
        loop.call_later(30, seen.append, "never")
        threading.Timer(0.05, _SEND.set).start()
        line = await asyncio.wait_for(reader.readline(), 10)
        seen.append(line.decode().strip())
        writer.close()
        return seen

    assert eventloop.run(main()) == ["timer 0.0007", "timer 0.0031", "timer 0.0102", "hello"]


_SEND = threading.Event()


def _server_pair() -> tuple[str, int]:
    """A one-shot TCP server on loopback that says hello once ``_SEND`` is set."""
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def serve() -> None:
        conn, _ = srv.accept()
        _SEND.wait(10)
        conn.sendall(b"hello\n")
        conn.close()
        srv.close()

    threading.Thread(target=serve, daemon=True).start()
    return "127.0.0.1", port
