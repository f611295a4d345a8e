"""A blocking facade over :class:`~jobq.Queue` for producers in synchronous code.

It runs the async queue on a private event loop in a daemon thread::

    with SyncQueue("reports") as queue:
        job = queue.add("generate-budget-report", {"reportId": "r-1"})
        result = queue.wait_until_finished(job.id, timeout=60)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from .job import Job, JobState
from .options import Duration, JobOptions
from .queue import BulkJob, CleanState, ConnectionLike, JobCounts, ListState, Queue
from .scheduler import SchedulerInfo

__all__ = ["SyncQueue"]

T = TypeVar("T")


class SyncQueue:
    """The blocking twin of :class:`~jobq.Queue` (same arguments, same methods)."""

    def __init__(self, name: str, *, connection: ConnectionLike = None, **kwargs: Any) -> None:
        self._queue = Queue(name, connection=connection, **kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"jobq-sync-{name}", daemon=True
        )
        self._thread.start()
        self._open = False

    @property
    def name(self) -> str:
        """The queue's name."""
        return self._queue.name

    @property
    def queue(self) -> Queue:
        """The async queue underneath."""
        return self._queue

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if not self._open:
            self._open = True
            asyncio.run_coroutine_threadsafe(self._queue.open(), self._loop).result()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        """Disconnect and stop the private loop."""
        if self._open:
            asyncio.run_coroutine_threadsafe(self._queue.close(), self._loop).result()
            self._open = False
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> SyncQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, name: str, data: Any = None, options: JobOptions | None = None) -> Job:
        """See :meth:`Queue.add`."""
        return self._run(self._queue.add(name, data, options))

    def add_bulk(
        self, jobs: Iterable[BulkJob | tuple[str, Any] | tuple[str, Any, JobOptions | None]]
    ) -> list[Job]:
        """See :meth:`Queue.add_bulk`."""
        return self._run(self._queue.add_bulk(list(jobs)))

    def get_job(self, job_id: str) -> Job | None:
        """See :meth:`Queue.get_job`."""
        return self._run(self._queue.get_job(job_id))

    def get_jobs(self, state: ListState, start: int = 0, end: int = -1) -> list[Job]:
        """See :meth:`Queue.get_jobs`."""
        return self._run(self._queue.get_jobs(state, start, end))

    def get_job_counts(self) -> JobCounts:
        """See :meth:`Queue.get_job_counts`."""
        return self._run(self._queue.get_job_counts())

    def get_job_state(self, job_id: str) -> JobState:
        """See :meth:`Queue.get_job_state`."""
        return self._run(self._queue.get_job_state(job_id))

    def wait_until_finished(self, job_id: str, timeout: float | None = None) -> Any:
        """See :meth:`Job.wait_until_finished`."""
        return self._run(self._queue.wait_for_job(job_id, timeout))

    def pause(self) -> bool:
        """See :meth:`Queue.pause`."""
        return self._run(self._queue.pause())

    def resume(self) -> bool:
        """See :meth:`Queue.resume`."""
        return self._run(self._queue.resume())

    def promote(self, job_id: str) -> None:
        """See :meth:`Queue.promote`."""
        self._run(self._queue.promote(job_id))

    def retry(self, job_id: str) -> None:
        """See :meth:`Queue.retry`."""
        self._run(self._queue.retry(job_id))

    def retry_all_failed(self) -> int:
        """See :meth:`Queue.retry_all_failed`."""
        return self._run(self._queue.retry_all_failed())

    def remove(self, job_id: str) -> None:
        """See :meth:`Queue.remove`."""
        self._run(self._queue.remove(job_id))

    def drain(self, *, delayed: bool = False) -> int:
        """See :meth:`Queue.drain`."""
        return self._run(self._queue.drain(delayed=delayed))

    def clean(self, state: CleanState, grace: Duration = 0, limit: int = 1_000) -> list[str]:
        """See :meth:`Queue.clean`."""
        return self._run(self._queue.clean(state, grace, limit))

    def obliterate(self, *, force: bool = False) -> int:
        """See :meth:`Queue.obliterate`."""
        return self._run(self._queue.obliterate(force=force))

    def upsert_scheduler(self, scheduler_id: str, **kwargs: Any) -> SchedulerInfo:
        """See :meth:`Queue.upsert_scheduler`."""
        return self._run(self._queue.upsert_scheduler(scheduler_id, **kwargs))

    def remove_scheduler(self, scheduler_id: str) -> bool:
        """See :meth:`Queue.remove_scheduler`."""
        return self._run(self._queue.remove_scheduler(scheduler_id))

    def list_schedulers(self) -> list[SchedulerInfo]:
        """See :meth:`Queue.list_schedulers`."""
        return self._run(self._queue.list_schedulers())

    def run_scheduler_now(self, scheduler_id: str) -> Job:
        """See :meth:`Queue.run_scheduler_now`."""
        return self._run(self._queue.run_scheduler_now(scheduler_id))

    def get_deduplication_job_id(self, key: str) -> str | None:
        """See :meth:`Queue.get_deduplication_job_id`."""
        return self._run(self._queue.get_deduplication_job_id(key))

    def remove_deduplication_key(self, key: str) -> bool:
        """See :meth:`Queue.remove_deduplication_key`."""
        return self._run(self._queue.remove_deduplication_key(key))
