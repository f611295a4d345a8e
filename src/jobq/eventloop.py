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
during that rest (under a millisecond) is seen at its end. Elsewhere than
Linux the platform's default selector is used unchanged.

``jobq worker``, ``ppbe-jobs worker`` and the demo run on it; :func:`run` is
``asyncio.run`` on such a loop, for programs that run workers themselves.
"""

from __future__ import annotations

import asyncio
import math
import selectors
import sys
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["PreciseEpollSelector", "new_event_loop", "run"]

T = TypeVar("T")

_Epoll: Any = getattr(selectors, "EpollSelector", None)


if _Epoll is not None:

    class PreciseEpollSelector(_Epoll):  # type: ignore[misc]
        """An epoll selector that waits sub-millisecond timeouts exactly."""

        def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            if timeout is None or timeout <= 0:
                ready: list[tuple[selectors.SelectorKey, int]] = super().select(timeout)
                return ready
            whole_ms = math.floor(timeout * 1e3)
            rest = timeout - whole_ms * 1e-3
            ready = super().select(whole_ms * 1e-3 if whole_ms else 0)
            if ready or rest <= 0:
                return ready
            time.sleep(rest)
            ready = super().select(0)
            return ready

else:  # pragma: no cover - not Linux
    PreciseEpollSelector = None  # type: ignore[assignment,misc]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop with precise timers (see the module's doc)."""
    if PreciseEpollSelector is None or not sys.platform.startswith("linux"):
        return asyncio.new_event_loop()  # pragma: no cover - not Linux
    return asyncio.SelectorEventLoop(PreciseEpollSelector())


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
    """``asyncio.run(main)`` on a loop from :func:`new_event_loop`."""
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)
