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

from .audit import AuditEntry, AuditLog
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
    NotReplicatedError,
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
from .health import HealthRules
from .history import JobHistoryIndex, SearchHit, SearchQuery, SearchResult
from .job import AttemptError, Job
from .logs import configure_logging
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
from .redaction import Redactor
from .scheduler import Scheduler, SchedulerInfo
from .signing import JobSigner
from .stats import MinutePoint, WorkerInfo
from .sync import SyncQueue
from .worker import ChildJob, Worker

__version__ = "0.1.0"

__all__ = [
    "MAX_PRIORITY",
    "AttemptError",
    "AuditEntry",
    "AuditLog",
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
    "HealthRules",
    "InvalidJobStateError",
    "Job",
    "JobCounts",
    "JobFailedError",
    "JobHistoryIndex",
    "JobNotFoundError",
    "JobOptions",
    "JobSigner",
    "JobStalledError",
    "JobTimeoutError",
    "JobqError",
    "KeepJobs",
    "LeaseLostError",
    "MinutePoint",
    "NotReplicatedError",
    "PayloadError",
    "PayloadTooLargeError",
    "Queue",
    "QueueEvent",
    "QueueEvents",
    "RateLimit",
    "RateLimitedError",
    "Redactor",
    "Scheduler",
    "SchedulerInfo",
    "ScriptError",
    "SearchHit",
    "SearchQuery",
    "SearchResult",
    "SerializationError",
    "ServerUnreachableError",
    "SyncQueue",
    "UnrecoverableError",
    "WaitTimeoutError",
    "Worker",
    "WorkerInfo",
    "WorkerOptions",
    "__version__",
    "configure_logging",
]
