"""Jobs from a claim reply, as a worker hands them to its processor.

Data nobody vouches for (a queue with signing keys, a bad signature) is not
even decoded; data or options that cannot be decoded leave the job marked
corrupt, so the worker fails it without running it and lives on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from . import logs as _logs
from . import serialization
from .job import Job
from .options import JobOptions
from .queue import Queue
from .scripts import ClaimedJob

__all__ = ["ClaimDecoder"]

log = logging.getLogger("jobq.worker")

_OptionsKey = tuple[bytes | None, int | None, int]


class ClaimDecoder:
    """Builds the :class:`~jobq.Job` of each claimed job for one worker."""

    def __init__(self, queue: Queue, worker_id: str) -> None:
        self.queue = queue
        self.worker_id = worker_id
        self._options_cache: dict[_OptionsKey, JobOptions] = {}

    def options(self, raw: bytes | None, priority: int | None, delay: int) -> JobOptions:
        """Decoded options, from a small cache: jobs of one kind share their options
        (JobOptions is immutable, so one instance serves them all)."""
        key = (raw, priority, delay)
        opts = self._options_cache.get(key)
        if opts is None:
            opts = Job.decode_options(raw, priority, delay)
            if len(self._options_cache) >= 256:
                self._options_cache.clear()
            self._options_cache[key] = opts
        return opts

    def job(self, cj: ClaimedJob, loop: asyncio.AbstractEventLoop | None) -> Job:
        """The job ``cj`` describes; ``corrupt_reason`` or ``refusal`` set if it must not run."""
        queue = self.queue
        corrupt: str | None = None
        data: Any = None
        signer = queue.signer
        refusal = None
        if signer is not None:
            refusal = signer.verify(queue.keys.prefix, queue.name, cj.name, cj.data, cj.opts)
        try:
            if refusal is None:  # data nobody vouches for is not even decoded
                data = serialization.decode(cj.data, what=f"job {cj.id} data")
        except serialization.SerializationError as exc:
            corrupt = str(exc)
        try:
            opts = self.options(cj.opts, cj.priority, cj.delay)
            errors = Job.decode_errors(cj.errors) if cj.errors else None
            extra = Job.decode_extra(cj.extra) if cj.extra else None
        except (ValueError, TypeError, KeyError) as exc:
            corrupt = corrupt or f"job {cj.id}: corrupt options: {exc}"
            opts, errors, extra = JobOptions(), None, None
        progress: Any = 0
        if cj.progress:
            with contextlib.suppress(ValueError):
                progress = json.loads(cj.progress)
        job = Job(
            queue,
            cj.id,
            cj.name,
            data,
            opts,
            timestamp=cj.created,
            attempts_made=cj.attempts_made,
            attempts_started=cj.attempts_started,
            stalls=cj.stalls,
            progress=progress,
            errors=errors,
            processed_on=None,
            token=cj.token,
            corrupt_reason=corrupt,
            extra=extra,
        )
        job._loop = loop
        if refusal is not None:
            job.refusal = refusal
            log.warning(
                "job %s of queue %r will fail without running: %s",
                cj.id,
                queue.name,
                refusal,
                extra=_logs.job_fields(job, self.worker_id),
            )
        return job
