"""jobq.eventloop: asyncio with timers that are neither late by the epoll rounding nor early."""

from __future__ import annotations

import asyncio
import ctypes
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


def _prctl(option: int, value: int = 0) -> int:
    return int(ctypes.CDLL(None).prctl(option, value, 0, 0, 0))


_PR_SET_TIMERSLACK, _PR_GET_TIMERSLACK = 29, 30


def test_the_thread_that_waits_in_the_selector_gets_a_timer_slack_of_one_nanosecond() -> None:
    slack: dict[str, int] = {}

    def in_a_new_thread() -> None:
        _prctl(_PR_SET_TIMERSLACK, 50_000)  # Linux's default, whatever this thread inherited
        slack["before"] = _prctl(_PR_GET_TIMERSLACK)
        eventloop.run(asyncio.sleep(0.001))
        slack["after"] = _prctl(_PR_GET_TIMERSLACK)

    t = threading.Thread(target=in_a_new_thread)
    t.start()
    t.join()
    assert slack == {"before": 50_000, "after": 1}


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


def _ready_pair(sel: selectors.BaseSelector) -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    sel.register(a, selectors.EVENT_READ)
    return a, b


class _Clock:
    """A clock that stands still but for the jumps planned (or, not ``virtual``, runs)."""

    def __init__(self) -> None:
        self.virtual = True
        self.offset = 0.0
        self.plan: list[float] = []

    def __call__(self) -> float:
        if self.plan:
            self.offset += self.plan.pop(0)
        return self.offset + (0.0 if self.virtual else time.perf_counter())

    def next_wait_takes(self, gap: float) -> None:
        self.plan = [0.0, gap]


@pytest.fixture
def alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The selector sees a process of one thread (pytest's own threads notwithstanding)."""
    monkeypatch.setattr(eventloop, "_single_threaded", lambda: True)


class _Polled:
    """A polling selector with a scripted clock and a socket pair it watches."""

    def __init__(self, spin_us: int) -> None:
        self.clock = _Clock()
        self.sel = eventloop.PreciseEpollSelector(spin_us=spin_us, clock=self.clock)
        self.a, self.b = _ready_pair(self.sel)

    def __enter__(self) -> _Polled:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sel.close()
        self.a.close()
        self.b.close()

    def width(self) -> int:
        return round(self.sel.spin_window * 1e6)

    def replies(self, n: int, gap: float | None = None) -> list[int]:
        """``n`` waits met by data that is there already, each ``gap`` long as the selector
        sees it (with ``gap`` at or over the window, the window is over before it polls and
        the sleep meets the data); the window's widths after each."""
        widths = []
        for _ in range(n):
            if gap is not None:
                self.clock.next_wait_takes(gap)
            self.b.send(b"x")
            assert self.sel.select(None)
            self.a.recv(16)
            widths.append(self.width())
        return widths


@pytest.mark.usefixtures("alone")
def test_the_polling_window_opens_on_quick_replies_and_closes_on_long_waits() -> None:
    with _Polled(spin_us=20_000) as p:
        assert p.width() == 0
        # Replies met 2 ms in, after the window, within the maximum: a wider window would
        # have met them, so it doubles.
        assert p.replies(5, gap=0.002) == [20, 40, 80, 160, 320]
        assert p.replies(1) == [320]  # met within the window: it stays as it is
        widths = []
        for _ in range(5):  # nothing for longer than the maximum: it halves, then closes
            p.clock.next_wait_takes(0.025)
            assert p.sel.select(0.0001) == []
            widths.append(p.width())
        assert widths == [160, 80, 40, 20, 0]


@pytest.mark.usefixtures("alone")
def test_the_polling_window_never_exceeds_its_maximum() -> None:
    with _Polled(spin_us=100) as p:
        assert p.replies(3) == [20, 20, 20]  # no window yet: it opens; then met in it
        assert p.replies(4, gap=0.00009) == [40, 80, 100, 100]
        # Waits beyond this maximum close the window rather than widen it.
        assert p.replies(3, gap=0.002) == [50, 25, 0]


@pytest.mark.usefixtures("alone")
def test_an_open_window_still_keeps_short_timeouts_and_wakes_for_late_data() -> None:
    with _Polled(spin_us=20_000) as p:
        assert p.replies(7, gap=0.002)[-1] == 1280
        p.clock.virtual = False
        for timeout in (0.0001, 0.0004, 0.0025):  # shorter and longer than the window
            t0 = time.monotonic()
            assert p.sel.select(timeout) == []
            assert time.monotonic() - t0 >= timeout
        threading.Timer(0.05, p.b.send, (b"late",)).start()  # after the window: the sleep wakes
        assert p.sel.select(10.0)
        assert p.a.recv(16) == b"late"


def test_a_process_with_another_thread_does_not_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    with _Polled(spin_us=20_000) as p:
        other_may_end = threading.Event()
        other = threading.Thread(target=other_may_end.wait)
        other.start()
        try:
            assert threading.active_count() > 1
            assert p.replies(5, gap=0.002)[-1] == 320
            # Not alone: it sleeps at once, and the data met by the sleep widens the window.
            assert p.replies(1) == [640]
        finally:
            other_may_end.set()
            other.join()
        monkeypatch.setattr(eventloop, "_single_threaded", lambda: True)
        assert p.replies(1) == [640]  # alone, it polls and meets the data within the window


@pytest.mark.usefixtures("alone")
def test_with_polling_off_the_window_never_opens() -> None:
    with _Polled(spin_us=0) as p:
        assert p.replies(3) == [0, 0, 0]
        assert p.replies(3, gap=0.00005) == [0, 0, 0]


def test_the_polling_maximum_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.SPIN_ENV, raising=False)
    assert eventloop.spin_from_env() == eventloop.DEFAULT_SPIN_US == 500
    monkeypatch.setenv(eventloop.SPIN_ENV, "0")
    loop = eventloop.new_event_loop()
    try:
        sel = loop._selector  # type: ignore[attr-defined]
        a, b = _ready_pair(sel)
        b.send(b"x")
        sel.select(None)
        assert sel.spin_window == 0.0
        a.close()
        b.close()
    finally:
        loop.close()
    for bad in ("fast", "-5", "1e9"):
        monkeypatch.setenv(eventloop.SPIN_ENV, bad)
        with pytest.raises(ValueError, match=eventloop.SPIN_ENV):
            eventloop.new_event_loop()


def test_a_negative_maximum_is_refused() -> None:
    with pytest.raises(ValueError, match="spin_us"):
        eventloop.PreciseEpollSelector(spin_us=-1)
