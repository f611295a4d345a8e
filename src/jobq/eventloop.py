"""An asyncio event loop whose timers fire on time, for worker processes.

asyncio waits for its next timer in ``epoll_wait``, whose timeout is whole
milliseconds, rounded up: a timer due in 10.2 ms wakes the loop after 11 ms.
A processor that awaits short sleeps or timeouts (polling an API, pacing
calls) loses up to a millisecond per wait, and a worker running many of them
loses throughput in proportion (about 5-10% for 10 ms waits).

:func:`new_event_loop` returns a standard selector loop whose selector waits
the whole milliseconds in ``epoll_wait`` and the sub-millisecond rest in
``clock_nanosleep`` (``time.sleep``), then polls once more: timers fire within
tens of microseconds, with no busy waiting. The price is that I/O arriving
during that rest (under a millisecond) is seen at its end. The rest is measured
from the deadline after the first wait, and the thread that runs the loop has
its timer slack set to 1 ns (:func:`precise_timer_slack`): Linux otherwise lets
each timed wait end up to 50 us late, to merge wake-ups, and the two waits
would add that twice to every timer (1% of a 10 ms sleep). Elsewhere than
Linux the platform's default selector is used unchanged.

Before it sleeps, the selector may also poll for a short while. On a virtual
machine, a vCPU that goes idle is halted by the hypervisor, and waking it again
when the reply to a request arrives costs tens of microseconds each way: a
producer that awaits one ``add`` after another spends more time being woken
than working. So the selector keeps a polling window, adapted as the guest
kernel's ``haltpoll`` adapts its own: a wait that ends with I/O soon after the
window closed (within the maximum) doubles the window, and a wait longer than
the maximum halves it, down to none. Request-reply traffic (sequential adds, a
worker at concurrency 1 on short jobs) is then met while the loop still runs;
a loop whose waits are long (idle workers, 10 ms jobs) soon stops polling and
spends nothing. Only a process with one thread polls: another thread (a pool
running plain ``def`` processors, the caller of a ``SyncQueue``) would wait
for the GIL that polling holds, and measured slower with it. The maximum is
``JOBQ_LOOP_SPIN_US`` microseconds (default 500); ``0`` turns polling off.

``jobq worker``, ``ppbe-jobs worker`` and the demo run on it; :func:`run` is
``asyncio.run`` on such a loop, for programs that run workers themselves.
"""

from __future__ import annotations

import asyncio
import ctypes
import math
import os
import selectors
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = [
    "DEFAULT_SPIN_US",
    "SPIN_ENV",
    "PreciseEpollSelector",
    "new_event_loop",
    "precise_timer_slack",
    "run",
    "spin_from_env",
]

T = TypeVar("T")

_Epoll: Any = getattr(selectors, "EpollSelector", None)

DEFAULT_SPIN_US = 500
"""The default maximum polling window, in microseconds."""

SPIN_ENV = "JOBQ_LOOP_SPIN_US"
"""The environment variable that sets the maximum polling window."""

_GROW_START = 20e-6  # the first window after a short wait, in seconds (as haltpoll's)


def _single_threaded() -> bool:
    return threading.active_count() == 1


_PR_SET_TIMERSLACK = 29


def precise_timer_slack() -> bool:
    """Ask Linux to wake this thread's timed waits on time: its timer slack, the
    lateness the kernel may add to a timed wait to merge wake-ups (50 us by
    default), becomes 1 ns. Per thread; ``False`` where it cannot be set."""
    if not sys.platform.startswith("linux"):
        return False  # pragma: no cover - not Linux
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):  # pragma: no cover - no prctl in this libc
        return False


def spin_from_env() -> int:
    """The maximum polling window that ``JOBQ_LOOP_SPIN_US`` sets, in microseconds."""
    raw = os.environ.get(SPIN_ENV, "").strip()
    if not raw:
        return DEFAULT_SPIN_US
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= 100_000:
        raise ValueError(
            f"{SPIN_ENV} must be a whole number of microseconds from 0 to 100000, not {raw!r}"
        )
    return value


if _Epoll is not None:

    class PreciseEpollSelector(_Epoll):  # type: ignore[misc]
        """An epoll selector that waits sub-millisecond timeouts exactly and polls adaptively.

        ``spin_us`` is the most it polls before it sleeps (see the module's doc);
        ``0`` never polls. ``clock`` measures the waits (tests give a scripted one).
        """

        def __init__(
            self,
            spin_us: int = DEFAULT_SPIN_US,
            *,
            clock: Callable[[], float] = time.perf_counter,
        ) -> None:
            super().__init__()
            if spin_us < 0:
                raise ValueError(f"spin_us must be 0 or more, not {spin_us}")
            self._spin_max = spin_us * 1e-6
            self._window = 0.0
            self._clock = clock
            self._slack_thread: int | None = None

        @property
        def spin_window(self) -> float:
            """The current polling window, in seconds (0: it sleeps at once)."""
            return self._window

        def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            poll = super().select
            if timeout is not None and timeout <= 0:
                ready: list[tuple[selectors.SelectorKey, int]] = poll(timeout)
                return ready
            clock = self._clock
            start = clock()
            window = self._window if timeout is None else min(self._window, timeout)
            # Another thread (a processor pool's, a SyncQueue's caller) would wait for the
            # GIL that polling holds: only a process of one thread polls.
            if window > 0 and _single_threaded():
                end = start + window
                while clock() < end:
                    ready = poll(0)
                    if ready:
                        return ready  # met within the window: it stays as it is
                if timeout is not None:
                    timeout = max(timeout - window, 0.0)
            if timeout is None or timeout > 0:
                if self._slack_thread != threading.get_ident():
                    self._slack_thread = threading.get_ident()
                    precise_timer_slack()
                ready = self._sleep(timeout)
            else:
                ready = poll(0)
            if self._spin_max:
                waited = clock() - start
                if waited > self._spin_max:  # a long wait: polling would not have met it
                    half = self._window / 2
                    self._window = half if half >= _GROW_START else 0.0
                elif ready:  # met soon after the window closed: a wider one would have
                    self._window = min(self._spin_max, max(_GROW_START, self._window * 2))
            return ready

        def _sleep(self, timeout: float | None) -> list[tuple[selectors.SelectorKey, int]]:
            poll = super().select
            if timeout is None:
                ready: list[tuple[selectors.SelectorKey, int]] = poll(None)
                return ready
            # The rest is measured from the deadline after the first wait, so the
            # first wake-up's own lateness is not added to the second's.
            deadline = time.perf_counter() + timeout
            whole_ms = math.floor(timeout * 1e3)
            ready = poll(whole_ms * 1e-3 if whole_ms else 0)
            if ready:
                return ready
            rest = deadline - time.perf_counter()
            if rest > 0:
                time.sleep(rest)
            ready = poll(0)
            return ready

else:  # pragma: no cover - not Linux
    PreciseEpollSelector = None  # type: ignore[assignment,misc]


def new_event_loop(*, spin_us: int | None = None) -> asyncio.AbstractEventLoop:
    """A new event loop with precise timers and adaptive polling (see the module's doc).

    ``spin_us`` is the most the loop polls before it sleeps; ``None`` reads
    ``JOBQ_LOOP_SPIN_US`` (default 500), ``0`` turns polling off.
    """
    if PreciseEpollSelector is None or not sys.platform.startswith("linux"):
        return asyncio.new_event_loop()  # pragma: no cover - not Linux
    return asyncio.SelectorEventLoop(
        PreciseEpollSelector(spin_from_env() if spin_us is None else spin_us)
    )


def run(
    main: Coroutine[Any, Any, T], *, debug: bool | None = None, spin_us: int | None = None
) -> T:
    """``asyncio.run(main)`` on a loop from :func:`new_event_loop` (``spin_us`` as there)."""
    with asyncio.Runner(
        debug=debug, loop_factory=lambda: new_event_loop(spin_us=spin_us)
    ) as runner:
        return runner.run(main)
