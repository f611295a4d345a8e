"""Typed options: frozen, keyword-only value objects with no mutable defaults.

Durations are whole milliseconds (as in the BullMQ API this project ports) or a
:class:`datetime.timedelta`; they are normalised to milliseconds on creation.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from .errors import ConfigurationError

__all__ = [
    "MAX_PRIORITY",
    "Backoff",
    "Deduplication",
    "Duration",
    "JobOptions",
    "KeepJobs",
    "RateLimit",
    "WorkerOptions",
    "to_ms",
]

#: The largest priority. 1 is the highest; larger numbers run later.
MAX_PRIORITY = 2_000_000

Duration = int | float | timedelta


def to_ms(value: Duration, field_name: str, *, minimum: int = 0) -> int:
    """Normalise a duration (ms or timedelta) to whole milliseconds, checking its range."""
    if isinstance(value, bool):
        raise ConfigurationError(f"{field_name} must be milliseconds or a timedelta, got a bool")
    if isinstance(value, timedelta):
        ms = int(value.total_seconds() * 1000)
    elif isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigurationError(f"{field_name} must be a finite number, got {value!r}")
        ms = int(value)
    else:
        raise ConfigurationError(
            f"{field_name} must be milliseconds (int) or a timedelta, got {type(value).__name__}"
        )
    if ms < minimum:
        raise ConfigurationError(f"{field_name} must be >= {minimum} ms, got {ms}")
    return ms


@dataclass(frozen=True, kw_only=True, slots=True)
class Backoff:
    """How long to wait before the next attempt of a failed job.

    ``fixed``: always ``delay`` ms. ``exponential``: ``delay * 2**(attempt-1)``
    (2 s, 4 s, 8 s for a 2000 ms delay), capped at ``max_delay`` if given.
    ``jitter`` (0 to 1) takes up to that fraction off each wait at random, so
    retries of many jobs spread out. Any other ``type`` names a strategy
    registered on the worker with ``backoff_strategies``.
    """

    type: str
    delay: int = 0
    jitter: float = 0.0
    max_delay: int | None = None

    def __post_init__(self) -> None:
        if not self.type:
            raise ConfigurationError("backoff.type must be a non-empty string")
        object.__setattr__(self, "delay", to_ms(self.delay, "backoff.delay"))
        if not 0.0 <= self.jitter <= 1.0:
            raise ConfigurationError(f"backoff.jitter must be between 0 and 1, got {self.jitter}")
        if self.max_delay is not None:
            object.__setattr__(self, "max_delay", to_ms(self.max_delay, "backoff.max_delay"))

    @classmethod
    def fixed(cls, delay: Duration, *, jitter: float = 0.0) -> Backoff:
        """Wait ``delay`` before every retry."""
        return cls(type="fixed", delay=to_ms(delay, "backoff.delay"), jitter=jitter)

    @classmethod
    def exponential(
        cls, delay: Duration, *, jitter: float = 0.0, max_delay: Duration | None = None
    ) -> Backoff:
        """Wait ``delay``, then twice that, then four times... before each retry."""
        return cls(
            type="exponential",
            delay=to_ms(delay, "backoff.delay"),
            jitter=jitter,
            max_delay=None if max_delay is None else to_ms(max_delay, "backoff.max_delay"),
        )

    @classmethod
    def custom(cls, name: str, delay: Duration = 0) -> Backoff:
        """Use the strategy the worker registered under ``name``."""
        return cls(type=name, delay=to_ms(delay, "backoff.delay"))

    @classmethod
    def from_value(cls, value: Backoff | Mapping[str, Any] | int) -> Backoff:
        """Accept a Backoff, a BullMQ-style ``{"type": ..., "delay": ...}`` or a fixed delay."""
        if isinstance(value, Backoff):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls.fixed(value)
        if isinstance(value, Mapping):
            unknown = set(value) - {"type", "delay", "jitter", "max_delay", "maxDelay"}
            if unknown:
                raise ConfigurationError(f"backoff has unknown keys: {sorted(unknown)}")
            return cls(
                type=str(value.get("type", "fixed")),
                delay=value.get("delay", 0),
                jitter=float(value.get("jitter", 0.0)),
                max_delay=value.get("max_delay", value.get("maxDelay")),
            )
        raise ConfigurationError(f"backoff must be a Backoff, a dict or ms, got {value!r}")

    def compute(self, attempts_made: int, rng: random.Random | None = None) -> int | None:
        """The wait in ms before the next attempt, or None for a custom type."""
        if self.type == "fixed":
            base = float(self.delay)
        elif self.type == "exponential":
            base = float(self.delay) * (2 ** max(0, attempts_made - 1))
            if self.max_delay is not None:
                base = min(base, float(self.max_delay))
        else:
            return None
        if self.jitter:
            base -= base * self.jitter * (rng or random).random()
        return max(0, int(base))

    def to_json(self) -> dict[str, Any]:
        """The compact form stored with the job."""
        out: dict[str, Any] = {"type": self.type, "delay": self.delay}
        if self.jitter:
            out["jitter"] = self.jitter
        if self.max_delay is not None:
            out["max_delay"] = self.max_delay
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class KeepJobs:
    """How many finished jobs to keep: at most ``count``, none older than ``age``."""

    count: int | None = None
    age: Duration | None = None

    def __post_init__(self) -> None:
        if self.count is not None and (isinstance(self.count, bool) or self.count < 0):
            raise ConfigurationError(f"KeepJobs.count must be >= 0, got {self.count!r}")
        if self.age is not None:
            object.__setattr__(self, "age", to_ms(self.age, "KeepJobs.age", minimum=1))

    @classmethod
    def from_value(
        cls, value: bool | int | KeepJobs | Mapping[str, Any], field_name: str
    ) -> KeepJobs:
        """Accept True (remove at once), False (keep all), N (keep last N), a KeepJobs or a dict."""
        if isinstance(value, KeepJobs):
            return value
        if value is True:
            return cls(count=0)
        if value is False:
            return cls()
        if isinstance(value, int):
            return cls(count=value)
        if isinstance(value, Mapping):
            unknown = set(value) - {"count", "age"}
            if unknown:
                raise ConfigurationError(f"{field_name} has unknown keys: {sorted(unknown)}")
            # BullMQ's age is in seconds; ours is ms or a timedelta. A dict is BullMQ-shaped.
            age = value.get("age")
            return cls(
                count=value.get("count"),
                age=None if age is None else timedelta(seconds=age),
            )
        raise ConfigurationError(f"{field_name} must be a bool, an int or KeepJobs, got {value!r}")

    @property
    def age_ms(self) -> int | None:
        """The age limit in ms, or None."""
        assert self.age is None or isinstance(self.age, int)
        return self.age

    def to_json(self) -> list[int]:
        """``[count, age_ms]`` with -1 for "no limit"."""
        age = self.age_ms
        return [-1 if self.count is None else self.count, -1 if age is None else age]


@dataclass(frozen=True, kw_only=True, slots=True)
class Deduplication:
    """At most one pending job per ``key``: later adds return the existing job.

    While a job added with this key has not completed or failed for good
    (waiting, delayed, active or between retries), adding another job with
    the same key writes nothing and returns the existing job. With ``ttl`` the
    key instead holds for ``ttl`` ms (or a timedelta) from the first add, even
    after that job has finished (throttling). ``debounce=True`` (the job needs
    a ``delay``): while the existing job is still delayed and has not started,
    a new add replaces its data and name and pushes it to run ``delay`` after
    this add; once it waits or runs, later adds are plain duplicates.
    """

    key: str
    ttl: Duration | None = None
    debounce: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ConfigurationError(
                f"deduplication.key must be a non-empty string, got {self.key!r}"
            )
        if len(self.key) > 512:
            raise ConfigurationError("deduplication.key is longer than 512 characters")
        if self.ttl is not None:
            object.__setattr__(self, "ttl", to_ms(self.ttl, "deduplication.ttl", minimum=1))
        if not isinstance(self.debounce, bool):
            raise ConfigurationError(
                f"deduplication.debounce must be True or False, got {self.debounce!r}"
            )

    @classmethod
    def from_value(cls, value: Deduplication | Mapping[str, Any]) -> Deduplication:
        """Accept a Deduplication or a BullMQ-style ``{"id": ..., "ttl": ms}``.

        The dict may say ``key`` for ``id``, and ``debounce`` (or BullMQ's
        ``replace``) for debouncing.
        """
        if isinstance(value, Deduplication):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {"id", "key", "ttl", "debounce", "replace"}
            if unknown:
                raise ConfigurationError(f"deduplication has unknown keys: {sorted(unknown)}")
            if "id" in value and "key" in value:
                raise ConfigurationError("deduplication takes 'id' or 'key', not both")
            return cls(
                key=value.get("key", value.get("id")),
                ttl=value.get("ttl"),
                debounce=bool(value.get("debounce", value.get("replace", False))),
            )
        raise ConfigurationError(f"deduplication must be a Deduplication or a dict, got {value!r}")

    @property
    def ttl_ms(self) -> int | None:
        """The TTL in ms, or None (the key holds until the job finishes)."""
        assert self.ttl is None or isinstance(self.ttl, int)
        return self.ttl

    def to_json(self) -> dict[str, Any]:
        """The compact form stored with the job."""
        out: dict[str, Any] = {"key": self.key}
        if self.ttl is not None:
            out["ttl"] = self.ttl
        if self.debounce:
            out["debounce"] = True
        return out


# Defaults: finished jobs do not pile up for ever unless asked to.
DEFAULT_KEEP_COMPLETED = KeepJobs(count=10_000, age=timedelta(days=7))
DEFAULT_KEEP_FAILED = KeepJobs(count=100_000, age=timedelta(days=30))


@dataclass(frozen=True, kw_only=True, slots=True)
class JobOptions:
    """Options of one job. Payload is data; these never mix with it.

    priority: 1 is the highest, up to ``MAX_PRIORITY``; None is a plain job.
        Prioritised jobs are served before plain ones; within one priority,
        and among plain jobs, order is first in, first out (``lifo`` reverses it).
    delay: ms (or timedelta) before the job may run, measured on the server's clock.
    attempts: how many times to try in all (1 = no retry).
    backoff: wait between attempts (see :class:`Backoff`).
    timeout: execution time limit in ms; a job over it fails that attempt.
    remove_on_complete / remove_on_fail: True (remove at once), False (keep),
        N (keep the last N) or :class:`KeepJobs`; None means the default
        (completed: last 10,000 for 7 days; failed: last 100,000 for 30 days).
    job_id: your own id; adding an id that exists returns that job and writes nothing.
    deduplication: a :class:`Deduplication` (or BullMQ-style ``{"id": ..., "ttl": ...}``):
        while a job with the same key is pending, adding returns that job instead.
    group: a group key (tenant, user, agency). Groups are served round-robin,
        each with the limits set by :meth:`Queue.set_group_limits`; jobs of one
        group run first in, first out (a grouped job takes no priority).
    trace_context: the W3C trace context (``traceparent``/``tracestate``) the
        job's run continues. Set by :mod:`jobq.tracing` when it adds the job;
        users normally leave it alone.
    """

    job_id: str | None = None
    priority: int | None = None
    delay: Duration = 0
    attempts: int = 1
    backoff: Backoff | None = None
    lifo: bool = False
    timeout: Duration | None = None
    remove_on_complete: bool | int | KeepJobs | None = None
    remove_on_fail: bool | int | KeepJobs | None = None
    deduplication: Deduplication | Mapping[str, Any] | None = None
    group: str | None = None
    trace_context: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if self.group is not None:
            if not isinstance(self.group, str) or not self.group or len(self.group) > 200:
                raise ConfigurationError(
                    "group must be a non-empty string of at most 200 characters, "
                    f"got {self.group!r}"
                )
            if self.priority is not None:
                raise ConfigurationError(
                    f"a job in group {self.group!r} cannot also have a priority: groups are "
                    "served round-robin and run their own jobs first in, first out"
                )
        if self.job_id is not None:
            if not isinstance(self.job_id, str) or not self.job_id:
                raise ConfigurationError(f"job_id must be a non-empty string, got {self.job_id!r}")
            if self.job_id.isdigit():
                raise ConfigurationError(
                    f"job_id {self.job_id!r} is all digits, which jobq keeps for generated ids; "
                    "add a letter or a prefix (e.g. 'report-123')"
                )
            if len(self.job_id) > 512:
                raise ConfigurationError("job_id is longer than 512 characters")
        if self.priority is not None and (
            isinstance(self.priority, bool)
            or not isinstance(self.priority, int)
            or not 1 <= self.priority <= MAX_PRIORITY
        ):
            raise ConfigurationError(
                f"priority must be an integer from 1 (highest) to {MAX_PRIORITY}, "
                f"got {self.priority!r}"
            )
        object.__setattr__(self, "delay", to_ms(self.delay, "delay"))
        attempts = self.attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ConfigurationError(f"attempts must be an integer >= 1, got {self.attempts!r}")
        if self.timeout is not None:
            object.__setattr__(self, "timeout", to_ms(self.timeout, "timeout", minimum=1))
        if self.remove_on_complete is not None:
            object.__setattr__(
                self,
                "remove_on_complete",
                KeepJobs.from_value(self.remove_on_complete, "remove_on_complete"),
            )
        if self.remove_on_fail is not None:
            object.__setattr__(
                self, "remove_on_fail", KeepJobs.from_value(self.remove_on_fail, "remove_on_fail")
            )
        if self.deduplication is not None:
            dedup = Deduplication.from_value(self.deduplication)
            object.__setattr__(self, "deduplication", dedup)
            if dedup.debounce and self.delay_ms == 0:
                raise ConfigurationError(
                    f"deduplication key {dedup.key!r} debounces, which needs a delay: "
                    "set JobOptions(delay=...) to the quiet time to wait for"
                )

    @property
    def delay_ms(self) -> int:
        """The delay in ms (normalised)."""
        assert isinstance(self.delay, int)
        return self.delay

    @property
    def timeout_ms(self) -> int | None:
        """The execution time limit in ms, or None."""
        assert self.timeout is None or isinstance(self.timeout, int)
        return self.timeout

    @property
    def dedup(self) -> Deduplication | None:
        """The deduplication settings (normalised), or None."""
        v = self.deduplication
        return v if isinstance(v, Deduplication) else None

    @property
    def keep_completed(self) -> KeepJobs:
        """Retention of this job once completed."""
        v = self.remove_on_complete
        return v if isinstance(v, KeepJobs) else DEFAULT_KEEP_COMPLETED

    @property
    def keep_failed(self) -> KeepJobs:
        """Retention of this job once failed for good."""
        v = self.remove_on_fail
        return v if isinstance(v, KeepJobs) else DEFAULT_KEEP_FAILED

    def to_json(self) -> dict[str, Any]:
        """The options the worker needs, only where they differ from the defaults."""
        out: dict[str, Any] = {}
        if self.attempts != 1:
            out["attempts"] = self.attempts
        if self.backoff is not None:
            out["backoff"] = self.backoff.to_json()
        if self.timeout is not None:
            out["timeout"] = self.timeout
        if isinstance(self.remove_on_complete, KeepJobs):
            out["keep_completed"] = self.remove_on_complete.to_json()
        if isinstance(self.remove_on_fail, KeepJobs):
            out["keep_failed"] = self.remove_on_fail.to_json()
        if self.lifo:
            out["lifo"] = True
        if isinstance(self.deduplication, Deduplication):
            out["dedup"] = self.deduplication.to_json()
        if self.group is not None:
            out["group"] = self.group
        if self.trace_context:
            out["tc"] = dict(self.trace_context)
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], *, priority: int | None, delay: int) -> JobOptions:
        """Rebuild options from their stored form."""

        def keep(v: Any) -> KeepJobs | None:
            if v is None:
                return None
            count, age = v
            return KeepJobs(count=None if count < 0 else count, age=None if age < 0 else age)

        b = raw.get("backoff")
        dd = raw.get("dedup")
        tc = raw.get("tc")
        return cls(
            priority=priority,
            delay=delay,
            attempts=int(raw.get("attempts", 1)),
            backoff=None if b is None else Backoff.from_value(b),
            lifo=bool(raw.get("lifo", False)),
            timeout=raw.get("timeout"),
            remove_on_complete=keep(raw.get("keep_completed")),
            remove_on_fail=keep(raw.get("keep_failed")),
            deduplication=None if dd is None else Deduplication.from_value(dd),
            group=raw.get("group"),
            trace_context=tc if isinstance(tc, dict) else None,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class RateLimit:
    """At most ``max`` jobs started per ``duration`` by all workers of a queue together."""

    max: int
    duration: Duration

    def __post_init__(self) -> None:
        if isinstance(self.max, bool) or not isinstance(self.max, int) or self.max < 1:
            raise ConfigurationError(f"limiter.max must be an integer >= 1, got {self.max!r}")
        object.__setattr__(self, "duration", to_ms(self.duration, "limiter.duration", minimum=1))

    @property
    def duration_ms(self) -> int:
        """The window in ms."""
        assert isinstance(self.duration, int)
        return self.duration


ProcessMode = Literal["async", "thread", "process"]


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerOptions:
    """Tunables of a worker.

    concurrency: jobs run at once by this worker.
    lease: how long a claimed job stays ours without a heartbeat (ms); the
        heartbeat renews every ``lease / 3``. A job whose lease runs out is
        handed to another worker (at-least-once delivery).
    max_stalled: how many lease expiries a job survives before it fails.
    limiter: queue-wide rate limit (see :class:`RateLimit`).
    shutdown_grace: how long running jobs may finish after a close (ms).
    block_timeout: longest idle block on the server before re-checking (ms).
    processes: run a plain ``def`` processor in this many child processes.
    threads: size of the thread pool for plain ``def`` processors.
    batch_size: hand the processor a list of up to this many jobs at once (0:
        one job at a time). It returns one outcome per job, in order: a value,
        or an exception instance for a job that failed (retried as usual).
        ``concurrency`` then counts batches running at once.
    batch_wait: how long (ms) to wait for a batch to fill before running it.
    prefetch: claimed jobs held beyond ``concurrency``, ready to start the moment
        a slot frees (no round trip to the server between two jobs). Held jobs
        are leased and renewed like running ones and handed back at shutdown;
        if the worker dies they are recovered as stalled, like its running ones.
        None (the default): a quarter of ``concurrency`` (at least 1), and only
        while jobs take 1-50 ms on average (longer ones: a held job would wait
        behind them while another worker could run it); none with
        ``concurrency=1``, where a job that kills its worker must take no other
        job with it; 0: none.
    """

    concurrency: int = 1
    lease: Duration = 30_000
    max_stalled: int = 1
    limiter: RateLimit | None = None
    shutdown_grace: Duration = 30_000
    block_timeout: Duration = 10_000
    processes: int = 0
    threads: int | None = None
    events_max_len: int = 10_000
    metrics_minutes: int = 1440
    batch_size: int = 0
    batch_wait: Duration = 0
    prefetch: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.concurrency, bool) or self.concurrency < 1:
            raise ConfigurationError(f"concurrency must be >= 1, got {self.concurrency!r}")
        if self.prefetch is not None and (isinstance(self.prefetch, bool) or self.prefetch < 0):
            raise ConfigurationError(f"prefetch must be None or >= 0, got {self.prefetch!r}")
        object.__setattr__(self, "lease", to_ms(self.lease, "lease", minimum=100))
        object.__setattr__(self, "shutdown_grace", to_ms(self.shutdown_grace, "shutdown_grace"))
        object.__setattr__(
            self, "block_timeout", to_ms(self.block_timeout, "block_timeout", minimum=10)
        )
        if self.max_stalled < 0:
            raise ConfigurationError(f"max_stalled must be >= 0, got {self.max_stalled}")
        if self.processes < 0:
            raise ConfigurationError(f"processes must be >= 0, got {self.processes}")
        if self.threads is not None and self.threads < 1:
            raise ConfigurationError(f"threads must be >= 1, got {self.threads}")
        if isinstance(self.batch_size, bool) or self.batch_size < 0:
            raise ConfigurationError(f"batch_size must be >= 0, got {self.batch_size!r}")
        object.__setattr__(self, "batch_wait", to_ms(self.batch_wait, "batch_wait"))
        if self.events_max_len < 0:
            raise ConfigurationError(f"events_max_len must be >= 0, got {self.events_max_len}")

    @property
    def lease_ms(self) -> int:
        """The lease in ms."""
        assert isinstance(self.lease, int)
        return self.lease

    @property
    def grace_ms(self) -> int:
        """The shutdown grace in ms."""
        assert isinstance(self.shutdown_grace, int)
        return self.shutdown_grace

    @property
    def batch_wait_ms(self) -> int:
        """The batch fill wait in ms."""
        assert isinstance(self.batch_wait, int)
        return self.batch_wait

    @property
    def block_ms(self) -> int:
        """The idle block in ms."""
        assert isinstance(self.block_timeout, int)
        return self.block_timeout
