"""A jobq worker in a real child process, for the lease and shutdown tests.

Run as a script (``python _worker_proc.py URL QUEUE [options]``), it runs one
:class:`jobq.Worker` in its main thread with ``asyncio.run`` and the worker's
own SIGTERM/SIGINT handlers. Its processor prints ``started <job id>`` and then
blocks for ever, so a job stays active until the process is killed or hands it
back. Everything it says goes to stdout, one line at a time:

``ready <worker id>``       the worker is about to run
``started <job id>``        the processor began a job
``closing``                 the worker began its graceful shutdown
``cancelled <job id>``      the shutdown cancelled the processor
``exited``                  ``Worker.run`` returned
``log <logger> <message>``  a record of the ``jobq`` loggers (INFO and up)

If its stdin reaches end of file (the test process died), it exits at once,
so no test can leave it behind.

Imported, the module offers :class:`WorkerProcess`, the parent's side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

_SCRIPT = str(Path(__file__).resolve())


# -- the child ---------------------------------------------------------------------


def _say(line: str) -> None:
    print(line, flush=True)


def _exit_when_orphaned() -> None:
    """End the process once the parent closes our stdin (or dies)."""
    # The raw fd, not sys.stdin: a daemon thread blocked in a buffered read
    # holds its lock and makes interpreter shutdown abort.
    with contextlib.suppress(OSError):
        while os.read(0, 4096):
            pass
    os._exit(70)


async def _child_main(args: argparse.Namespace) -> None:
    from jobq import Job, Worker, WorkerOptions

    async def processor(job: Job) -> None:
        _say(f"started {job.id}")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            _say(f"cancelled {job.id}")
            raise

    worker = Worker(
        args.queue,
        processor,
        connection=args.url,
        options=WorkerOptions(
            concurrency=args.concurrency,
            lease=args.lease_ms,
            max_stalled=args.max_stalled,
            shutdown_grace=args.grace_ms,
        ),
    )

    async def report_closing() -> None:
        # The worker has no "closing" event to wait on; looking often is cheap.
        # Once the parent reads the line, a further signal finds the worker closing.
        while True:
            if worker.closing:
                _say("closing")
                return
            await asyncio.sleep(0.005)

    monitor = asyncio.create_task(report_closing())
    _say(f"ready {worker.id}")
    try:
        await worker.run()
    finally:
        monitor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor
    _say("exited")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the child process."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("queue")
    parser.add_argument("--lease-ms", type=int, default=30_000)
    parser.add_argument("--max-stalled", type=int, default=1)
    parser.add_argument("--grace-ms", type=int, default=30_000)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args(argv)
    threading.Thread(target=_exit_when_orphaned, name="orphan-watch", daemon=True).start()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("log %(name)s %(message)s"))
    jobq_log = logging.getLogger("jobq")
    jobq_log.addHandler(handler)
    jobq_log.setLevel(logging.INFO)
    asyncio.run(_child_main(args))


# -- the parent --------------------------------------------------------------------


class WorkerProcess:
    """The parent's handle on a child worker process; use ``async with``."""

    def __init__(self, url: str, queue: str, **options: int) -> None:
        self.argv = [sys.executable, "-u", _SCRIPT, url, queue]
        for name, value in options.items():
            self.argv += [f"--{name.replace('_', '-')}", str(value)]
        self.lines: list[str] = []
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def proc(self) -> asyncio.subprocess.Process:
        """The running child."""
        assert self._proc is not None, "the child process was not started"
        return self._proc

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.proc.pid

    async def __aenter__(self) -> WorkerProcess:
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()

    def output(self) -> str:
        """Everything the child said so far, for failure messages."""
        return "\n".join(self.lines)

    async def expect(self, prefix: str, timeout: float = 30.0) -> str:
        """Read lines until one starts with ``prefix``; return it (or fail with the output)."""
        stdout = self.proc.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"the worker process did not say {prefix!r} within {timeout} s; "
                    f"it said:\n{self.output()}"
                )
            try:
                raw = await asyncio.wait_for(stdout.readline(), remaining)
            except TimeoutError:
                continue
            if not raw:
                raise AssertionError(
                    f"the worker process ended (code {await self.proc.wait()}) before saying "
                    f"{prefix!r}; it said:\n{self.output()}"
                )
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            if line.startswith(prefix):
                return line

    async def read_rest(self) -> str:
        """Read until the child closes stdout (it has exited); return all output."""
        stdout = self.proc.stdout
        assert stdout is not None
        rest = await stdout.read()
        self.lines.extend(rest.decode("utf-8", "replace").splitlines())
        return self.output()

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the child."""
        self.proc.send_signal(sig)

    async def wait(self, timeout: float) -> int:
        """Wait for the child to exit; its exit code."""
        return await asyncio.wait_for(self.proc.wait(), timeout)


if __name__ == "__main__":
    main()
