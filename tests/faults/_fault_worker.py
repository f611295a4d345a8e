"""A jobq worker in a child process whose processor misbehaves on request.

Run as a script (``python _fault_worker.py URL QUEUE --record FILE [options]``)
it runs one :class:`jobq.Worker` with its own SIGTERM/SIGINT handlers. The
processor appends ``S``/``D`` lines to the execution log (see
:mod:`tests.faults._checker`) and does what the job's data says:

``{"sleep": s}``   ``await asyncio.sleep(s)`` (capped by ``--max-sleep``)
``{"block": s}``   ``time.sleep(s)`` on the event loop, on the job's first run only
``{"die": true}``  ``os._exit(1)``: the process dies in the middle of the job
``{"eat": true}``  allocate memory until it runs out (use ``--rlimit-as-mb``)

With ``--dispatch`` it serves only the job names ``work`` and ``sleep`` and
raises for any other name. ``--clock-skew S`` moves this process's
``time.time()`` by S seconds before jobq is imported. Lines on stdout:
``ready <worker id>``, ``log <logger> <message>`` (jobq's INFO and up),
``exited``. It exits at once if its stdin reaches end of file (the test died).

Imported, the module offers :class:`FaultWorker`, the parent's side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import resource
import signal
import sys
import threading
import time
from pathlib import Path

_SCRIPT = str(Path(__file__).resolve())
_ROOT = str(Path(__file__).resolve().parents[2])
KNOWN_NAMES = ("work", "sleep")


# -- the child ---------------------------------------------------------------------


def _say(line: str) -> None:
    print(line, flush=True)


def _exit_when_orphaned() -> None:
    with contextlib.suppress(OSError):
        while os.read(0, 4096):
            pass
    os._exit(70)


def _skew_clock(seconds: float) -> None:
    """Move ``time.time``/``time.time_ns`` (only) of this process by ``seconds``."""
    real_time, real_ns = time.time, time.time_ns
    offset_ns = int(seconds * 1e9)
    time.time = lambda: real_time() + seconds
    time.time_ns = lambda: real_ns() + offset_ns


def _vm_size_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


async def _child_main(args: argparse.Namespace) -> None:
    from jobq import Job, Worker, WorkerOptions
    from jobq.connection import ConnectionSettings
    from tests.faults._checker import ExecutionLog, write_execution

    fd = ExecutionLog.open_fd(args.record)
    pid = os.getpid()

    async def processor(job: Job) -> dict[str, int]:
        write_execution(fd, "S", job.id, job.attempts_made, job.token or "")
        if args.dispatch and job.name not in KNOWN_NAMES:
            raise LookupError(f"unknown job name {job.name!r}: this worker serves {KNOWN_NAMES}")
        data = job.data if isinstance(job.data, dict) else {}
        if data.get("die"):
            os._exit(1)
        if data.get("eat"):
            hoard = []
            try:
                while True:  # MemoryError once RLIMIT_AS is reached
                    hoard.append(bytearray(32 * 1024 * 1024))
            except MemoryError:
                # "eat" lets go before raising; "keep" does not: the traceback then
                # keeps this frame (and the hoard) alive while the worker records
                # the failure, which must cope with having no memory left.
                if data.get("eat") != "keep":
                    hoard.clear()
                raise
        if data.get("block") and job.stalls == 0:
            # Blocks the event loop: the fault under test.
            time.sleep(float(data["block"]))  # noqa: ASYNC251
        if data.get("sleep"):
            await asyncio.sleep(min(float(data["sleep"]), args.max_sleep))
        write_execution(fd, "D", job.id, job.attempts_made, job.token or "")
        return {"pid": pid}

    settings = ConnectionSettings.from_url(args.url, socket_timeout=args.socket_timeout)
    worker = Worker(
        args.queue,
        processor,
        connection=settings,
        options=WorkerOptions(
            concurrency=args.concurrency,
            prefetch=args.prefetch,
            lease=args.lease_ms,
            max_stalled=args.max_stalled,
            shutdown_grace=args.grace_ms,
            block_timeout=args.block_ms,
            events_max_len=args.events_max_len,
        ),
    )
    if args.rlimit_as_mb:
        limit = _vm_size_bytes() + args.rlimit_as_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    _say(f"ready {worker.id}")
    await worker.run()
    _say("exited")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the child process."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("queue")
    parser.add_argument("--record", required=True)
    parser.add_argument("--lease-ms", type=int, default=30_000)
    parser.add_argument("--max-stalled", type=int, default=1)
    parser.add_argument("--grace-ms", type=int, default=30_000)
    parser.add_argument("--block-ms", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--prefetch", type=int, default=None)
    parser.add_argument("--socket-timeout", type=float, default=10.0)
    parser.add_argument("--events-max-len", type=int, default=10_000)
    parser.add_argument("--max-sleep", type=float, default=3600.0)
    parser.add_argument("--clock-skew", type=float, default=0.0)
    parser.add_argument("--rlimit-as-mb", type=int, default=0)
    parser.add_argument("--dispatch", action="store_true")
    args = parser.parse_args(argv)
    if args.clock_skew:
        _skew_clock(args.clock_skew)  # before jobq is imported
    threading.Thread(target=_exit_when_orphaned, name="orphan-watch", daemon=True).start()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("log %(name)s %(message)s"))
    jobq_log = logging.getLogger("jobq")
    jobq_log.addHandler(handler)
    jobq_log.setLevel(logging.INFO)
    asyncio.run(_child_main(args))


# -- the parent --------------------------------------------------------------------


class FaultWorker:
    """The parent's handle on one child worker; ``await start()``, then ``await stop()``.

    A background task reads the child's stdout all the time (a chatty child
    must never block on a full pipe); :meth:`expect` waits for a line.
    """

    def __init__(self, url: str, queue: str, record: Path, **options: object) -> None:
        self.argv = [sys.executable, "-u", _SCRIPT, url, queue, "--record", str(record)]
        for name, value in options.items():
            flag = f"--{name.replace('_', '-')}"
            if value is True:
                self.argv.append(flag)
            elif value is not False and value is not None:
                self.argv += [flag, str(value)]
        self.lines: list[str] = []
        self.worker_id = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._new_line = asyncio.Condition()

    @property
    def proc(self) -> asyncio.subprocess.Process:
        """The running child."""
        assert self._proc is not None, "the child process was not started"
        return self._proc

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.proc.pid

    async def start(self, *, wait_ready: bool = True) -> FaultWorker:
        """Start the child (and wait for its ``ready`` line)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_ROOT, env.get("PYTHONPATH")]))
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        self._reader = asyncio.create_task(self._read())
        if wait_ready:
            self.worker_id = (await self.expect("ready ")).split()[1]
        return self

    async def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        while True:
            raw = await stdout.readline()
            async with self._new_line:
                if raw:
                    self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._new_line.notify_all()
            if not raw:
                return

    def said(self, text: str) -> list[str]:
        """The lines so far that contain ``text``."""
        return [line for line in self.lines if text in line]

    def output(self) -> str:
        """Everything the child said (the last 60 lines), for failure messages."""
        return "\n".join(self.lines[-60:])

    async def expect(self, text: str, timeout: float = 30.0, *, start: int = 0) -> str:
        """Wait for a line (from index ``start`` on) containing ``text``; return it."""

        def found() -> str | None:
            for line in self.lines[start:]:
                if text in line:
                    return line
            return None

        async def wait() -> str:
            async with self._new_line:
                while True:
                    line = found()
                    if line is not None:
                        return line
                    if self._reader is not None and self._reader.done():
                        raise AssertionError(
                            f"worker process ended (code {self.proc.returncode}) before "
                            f"saying {text!r}; it said:\n{self.output()}"
                        )
                    await self._new_line.wait()

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"worker process did not say {text!r} within {timeout} s; it said:\n{self.output()}"
            ) from None

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the child."""
        self.proc.send_signal(sig)

    async def wait(self, timeout: float) -> int:
        """Wait for the child to exit; its exit code."""
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, timeout)
        return code

    def cpu_seconds(self) -> float:
        """User plus system CPU time the child has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    async def stop(self) -> None:
        """Kill the child if it still runs, and reap it."""
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


if __name__ == "__main__":
    main()
