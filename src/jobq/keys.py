"""The one place where Redis key names are built.

Every key of a queue starts with the hash tag ``{prefix:queue}``, so a whole
queue lives in one Redis Cluster slot and every Lua script can touch all of
its keys. Scripts receive the base ``{prefix:queue}`` as their one standard
key, ``KEYS[1]`` (nothing is stored under that name; it only routes the call to
the queue's slot), and build the names below from it in
``scripts/lua/includes/common.lua``: the two must agree. Job hashes are
``{prefix:queue}:j:<id>``; scripts derive them from the job-key prefix they
receive, which carries the same hash tag.
"""

from __future__ import annotations

from .errors import ConfigurationError

__all__ = ["QueueKeys", "validate_name"]

_FORBIDDEN = set("{}\r\n\x00 ")


def validate_name(value: str, field: str) -> str:
    """Check a queue name or key prefix and return it, naming ``field`` if bad."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{field} must be a non-empty string, got {value!r}")
    if len(value) > 200:
        raise ConfigurationError(f"{field} is longer than 200 characters: {value[:40]!r}...")
    bad = _FORBIDDEN.intersection(value)
    if bad:
        shown = ", ".join(repr(c) for c in sorted(bad))
        raise ConfigurationError(f"{field} {value!r} contains characters jobq reserves: {shown}")
    return value


class QueueKeys:
    """Key names for one queue under one prefix."""

    __slots__ = (
        "active",
        "base",
        "completed",
        "dead_letters",
        "dedup_index",
        "dedup_prefix",
        "delayed",
        "events",
        "failed",
        "group_active",
        "group_config",
        "group_limited",
        "group_state",
        "groups",
        "id",
        "job_prefix",
        "limiter",
        "marker",
        "meta",
        "metrics_completed",
        "metrics_failed",
        "name",
        "outbox",
        "prefix",
        "prio",
        "scheduler_changes",
        "schedulers",
        "script_keys",
        "wait",
        "waiting_children",
        "workers",
    )

    def __init__(self, prefix: str, name: str) -> None:
        self.prefix = validate_name(prefix, "prefix")
        self.name = validate_name(name, "queue name")
        base = "{" + prefix + ":" + name + "}"
        self.base = base
        self.wait = base + ":wait"  # LIST of plain job ids; LPUSH in, RPOP out
        self.prio = base + ":prio"  # ZSET of prioritised job ids
        self.delayed = base + ":delayed"  # ZSET id -> due time (server ms)
        self.active = base + ":active"  # ZSET id -> lease deadline (server ms)
        self.completed = base + ":completed"  # ZSET id -> finished time
        self.failed = base + ":failed"  # ZSET id -> finished time
        self.meta = base + ":meta"  # HASH: paused flag, priority counter
        self.events = base + ":events"  # STREAM, capped
        self.marker = base + ":marker"  # ZSET with one member: wakes blocked workers
        self.limiter = base + ":limiter"  # STRING counter with a TTL
        self.id = base + ":id"  # STRING counter for generated job ids
        self.metrics_completed = base + ":mc"  # HASH minute -> completed count
        self.metrics_failed = base + ":mf"  # HASH minute -> failed count
        self.workers = base + ":workers"  # ZSET worker id -> alive until (server ms)
        self.job_prefix = base + ":j:"
        # Groups (tenants); Lua derives the same names (includes/common.lua).
        self.groups = base + ":groups"  # LIST: round-robin ring of runnable groups
        self.group_state = base + ":gstate"  # HASH group -> r (ring) | c | l (parked)
        self.group_active = base + ":gactive"  # HASH group -> running jobs
        self.group_limited = base + ":glimited"  # ZSET group -> rate window ends (ms)
        self.group_config = base + ":gconf"  # HASH group ('*' default) -> "conc,max,ms"
        self.schedulers = base + ":schedulers"  # ZSET scheduler id -> next tick (server ms)
        self.scheduler_changes = base + ":sch-changes"  # STREAM, capped: upserts and removals
        self.outbox = base + ":outbox"  # LIST: finished children to report to parents
        self.waiting_children = base + ":waiting-children"  # ZSET: parents waiting
        # Deduplication: dedup_prefix + key -> STRING holding the job id (PX ttl if
        # given); add.lua gets the prefix in ARGV, other scripts derive it from the
        # base as they do the index, a ZSET key -> expiry (server ms, +inf = no TTL).
        self.dedup_prefix = base + ":dd:"
        self.dedup_index = base + ":dd"
        # Dead-letter entries of this queue (when it serves as one): entry id ->
        # original failure time; the dead_letter_* scripts derive it from the base.
        self.dead_letters = base + ":dead-letters"
        # Every script receives the base as KEYS[1] and derives the queue's keys from
        # it (scripts/lua/includes/common.lua); the scheduler scripts take more after it.
        self.script_keys: tuple[str, ...] = (base,)

    def group(self, group: str) -> str:
        """The list of one group's waiting jobs (LPUSH in, RPOP out)."""
        return self.base + ":g:" + group

    def group_rate(self, group: str) -> str:
        """The counter of one group's starts in its current rate window."""
        return self.base + ":grate:" + group

    def job(self, job_id: str) -> str:
        """The hash holding one job."""
        return self.job_prefix + job_id

    def logs(self, job_id: str) -> str:
        """The list holding one job's log lines."""
        return self.job_prefix + job_id + ":logs"

    def scheduler(self, scheduler_id: str) -> str:
        """The hash holding one job scheduler (spec, job template, next/last tick, count)."""
        return self.base + ":sch:" + scheduler_id

    def dedup(self, key: str) -> str:
        """The string holding the id of the job that owns a deduplication key."""
        return self.dedup_prefix + key

    def worker(self, worker_id: str) -> str:
        """The hash describing one live worker (see :mod:`jobq.stats`)."""
        return self.base + ":w:" + worker_id

    def stats_minute(self, minute: int) -> str:
        """The hash of one server minute's worker figures (``minute`` = ms // 60000)."""
        return self.base + ":ts:" + str(minute)
