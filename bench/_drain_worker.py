"""The worker process of ``bench.engine``: one jobq Worker with a no-op async processor.

usage: python -m bench._drain_worker URL QUEUE CONCURRENCY [drain|latency]

It works until SIGTERM, then closes the worker and prints one JSON line on
stdout: jobs processed, the wall-clock time (``time.time_ns``) of the first
and last processor call, its own CPU time from just before ``Worker.run`` to
the SIGTERM, its peak and current RSS, and in ``latency`` mode the pickup
latency of every job (processor start minus the ``t`` the producer put in the
payload, both ``time.time_ns`` on the same machine).

It dies with its parent (PR_SET_PDEATHSIG on Linux): the benchmark's private
server dies with the parent too, and an orphaned worker would only retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import resource
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from jobq import Job, Worker

from ._common import proc_status_kb, run

_PR_SET_PDEATHSIG = 1


def _tie_to_parent() -> None:
    """Get SIGKILLed when the parent dies (Linux); exit now if it already has."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    expected = os.environ.get("BENCH_PARENT_PID")
    if expected is not None and os.getppid() != int(expected):
        os._exit(3)


@dataclass(slots=True)
class _State:
    latency_mode: bool
    processed: int = 0
    first_ns: int = 0
    last_ns: int = 0
    latencies_ns: list[int] = field(default_factory=list)


def _cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def _main(url: str, queue: str, concurrency: int, mode: str) -> dict[str, Any]:
    state = _State(latency_mode=mode == "latency")

    async def process(job: Job) -> None:
        now = time.time_ns()
        if state.first_ns == 0:
            state.first_ns = now
        state.last_ns = now
        state.processed += 1
        if state.latency_mode:
            state.latencies_ns.append(now - int(job.data["t"]))

    worker = Worker(
        queue,
        process,
        connection=url,
        concurrency=concurrency,
        install_signal_handlers=False,
    )
    stop = asyncio.Event()
    at_stop: dict[str, Any] = {}

    def on_term() -> None:
        if not stop.is_set():
            at_stop["cpu_s"] = _cpu_seconds()
            at_stop["time_ns"] = time.time_ns()
            stop.set()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, on_term)
    cpu0 = _cpu_seconds()
    task = asyncio.create_task(worker.run(), name="bench-worker")
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    error: str | None = None
    if task.done():
        stopper.cancel()
        exc = task.exception()
        error = f"worker.run returned early: {exc!r}"
        on_term()
    else:
        await worker.close(grace=5.0)
        try:
            await task
        except Exception as exc:  # report, do not hide
            error = f"worker.run raised {exc!r}"
    out: dict[str, Any] = {
        "processed": state.processed,
        "worker_jobs_processed": worker.jobs_processed,
        "worker_jobs_failed": worker.jobs_failed,
        "first_ns": state.first_ns,
        "last_ns": state.last_ns,
        "cpu_run_s": at_stop["cpu_s"] - cpu0,
        "vmhwm_kb": proc_status_kb("self", "VmHWM"),
        "vmrss_kb": proc_status_kb("self", "VmRSS"),
        "error": error,
    }
    if state.latency_mode:
        out["latencies_ns"] = state.latencies_ns
    return out


def main(argv: list[str]) -> int:
    """Entry point; see the module docstring."""
    if len(argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    _tie_to_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us with SIGTERM
    url, queue, concurrency = argv[0], argv[1], int(argv[2])
    mode = argv[3] if len(argv) == 4 else "drain"
    if mode not in ("drain", "latency"):
        print(f"unknown mode {mode!r}", file=sys.stderr)
        return 2
    result = run(_main(url, queue, concurrency, mode))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
