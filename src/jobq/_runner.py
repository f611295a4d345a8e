"""How a worker calls its processor, within the job's timeout.

An ``async def`` processor runs on the event loop; a plain ``def`` one in a
thread pool (in the job's context, so its log fields and trace span reach the
thread) or, with ``processes=N``, in child processes: there it runs on a
:class:`ChildJob` and its result is encoded in the child, so only bytes come
back over the pipe. A child that dies takes only its job with it: the pool is
replaced and the job's attempt fails.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import multiprocessing
from collections.abc import Awaitable, Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from . import serialization
from .errors import ConfigurationError, JobTimeoutError
from .job import Job

__all__ = ["ChildJob", "ProcessorRunner", "run_batch_in_child", "run_in_child"]


@dataclass(frozen=True, slots=True)
class ChildJob:
    """What a processor running in a child process sees of its job."""

    id: str
    name: str
    data: Any
    queue_name: str
    attempts_made: int


def run_in_child(processor: Callable[[ChildJob], Any], job: ChildJob) -> bytes:
    """Entry point in the child process: run, then encode the result there."""
    return serialization.encode(processor(job), limit=None, what="return value")


def run_batch_in_child(
    processor: Callable[[list[ChildJob]], Any], jobs: list[ChildJob]
) -> list[bytes | BaseException]:
    """Entry point in the child process for a batch: one encoded outcome per job."""
    results = processor(jobs)
    if not isinstance(results, list | tuple) or len(results) != len(jobs):
        raise TypeError(
            f"a batch processor must return a list with one outcome per job ({len(jobs)})"
        )
    return [
        r
        if isinstance(r, BaseException)
        else serialization.encode(r, limit=None, what="return value")
        for r in results
    ]


class ProcessorRunner:
    """Calls one worker's processor on a job or a batch (a list of jobs)."""

    def __init__(self, processor: Any, *, name: str, processes: int, threads: int) -> None:
        self.processor = processor
        self.name = name
        self.processes = processes
        self.threads = threads
        self.is_async = inspect.iscoroutinefunction(processor) or inspect.iscoroutinefunction(
            getattr(processor, "__call__", None)  # noqa: B004 - async callables too
        )
        if processes and self.is_async:
            raise ConfigurationError(
                "processes=N runs a plain def processor in child processes; "
                f"{getattr(processor, '__name__', processor)!r} is async"
            )
        self._thread_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._process_pool: concurrent.futures.ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Create the pool a plain ``def`` processor runs in."""
        if self.is_async:
            return
        if self.processes:
            self._process_pool = self._new_process_pool()
        else:
            self._thread_pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.threads, thread_name_prefix=f"jobq-{self.name}"
            )

    def shutdown(self) -> None:
        """Let the pools go (running calls are not waited for)."""
        for pool in (self._thread_pool, self._process_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    async def call(self, arg: Job | list[Job]) -> Any:
        """The processor's return value; :class:`~jobq.JobTimeoutError` past the
        (smallest) timeout of the jobs."""
        jobs = arg if isinstance(arg, list) else [arg]
        limits = [j.options.timeout_ms for j in jobs if j.options.timeout_ms is not None]
        timeout = min(limits) if limits else None
        job = jobs[0]
        loop = asyncio.get_running_loop()
        call: Awaitable[Any]
        fn: Any = self.processor
        if self.is_async:
            call = fn(arg)
        elif self._process_pool is not None:
            children = [ChildJob(j.id, j.name, j.data, j.queue_name, j.attempts_made) for j in jobs]
            if isinstance(arg, list):
                call = loop.run_in_executor(self._process_pool, run_batch_in_child, fn, children)
            else:
                call = loop.run_in_executor(self._process_pool, run_in_child, fn, children[0])
        else:
            # In the job's context: its log fields and trace span reach the thread.
            call = loop.run_in_executor(self._thread_pool, contextvars.copy_context().run, fn, arg)
        try:
            if timeout is None:
                return await call
            # asyncio.timeout, not wait_for: wait_for runs the processor in a Task of
            # its own, and a KeyboardInterrupt/SystemExit raised in a Task escapes the
            # event loop instead of reaching the code that records the failure.
            try:
                async with asyncio.timeout(timeout / 1000):
                    return await call
            except TimeoutError as exc:
                raise JobTimeoutError(
                    f"job {job.id} ({job.name!r}) ran longer than its timeout of {timeout} ms"
                ) from exc
        except BrokenProcessPool as exc:
            self._replace_broken_pool()
            raise RuntimeError(f"the child process running job {job.id} died") from exc

    def _new_process_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        return concurrent.futures.ProcessPoolExecutor(
            max_workers=self.processes, mp_context=multiprocessing.get_context("spawn")
        )

    def _replace_broken_pool(self) -> None:
        old = self._process_pool
        if old is not None:
            old.shutdown(wait=False, cancel_futures=False)
        self._process_pool = self._new_process_pool()
