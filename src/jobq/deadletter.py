"""Dead letters: jobs that failed for good, kept in a queue of their own, and replayed.

``await queue.set_dead_letter_queue("dead-letter")`` stores the route in the
queue's meta hash (field ``dlq``; None turns it off), so whichever worker fails
a job routes it; workers read it at start and with every heartbeat. A job of a
routed queue that fails for good (attempts spent, ``UnrecoverableError``, a
corrupt record, stalled too often) is routed by the worker that failed it, once
the failure is acknowledged, in two steps, since the queues may live on
different Redis Cluster slots:

1. ``dead_letter_add`` files an *entry*, a job of the dead-letter queue (same
   prefix) with the deterministic id ``<queue>:<job id>``; filing the same
   failure again changes nothing;
2. ``dead_letter_release`` deletes the original from its failed set, only if
   it is still that very failure.

A crash between the steps leaves the job in ``failed`` (never lost);
:meth:`DeadLetters.sweep`, and a small sweep each worker runs at most once a
minute, route it again without a duplicate.

An entry's name is the original name; its data holds the original queue,
prefix, id, name, data, options as stored, every attempt's error and stack,
the failure reason and the timestamps (``"rawData"`` instead of ``"data"`` for
a corrupt record); its hash holds the origin, the error text filters search,
and the replay count and history. The index ``…:dead-letters`` orders entries
by original failure time; filters walk it in a Lua script, 500 entries a call.
A replay adds a fresh job to the original queue under the original id when
free, else ``<id>:replay-<n>``. docs/dead-letters.md has the full story.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from . import serialization
from .connection import server_time_ms
from .errors import (
    ConfigurationError,
    InvalidJobStateError,
    JobNotFoundError,
    PayloadError,
    SerializationError,
    raise_for_code,
)
from .job import AttemptError, Job, join_data, stored_options
from .keys import QueueKeys
from .options import Duration, JobOptions, to_ms
from .queue import ConnectionLike, Queue
from .scripts import QueueScripts
from .signing import SIGNATURE_INVALID

__all__ = [
    "DEFAULT_DEAD_LETTER_QUEUE",
    "UNSET",
    "DeadLetter",
    "DeadLetterReplay",
    "DeadLetterRouter",
    "DeadLetters",
]

log = logging.getLogger("jobq.deadletter")

DEFAULT_DEAD_LETTER_QUEUE: Final = "dead-letter"
"""The dead-letter queue's conventional name (as in the spec)."""

# Entries stay until discarded, even when a worker consumes the dead-letter queue.
_ENTRY_OPTIONS: Final = b'{"keep_completed":[-1,-1],"keep_failed":[-1,-1]}'
_HISTORY_KEPT: Final = 100
_SCAN_BATCH: Final = 500
_MAX_ID_TRIES: Final = 100

Age = Duration | datetime


class _Unset:
    """The type of :data:`UNSET`."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = _Unset()
"""Left out: replay with the original data (``None`` is a value, so it cannot mean that)."""


def _dt(ms: Any) -> datetime | None:
    if ms is None or ms == "":
        return None
    try:
        return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def _text(raw: Any) -> str:
    if raw is None:
        return ""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _int(raw: Any) -> int | None:
    try:
        return None if raw is None else int(raw)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class DeadLetterReplay:
    """One replay of a dead-letter entry."""

    number: int
    by: str
    at: datetime | None
    job_id: str
    data_edited: bool


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A typed view of one dead-letter entry: a job that failed for good.

    ``id`` is the entry's id in the dead-letter queue; ``queue``, ``prefix`` and
    ``job_id`` name the job that failed (the latest one, for a replay that
    failed again). ``raw_data`` holds the stored text when the original data
    was corrupt (``data`` is then None).
    """

    id: str
    queue: str
    prefix: str
    job_id: str
    name: str
    data: Any
    options: dict[str, Any]
    priority: int | None
    errors: tuple[AttemptError, ...]
    failed_reason: str | None
    attempts_made: int
    stalls: int
    created_at: datetime | None
    processed_at: datetime | None
    failed_at: datetime | None
    dead_lettered_at: datetime | None
    replay_count: int
    replays: tuple[DeadLetterReplay, ...]
    extra: dict[str, Any] = field(default_factory=dict)
    raw_data: str | None = None

    @property
    def stacktraces(self) -> list[str]:
        """The stack trace of every failed attempt, oldest first."""
        return [e.stacktrace for e in self.errors]

    @property
    def original_id(self) -> str:
        """The id the job had when it was first dead-lettered (replays reuse it if free)."""
        head = self.queue + ":"
        return self.id[len(head) :] if self.id.startswith(head) else self.job_id

    @classmethod
    def from_hash(cls, entry_id: str, h: Mapping[bytes, bytes]) -> DeadLetter:
        """Build the view from the entry's Redis hash."""
        body = serialization.decode(join_data(h), what=f"dead-letter entry {entry_id}")
        if not isinstance(body, dict):
            body = {}
        ts = body.get("timestamps") or {}
        try:
            history = json.loads(h[b"dr"]) if h.get(b"dr") else []
        except ValueError:
            history = []
        replays = tuple(
            DeadLetterReplay(
                number=int(r.get("n", 0)),
                by=str(r.get("by", "")),
                at=_dt(r.get("at")),
                job_id=str(r.get("job", "")),
                data_edited=bool(r.get("edited", False)),
            )
            for r in history
            if isinstance(r, dict)
        )
        errors = tuple(
            AttemptError.from_json(e) for e in body.get("errors") or [] if isinstance(e, dict)
        )
        options = body.get("options")
        extra = body.get("extra")
        return cls(
            id=entry_id,
            queue=_text(h.get(b"dq")),
            prefix=_text(h.get(b"dp")),
            job_id=_text(h.get(b"di")),
            name=_text(h.get(b"n")),
            data=body.get("data"),
            options=options if isinstance(options, dict) else {},
            priority=_int(body.get("priority")),
            errors=errors,
            failed_reason=body.get("failedReason"),
            attempts_made=_int(body.get("attemptsMade")) or 0,
            stalls=_int(body.get("stalls")) or 0,
            created_at=_dt(ts.get("created")),
            processed_at=_dt(ts.get("processed")),
            failed_at=_dt(ts.get("finished")),
            dead_lettered_at=_dt(_int(h.get(b"dt"))),
            replay_count=_int(h.get(b"dc")) or 0,
            replays=replays,
            extra=extra if isinstance(extra, dict) else {},
            raw_data=body.get("rawData"),
        )


# -- routing (used by workers, sweeps and DeadLetters.route) ------------------------


def _entry_body(origin: QueueKeys, job_id: str, h: Mapping[bytes, bytes], failed_at: int) -> bytes:
    """The entry's data (see the module docstring), from the failed job's hash."""
    body: dict[str, Any] = {
        "queue": origin.name,
        "prefix": origin.prefix,
        "id": job_id,
        "name": _text(h.get(b"n")),
    }
    raw_data = join_data(h)
    try:
        body["data"] = serialization.decode(raw_data, what=f"job {job_id} data")
    except SerializationError:
        body["data"] = None
        body["rawData"] = _text(raw_data)
    options: Any = {}
    raw_options = stored_options(h)
    if raw_options:
        try:
            options = json.loads(raw_options)
        except ValueError:
            options = None
        if not isinstance(options, dict):
            body["rawOptions"] = _text(raw_options)
            options = {}
    body["options"] = options
    body["priority"] = _int(h.get(b"p"))
    body["delay"] = _int(h.get(b"dl")) or 0
    errors: list[dict[str, Any]] = []
    if h.get(b"er"):
        try:
            errors = [e.to_json() for e in Job.decode_errors(h[b"er"])]
        except (ValueError, TypeError, KeyError, AttributeError):
            body["rawErrors"] = _text(h[b"er"])
    body["errors"] = errors
    body["failedReason"] = _text(h[b"fr"]) if b"fr" in h else None
    body["attemptsMade"] = _int(h.get(b"a")) or 0
    body["stalls"] = _int(h.get(b"s")) or 0
    body["timestamps"] = {
        "created": _int(h.get(b"t")),
        "processed": _int(h.get(b"pt")),
        "finished": _int(h.get(b"ft")) or failed_at,
    }
    extra: Any = {}
    if h.get(b"x"):
        with contextlib.suppress(ValueError):
            extra = json.loads(h[b"x"])
    body["extra"] = extra if isinstance(extra, dict) else {}
    return serialization.encode(body, limit=None, what=f"dead-letter entry of job {job_id}")


def _error_text(h: Mapping[bytes, bytes]) -> str:
    """What ``error_contains`` searches: the failure reason and every attempt's error."""
    lines = [_text(h.get(b"fr"))]
    with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
        lines += [f"{e.type}: {e.reason}" for e in Job.decode_errors(h.get(b"er"))]
    return "\n".join(lines)


def _entry_id_for(
    origin: QueueKeys, job_id: str, h: Mapping[bytes, bytes], dlq: QueueKeys
) -> tuple[str, bool]:
    """The entry id for a failed job, and whether the entry must be of that very job id.

    A replayed job carries its entry's id in its ``x`` fields, so a replay that
    fails again updates its entry even when it runs under another id.
    """
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        tag = json.loads(h[b"x"]).get("deadLetter") if h.get(b"x") else None
        if isinstance(tag, dict) and tag.get("queue") == dlq.name and tag.get("entry"):
            return str(tag["entry"]), False
    return f"{origin.name}:{job_id}", True


async def _add_entry(
    client: Any, origin: QueueKeys, job_id: str, dlq: QueueKeys, events_max_len: int
) -> tuple[str, int] | None:
    """Step 1: file the failed job as an entry. (entry id, failure time), or None
    when the job is not (or no longer) failed."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.hgetall(origin.job(job_id))
        pipe.zscore(origin.failed, job_id)
        h, score = await pipe.execute()
    if not h or score is None:
        return None
    failed_at = int(score)
    entry_id, same_job = _entry_id_for(origin, job_id, h, dlq)
    code = await QueueScripts(client, dlq).dead_letter_add(
        entry_id,
        _text(h.get(b"n")),
        _entry_body(origin, job_id, h, failed_at),
        _ENTRY_OPTIONS,
        (origin.prefix, origin.name, job_id),
        failed_at,
        _error_text(h),
        same_job=same_job,
        events_max_len=events_max_len,
    )
    if code == -5:
        raise InvalidJobStateError(
            f"dead-letter queue {dlq.name!r} already holds an entry {entry_id!r} of another "
            f"job; job {job_id!r} of queue {origin.name!r} stays in failed (remove or "
            "rename that entry, then sweep)"
        )
    raise_for_code(code, queue=dlq.name, job_id=entry_id, action="dead_letter_add")
    return entry_id, failed_at


async def _release(
    client: Any,
    origin: QueueKeys,
    job_id: str,
    failed_at: int,
    dlq: QueueKeys,
    events_max_len: int,
) -> bool:
    """Step 2: delete the original if it is still the failure that was filed."""
    code = await QueueScripts(client, origin).dead_letter_release(
        job_id, failed_at, dlq.name, events_max_len=events_max_len
    )
    return code == 1


async def _route(
    client: Any, origin: QueueKeys, job_id: str, dlq: QueueKeys, events_max_len: int
) -> str | None:
    """Both steps; the entry id, or None when the job is not failed (any more)."""
    filed = await _add_entry(client, origin, job_id, dlq, events_max_len)
    if filed is None:
        return None
    entry_id, failed_at = filed
    await _release(client, origin, job_id, failed_at, dlq, events_max_len)
    return entry_id


async def _sweep(
    client: Any,
    origin: QueueKeys,
    dlq: QueueKeys,
    *,
    limit: int,
    min_age_ms: int,
    events_max_len: int,
) -> int:
    """Route up to ``limit`` failed jobs (oldest first) that failed ``min_age_ms`` ago or more."""
    cutoff = await server_time_ms(client) - min_age_ms
    raw = await client.zrangebyscore(origin.failed, "-inf", cutoff, start=0, num=limit)
    routed = 0
    for job_id in (_text(x) for x in raw):
        try:
            if await _route(client, origin, job_id, dlq, events_max_len) is not None:
                routed += 1
        except InvalidJobStateError as exc:
            log.error("%s", exc)
    return routed


class DeadLetterRouter:
    """A worker's side of routing: follows the queue's setting, routes its final
    failures in the background, sweeps now and then. Used by :class:`~jobq.Worker`."""

    sweep_every: float = 60.0
    sweep_min_age_ms: int = 30_000
    sweep_limit: int = 100

    def __init__(self, queue: Queue, events_max_len: int) -> None:
        self.queue = queue
        self.events_max_len = events_max_len
        self.target: str | None = None
        self._loaded = False
        self._next_sweep = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    async def _load(self) -> str | None:
        target = await self.queue.get_dead_letter_queue()
        if target == self.queue.name:
            target = None  # set by hand: routing a queue into itself would loop
        self.target, self._loaded = target, True
        return target

    async def refresh(self) -> None:
        """Read the queue's dead-letter setting; start a sweep if one is due."""
        target = await self._load()
        now = time.monotonic()
        if target is not None and now >= self._next_sweep:
            self._next_sweep = now + self.sweep_every
            self._spawn(self._sweep(target))

    def route_soon(self, job_id: str) -> None:
        """Route a job the worker just failed for good (if the queue is routed)."""
        if self.target is not None or not self._loaded:
            self._spawn(self._route(job_id))

    async def settle(self, timeout: float = 5.0) -> None:
        """Let routing in progress finish (a job not routed stays in failed for the sweep)."""
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _dlq_keys(self, target: str) -> QueueKeys:
        return QueueKeys(self.queue.keys.prefix, target)

    async def _route(self, job_id: str) -> None:
        target = self.target
        try:
            if not self._loaded:  # a failure found before the first heartbeat read it
                target = await self._load()
            if target is None:
                return
            entry = await _route(
                self.queue.client,
                self.queue.keys,
                job_id,
                self._dlq_keys(target),
                self.events_max_len,
            )
        except Exception as exc:
            log.warning(
                "job %s of queue %r could not be dead-lettered to %r (%s); it stays in "
                "failed and a sweep routes it later",
                job_id,
                self.queue.name,
                target,
                exc,
            )
            return
        if entry is not None:
            log.info("job %s of queue %r dead-lettered as %s", job_id, self.queue.name, entry)

    async def _sweep(self, target: str) -> None:
        try:
            n = await _sweep(
                self.queue.client,
                self.queue.keys,
                self._dlq_keys(target),
                limit=self.sweep_limit,
                min_age_ms=self.sweep_min_age_ms,
                events_max_len=self.events_max_len,
            )
        except Exception as exc:
            log.warning("dead-letter sweep of queue %r failed: %s", self.queue.name, exc)
            return
        if n:
            log.info("dead-letter sweep moved %d failed job(s) of queue %r", n, self.queue.name)


# -- the operator's view -------------------------------------------------------------


class DeadLetters:
    """The entries of one dead-letter queue: list, inspect, replay, discard.

    ``connection`` and ``prefix`` work as for :class:`~jobq.Queue`; ``name`` is
    the dead-letter queue (``"dead-letter"`` by default). Use it as
    ``async with DeadLetters(connection=url) as dl: ...``. Jobs returned by
    :meth:`replay` are bound to this object's connection.
    """

    def __init__(
        self,
        *,
        connection: ConnectionLike = None,
        name: str = DEFAULT_DEAD_LETTER_QUEUE,
        prefix: str | None = None,
        events_max_len: int = 10_000,
    ) -> None:
        self.queue = Queue(
            name, connection=connection, prefix=prefix, events_max_len=events_max_len
        )
        self.name = name
        self._origins: dict[tuple[str, str], Queue] = {}

    # -- lifecycle ---------------------------------------------------------
    async def open(self) -> DeadLetters:
        """Connect (idempotent)."""
        await self.queue.open()
        return self

    async def close(self) -> None:
        """Close the connection if this object opened it."""
        origins, self._origins = list(self._origins.values()), {}
        for q in origins:
            await q.close()
        await self.queue.close()

    async def __aenter__(self) -> DeadLetters:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def keys(self) -> QueueKeys:
        """The dead-letter queue's keys."""
        return self.queue.keys

    async def _origin_queue(self, prefix: str, name: str) -> Queue:
        q = self._origins.get((prefix, name))
        if q is None:
            q = Queue(
                name,
                connection=self.queue.client,
                prefix=prefix,
                events_max_len=self.queue.events_max_len,
            )
            await q.open()
            self._origins[(prefix, name)] = q
        return q

    def _origin_keys(self, queue: Queue | str) -> QueueKeys:
        if isinstance(queue, Queue):
            return queue.keys
        return QueueKeys(self.keys.prefix, queue)

    # -- reading -------------------------------------------------------------
    async def count(self) -> int:
        """How many entries the dead-letter queue holds."""
        client: Any = self.queue.client
        return int(await client.zcard(self.keys.dead_letters))

    async def get(self, entry_id: str) -> DeadLetter | None:
        """One entry, or None."""
        client: Any = self.queue.client
        h = await client.hgetall(self.keys.job(entry_id))
        if not h or b"dq" not in h:
            return None
        return DeadLetter.from_hash(entry_id, h)

    async def _get_many(self, ids: builtins.list[str]) -> builtins.list[DeadLetter]:
        out: builtins.list[DeadLetter] = []
        for i in range(0, len(ids), _SCAN_BATCH):
            chunk = ids[i : i + _SCAN_BATCH]
            async with self.queue.client.pipeline(transaction=False) as pipe:
                for entry_id in chunk:
                    pipe.hgetall(self.keys.job(entry_id))
                hashes = await pipe.execute()
            out += [
                DeadLetter.from_hash(e, h)
                for e, h in zip(chunk, hashes, strict=True)
                if h and b"dq" in h
            ]
        return out

    async def _bounds(self, older_than: Age | None, newer_than: Age | None) -> tuple[Any, Any]:
        if older_than is None and newer_than is None:
            return "-inf", "+inf"
        now = await server_time_ms(self.queue.client)

        def cut(value: Age, what: str) -> int:
            if isinstance(value, datetime):
                return round(value.timestamp() * 1000)
            return now - to_ms(value, what)

        lowest: Any = "-inf" if newer_than is None else cut(newer_than, "newer_than")
        highest: Any = "+inf" if older_than is None else cut(older_than, "older_than")
        return lowest, highest

    async def ids(
        self,
        queue: str | None = None,
        name: str | None = None,
        error_contains: str | None = None,
        older_than: Age | None = None,
        newer_than: Age | None = None,
        *,
        newest_first: bool = True,
        limit: int | None = None,
    ) -> builtins.list[str]:
        """Ids of the matching entries (see :meth:`list`), up to ``limit``."""
        lowest, highest = await self._bounds(older_than, newer_than)
        found: builtins.list[str] = []
        seen: set[str] = set()
        offset = 0
        while limit is None or len(found) < limit:
            read, matched = await self.queue.scripts.dead_letter_scan(
                lowest,
                highest,
                offset,
                _SCAN_BATCH,
                newest_first=newest_first,
                queue=queue or "",
                name=name or "",
                text=error_contains or "",
            )
            for entry_id in matched:
                if entry_id not in seen:  # entries added during the walk shift offsets
                    seen.add(entry_id)
                    found.append(entry_id)
            if read < _SCAN_BATCH:
                break
            offset += read
        return found if limit is None else found[:limit]

    async def list(
        self,
        queue: str | None = None,
        name: str | None = None,
        error_contains: str | None = None,
        older_than: Age | None = None,
        newer_than: Age | None = None,
        start: int = 0,
        end: int = -1,
    ) -> builtins.list[DeadLetter]:
        """Entries that match every filter given, newest failure first.

        ``queue``: the original queue; ``name``: the job name; ``error_contains``:
        text in the failure reason or any attempt's error type or message
        (case-sensitive); ``older_than``/``newer_than``: an age (ms or timedelta,
        by the server's clock) or a datetime, compared with the original failure
        time. ``start``/``end`` index the matches (inclusive; -1 = to the end).
        """
        if start < 0 or end < -1:
            raise ConfigurationError(f"list takes start >= 0 and end >= -1, got {start}, {end}")
        limit = None if end == -1 else end + 1
        found = await self.ids(queue, name, error_contains, older_than, newer_than, limit=limit)
        return await self._get_many(found[start:])

    # -- replay --------------------------------------------------------------
    async def replay(self, entry_id: str, *, data: Any = UNSET, by: str) -> Job:
        """Add the entry's job back to its original queue as a fresh job (attempts
        reset, same name and options), with ``data`` instead of the original data if
        given. ``by`` says who replays it; the entry counts the replay."""
        _check_by(by)
        entry = await self.get(entry_id)
        if entry is None:
            raise JobNotFoundError(f"dead-letter queue {self.name!r}: no entry {entry_id!r}")
        return await self._replay(entry, data, by)

    async def replay_matching(
        self,
        queue: str | None = None,
        name: str | None = None,
        error_contains: str | None = None,
        older_than: Age | None = None,
        newer_than: Age | None = None,
        *,
        data_update: Mapping[str, Any] | Callable[[Any], Any] | None = None,
        by: str,
    ) -> builtins.list[Job]:
        """Replay every matching entry (filters as in :meth:`list`), oldest first.

        ``data_update``: a mapping merged into each entry's (dict) data, or a
        function from the original data to the new data. Every entry is checked
        before any is replayed, so a bad one replays none.
        """
        _check_by(by)
        ids = await self.ids(
            queue, name, error_contains, older_than, newer_than, newest_first=False
        )
        entries = await self._get_many(ids)
        planned: builtins.list[tuple[DeadLetter, Any]] = []
        for entry in entries:
            if data_update is None:
                if entry.raw_data is not None:
                    raise PayloadError(_corrupt_message(entry))
                planned.append((entry, UNSET))
            elif callable(data_update):
                planned.append((entry, data_update(entry.data)))
            else:
                if not isinstance(entry.data, dict):
                    raise ConfigurationError(
                        f"dead-letter entry {entry.id!r}: data_update merges into a dict, but "
                        f"the job's data is {type(entry.data).__name__}; pass a function instead"
                    )
                planned.append((entry, {**entry.data, **data_update}))
        return [await self._replay(entry, new, by) for entry, new in planned]

    async def _replay(self, entry: DeadLetter, data: Any, by: str) -> Job:
        target = await self._origin_queue(entry.prefix, entry.queue)
        edited = not isinstance(data, _Unset)
        if not edited and entry.raw_data is not None:
            raise PayloadError(_corrupt_message(entry))
        value = data if edited else entry.data
        payload = serialization.encode(
            value, limit=target.max_payload_bytes, what=f"data of dead-letter entry {entry.id}"
        )
        opts = json.dumps(entry.options, separators=(",", ":")).encode() if entry.options else b""
        # Unedited, the job keeps its producer's signature; edited data is signed by
        # this process (if it has keys), unless the job failed for its signature.
        refused = (entry.failed_reason or "").startswith(SIGNATURE_INVALID)
        if edited and target.signer is not None and not refused:
            opts = target.signer.seal(target.keys.prefix, target.name, entry.name, payload, opts)
        prio = "" if entry.priority is None else str(entry.priority)
        lifo = bool(entry.options.get("lifo", False))
        base = entry.original_id
        job_id = ""
        created = False
        for n in range(_MAX_ID_TRIES):
            candidate = base if n == 0 else f"{base}:replay-{entry.replay_count + n}"
            spec = (candidate, entry.name, payload, opts, prio, 0, lifo)
            [(job_id, created)] = await target.scripts.add(target.events_max_len, [spec])
            if created or job_id != candidate:  # made, or absorbed by deduplication
                break
        else:
            raise InvalidJobStateError(
                f"dead-letter entry {entry.id!r}: no free job id for the replay in queue "
                f"{entry.queue!r} after {_MAX_ID_TRIES} tries ({base!r}, {base}:replay-...)"
            )
        client: Any = target.client
        if created:
            tag = {"deadLetter": {"queue": self.name, "entry": entry.id}}
            await client.hsetnx(target.keys.job(job_id), "x", json.dumps(tag))
        recorded = await self.queue.scripts.dead_letter_replay(
            entry.id, by, job_id, edited, _HISTORY_KEPT
        )
        if recorded is None:
            log.warning("dead-letter entry %s vanished while replayed as job %s", entry.id, job_id)
        job = await target.get_job(job_id)
        if job is None:  # already finished and removed by its retention
            job = Job(target, job_id, entry.name, value, _options_of(entry))
        return job

    # -- housekeeping ----------------------------------------------------------
    async def discard(self, entry_id: str) -> bool:
        """Delete an entry; True if it existed. Refused while a worker of the
        dead-letter queue is processing it."""
        code = await self.queue.scripts.remove(entry_id, events_max_len=self.queue.events_max_len)
        client: Any = self.queue.client
        await client.zrem(self.keys.dead_letters, entry_id)
        if code == -1:
            return False
        raise_for_code(code, queue=self.name, job_id=entry_id, action="discard: it is running")
        return True

    async def route(self, queue: Queue | str, job_id: str) -> str | None:
        """Route one failed job of ``queue`` into this dead-letter queue now, whatever
        the queue's setting; the entry id, or None when the job is not failed."""
        client: Any = self.queue.client
        return await _route(
            client, self._origin_keys(queue), job_id, self.keys, self.queue.events_max_len
        )

    async def sweep(self, queue: Queue | str, *, limit: int = 1_000, min_age: Duration = 0) -> int:
        """Route failed jobs still present in ``queue`` (oldest first, at most
        ``limit``, failed ``min_age`` ago or more) to the queue's dead-letter
        queue; returns how many. Does nothing for a queue that is not routed."""
        origin = self._origin_keys(queue)
        client: Any = self.queue.client
        raw = await client.hget(origin.meta, "dlq")
        if raw is None or _text(raw) == origin.name:
            return 0
        return await _sweep(
            client,
            origin,
            QueueKeys(origin.prefix, _text(raw)),
            limit=limit,
            min_age_ms=to_ms(min_age, "min_age"),
            events_max_len=self.queue.events_max_len,
        )


def _check_by(by: Any) -> None:
    if not isinstance(by, str) or not by:
        raise ConfigurationError(f"replay needs by=<who replays it> (a non-empty str), got {by!r}")


def _corrupt_message(entry: DeadLetter) -> str:
    return (
        f"dead-letter entry {entry.id!r}: the original data of job {entry.job_id!r} was "
        "corrupt (see raw_data); replay it with data=... (or data_update=<function>)"
    )


def _options_of(entry: DeadLetter) -> JobOptions:
    try:
        return JobOptions.from_json(entry.options, priority=entry.priority, delay=0)
    except (ValueError, TypeError, KeyError):
        return JobOptions()
