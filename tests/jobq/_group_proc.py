"""A worker process for the group tests: records when (server time) each job starts.

``python _group_proc.py URL QUEUE LOG_KEY`` runs a Worker whose processor
appends ``<group>:<server ms>`` to the list LOG_KEY. It stops on SIGTERM, or
when its stdin closes (the test process died).
"""

from __future__ import annotations

import asyncio
import sys
import threading

from jobq import Job, Worker
from jobq.connection import server_time_ms


async def main(url: str, queue: str, log_key: str) -> None:
    async def process(job: Job) -> None:
        now = await server_time_ms(job._queue.client)
        await job._queue.client.rpush(log_key, f"{job.options.group}:{now}")

    worker = Worker(queue, process, connection=url, concurrency=5)
    loop = asyncio.get_running_loop()

    def orphaned() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(lambda: asyncio.ensure_future(worker.close(grace=0)))

    threading.Thread(target=orphaned, daemon=True).start()
    print("ready", flush=True)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
