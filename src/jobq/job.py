"""The Job: one unit of work, as stored in Redis and as a processor sees it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import serialization
from .errors import JobNotFoundError, LeaseLostError, SerializationError, raise_for_code
from .options import JobOptions

if TYPE_CHECKING:
    from .queue import Queue

__all__ = ["AttemptError", "Job", "JobState", "Progress"]

Progress = int | float | dict[str, Any]
JobState = str  # 'waiting' | 'prioritized' | 'delayed' | 'active' | 'completed' | 'failed' | ...


def _ms_to_dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(frozen=True, slots=True)
class AttemptError:
    """Why one attempt of a job failed."""

    attempt: int
    reason: str
    type: str
    stacktrace: str
    at: int  # server-side ms is not known to the worker; this is the worker's clock

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        return {
            "attempt": self.attempt,
            "reason": self.reason,
            "type": self.type,
            "stack": self.stacktrace,
            "at": self.at,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> AttemptError:
        """Rebuild from the stored form."""
        return cls(
            attempt=int(raw.get("attempt", 0)),
            reason=str(raw.get("reason", "")),
            type=str(raw.get("type", "")),
            stacktrace=str(raw.get("stack", "")),
            at=int(raw.get("at", 0)),
        )


def _s(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def _i(value: bytes | None) -> int | None:
    return None if value is None else int(value)


#: The fields after ``d`` that may hold further pieces of a job's data: the
#: scripts split data of up to 16 x 64 bytes so that a small job's hash keeps
#: the server's compact listpack encoding (``includes/common.lua``, DATA_PIECE).
DATA_PIECE_FIELDS: tuple[bytes, ...] = tuple(b"d%d" % i for i in range(1, 16))


def stored_options(h: Mapping[bytes, bytes]) -> bytes | None:
    """A job's options JSON as added, from its hash (HGETALL), or None.

    Options that only set ``remove_on_complete`` are stored in the short field
    ``kc`` (``count,age``) instead of ``o`` (see ``scripts/lua/includes/common.lua``).
    """
    o = h.get(b"o")
    if o is not None:
        return o
    kc = h.get(b"kc")
    return None if kc is None else b'{"keep_completed":[' + kc + b"]}"


def join_data(h: Mapping[bytes, bytes], default: bytes = b"null") -> bytes:
    """A job's stored data from its hash (HGETALL), its pieces joined."""
    d = h.get(b"d")
    if d is None:
        return default
    if b"d1" not in h:
        return d
    parts = [d]
    for field in DATA_PIECE_FIELDS:
        piece = h.get(field)
        if piece is None:
            break
        parts.append(piece)
    return b"".join(parts)


class Job:
    """A job: its id, name, data, options and what has happened to it.

    Jobs read from a queue are snapshots; call :meth:`refresh` for the latest.
    In a processor, :meth:`update_progress` and :meth:`log` write through to
    Redis (``update_progress_sync``/``log_sync`` from a plain ``def``
    processor running in a thread).
    """

    __slots__ = (
        "_errors",
        "_extra",
        "_loop",
        "_queue",
        "attempts_made",
        "attempts_started",
        "corrupt_reason",
        "data",
        "failed_reason",
        "finished_on",
        "id",
        "lease_lost",
        "name",
        "options",
        "priority",
        "processed_on",
        "progress",
        "queue_name",
        "refusal",
        "return_value",
        "stalls",
        "timestamp",
        "token",
    )

    def __init__(
        self,
        queue: Queue,
        job_id: str,
        name: str,
        data: Any,
        options: JobOptions,
        *,
        timestamp: int = 0,
        attempts_made: int = 0,
        attempts_started: int = 0,
        stalls: int = 0,
        progress: Progress = 0,
        return_value: Any = None,
        failed_reason: str | None = None,
        errors: list[AttemptError] | None = None,
        processed_on: int | None = None,
        finished_on: int | None = None,
        token: str | None = None,
        corrupt_reason: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self._queue = queue
        self._loop: asyncio.AbstractEventLoop | None = None
        self.queue_name = queue.name
        self.id = job_id
        self.name = name
        self.data = data
        self.options = options
        self.priority = options.priority
        self.timestamp = timestamp
        self.attempts_made = attempts_made
        self.attempts_started = attempts_started
        self.stalls = stalls
        self.progress: Progress = progress
        self.return_value = return_value
        self.failed_reason = failed_reason
        # Made on first use: most jobs have none, and a bulk add makes thousands.
        self._errors = errors
        self.processed_on = processed_on
        self.finished_on = finished_on
        self.token = token
        self.corrupt_reason = corrupt_reason
        # Fields set by engine features (scheduler id and tick, parent of a flow...).
        self._extra = extra
        self.lease_lost = False
        # Set by a worker that must not run the job (a missing or bad signature).
        self.refusal: str | None = None

    @property
    def errors(self) -> list[AttemptError]:
        """The errors of the failed attempts so far, oldest first."""
        if self._errors is None:
            self._errors = []
        return self._errors

    @errors.setter
    def errors(self, value: list[AttemptError]) -> None:
        self._errors = value

    @property
    def extra(self) -> dict[str, Any]:
        """Fields set by engine features: a scheduler's id and tick, a flow's parent..."""
        if self._extra is None:
            self._extra = {}
        return self._extra

    @extra.setter
    def extra(self, value: dict[str, Any]) -> None:
        self._extra = value

    def __repr__(self) -> str:
        return f"<Job {self.queue_name}/{self.id} {self.name!r} attempts={self.attempts_made}>"

    # -- times -------------------------------------------------------------
    @property
    def created_at(self) -> datetime:
        """When the job was added (server clock, UTC)."""
        dt = _ms_to_dt(self.timestamp)
        assert dt is not None
        return dt

    @property
    def processed_at(self) -> datetime | None:
        """When the latest attempt started (server clock, UTC)."""
        return _ms_to_dt(self.processed_on)

    @property
    def finished_at(self) -> datetime | None:
        """When the job completed or failed for good (server clock, UTC)."""
        return _ms_to_dt(self.finished_on)

    @property
    def stacktrace(self) -> list[str]:
        """The stack trace of every failed attempt, oldest first."""
        return [e.stacktrace for e in self.errors]

    # -- building ----------------------------------------------------------
    @staticmethod
    def decode_options(raw: bytes | None, priority: int | None, delay: int) -> JobOptions:
        """Options from the stored JSON (absent means all defaults)."""
        parsed = json.loads(raw) if raw else {}
        return JobOptions.from_json(parsed, priority=priority, delay=delay)

    @staticmethod
    def decode_extra(raw: bytes | None) -> dict[str, Any]:
        """Feature fields from their stored JSON."""
        if not raw:
            return {}
        value = json.loads(raw)
        return value if isinstance(value, dict) else {}

    @staticmethod
    def decode_errors(raw: bytes | None) -> list[AttemptError]:
        """Per-attempt errors from their stored JSON."""
        if not raw:
            return []
        return [AttemptError.from_json(e) for e in json.loads(raw)]

    @classmethod
    def from_hash(cls, queue: Queue, job_id: str, h: Mapping[bytes, bytes]) -> Job:
        """Build a job from its Redis hash; a corrupt record is kept, marked, not raised."""
        corrupt: str | None = None
        data: Any = None
        try:
            data = serialization.decode(join_data(h), what=f"job {job_id} data")
        except SerializationError as exc:
            corrupt = str(exc)
        try:
            opts = cls.decode_options(stored_options(h), _i(h.get(b"p")), _i(h.get(b"dl")) or 0)
            errors = cls.decode_errors(h.get(b"er"))
            extra = cls.decode_extra(h.get(b"x"))
        except (ValueError, TypeError, KeyError) as exc:
            corrupt = corrupt or f"job {job_id}: corrupt options or errors: {exc}"
            opts, errors, extra = JobOptions(), [], {}
        rv_raw = h.get(b"rv")
        rv: Any = None
        if rv_raw is not None:
            try:
                rv = serialization.decode(rv_raw, what=f"job {job_id} return value")
            except SerializationError as exc:
                corrupt = corrupt or str(exc)
        pg_raw = h.get(b"pg")
        progress: Progress = json.loads(pg_raw) if pg_raw else 0
        return cls(
            queue,
            job_id,
            _s(h.get(b"n")) or "",
            data,
            opts,
            timestamp=_i(h.get(b"t")) or 0,
            attempts_made=_i(h.get(b"a")) or 0,
            attempts_started=_i(h.get(b"as")) or 0,
            stalls=_i(h.get(b"s")) or 0,
            progress=progress,
            return_value=rv,
            failed_reason=_s(h.get(b"fr")),
            errors=errors,
            processed_on=_i(h.get(b"pt")),
            finished_on=_i(h.get(b"ft")),
            token=None,
            corrupt_reason=corrupt,
            extra=extra,
        )

    # -- actions -----------------------------------------------------------
    async def update_progress(self, progress: Progress) -> None:
        """Record progress (a number, e.g. percent, or a dict) and tell watchers."""
        if not isinstance(progress, int | float | dict) or isinstance(progress, bool):
            raise TypeError(f"progress must be a number or a dict, got {type(progress).__name__}")
        raw = json.dumps(progress, separators=(",", ":"), allow_nan=False).encode()
        code = await self._queue.scripts.progress(
            self.id, self.token or "", raw, events_max_len=self._queue.events_max_len
        )
        if code == -2:
            self.lease_lost = True
            raise LeaseLostError(
                f"job {self.id!r} in queue {self.queue_name!r}: progress refused, the lease "
                "was lost and another worker owns the job now"
            )
        raise_for_code(code, queue=self.queue_name, job_id=self.id, action="update_progress")
        self.progress = progress

    async def log(self, line: str) -> int:
        """Append a line to the job's log; returns how many lines it keeps."""
        n = await self._queue.scripts.log(self.id, str(line), self._queue.log_max_lines)
        raise_for_code(n, queue=self.queue_name, job_id=self.id, action="log")
        return n

    def _run_sync(self, coro: Any) -> Any:
        loop = self._loop
        if loop is None:
            raise RuntimeError(
                "the *_sync methods are for plain def processors running in a worker's "
                "thread pool; in async code await update_progress()/log() instead"
            )
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def update_progress_sync(self, progress: Progress) -> None:
        """:meth:`update_progress` for a plain ``def`` processor (runs in a thread)."""
        self._run_sync(self.update_progress(progress))

    def log_sync(self, line: str) -> int:
        """:meth:`log` for a plain ``def`` processor (runs in a thread)."""
        return int(self._run_sync(self.log(line)))

    async def get_logs(self, start: int = 0, end: int = -1) -> list[str]:
        """The job's log lines, oldest first."""
        client: Any = self._queue.client
        raw = await client.lrange(self._queue.keys.logs(self.id), start, end)
        return [x.decode("utf-8", "replace") for x in raw]

    @property
    def parent_key(self) -> str | None:
        """The job key of this job's parent in a flow, or None."""
        parent = self._extra.get("parent") if self._extra else None
        if not isinstance(parent, dict):
            return None
        return f"{{{parent['p']}:{parent['q']}}}:j:{parent['id']}"

    async def get_children_values(self) -> dict[str, Any]:
        """Return values of this job's completed children, by child job key."""
        client: Any = self._queue.client
        raw = await client.hgetall(self._queue.keys.job(self.id) + ":processed")
        return {
            k.decode(): serialization.decode(v, what=f"child {k.decode()} return value")
            for k, v in raw.items()
        }

    async def get_children_failures(self) -> dict[str, str]:
        """Failure reasons of this job's failed children, by child job key."""
        client: Any = self._queue.client
        raw = await client.hgetall(self._queue.keys.job(self.id) + ":failed")
        return {k.decode(): v.decode("utf-8", "replace") for k, v in raw.items()}

    async def get_pending_children(self) -> list[str]:
        """Job keys of the children that have not finished yet."""
        client: Any = self._queue.client
        raw = await client.smembers(self._queue.keys.job(self.id) + ":deps")
        return sorted(k.decode() for k in raw)

    async def get_previous_result(self) -> Any:
        """In a chain, the return value of the step before this one (None if none)."""
        values = await self.get_children_values()
        return next(iter(values.values())) if len(values) == 1 else None

    async def get_state(self) -> JobState:
        """The job's current state ('unknown' if it no longer exists)."""
        return await self._queue.get_job_state(self.id)

    async def refresh(self) -> Job:
        """A fresh snapshot of this job."""
        job = await self._queue.get_job(self.id)
        if job is None:
            raise JobNotFoundError(f"job {self.id!r} in queue {self.queue_name!r} no longer exists")
        return job

    async def wait_until_finished(self, timeout: float | None = None) -> Any:
        """Wait until the job completes (returns its value) or fails (raises JobFailedError)."""
        return await self._queue.wait_for_job(self.id, timeout)
