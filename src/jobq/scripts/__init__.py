"""The Lua scripts, one per atomic state change, and one typed method per script.

The ``.lua`` files ship as package data. A line ``--@include NAME`` pulls in
``lua/includes/NAME.lua`` when the script is loaded. Scripts are called by
SHA1 and loaded again when the server answers NOSCRIPT (after a restart or
``SCRIPT FLUSH``). Every script takes one standard key, the queue's hash-tagged
base (:attr:`jobq.keys.QueueKeys.script_keys`), and derives the queue's keys
from it; the headers of the files say what each ARGV and return value means.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import NoScriptError

from ..connection import execute_replicated, raise_if_not_replicated
from ..keys import QueueKeys
from ._wire import Wire, wire_capable

__all__ = [
    "SCRIPT_NAMES",
    "ClaimReply",
    "ClaimedJob",
    "FinishItem",
    "QueueScripts",
    "script_source",
]

SCRIPT_NAMES = (
    "add",
    "add_flow_node",
    "advance_scheduler",
    "child_done",
    "claim",
    "clean",
    "counts",
    "dead_letter_add",
    "dead_letter_release",
    "dead_letter_replay",
    "dead_letter_scan",
    "drain",
    "extend",
    "finish",
    "log",
    "obliterate",
    "pause",
    "progress",
    "promote",
    "remove",
    "remove_scheduler",
    "retry",
    "state",
    "upsert_scheduler",
)

_INCLUDE = re.compile(r"^--@include (\w+)\s*$", re.MULTILINE)


_TOP_LOCAL = re.compile(r"^local (?:function )?([\w, ]+?)\s*(?:=|\(|$)")
_COMMENT = re.compile(r"--[^\n]*")
_NAME = re.compile(r"[A-Za-z_]\w*")


def _definitions(include: str) -> list[tuple[set[str], str]]:
    """An include's top-level statements: (names each defines, its text).

    Every top-level statement of an include is a ``local`` (a function, a
    constant, a key name); a statement runs from its ``local`` line to the
    next one, comments before a statement belong to the one above.
    """
    units: list[tuple[set[str], list[str]]] = [(set(), [])]
    for line in include.splitlines(keepends=True):
        m = _TOP_LOCAL.match(line)
        if m:
            units.append(({n.strip() for n in m.group(1).split(",")}, []))
        units[-1][1].append(line)
    return [(names, "".join(lines)) for names, lines in units]


def _used(text: str) -> set[str]:
    return set(_NAME.findall(_COMMENT.sub("", text)))


def _prune(prelude: list[tuple[set[str], str]], body: str) -> str:
    """The statements of ``prelude`` that ``body`` needs, directly or not, in order.

    Every script runs its whole text on each call (closures made, key names
    joined), so a definition no call can reach is left out. A name is needed
    if it appears in the body or in a needed statement, outside comments;
    a string that happens to spell a name only keeps a statement too many.
    """
    needed = _used(body)
    keep = [False] * len(prelude)
    changed = True
    while changed:
        changed = False
        for i, (names, text) in enumerate(prelude):
            if not keep[i] and (not names or names & needed):
                keep[i] = changed = True
                needed |= _used(text)
    return "".join(text for k, (_, text) in zip(keep, prelude, strict=True) if k)


@cache
def script_source(name: str) -> tuple[str, str]:
    """The full source of a script (includes expanded) and its SHA1.

    Includes come first, in the order the script names them, cut down to the
    definitions the script uses (see :func:`_prune`).
    """
    lua = resources.files(__package__).joinpath("lua")
    own = lua.joinpath(f"{name}.lua").read_text("utf-8")
    prelude: list[tuple[set[str], str]] = []
    for include in _INCLUDE.findall(own):
        prelude += _definitions(lua.joinpath("includes", f"{include}.lua").read_text("utf-8"))
    marker = _INCLUDE.search(own)
    if marker is None:
        text = own
    else:
        head, body = own[: marker.start()], _INCLUDE.sub("", own[marker.start() :])
        text = head + _prune(prelude, body) + body
    return text, hashlib.sha1(text.encode("utf-8")).hexdigest()


def _can_dedicate(client: Any) -> bool:
    """Whether a connection of ``client``'s pool can be kept for one queue's calls.

    Only a plain client on a bounded pool of more than a couple of connections
    (Cluster and Sentinel clients route each command themselves).
    """
    pool = getattr(client, "connection_pool", None)
    return (
        type(client) is Redis
        and client.connection is None
        and type(pool) is BlockingConnectionPool
        and pool.max_connections > 2
    )


_MEMO_KINDS: frozenset[type] = frozenset({str, int, bytes})


def _pack(conn: Any, command: tuple[Any, ...]) -> bytes:
    """``command`` in the Redis protocol, as one buffer.

    What ``conn.pack_command`` makes, built with one format operation per
    argument instead of several joins (an add_bulk of 1,000 jobs has 7,000
    arguments, most of them repeated: the name, the options, '' and 0), and
    each short str, int or bytes argument packed once per command. Arguments
    are str, bytes or int as the scripts pass them; any other type goes
    through redis-py's own encoder (which refuses a bool).
    """
    parts = [b"*%d\r\n" % len(command)]
    append = parts.append
    packed_args: dict[object, bytes] = {}
    memo_kinds = _MEMO_KINDS
    for arg in command:
        kind = type(arg)
        if kind is bytes and len(arg) > 32:  # a payload: seldom repeated
            append(b"$%d\r\n%b\r\n" % (len(arg), arg))
            continue
        memo = kind in memo_kinds  # exact types: True must not find 1's packing
        packed = packed_args.get(arg) if memo else None
        if packed is None:
            if kind is bytes:
                data = arg
            elif kind is str:
                data = arg.encode()
            elif kind is int:
                data = b"%d" % arg
            else:
                data = bytes(conn.encoder.encode(arg))
            packed = b"$%d\r\n%b\r\n" % (len(data), data)
            if memo:
                packed_args[arg] = packed
        append(packed)
    return b"".join(parts)


def _shared_but_id_and_data(jobs: Sequence[tuple[str, str, bytes, bytes, str, int, bool]]) -> bool:
    """Whether more than one job is added and all have the same name, options,
    priority, delay and lifo (a bulk add usually does)."""
    if len(jobs) < 2:
        return False
    _, name, _, opts, prio, delay, lifo = jobs[0]
    for job in jobs:
        if job[1] != name or job[3] != opts or job[4] != prio or job[5] != delay or job[6] != lifo:
            return False
    return True


def _added(raw: list[Any]) -> list[tuple[str, bool]]:
    """The add script's reply as (id, created) per job.

    ``[first, -n]`` stands for n jobs created with consecutive ids from ``first``.
    """
    if len(raw) == 2 and raw[1] < 0:
        return [(job_id, True) for job_id in _added_ids(raw)]
    return [(_s(raw[i]), bool(raw[i + 1])) for i in range(0, len(raw), 2)]


def _added_ids(raw: list[Any]) -> list[str]:
    """The ids in the add script's reply (see :func:`_added`)."""
    if len(raw) == 2 and raw[1] < 0:
        first = int(raw[0])
        return list(map(str, range(first, first - raw[1])))
    return [_s(raw[i]) for i in range(0, len(raw), 2)]


def _s(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(slots=True)
class ClaimedJob:
    """A job as the claim script hands it to a worker (raw, not yet decoded)."""

    id: str
    token: str
    name: str
    data: bytes
    opts: bytes | None
    priority: int | None
    attempts_made: int
    attempts_started: int
    created: int
    delay: int
    progress: bytes | None
    errors: bytes | None
    stalls: int
    extra: bytes | None = None


@dataclass(slots=True)
class ClaimReply:
    """What a claim returns: jobs, when to look again, and rate-limit state."""

    next_wake_ms: int
    limited_ms: int
    stalled_failed: list[str]
    jobs: list[ClaimedJob]

    @classmethod
    def parse(cls, raw: Sequence[Any]) -> ClaimReply:
        """Parse the nested array the claim include returns."""
        jobs = [
            ClaimedJob(
                id=_s(j[0]),
                token=_s(j[1]),
                name=_s(j[2]),
                data=j[3],
                opts=j[4],
                priority=_opt_int(j[5]),
                created=int(j[6] or 0),
                delay=int(j[7] or 0),
                extra=j[8],
                attempts_started=int(j[9]),
                # A job claimed before carries what its earlier runs left.
                attempts_made=int(j[10] or 0) if len(j) > 10 else 0,
                progress=j[11] if len(j) > 10 else None,
                errors=j[12] if len(j) > 10 else None,
                stalls=int(j[13] or 0) if len(j) > 10 else 0,
            )
            for j in raw[3:]
        ]
        return cls(int(raw[0]), int(raw[1]), [_s(x) for x in raw[2]], jobs)


@dataclass(slots=True)
class FinishItem:
    """One finished attempt to report (see finish.lua for the kinds)."""

    id: str
    token: str
    kind: str
    value: bytes | str = b""
    errors: bytes | str = b""
    delay: int = 0
    keep_count: int = -1
    keep_age: int = -1
    #: A completion ('c') of a job that has no group, extra fields or
    #: deduplication key, as its claim showed: the script need not look for them.
    plain: bool = False


class QueueScripts:
    """The scripts of one queue, bound to one client.

    ``dedicated_connection``: keep up to two connections of the client's pool
    for this object's calls (taken as calls need them, given back by
    :meth:`close`) and drive them directly (:class:`jobq.scripts._wire.Wire`):
    a call skips redis-py's pool round (lock, timeout, health probe) and its
    per-call machinery. Two, because a worker keeps two calls in flight; a
    call made while both are busy (more concurrent calls) goes through the
    client as usual. Only for a plain client whose bounded pool this queue
    owns: a connection kept out of a shared pool would shrink it for everyone.
    """

    def __init__(self, client: Any, keys: QueueKeys, *, dedicated_connection: bool = False) -> None:
        self.client = client
        self.keys = keys
        self._head: tuple[Any, ...] = (len(keys.script_keys), *keys.script_keys)
        self._prefix = keys.job_prefix
        #: (replicas, timeout ms) that every add waits for (``durable_adds``), or None.
        self.durable: tuple[int, int] | None = None
        self._dedicated = dedicated_connection and _can_dedicate(client)
        self._max_wires = 2 if self._dedicated and client.connection_pool.max_connections > 4 else 1
        self._wires: list[Wire] = []  # every connection taken
        self._idle: list[Wire] = []  # those not in a call now
        self._taking = 0  # connections being taken from the pool now

    async def close(self) -> None:
        """Give the dedicated connections (those taken) back to the client's pool."""
        wires, self._wires, self._idle, self._dedicated = self._wires, [], [], False
        for wire in wires:
            if not wire.clean():
                await wire.conn.disconnect(nowait=True)
            await self.client.connection_pool.release(wire.conn)

    async def _execute(self, command: tuple[Any, ...]) -> Any:
        if not self._dedicated:
            return await self.client.execute_command(*command)
        if self._idle:
            wire = self._idle.pop()
        elif len(self._wires) + self._taking < self._max_wires:
            self._taking += 1  # counted before the await: concurrent calls see it
            try:
                conn = await self.client.connection_pool.get_connection()
            finally:
                self._taking -= 1
            if not wire_capable(conn):
                self._dedicated = False
                await self.client.connection_pool.release(conn)
                return await self.client.execute_command(*command)
            wire = Wire(conn)
            self._wires.append(wire)
        else:
            return await self.client.execute_command(*command)
        try:
            # On a socket error or a cancellation the connection is dropped and
            # the next call connects it again. jobq's clients never retry, so
            # neither does this.
            return await wire.call(_pack(wire.conn, command))
        finally:
            if wire in self._wires:  # not given back by close() meanwhile
                self._idle.append(wire)

    async def _call(self, name: str, *args: Any) -> Any:
        text, sha = script_source(name)
        command = ("EVALSHA", sha, *self._head, *args)
        try:
            return await self._execute(command)
        except NoScriptError:
            await self.client.script_load(text)  # SCRIPT LOAD (every primary of a cluster)
            return await self._execute(command)

    async def _call_replicated(self, name: str, *args: Any) -> tuple[Any, int]:
        """Like :meth:`_call`, then WAIT for ``self.durable`` replicas on the same connection."""
        assert self.durable is not None
        text, sha = script_source(name)
        command = ("EVALSHA", sha, *self._head, *args)
        replicas, timeout_ms = self.durable
        key = self.keys.base
        try:
            return await execute_replicated(
                self.client, command, key=key, replicas=replicas, timeout_ms=timeout_ms
            )
        except NoScriptError:
            await self.client.script_load(text)
            return await execute_replicated(
                self.client, command, key=key, replicas=replicas, timeout_ms=timeout_ms
            )

    async def _call_keys(self, name: str, keys: Sequence[str], *args: Any) -> Any:
        """Call a script that takes ``keys`` after the standard one (KEYS[2], ...)."""
        text, sha = script_source(name)
        std = self.keys.script_keys
        command = ("EVALSHA", sha, len(std) + len(keys), *std, *keys, *args)
        try:
            return await self._execute(command)
        except NoScriptError:
            await self.client.script_load(text)  # SCRIPT LOAD (every primary of a cluster)
            return await self._execute(command)

    async def load_all(self, names: Sequence[str] = SCRIPT_NAMES) -> None:
        """Load these scripts (default: every one) now, so the first real call finds
        them cached instead of being answered NOSCRIPT and sent again."""
        for name in names:
            text, _ = script_source(name)
            await self.client.script_load(text)  # SCRIPT LOAD (every primary of a cluster)

    async def add(
        self,
        events_max_len: int,
        jobs: Sequence[tuple[str, str, bytes, bytes, str, int, bool]],
        dedup: Sequence[tuple[str, int, bool] | None] = (),
    ) -> list[tuple[str, bool]]:
        """Add jobs: (id or '', name, data, options JSON or b'', priority or '', delay, lifo).

        ``dedup``, by position among ``jobs`` (missing or None: none): (key,
        ttl ms or 0 for "until the job finishes", debounce). A job whose key is
        held comes back as (holder id, False).
        """
        if _shared_but_id_and_data(jobs):
            _, name, _, opts, prio, delay, lifo = jobs[0]
            shared = (name, opts, prio, delay, lifo)
            args = self._alike_args(
                events_max_len, shared, [j[2] for j in jobs], [j[0] for j in jobs]
            )
        else:
            args = [self._prefix, events_max_len, len(jobs)]
            for job_id, name, data, opts, prio, delay, lifo in jobs:
                args.extend((job_id, name, data, opts, prio, delay, "1" if lifo else "0"))
        specs = [(i, d) for i, d in enumerate(dedup, 1) if d is not None]
        if specs:
            args.extend((self.keys.dedup_prefix, len(specs)))
            for i, (key, ttl, debounce) in specs:
                args.extend((i, key, ttl, "1" if debounce else "0"))
        return _added(await self._add(args))

    async def add_alike(
        self,
        events_max_len: int,
        shared: tuple[str, bytes, str, int, bool],
        payloads: Sequence[bytes],
    ) -> list[str]:
        """Add jobs that differ only in their data, each with a new id; their ids.

        ``shared`` is (name, options JSON or b'', priority or '', delay, lifo):
        the same as :meth:`add` of jobs (``''``, name, payload, ...), without
        the work of finding out that they are alike.
        """
        return _added_ids(await self._add(self._alike_args(events_max_len, shared, payloads)))

    def _alike_args(
        self,
        events_max_len: int,
        shared: tuple[str, bytes, str, int, bool],
        payloads: Sequence[bytes],
        ids: Sequence[str] | None = None,
    ) -> list[Any]:
        """The add script's arguments for jobs that share all but id and data:
        what they share once, then the id ('' or None: a new one) and the data
        of each."""
        name, opts, prio, delay, lifo = shared
        n = len(payloads)
        args: list[Any] = [self._prefix, events_max_len, -n, name, opts, prio, delay]
        args.append("1" if lifo else "0")
        args.extend([""] * (2 * n))  # from index 8: id, data, id, data...
        if ids is not None:
            args[8::2] = ids
        args[9::2] = payloads
        return args

    async def _add(self, args: list[Any]) -> list[Any]:
        """The add script's reply; with ``durable``, once replicated (or raise)."""
        if self.durable is None:
            reply: list[Any] = await self._call("add", *args)
            return reply
        raw, acked = await self._call_replicated("add", *args)
        ids = _added_ids(raw)
        raise_if_not_replicated(acked, self.durable[0], ids, f"queue {self.keys.name!r}")
        return list(raw)

    async def add_flow_node(
        self,
        events_max_len: int,
        job: tuple[str, str, bytes, bytes, str, int, bool],
        extra: bytes,
        children: Sequence[str],
    ) -> bool:
        """Add one job of a flow; True if created (False: the id existed)."""
        job_id, name, data, opts, prio, delay, lifo = job
        raw = await self._call(
            "add_flow_node",
            self._prefix,
            events_max_len,
            job_id,
            name,
            data,
            opts,
            prio,
            delay,
            "1" if lifo else "0",
            extra,
            len(children),
            *children,
        )
        return bool(raw)

    async def child_done(
        self,
        parent_id: str,
        child_key: str,
        outcome: str,
        value: bytes | str,
        policy: str,
        *,
        events_max_len: int,
    ) -> int:
        """Record a finished child on its parent (see child_done.lua for the codes)."""
        return int(
            await self._call(
                "child_done",
                self._prefix,
                events_max_len,
                parent_id,
                child_key,
                outcome,
                value,
                policy,
            )
        )

    async def claim(
        self,
        *,
        count: int,
        lease_ms: int,
        max_stalled: int,
        limiter_max: int,
        limiter_ms: int,
        worker_id: str,
        events_max_len: int,
    ) -> ClaimReply:
        """Claim up to ``count`` jobs."""
        args = (self._prefix, events_max_len, count, lease_ms, max_stalled)
        raw = await self._call("claim", *args, limiter_max, limiter_ms, worker_id)
        return ClaimReply.parse(raw)

    async def pop_then_claim(
        self,
        client: Redis,
        marker: str,
        block_s: float,
        *,
        count: int,
        lease_ms: int,
        max_stalled: int,
        limiter_max: int,
        limiter_ms: int,
        worker_id: str,
        events_max_len: int,
    ) -> tuple[Any, ClaimReply | None]:
        """``BZPOPMIN marker`` with a claim of up to ``count`` jobs pipelined behind it.

        The server holds a blocked client's next command until the pop returns,
        then runs it at once: an idle worker woken by an add gets its jobs in the
        same round trip. Returns the pop's reply (None when it timed out; the
        claim runs either way) and the claim's, which is None when the claim did
        not run (its script was not cached: it is loaded for next time) or failed
        (the caller claims the usual way, which reports the error).
        """
        text, sha = script_source("claim")
        args = (self._prefix, events_max_len, count, lease_ms, max_stalled)
        async with client.pipeline(transaction=False) as pipe:
            pipe.bzpopmin(marker, block_s)
            pipe.execute_command(
                "EVALSHA", sha, *self._head, *args, limiter_max, limiter_ms, worker_id
            )
            popped, raw = await pipe.execute(raise_on_error=False)
        if isinstance(popped, Exception):
            raise popped
        if isinstance(raw, NoScriptError):
            await self.client.script_load(text)
            return popped, None
        if isinstance(raw, Exception):
            return popped, None
        return popped, ClaimReply.parse(raw)

    async def finish(
        self,
        items: Sequence[FinishItem],
        *,
        claim_count: int,
        lease_ms: int,
        max_stalled: int,
        limiter_max: int,
        limiter_ms: int,
        worker_id: str,
        events_max_len: int,
        metrics_minutes: int,
    ) -> tuple[list[int], ClaimReply | None]:
        """Report finished attempts, then claim up to ``claim_count`` more."""
        args: list[Any] = [
            self._prefix,
            events_max_len,
            claim_count,
            lease_ms,
            max_stalled,
            limiter_max,
            limiter_ms,
            worker_id,
            metrics_minutes,
            len(items),
        ]
        for it in items:
            kind = "C" if it.plain and it.kind == "c" else it.kind
            args.extend((it.id, it.token, kind, it.value, it.errors, it.delay, it.keep_count))
            args.append(it.keep_age)
        raw = await self._call("finish", *args)
        codes = [int(c) for c in raw[0]]
        claimed = ClaimReply.parse(raw[1]) if isinstance(raw[1], list) else None
        return codes, claimed

    async def extend(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        lease_ms: int,
        max_stalled: int,
        worker_id: str,
        events_max_len: int,
    ) -> tuple[list[bool], list[str]]:
        """Renew leases; returns (renewed per job, ids failed by stall recovery)."""
        args: list[Any] = [
            self._prefix,
            events_max_len,
            lease_ms,
            max_stalled,
            worker_id,
            len(pairs),
        ]
        for job_id, token in pairs:
            args.extend((job_id, token))
        raw = await self._call("extend", *args)
        return [bool(int(x)) for x in raw[0]], [_s(x) for x in raw[1]]

    async def progress(
        self, job_id: str, token: str, progress: bytes, *, events_max_len: int
    ) -> int:
        """Store progress; 1, -1 (no job) or -2 (stale token)."""
        return int(
            await self._call("progress", self._prefix, events_max_len, job_id, token, progress)
        )

    async def log(self, job_id: str, line: str, max_lines: int) -> int:
        """Append a log line; the number kept, or -1 (no job)."""
        return int(await self._call("log", self._prefix, job_id, line, max_lines))

    async def state(self, job_id: str) -> str:
        """The job's state name, 'unknown' if there is no such job."""
        return _s(await self._call("state", self._prefix, job_id))

    async def counts(self) -> list[int]:
        """[waiting, active, completed, failed, delayed, paused, prioritized, waiting_children]."""
        return [int(x) for x in await self._call("counts")]

    async def pause(self, paused: bool, *, events_max_len: int) -> bool:
        """Pause or resume; True when the state changed."""
        return bool(await self._call("pause", events_max_len, "1" if paused else "0"))

    async def promote(self, job_id: str, *, events_max_len: int) -> int:
        """Promote a delayed job; 1, -1 (no job) or -3 (not delayed)."""
        return int(await self._call("promote", self._prefix, events_max_len, job_id))

    async def retry(self, job_id: str, limit: int, *, events_max_len: int) -> int:
        """Retry one failed job (id) or up to ``limit`` of them (id '')."""
        return int(await self._call("retry", self._prefix, events_max_len, job_id, limit))

    async def remove(self, job_id: str, *, events_max_len: int) -> int:
        """Remove a job; 1, -1 (no job) or -3 (active)."""
        return int(await self._call("remove", self._prefix, events_max_len, job_id))

    async def drain(self, delayed: bool, batch: int, *, events_max_len: int) -> int:
        """Delete up to ``batch`` waiting (and delayed) jobs."""
        return int(
            await self._call("drain", self._prefix, events_max_len, "1" if delayed else "0", batch)
        )

    async def clean(
        self, state: str, grace_ms: int, limit: int, *, events_max_len: int
    ) -> list[str]:
        """Delete up to ``limit`` jobs of ``state`` older than ``grace_ms``."""
        raw = await self._call("clean", self._prefix, events_max_len, state, grace_ms, limit)
        return [_s(x) for x in raw]

    async def obliterate(self, force: bool, batch: int) -> int:
        """Delete a batch of the queue; jobs deleted, 0 when done, -4 if active jobs block it."""
        return int(await self._call("obliterate", self._prefix, "1" if force else "0", batch))

    # -- dead letters (see jobq.deadletter) ----------------------------------
    async def dead_letter_add(
        self,
        entry_id: str,
        name: str,
        data: bytes,
        options: bytes,
        origin: tuple[str, str, str],
        failed_at: int,
        error_text: str,
        *,
        same_job: bool,
        events_max_len: int,
    ) -> int:
        """File an entry in this dead-letter queue; ``origin`` is (prefix, queue, job id).
        1 created, 2 updated with a newer failure, 0 filed already, -5 another job's id."""
        oprefix, oqueue, oid = origin
        return int(
            await self._call(
                "dead_letter_add",
                self._prefix,
                events_max_len,
                entry_id,
                name,
                data,
                options,
                oprefix,
                oqueue,
                oid,
                failed_at,
                error_text,
                "1" if same_job else "0",
            )
        )

    async def dead_letter_release(
        self, job_id: str, failed_at: int, dead_letter_queue: str, *, events_max_len: int
    ) -> int:
        """Delete a failed job filed as a dead letter; 1, or 0 (it changed since: kept)."""
        return int(
            await self._call(
                "dead_letter_release",
                self._prefix,
                events_max_len,
                job_id,
                failed_at,
                dead_letter_queue,
            )
        )

    async def dead_letter_replay(
        self, entry_id: str, by: str, job_id: str, edited: bool, keep: int
    ) -> tuple[int, int] | None:
        """Record a replay on an entry: (replay count, server ms), or None (no such entry)."""
        raw = await self._call(
            "dead_letter_replay", self._prefix, entry_id, by, job_id, "1" if edited else "0", keep
        )
        if not isinstance(raw, list):
            return None
        return int(raw[0]), int(raw[1])

    async def dead_letter_scan(
        self,
        lowest: int | str,
        highest: int | str,
        offset: int,
        batch: int,
        *,
        newest_first: bool,
        queue: str,
        name: str,
        text: str,
    ) -> tuple[int, list[str]]:
        """One batch of a filtered walk over the entries: (members read, matching ids)."""
        raw = await self._call(
            "dead_letter_scan",
            self._prefix,
            lowest,
            highest,
            offset,
            batch,
            "1" if newest_first else "0",
            queue,
            name,
            text,
        )
        return int(raw[0]), [_s(x) for x in raw[1:]]

    # -- job schedulers (see jobq.scheduler) ----------------------------------
    async def upsert_scheduler(
        self,
        scheduler_id: str,
        spec: str,
        first_tick: int | None,
        template: tuple[str, bytes, bytes, str, bool],
        *,
        events_max_len: int,
    ) -> tuple[int, int | None]:
        """Create or replace a scheduler; ``template`` is (name, data, options JSON,
        priority or '', lifo). Returns (1 created/replaced, 2 template updated,
        0 unchanged; the next tick or None when ended)."""
        k = self.keys
        name, data, opts, prio, lifo = template
        raw = await self._call_keys(
            "upsert_scheduler",
            (k.schedulers, k.scheduler(scheduler_id), k.scheduler_changes),
            self._prefix,
            events_max_len,
            scheduler_id,
            spec,
            "" if first_tick is None else first_tick,
            name,
            data,
            opts,
            prio,
            "1" if lifo else "0",
        )
        nxt = _s(raw[1])
        return int(raw[0]), int(nxt) if nxt else None

    async def advance_scheduler(
        self, scheduler_id: str, tick: int, next_tick: int | None, spec: str, *, events_max_len: int
    ) -> bool:
        """Move a scheduler from ``tick`` to ``next_tick`` (None: it ends) if ``tick`` is
        still its next tick and ``spec`` its spec; True when this call moved it."""
        k = self.keys
        raw = await self._call_keys(
            "advance_scheduler",
            (k.schedulers, k.scheduler(scheduler_id)),
            self._prefix,
            events_max_len,
            scheduler_id,
            tick,
            "" if next_tick is None else next_tick,
            spec,
        )
        return bool(int(raw))

    async def remove_scheduler(self, scheduler_id: str, *, events_max_len: int) -> bool:
        """Delete a scheduler and its pending tick job; False if there was none."""
        k = self.keys
        raw = await self._call_keys(
            "remove_scheduler",
            (k.schedulers, k.scheduler(scheduler_id), k.scheduler_changes),
            self._prefix,
            events_max_len,
            scheduler_id,
        )
        return bool(int(raw))
