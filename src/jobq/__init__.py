"""jobq: a Redis job queue with atomic Lua transitions, leases and fencing tokens.

::

    from jobq import Queue, Worker, JobOptions, Backoff

    async with Queue("reports") as queue:
        await queue.add("generate-budget-report", {"reportId": "r-1"},
                        JobOptions(priority=5, attempts=3, backoff=Backoff.exponential(2000)))

    async def process(job):
        await job.update_progress(50)
        return {"ok": True}

    await Worker("reports", process, concurrency=10).run()
"""

from .connection import ConnectionSettings
from .deadletter import DeadLetter, DeadLetterReplay, DeadLetters
from .errors import (
    ConfigurationError,
    ConnectionSetupError,
    InvalidJobStateError,
    JobFailedError,
    JobNotFoundError,
    JobqError,
    JobStalledError,
    JobTimeoutError,
    LeaseLostError,
    PayloadError,
    PayloadTooLargeError,
    RateLimitedError,
    ScriptError,
    SerializationError,
    ServerUnreachableError,
    UnrecoverableError,
    WaitTimeoutError,
)
from .events import QueueEvent, QueueEvents
from .flows import FlowJob, FlowNode, FlowProducer
from .groups import GroupInfo, GroupLimits
from .job import AttemptError, Job
from .options import (
    MAX_PRIORITY,
    Backoff,
    Deduplication,
    JobOptions,
    KeepJobs,
    RateLimit,
    WorkerOptions,
)
from .queue import BulkJob, JobCounts, Queue
from .scheduler import Scheduler, SchedulerInfo
from .sync import SyncQueue
from .worker import ChildJob, Worker

__version__ = "0.1.0"

__all__ = [
    "MAX_PRIORITY",
    "AttemptError",
    "Backoff",
    "BulkJob",
    "ChildJob",
    "ConfigurationError",
    "ConnectionSettings",
    "ConnectionSetupError",
    "DeadLetter",
    "DeadLetterReplay",
    "DeadLetters",
    "Deduplication",
    "FlowJob",
    "FlowNode",
    "FlowProducer",
    "GroupInfo",
    "GroupLimits",
    "InvalidJobStateError",
    "Job",
    "JobCounts",
    "JobFailedError",
    "JobNotFoundError",
    "JobOptions",
    "JobStalledError",
    "JobTimeoutError",
    "JobqError",
    "KeepJobs",
    "LeaseLostError",
    "PayloadError",
    "PayloadTooLargeError",
    "Queue",
    "QueueEvent",
    "QueueEvents",
    "RateLimit",
    "RateLimitedError",
    "Scheduler",
    "SchedulerInfo",
    "ScriptError",
    "SerializationError",
    "ServerUnreachableError",
    "SyncQueue",
    "UnrecoverableError",
    "WaitTimeoutError",
    "Worker",
    "WorkerOptions",
    "__version__",
]
