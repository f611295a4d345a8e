"""What a worker makes of the end of an attempt: the record its next call reports.

A processor's return value becomes a completion (encoded within the queue's
payload limit); an exception becomes a retry after the job's backoff or, on
the last attempt or an :class:`~jobq.UnrecoverableError`, a failure; a
:class:`~jobq.RateLimitedError` puts the job back without spending an attempt.
Every record carries the claim's fencing token, so the server takes it only
from the attempt that holds the job.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from . import logs as _logs
from . import serialization
from .errors import PayloadError, RateLimitedError, UnrecoverableError
from .job import AttemptError, Job
from .options import KeepJobs
from .scripts import FinishItem

__all__ = ["BackoffStrategy", "Outcome", "Outcomes", "keep"]

log = logging.getLogger("jobq.worker")

BackoffStrategy = Callable[[int, BaseException, Job], int | float | timedelta]
#: The record to report, and the exception to hand the failed-job handler (final failures).
Outcome = tuple[FinishItem, BaseException | None]

_MAX_STACK = 8_000
_MAX_KEPT_ERRORS = 25


def keep(k: KeepJobs) -> tuple[int, int]:
    """``(count, age)`` of a retention setting, as the finish script takes them."""
    count, age = k.to_json()
    return count, age


class Outcomes:
    """Turns one worker's results and errors into finish records, and counts them.

    ``strategies`` is the worker's own mapping of custom backoff strategies
    (read at each retry, so strategies registered later count).
    """

    def __init__(
        self,
        queue_name: str,
        worker_id: str,
        *,
        payload_limit: int | None,
        encoded_in_children: bool,
        strategies: Mapping[str, BackoffStrategy],
    ) -> None:
        self.queue_name = queue_name
        self.worker_id = worker_id
        self.payload_limit = payload_limit
        self.encoded_in_children = encoded_in_children
        self.strategies = strategies
        self.processed = 0
        self.failed = 0

    def success(self, job: Job, result: Any) -> Outcome:
        """A completion with ``result`` stored (a failure if it cannot be stored)."""
        if result is None:
            encoded = b"null"  # the common case, without the encoder's checks
        elif isinstance(result, bytes) and self.encoded_in_children:
            encoded = result  # already encoded in the child
        else:
            try:
                encoded = serialization.encode(
                    result, limit=self.payload_limit, what="return value"
                )
            except PayloadError as exc:
                return self.failure(
                    job, UnrecoverableError(f"the return value cannot be stored: {exc}")
                )
        opts = job.options
        count, age = keep(opts.keep_completed)
        self.processed += 1
        plain = (
            opts.group is None
            and opts.deduplication is None
            and not job.extra
            and job.corrupt_reason is None
        )
        return FinishItem(job.id, job.token or "", "c", encoded, b"", 0, count, age, plain), None

    def error(self, job: Job, exc: BaseException) -> Outcome:
        """What ``exc`` raised by the processor makes of the attempt."""
        if isinstance(exc, RateLimitedError):
            return FinishItem(job.id, job.token or "", "l", b"", b"", exc.delay_ms), None
        return self.failure(job, exc)

    def failure(self, job: Job, exc: BaseException) -> Outcome:
        """A retry after the job's backoff, or a final failure."""
        attempt = job.attempts_made + 1
        reason = str(exc) or type(exc).__name__
        try:
            stack = "".join(traceback.format_exception(exc))[-_MAX_STACK:]
        except MemoryError:
            # The failed attempt may still hold what exhausted memory (its frames
            # live on in the traceback): let them go and record the failure plainly.
            traceback.clear_frames(exc.__traceback__)
            stack = f"{type(exc).__name__} (stack trace not kept: out of memory)"
        err = AttemptError(attempt, reason, type(exc).__name__, stack, int(time.time() * 1000))
        job.errors.append(err)
        errors = json.dumps([e.to_json() for e in job.errors[-_MAX_KEPT_ERRORS:]]).encode()
        final = isinstance(exc, UnrecoverableError) or attempt >= job.options.attempts
        # The exception's type only: its message often quotes the job's data.
        fields = _logs.job_fields(job, self.worker_id)
        if final:
            self.failed += 1
            count, age = keep(job.options.keep_failed)
            log.warning(
                "job %s of queue %r failed for good on attempt %d of %d (%s)",
                job.id,
                self.queue_name,
                attempt,
                job.options.attempts,
                type(exc).__name__,
                extra=fields,
            )
            return FinishItem(job.id, job.token or "", "f", reason, errors, 0, count, age), exc
        delay = self.backoff_ms(job, attempt, exc)
        log.info(
            "job %s of queue %r failed attempt %d of %d (%s); retry in %d ms",
            job.id,
            self.queue_name,
            attempt,
            job.options.attempts,
            type(exc).__name__,
            delay,
            extra=fields,
        )
        return FinishItem(job.id, job.token or "", "r", reason, errors, delay), None

    def backoff_ms(self, job: Job, attempt: int, exc: BaseException) -> int:
        """How long the job waits before ``attempt`` + 1 (ms)."""
        b = job.options.backoff
        if b is None:
            return 0
        ms = b.compute(attempt)
        if ms is not None:
            return ms
        strategy = self.strategies.get(b.type)
        if strategy is None:
            log.error(
                "job %s: backoff strategy %r is not registered on this worker "
                "(Worker(backoff_strategies={%r: fn})); waiting %d ms instead",
                job.id,
                b.type,
                b.type,
                b.delay,
                extra=_logs.job_fields(job, self.worker_id),
            )
            return b.delay
        value = strategy(attempt, exc, job)
        if isinstance(value, timedelta):
            return max(0, int(value.total_seconds() * 1000))
        return max(0, int(value))
