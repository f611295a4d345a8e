"""The exceptions jobq raises, all under one root.

::

    JobqError
    ├── ConfigurationError        bad option, URL or environment variable
    ├── ConnectionSetupError      the server is unfit, or refuses us, at start
    │   └── ServerUnreachableError    cannot reach it (yet): workers keep trying
    ├── PayloadError              a job's data or result cannot be stored
    │   ├── PayloadTooLargeError  over the size limit
    │   └── SerializationError    not representable in the JSON envelope
    ├── JobNotFoundError          no job with that id in that queue
    ├── InvalidJobStateError      the job is not in a state the operation accepts
    ├── LeaseLostError            the worker no longer holds the job (stale fencing token)
    ├── ScriptError               a Lua script answered with a code jobq does not know
    ├── NotReplicatedError        a durable add reached fewer replicas than asked in time
    ├── JobFailedError            raised by ``Job.wait_until_finished`` for a failed job
    ├── WaitTimeoutError          ``wait_until_finished`` ran out of time
    ├── JobTimeoutError           an attempt ran past the job's ``timeout``
    └── JobStalledError           handed to the failed-job hook for a job that stalled too often

Raised *by processors* to steer what happens to their job (not errors of jobq):

    UnrecoverableError            fail the job now, spend no more attempts
    RateLimitedError              put the job back untouched and hold the queue for a while

Script return codes become exceptions in exactly one place: :func:`raise_for_code`.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ConnectionSetupError",
    "InvalidJobStateError",
    "JobFailedError",
    "JobNotFoundError",
    "JobStalledError",
    "JobTimeoutError",
    "JobqError",
    "LeaseLostError",
    "NotReplicatedError",
    "PayloadError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "ScriptError",
    "SerializationError",
    "ServerUnreachableError",
    "UnrecoverableError",
    "WaitTimeoutError",
    "raise_for_code",
]


class JobqError(Exception):
    """Root of every exception jobq raises."""


class ConfigurationError(JobqError, ValueError):
    """An option, URL or environment variable has a value jobq cannot use."""


class ConnectionSetupError(JobqError):
    """The Redis server cannot be reached, or is unfit for jobq, when opening."""


class ServerUnreachableError(ConnectionSetupError):
    """The server cannot be reached; it may be starting, so workers wait for it."""


class PayloadError(JobqError, ValueError):
    """A job's data or return value cannot be stored; nothing was written."""


class PayloadTooLargeError(PayloadError):
    """The encoded payload is larger than the configured limit."""


class SerializationError(PayloadError, TypeError):
    """A value cannot be represented exactly in jobq's JSON envelope."""


class JobNotFoundError(JobqError, LookupError):
    """No job with the given id exists in the queue."""


class InvalidJobStateError(JobqError):
    """The job is not in a state that the requested operation accepts."""


class LeaseLostError(JobqError):
    """The worker's fencing token is stale: another claim owns the job now."""


class ScriptError(JobqError):
    """A Lua script returned a code that jobq does not know."""


class NotReplicatedError(JobqError):
    """A durable add (``durable_adds``) was written on the primary, but fewer replicas
    than asked acknowledged it within ``durable_timeout``.

    The jobs exist (``job_ids``) but a failover now could lose them: add them
    again with the same ``job_id`` (which adds nothing if they survived), or
    check them after the failover.
    """

    def __init__(self, message: str, *, job_ids: list[str], replicas: int, wanted: int) -> None:
        super().__init__(message)
        self.job_ids = job_ids
        self.replicas = replicas
        self.wanted = wanted


class JobFailedError(JobqError):
    """The awaited job failed; ``reason`` holds its failure message."""

    def __init__(self, job_id: str, reason: str, stacktrace: str | None = None) -> None:
        super().__init__(f"job {job_id!r} failed: {reason}")
        self.job_id = job_id
        self.reason = reason
        self.stacktrace = stacktrace


class WaitTimeoutError(JobqError, TimeoutError):
    """``Job.wait_until_finished`` gave up before the job finished."""


class JobTimeoutError(JobqError, TimeoutError):
    """An attempt ran longer than the job's ``timeout`` option allows."""


class JobStalledError(JobqError):
    """A job's lease ran out more often than ``max_stalled`` allows, so it failed."""


class UnrecoverableError(Exception):
    """Raise from a processor to fail the job at once, without further attempts."""


class RateLimitedError(Exception):
    """Raise from a processor when an upstream says "slow down" (an HTTP 429, say).

    The job goes back to the front of the waiting list without spending an
    attempt, and no worker of the queue claims anything for ``delay_ms``.
    """

    def __init__(self, delay_ms: int, message: str = "rate limited") -> None:
        if delay_ms < 0:
            raise ValueError(f"delay_ms must be >= 0, got {delay_ms}")
        super().__init__(f"{message} (retry in {delay_ms} ms)")
        self.delay_ms = int(delay_ms)


# Codes the Lua scripts return (as negative integers) and what they mean.
CODE_JOB_NOT_FOUND = -1
CODE_LEASE_LOST = -2
CODE_INVALID_STATE = -3
CODE_ACTIVE_JOBS = -4


def raise_for_code(code: int, *, queue: str, job_id: str | None = None, action: str = "") -> None:
    """Turn a negative script return code into the matching exception."""
    if code >= 0:
        return
    what = f"job {job_id!r} in queue {queue!r}" if job_id is not None else f"queue {queue!r}"
    doing = f" ({action})" if action else ""
    if code == CODE_JOB_NOT_FOUND:
        raise JobNotFoundError(f"{what}: no such job{doing}")
    if code == CODE_LEASE_LOST:
        raise LeaseLostError(f"{what}: the lease is held by another claim{doing}")
    if code == CODE_INVALID_STATE:
        raise InvalidJobStateError(f"{what}: not in a state that allows this{doing}")
    if code == CODE_ACTIVE_JOBS:
        raise InvalidJobStateError(f"{what}: has active jobs; pass force=True to go ahead{doing}")
    raise ScriptError(f"{what}: unknown script code {code}{doing}")
