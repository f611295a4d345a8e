"""Indexed search over job history: by id, name, data text, error text, group, time.

:class:`JobHistoryIndex` follows each queue's ``completed`` and ``failed`` sets
by finished time and copies the jobs it has not seen into a local SQLite
database (FTS5 for the data and error text, ordinary indexes for the rest).
The engine's scripts do no extra work for it. Unfinished jobs (waiting,
delayed, active...) are few, so a search reads them live, a bounded number
per state, and merges them in. Before a search returns, one round trip reads
every hit's current state: a retried job shows it is waiting again, a job
that retention deleted is dropped from the result and from the index.

::

    async with JobHistoryIndex(["reports", "mail"], connection=url,
                               path="history.db", redact={"password"}) as index:
        await index.refresh()                  # or: asyncio.create_task(index.run())
        result = await index.search(SearchQuery(text="acct-42", states=["failed"]))
        for hit in result.hits:
            print(hit.queue, hit.id, hit.state, hit.snippet)

See docs/search.md for what is indexed, freshness, redaction and limits.
"""

from __future__ import annotations

from ._index import JobHistoryIndex, QueueSource
from ._model import (
    FINISHED_STATES,
    LIVE_STATES,
    IndexStats,
    QueueIndexStats,
    SearchHit,
    SearchQuery,
    SearchResult,
)

__all__ = [
    "FINISHED_STATES",
    "LIVE_STATES",
    "IndexStats",
    "JobHistoryIndex",
    "QueueIndexStats",
    "QueueSource",
    "SearchHit",
    "SearchQuery",
    "SearchResult",
]
