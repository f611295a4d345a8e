"""Scheduler and worker child processes for the exactly-once scheduler test.

Run as a script:

``python _scheduler_proc.py scheduler URL QUEUE SCHEDULER_ID EVERY_MS``
    upserts the scheduler (every EVERY_MS ms) like a deployment's startup
    code would, then runs :class:`jobq.Scheduler` on the queue for ever.
``python _scheduler_proc.py worker URL QUEUE RECORD_KEY``
    runs a :class:`jobq.Worker` whose processor appends each job id it runs
    to the list RECORD_KEY (and to RECORD_KEY + ":notify", which the test
    blocks on).

Each says ``ready`` on stdout once it is about to run, and exits at once when
its stdin reaches end of file (the test process died), so none can be left
behind. Imported, the module offers :class:`ChildProcess`, the parent's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
from pathlib import Path

_SCRIPT = str(Path(__file__).resolve())


def _exit_when_orphaned() -> None:
    with contextlib.suppress(OSError):
        while os.read(0, 4096):
            pass
    os._exit(70)


async def _scheduler(url: str, queue: str, scheduler_id: str, every_ms: int) -> None:
    from jobq import Queue, Scheduler

    async with Queue(queue, connection=url) as q:
        await q.upsert_scheduler(scheduler_id, every=every_ms, name="tick", data={"n": 1})
    scheduler = Scheduler(queue, connection=url)
    print("ready", flush=True)
    await scheduler.run()


async def _worker(url: str, queue: str, record_key: str) -> None:
    from jobq import Job, Worker
    from jobq.connection import ConnectionSettings, create_client

    client = create_client(ConnectionSettings.from_url(url))

    async def processor(job: Job) -> int:
        async with client.pipeline(transaction=True) as pipe:
            pipe.rpush(record_key, job.id)
            pipe.rpush(record_key + ":notify", job.id)
            await pipe.execute()
        return int(job.extra.get("tick", 0))

    worker = Worker(queue, processor, connection=url, concurrency=2)
    print("ready", flush=True)
    try:
        await worker.run()
    finally:
        await client.aclose()


def main(argv: list[str]) -> None:
    """Entry point of the child process."""
    threading.Thread(target=_exit_when_orphaned, name="orphan-watch", daemon=True).start()
    role, url, queue = argv[0], argv[1], argv[2]
    if role == "scheduler":
        asyncio.run(_scheduler(url, queue, argv[3], int(argv[4])))
    elif role == "worker":
        asyncio.run(_worker(url, queue, argv[3]))
    else:
        raise SystemExit(f"unknown role {role!r}")


class ChildProcess:
    """One child (``role`` and its arguments); ``await start()``, ``await kill()``."""

    def __init__(self, *args: str) -> None:
        self.argv = [sys.executable, "-u", _SCRIPT, *args]
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the child."""
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )

    async def ready(self, timeout: float = 30.0) -> None:
        """Wait until the child says ``ready`` (or fail with what it said)."""
        assert self.proc is not None
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.argv[3]} not ready; it said:\n" + "\n".join(self.lines)
                )
            raw = await asyncio.wait_for(self.proc.stdout.readline(), remaining)
            if not raw:
                raise AssertionError(
                    f"{self.argv[3]} exited before it was ready:\n" + "\n".join(self.lines)
                )
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            if line == "ready":
                # Keep reading, so a chatty child never blocks on a full pipe.
                self._drain = asyncio.create_task(self._read_rest())
                return

    async def _read_rest(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def output(self) -> str:
        """What the child said so far."""
        return "\n".join(self.lines)

    async def kill(self) -> None:
        """Kill the child (if running) and reap it."""
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()
        if self._drain is not None:
            await self._drain
        if proc.stdin is not None:
            proc.stdin.close()


if __name__ == "__main__":
    main(sys.argv[1:])
