"""JobHistoryIndex: tails the finished sets into SQLite and answers searches."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from redis.asyncio import Redis

from jobq.connection import ConnectionSettings, create_client, resolve, server_time_ms
from jobq.errors import ConfigurationError
from jobq.keys import QueueKeys

from . import _model
from ._model import (
    FINISHED_STATES,
    IndexStats,
    QueueIndexStats,
    SearchHit,
    SearchQuery,
    SearchResult,
)
from ._store import FIELDS_B, HistoryFilter, HistoryStore, RowPrep

__all__ = ["JobHistoryIndex", "QueueSource"]

logger = logging.getLogger("jobq")

T = TypeVar("T")
QueueSource = Sequence[str] | Callable[[], Iterable[str] | Awaitable[Iterable[str]]]
ConnectionLike = str | ConnectionSettings | Redis | None

#: Where the live walk reads each kind of unfinished job.
_LIVE_SOURCES: dict[str, tuple[str, ...]] = {
    "wait": ("waiting", "paused"),
    "groups": ("waiting", "paused"),
    "prio": ("prioritized", "paused"),
    "delayed": ("delayed",),
    "active": ("active",),
    "waiting_children": ("waiting-children",),
}


class JobHistoryIndex:
    """A searchable index of finished jobs, with a live walk of unfinished ones.

    ``queues`` names the queues to index, or is a callable (plain or async)
    returning their names, asked again on every pass. Each :meth:`refresh`
    reads the jobs that finished since the last one from every queue's
    ``completed`` and ``failed`` sets (nothing is added to the engine's hot
    path) into a SQLite database with a full-text table: ``path=None`` keeps
    it in memory, a file path keeps it across restarts. It is a cache: delete
    the file to rebuild it.

    ``redact`` names data fields (any depth, any case) whose values are
    replaced by ``[redacted]`` before anything is indexed or matched.
    ``live_limit`` bounds the jobs read per state and queue when searching
    unfinished jobs. Use it as ``async with JobHistoryIndex(...) as index:``.
    """

    def __init__(
        self,
        queues: QueueSource,
        *,
        connection: ConnectionLike = None,
        prefix: str | None = None,
        path: str | os.PathLike[str] | None = None,
        redact: Iterable[str] = (),
        batch_size: int = 500,
        write_batch: int = 5_000,
        live_limit: int = 1_000,
        overlap_ms: int = 1_000,
        max_text: int = 8_192,
        index_stacktraces: bool = False,
        count_cap: int = 10_000,
        prune_batch: int = 10_000,
        snippet_marks: tuple[str, str] = ("[", "]"),
    ) -> None:
        if isinstance(queues, str):
            raise ConfigurationError("queues must be a list of names or a callable, not a str")
        for value, what, low in (
            (batch_size, "batch_size", 1),
            (write_batch, "write_batch", 1),
            (live_limit, "live_limit", 1),
            (overlap_ms, "overlap_ms", 0),
            (max_text, "max_text", 16),
            (count_cap, "count_cap", 1),
            (prune_batch, "prune_batch", 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigurationError(f"{what} must be an integer >= {low}, got {value!r}")
        if isinstance(redact, str):
            raise ConfigurationError(f"redact must be a set of field names, not a str: {redact!r}")
        redacted = frozenset(str(f).lower() for f in redact)
        if any(not f for f in redacted):
            raise ConfigurationError("redact must name fields; got an empty name")
        self._queues = queues
        self._connection = connection
        self._prefix_arg = prefix
        self.prefix = prefix or "jobq"
        self.path = None if path is None else os.fspath(path)
        self.batch_size = batch_size
        self.write_batch = write_batch
        self.live_limit = live_limit
        self.overlap_ms = overlap_ms
        self.count_cap = count_cap
        self.prune_batch = prune_batch
        self.snippet_marks = snippet_marks
        self._prep = RowPrep(redacted, max_text, index_stacktraces)
        self._client: Redis | None = None
        self._owns_client = False
        self._store: HistoryStore | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._keys: dict[str, QueueKeys] = {}
        self._refresh_lock = asyncio.Lock()
        self._passed = asyncio.Condition()
        self.passes = 0
        self._indexed_up_to: int | None = None

    # -- lifecycle ---------------------------------------------------------------
    async def open(self) -> JobHistoryIndex:
        """Connect and open (or create) the database; idempotent."""
        if self._store is not None:
            return self
        target = resolve(self._connection)
        if isinstance(target, ConnectionSettings):
            client = create_client(target)
            self._owns_client = True
            self.prefix = self._prefix_arg or target.prefix
        else:
            client = target
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="jobq-history-write")
        self._reader = (
            self._writer
            if self.path is None
            else ThreadPoolExecutor(1, thread_name_prefix="jobq-history-read")
        )
        try:
            loop = asyncio.get_running_loop()
            self._store = await loop.run_in_executor(
                self._writer, HistoryStore, self.path, self.prefix
            )
        except BaseException:
            await self._shutdown(client)
            raise
        up_to = await self._write(self._store.get_meta, "indexed_up_to")
        self._indexed_up_to = None if up_to is None else int(up_to)
        self._client = client
        return self

    async def close(self) -> None:
        """Close the database, and the connection if this index opened it."""
        store, self._store = self._store, None
        client, self._client = self._client, None
        if store is not None and self._writer is not None:
            await asyncio.get_running_loop().run_in_executor(self._writer, store.close)
        await self._shutdown(client)

    async def _shutdown(self, client: Redis | None) -> None:
        for ex in {id(e): e for e in (self._writer, self._reader) if e is not None}.values():
            ex.shutdown(wait=False)
        self._writer = self._reader = None
        if client is not None and self._owns_client:
            await client.aclose()

    async def __aenter__(self) -> JobHistoryIndex:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def client(self) -> Redis:
        """The Redis client (the index must be open)."""
        if self._client is None:
            raise RuntimeError("the history index is not open: use 'async with' or await open()")
        return self._client

    @property
    def store(self) -> HistoryStore:
        """The SQLite store (the index must be open)."""
        if self._store is None:
            raise RuntimeError("the history index is not open: use 'async with' or await open()")
        return self._store

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        self.store  # noqa: B018 - raises if closed
        return await asyncio.get_running_loop().run_in_executor(self._writer, partial(fn, *args))

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        self.store  # noqa: B018 - raises if closed
        return await asyncio.get_running_loop().run_in_executor(self._reader, partial(fn, *args))

    def keys(self, queue: str) -> QueueKeys:
        """Key names of one queue under this index's prefix."""
        k = self._keys.get(queue)
        if k is None:
            k = self._keys[queue] = QueueKeys(self.prefix, queue)
        return k

    async def queue_names(self) -> list[str]:
        """The queues to index now."""
        source = self._queues
        if callable(source):
            got = source()
            names = await got if inspect.isawaitable(got) else got
        else:
            names = source
        out = list(dict.fromkeys(names))
        for name in out:
            self.keys(name)  # checks the name
        return out

    # -- indexing ----------------------------------------------------------------
    async def refresh(self) -> int:
        """One incremental pass over every queue; returns how many jobs were indexed."""
        async with self._refresh_lock:
            started = await server_time_ms(self.client)
            total = 0
            for name in await self.queue_names():
                keys = self.keys(name)
                for state, zkey in (("completed", keys.completed), ("failed", keys.failed)):
                    total += await self._tail(name, state, zkey)
                    await self._prune(name, state, zkey)
            await self._write(self.store.set_meta, "indexed_up_to", str(started))
            self._indexed_up_to = started
        async with self._passed:
            self.passes += 1
            self._passed.notify_all()
        return total

    async def _tail(self, queue: str, state: str, zkey: str) -> int:
        """Index what finished in one set since its cursor, batch by batch.

        The cursor is the newest score indexed and the ids at that score. A
        pass reads again from ``overlap_ms`` before it (a server clock that
        stepped back) and skips ids the index holds with the same finished
        time, so an equal score is neither skipped nor doubled. Pages go by
        (score, offset among equal scores) of ``batch_size``; every
        ``write_batch`` jobs are written in one transaction on the writer
        thread while the next pages are read.
        """
        client: Any = self.client
        keys = self.keys(queue)
        cursor = await self._write(self.store.get_cursor, queue, state)
        top: int | None = None
        top_ids: set[str] = set()
        skip: dict[str, int] = {}
        page_lo: int | str = "-inf"
        if cursor is not None:
            top, top_ids = cursor[0], set(cursor[1])
            page_lo = top - self.overlap_ms
            skip = await self._write(self.store.known, queue, page_lo, top)
        offset = 0
        written = 0
        items: list[tuple[str, int, Any]] = []
        pending: asyncio.Future[int] | None = None
        try:
            while True:
                page = await client.zrangebyscore(
                    zkey, page_lo, "+inf", start=offset, num=self.batch_size, withscores=True
                )
                fresh: list[tuple[str, int]] = []
                for member, raw_score in page:
                    jid, score = member.decode(), int(raw_score)
                    if skip.get(jid) == score or (score == top and jid in top_ids):
                        continue
                    fresh.append((jid, score))
                if page:
                    last = int(page[-1][1])
                    at_last = [m.decode() for m, s in page if int(s) == last]
                    if top is None or last > top:
                        top, top_ids = last, set(at_last)
                    elif last == top:
                        top_ids.update(at_last)
                    if page_lo != "-inf" and last == page_lo:
                        offset += len(page)
                    else:
                        page_lo, offset = last, len(at_last)
                if fresh:
                    async with client.pipeline(transaction=False) as pipe:
                        for jid, _ in fresh:
                            pipe.hmget(keys.job(jid).encode(), FIELDS_B)
                        replies = await pipe.execute()
                    items.extend((jid, s, r) for (jid, s), r in zip(fresh, replies, strict=True))
                done = len(page) < self.batch_size
                # Larger transactions make FTS5 much faster: write every write_batch jobs.
                moved = cursor is None or top != cursor[0] or frozenset(top_ids) != cursor[1]
                if top is not None and (
                    len(items) >= self.write_batch or (done and (moved or items))
                ):
                    if pending is not None:
                        written += await pending
                        pending = None
                    pending = asyncio.get_running_loop().run_in_executor(
                        self._writer,
                        partial(
                            self.store.write,
                            queue,
                            state,
                            items,
                            (top, frozenset(top_ids)),
                            self._prep,
                        ),
                    )
                    items = []
                if done:
                    break
        finally:
            if pending is not None:
                written += await pending
        return written

    async def _prune(self, queue: str, state: str, zkey: str) -> None:
        """Forget indexed jobs older than the oldest the set still holds: retention
        deleted them (at most ``prune_batch`` per pass, so a pass stays short)."""
        client: Any = self.client
        oldest = await client.zrange(zkey, 0, 0, withscores=True)
        below = int(oldest[0][1]) if oldest else None
        n = await self._write(self.store.prune, queue, state, below, self.prune_batch)
        if n:
            logger.debug("history index: %d %s jobs of %r left by retention", n, state, queue)

    async def run(self, interval: float = 5.0, *, stop: asyncio.Event | None = None) -> None:
        """Refresh every ``interval`` seconds until cancelled or ``stop`` is set.

        A failed pass is logged and tried again at the next interval.
        """
        while stop is None or not stop.is_set():
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("history index: refresh failed; trying again in %s s", interval)
            if stop is None:
                await asyncio.sleep(interval)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)

    async def wait_for_passes(self, passes: int, timeout: float | None = None) -> None:
        """Wait until :meth:`refresh` has completed ``passes`` passes in all."""
        async with asyncio.timeout(timeout), self._passed:
            await self._passed.wait_for(lambda: self.passes >= passes)

    async def stats(self) -> IndexStats:
        """Jobs indexed per queue, what is not indexed yet, and how fresh the index is."""
        counts, cursors = await self._read(self.store.counts)
        names = list(dict.fromkeys([*await self.queue_names(), *(q for q, _ in counts)]))
        client: Any = self.client
        async with client.pipeline(transaction=False) as pipe:
            for name in names:
                k = self.keys(name)
                for state, zkey in (("completed", k.completed), ("failed", k.failed)):
                    score = cursors.get((name, state))
                    pipe.zcount(zkey, "-inf" if score is None else f"({score}", "+inf")
            pipe.execute_command("TIME")  # pipe.time() is refused by a cluster pipeline
            replies = await pipe.execute()
        now_s, now_us = replies[-1]
        now = int(now_s) * 1000 + int(now_us) // 1000
        per_queue = []
        for i, name in enumerate(names):
            scores = [cursors.get((name, s)) for s in FINISHED_STATES]
            known = [s for s in scores if s is not None]
            per_queue.append(
                QueueIndexStats(
                    queue=name,
                    completed=counts.get((name, "completed"), 0),
                    failed=counts.get((name, "failed"), 0),
                    cursor_ms=max(known) if known else None,
                    pending=int(replies[2 * i]) + int(replies[2 * i + 1]),
                )
            )
        up_to = self._indexed_up_to
        return IndexStats(
            queues=per_queue,
            indexed_up_to=_model.ms_to_dt(up_to),
            lag_seconds=None if up_to is None else max(0, now - up_to) / 1000,
            passes=self.passes,
            path=self.path,
        )

    # -- searching ---------------------------------------------------------------
    async def search(self, query: SearchQuery) -> SearchResult:
        """Find jobs, newest first: unfinished ones by a bounded live walk, then
        finished ones from the index. Every hit's state is read from Redis before
        returning; hits whose job is gone are dropped, from the index too."""
        live_skip, before = _model.decode_cursor(query.cursor)
        limit = query.limit
        id_value, id_prefix = _model.exact_or_prefix(query.id)
        name_value, name_prefix = _model.exact_or_prefix(query.name)
        text = _model.parse_terms(query.text)
        error = _model.parse_terms(query.error)
        names = list(query.queues) if query.queues else await self.queue_names()

        live: list[SearchHit] = []
        scanned, truncated = 0, False
        wants_live = any(query.wants(s) for s in _model.LIVE_STATES)
        if before is None and (wants_live or (id_value is not None and not id_prefix)):
            live, scanned, truncated = await self._live(names, query, text, error)
        live_page = live[live_skip : live_skip + limit]

        rows: list[Any] = []
        history_total = 0
        f: HistoryFilter | None = None
        finished = [s for s in FINISHED_STATES if query.wants(s)]
        if finished:
            exprs = (_model.fts_expression("data", text), _model.fts_expression("error", error))
            match = " AND ".join(e for e in exprs if e)
            f = HistoryFilter(
                queues=tuple(query.queues) if query.queues else None,
                states=None if len(finished) == len(FINISHED_STATES) else tuple(finished),
                id=id_value,
                id_prefix=id_prefix,
                name=name_value,
                name_prefix=name_prefix,
                group=query.group,
                since_ms=query.since_ms,
                until_ms=query.until_ms,
                match=match or None,
                snippet_column=0 if text else 1,
            )
            room = limit - len(live_page)
            if room > 0:
                rows = await self._read(self.store.search, f, before, room, self.snippet_marks)
            history_total = await self._read(self.store.count, f, self.count_cap)

        next_cursor = None
        if live_skip + len(live_page) < len(live):
            next_cursor = _model.encode_cursor(live_skip + len(live_page), None)
        elif rows and len(rows) == limit - len(live_page):
            next_cursor = _model.encode_cursor(0, int(rows[-1][0]))

        history = [
            SearchHit(
                queue=r[1],
                id=r[2],
                name=r[3],
                state=r[4],
                group=r[5],
                created_ms=r[6],
                finished_ms=r[7],
                attempts=r[8],
                failed_reason=r[9],
                snippet=r[10],
                indexed=True,
            )
            for r in rows
        ]
        # A job can be found twice: live (an exact id, or retried since indexed) and
        # in the index; the live hit stands for both.
        live_keys = {(h.queue, h.id) for h in live_page}
        twice = sum((h.queue, h.id) in live_keys for h in history)
        history = [h for h in history if (h.queue, h.id) not in live_keys]
        hits, dropped = await self._verify([*live_page, *history], query)
        return SearchResult(
            hits=hits,
            total=history_total + len(live) - twice,
            total_exact=history_total <= self.count_cap and not truncated,
            live_scanned=scanned,
            live_truncated=truncated,
            dropped=dropped,
            indexed_up_to=_model.ms_to_dt(self._indexed_up_to),
            next_cursor=next_cursor,
        )

    async def _live(
        self,
        names: list[str],
        query: SearchQuery,
        text: list[_model.Phrase],
        error: list[_model.Phrase],
    ) -> tuple[list[SearchHit], int, bool]:
        """Walk at most ``live_limit`` jobs per state of each queue and filter them here."""
        client: Any = self.client
        n = self.live_limit
        id_value, id_prefix = _model.exact_or_prefix(query.id)
        truncated = False
        candidates: list[tuple[str, str]] = []
        if id_value is not None and not id_prefix:
            # One id: read it in every queue, whatever its state (the verify step says).
            candidates = [(name, id_value) for name in names]
        else:
            sources = [s for s, states in _LIVE_SOURCES.items() if any(map(query.wants, states))]
            async with client.pipeline(transaction=False) as pipe:
                for name in names:
                    k = self.keys(name)
                    for source in sources:
                        if source == "wait":
                            pipe.lrange(k.wait, 0, n - 1)  # LPUSH in: newest first
                        elif source == "groups":
                            pipe.hkeys(k.group_state)
                        elif source == "waiting_children":
                            pipe.zrevrange(k.waiting_children, 0, n - 1)
                        else:
                            pipe.zrange(getattr(k, source), 0, n - 1)
                replies = await pipe.execute()
            groups: list[tuple[str, str]] = []
            it = iter(replies)
            for name in names:
                for source in sources:
                    reply = next(it)
                    if source == "groups":
                        groups.extend((name, g.decode()) for g in reply)
                        continue
                    truncated = truncated or len(reply) >= n
                    candidates.extend((name, m.decode()) for m in reply)
            if groups:
                async with client.pipeline(transaction=False) as pipe:
                    for name, g in groups:
                        pipe.lrange(self.keys(name).group(g), 0, n - 1)
                    replies = await pipe.execute()
                per_queue: dict[str, int] = {}
                for (name, _), reply in zip(groups, replies, strict=True):
                    room = n - per_queue.get(name, 0)
                    truncated = truncated or len(reply) > room
                    taken = [m.decode() for m in reply[: max(0, room)]]
                    per_queue[name] = per_queue.get(name, 0) + len(taken)
                    candidates.extend((name, m) for m in taken)
            candidates = list(dict.fromkeys(candidates))
        if not candidates:
            return [], 0, truncated
        async with client.pipeline(transaction=False) as pipe:
            for name, jid in candidates:
                pipe.hmget(self.keys(name).job(jid).encode(), FIELDS_B)
            hashes = await pipe.execute()
        hits = await asyncio.to_thread(self._filter_live, candidates, hashes, query, text, error)
        return hits, len(candidates), truncated

    def _filter_live(
        self,
        candidates: list[tuple[str, str]],
        hashes: list[Any],
        query: SearchQuery,
        text: list[_model.Phrase],
        error: list[_model.Phrase],
    ) -> list[SearchHit]:
        id_value, id_prefix = _model.exact_or_prefix(query.id)
        name_value, name_prefix = _model.exact_or_prefix(query.name)
        since, until = query.since_ms, query.until_ms
        out: list[SearchHit] = []
        for (queue, jid), raw in zip(candidates, hashes, strict=True):
            row = self._prep.row(queue, "waiting", jid, 0, raw)
            if row is None:
                continue
            _, _, _, name, _, group, created, finished, attempts, reason, data, err = row
            if not (
                _model.matches_pattern(jid, id_value, id_prefix)
                and _model.matches_pattern(name, name_value, name_prefix)
                and (query.group is None or group == query.group)
                and (since is None or (created is not None and created >= since))
                and (until is None or (created is not None and created <= until))
                and _model.phrases_match(text, data)
                and _model.phrases_match(error, err)
            ):
                continue
            out.append(
                SearchHit(
                    queue=queue,
                    id=jid,
                    name=name,
                    state="waiting",
                    group=group,
                    created_ms=created,
                    finished_ms=finished or None,
                    attempts=attempts,
                    failed_reason=reason,
                    snippet=_model.live_snippet(data, text, self.snippet_marks),
                    indexed=False,
                )
            )
        out.sort(key=lambda h: h.created_ms or 0, reverse=True)
        return out

    async def _verify(
        self, hits: list[SearchHit], query: SearchQuery
    ) -> tuple[list[SearchHit], int]:
        """Read every hit's state now, in one round trip; drop the gone and the unwanted."""
        dropped = 0
        if not hits:
            return [], dropped
        client: Any = self.client
        per_hit = 9
        async with client.pipeline(transaction=True) as pipe:
            for h in hits:
                k = self.keys(h.queue)
                job = k.job(h.id)
                pipe.exists(job)
                pipe.zscore(k.active, h.id)
                pipe.zscore(k.completed, h.id)
                pipe.zscore(k.failed, h.id)
                pipe.zscore(k.delayed, h.id)
                pipe.zscore(k.waiting_children, h.id)
                pipe.hexists(k.meta, "paused")
                pipe.zscore(k.prio, h.id)
                pipe.hget(job, "ft")
            replies = await pipe.execute()
        out: list[SearchHit] = []
        gone: list[tuple[str, str]] = []
        for i, h in enumerate(hits):
            exists, active, completed, failed, delayed, children, paused, prio, ft = replies[
                i * per_hit : (i + 1) * per_hit
            ]
            if not exists:
                if h.indexed:
                    gone.append((h.queue, h.id))
                dropped += 1
                continue
            # The order of the state script (scripts/lua/state.lua).
            if active is not None:
                state = "active"
            elif completed is not None:
                state = "completed"
            elif failed is not None:
                state = "failed"
            elif delayed is not None:
                state = "delayed"
            elif children is not None:
                state = "waiting-children"
            elif paused:
                state = "paused"
            elif prio is not None:
                state = "prioritized"
            else:
                state = "waiting"
            if not query.wants(state):
                dropped += 1
                continue
            finished = int(ft) if ft else None
            out.append(
                SearchHit(
                    queue=h.queue,
                    id=h.id,
                    name=h.name,
                    state=state,
                    group=h.group,
                    created_ms=h.created_ms,
                    finished_ms=finished,
                    attempts=h.attempts,
                    failed_reason=h.failed_reason,
                    snippet=h.snippet,
                    indexed=h.indexed,
                )
            )
        if gone:
            await self._write(self.store.delete, gone)
        return out, dropped
