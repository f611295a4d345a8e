"""The search page: the job-history index for finished jobs, a live walk for the rest."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from jobq.errors import ConfigurationError
from jobq.history import FINISHED_STATES, LIVE_STATES, JobHistoryIndex, SearchQuery
from jobq.queue import ConnectionLike

if TYPE_CHECKING:
    from ._app import Dash

log = logging.getLogger("jobq.dashboard")

STATES: tuple[str, ...] = (*FINISHED_STATES, *LIVE_STATES)
_TEXT_FIELDS = ("id", "name", "text", "error", "group")


class History:
    """The dashboard's search index: opened on first use, refreshed in the background.

    Opening lazily (not in the app's lifespan) keeps the index working when the
    dashboard is mounted inside another app, whose lifespan never reaches it.
    """

    def __init__(
        self,
        connection: ConnectionLike,
        prefix: str | None,
        path: str | None,
        redact: frozenset[str],
        discover: Any,
        interval: float = 2.0,
    ) -> None:
        self._args = (connection, prefix, path, redact, discover)
        self.interval = interval
        self.index: JobHistoryIndex | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def ensure(self) -> JobHistoryIndex:
        """The open index, with its refresh task running on this event loop."""
        loop = asyncio.get_running_loop()
        if self.index is not None and self._loop is loop:
            return self.index
        async with self._lock:
            if self.index is None or self._loop is not loop:
                connection, prefix, path, redact, discover = self._args
                index = JobHistoryIndex(
                    discover, connection=connection, prefix=prefix, path=path, redact=redact
                )
                await index.open()
                self.index, self._loop = index, loop
                self._stop = asyncio.Event()
                self._task = asyncio.create_task(index.run(self.interval, stop=self._stop))
        assert self.index is not None
        return self.index

    async def aclose(self) -> None:
        task, index = self._task, self.index
        self._task = self.index = None
        if task is not None:
            # The flag ends the refresh loop even if a cancel is swallowed inside
            # redis-py (a read cut at the wrong moment); cancel until it is done.
            self._stop.set()
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.1)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if index is not None and self._loop is asyncio.get_running_loop():
            await index.close()


#: How long a search waits for the index to take in the jobs finished since its
#: last pass (an incremental pass is milliseconds unless a burst just finished).
FRESHEN_SECONDS = 2.0


def _consume(task: asyncio.Task[int]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("history index: refresh before a search failed: %s", task.exception())


async def _freshen(index: JobHistoryIndex) -> None:
    """Bring the index up to date before searching, waiting at most FRESHEN_SECONDS;
    a longer pass goes on in the background and the search uses what is there."""
    task = asyncio.ensure_future(index.refresh())
    task.add_done_callback(_consume)
    await asyncio.wait({task}, timeout=FRESHEN_SECONDS)


def _when(raw: str, field: str) -> datetime | None:
    """An ``<input type=datetime-local>`` value (or an ISO date), read as UTC."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ConfigurationError(f"{field} must be a date and time, got {raw!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def parse_query(request: Request) -> tuple[SearchQuery, dict[str, Any]]:
    """The form's fields as a :class:`SearchQuery`, and as values to show back."""
    p = request.query_params
    form: dict[str, Any] = {k: p.get(k, "").strip() for k in (*_TEXT_FIELDS, "since", "until")}
    form["queue"] = p.get("queue", "").strip()
    form["states"] = [s for s in p.getlist("state") if s]
    query = SearchQuery(
        queues=[form["queue"]] if form["queue"] else None,
        states=form["states"] or None,
        since=_when(form["since"], "since"),
        until=_when(form["until"], "until"),
        cursor=p.get("cursor") or None,
        id=form["id"] or None,
        name=form["name"] or None,
        text=form["text"] or None,
        error=form["error"] or None,
        group=form["group"] or None,
    )
    return query, form


async def run_search(dash: Dash, request: Request) -> Response:
    queues = await dash.backend.discover()
    searched = any(
        request.query_params.get(k) for k in (*_TEXT_FIELDS, "queue", "state", "since", "until")
    )
    try:
        query, form = parse_query(request)
    except ConfigurationError as exc:
        return dash.problem(request, 400, str(exc))
    if dash.history is None:
        return dash.problem(request, 404, "search is turned off for this dashboard")
    index = await dash.history.ensure()
    if searched:
        await _freshen(index)
    result = await index.search(query) if searched else None
    stats = await index.stats()
    next_url = ""
    if result is not None and result.next_cursor:
        next_url = str(request.url.include_query_params(cursor=result.next_cursor))
    return dash.render(
        request,
        "search.html",
        queues=queues,
        states=STATES,
        form=form,
        result=result,
        stats=stats,
        next_url=next_url,
    )
