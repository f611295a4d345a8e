"""The SQLite side of the history index: schema, writes, queries.

Every method here is blocking; :class:`~jobq.history.JobHistoryIndex` runs
writes on one dedicated thread and, for a file database, reads on another
(WAL lets them overlap).

Row ids carry the finished time: ``rowid = finished_ms << 20 | hash(queue, id)``
(a collision takes the next free id). Newest-first is then ``ORDER BY rowid
DESC``, which FTS5 and every secondary index (which store the rowid after
their key) serve in order, and a time range is a rowid range, so a search
reads only the rows of its page, never the whole match set.
"""

from __future__ import annotations

import sqlite3
import threading
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from jobq.errors import ConfigurationError

from . import _model

__all__ = ["FIELDS", "FIELDS_B", "HistoryFilter", "HistoryStore", "Row", "RowPrep"]

SCHEMA_VERSION: Final = "2"
ROWID_SHIFT: Final = 20
_ROWID_MASK: Final = (1 << ROWID_SHIFT) - 1
#: Job hash fields the index reads (HMGET order); after them the further pieces
#: of the data (jobq.job.DATA_PIECE_FIELDS).
FIELDS: Final = ("n", "d", "g", "o", "t", "ft", "a", "fr", "er", *(f"d{i}" for i in range(1, 16)))
#: The same, encoded once (redis-py packs bytes arguments without re-encoding them).
FIELDS_B: Final = tuple(f.encode() for f in FIELDS)
_MAX_PREFIX_CHAR: Final = "\U0010ffff"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (
  queue TEXT NOT NULL, state TEXT NOT NULL, score INTEGER NOT NULL, ids TEXT NOT NULL,
  PRIMARY KEY (queue, state)
);
CREATE TABLE IF NOT EXISTS jobs (
  rowid INTEGER PRIMARY KEY,
  queue TEXT NOT NULL,
  id TEXT NOT NULL,
  name TEXT NOT NULL,
  state TEXT NOT NULL,
  grp TEXT,
  created INTEGER,
  finished INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  failed_reason TEXT,
  data TEXT NOT NULL,
  error TEXT NOT NULL,
  -- Exact-value tokens for FTS5 (hex: one token each, any characters), so a text
  -- search intersects queue, name, state and group inside FTS5 (see where()).
  tags TEXT GENERATED ALWAYS AS (
    'q' || hex(queue) || ' n' || hex(name) || ' s' || substr(state, 1, 1)
    || ifnull(' g' || hex(grp), '')
  ) VIRTUAL,
  UNIQUE (queue, id)
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (queue);
CREATE INDEX IF NOT EXISTS jobs_queue_state ON jobs (queue, state);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE INDEX IF NOT EXISTS jobs_name ON jobs (name);
CREATE INDEX IF NOT EXISTS jobs_grp ON jobs (grp) WHERE grp IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_id ON jobs (id);
CREATE VIRTUAL TABLE IF NOT EXISTS job_fts USING fts5(
  data, error, tags, content='jobs', content_rowid='rowid',
  tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS jobs_ai AFTER INSERT ON jobs BEGIN
  INSERT INTO job_fts (rowid, data, error, tags)
  VALUES (new.rowid, new.data, new.error, new.tags);
END;
CREATE TRIGGER IF NOT EXISTS jobs_ad AFTER DELETE ON jobs BEGIN
  INSERT INTO job_fts (job_fts, rowid, data, error, tags)
  VALUES ('delete', old.rowid, old.data, old.error, old.tags);
END;
CREATE TRIGGER IF NOT EXISTS jobs_au AFTER UPDATE ON jobs BEGIN
  INSERT INTO job_fts (job_fts, rowid, data, error, tags)
  VALUES ('delete', old.rowid, old.data, old.error, old.tags);
  INSERT INTO job_fts (rowid, data, error, tags)
  VALUES (new.rowid, new.data, new.error, new.tags);
END;
"""

_UPSERT = """
INSERT INTO jobs (rowid, queue, id, name, state, grp, created, finished, attempts,
                  failed_reason, data, error)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (queue, id) DO UPDATE SET
  rowid = excluded.rowid, name = excluded.name, state = excluded.state, grp = excluded.grp,
  created = excluded.created, finished = excluded.finished, attempts = excluded.attempts,
  failed_reason = excluded.failed_reason, data = excluded.data, error = excluded.error
"""

_COLUMNS = (
    "j.rowid, j.queue, j.id, j.name, j.state, j.grp, j.created, j.finished, j.attempts, "
    "j.failed_reason"
)

Row = tuple[int, str, str, str, str, str | None, int | None, int, int, str | None, str, str]
#: rowid, queue, id, name, state, group, created, finished, attempts, reason, snippet
Found = tuple[int, str, str, str, str, str | None, int | None, int, int, str | None, str]


def _hex(value: str) -> str:
    return value.encode("utf-8").hex()


def check_fts5() -> None:
    """Raise a clear error when this Python's SQLite lacks FTS5."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE VIRTUAL TABLE probe USING fts5(x)")
    except sqlite3.OperationalError as exc:
        raise ConfigurationError(
            f"the job history index needs SQLite's FTS5 extension, which this Python's sqlite3 "
            f"(SQLite {sqlite3.sqlite_version}) lacks ({exc}); use a Python built with FTS5 "
            "(the python.org and most distribution builds are) or pip install pysqlite3-binary"
        ) from exc
    finally:
        conn.close()


def row_id(finished: int, queue: str, job_id: str) -> int:
    """The preferred rowid of a job (see the module docstring)."""
    return (finished << ROWID_SHIFT) | (zlib.crc32(f"{queue}\0{job_id}".encode()) & _ROWID_MASK)


@dataclass(frozen=True, slots=True)
class RowPrep:
    """How raw job hashes become rows: what to redact, how much text to keep."""

    redact: frozenset[str]
    max_text: int
    stacks: bool

    def row(
        self, queue: str, state: str, job_id: str, score: int, raw: Sequence[bytes | None]
    ) -> Row | None:
        """A row from the HMGET of :data:`FIELDS`, or None if the job is gone."""
        n, d, g, o, t, ft, a, fr, er = raw[:9]
        if d is not None and raw[9] is not None:
            d = b"".join(p for p in (d, *raw[9:]) if p is not None)  # the data's pieces
        if n is None:
            return None
        finished = int(ft) if ft else score
        return (
            row_id(finished, queue, job_id),
            queue,
            job_id,
            n.decode("utf-8", "replace"),
            state,
            _model.group_of(g, o),
            int(t) if t else None,
            finished,
            int(a) if a else 0,
            fr.decode("utf-8", "replace") if fr else None,
            _model.data_text(d, self.redact, self.max_text),
            _model.error_text(fr, er, self.stacks, self.max_text) if fr or er else "",
        )


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    """A search turned into SQL terms."""

    queues: tuple[str, ...] | None
    states: tuple[str, ...] | None
    id: str | None
    id_prefix: bool
    name: str | None
    name_prefix: bool
    group: str | None
    since_ms: int | None
    until_ms: int | None
    match: str | None  # FTS5 expression over data/error, already safe
    snippet_column: int = 0  # 0 data, 1 error

    def _tags(self) -> str:
        """FTS5 terms for the column filters (the SQL terms still check them exactly)."""
        terms = []
        if self.queues is not None:
            terms.append(" OR ".join(f'tags : "q{_hex(q)}"' for q in self.queues))
        if self.states is not None:
            terms.append(" OR ".join(f'tags : "s{s[0]}"' for s in self.states))
        if self.name is not None and (self.name or not self.name_prefix):
            star = "*" if self.name_prefix else ""
            terms.append(f'tags : "n{_hex(self.name)}"{star}')
        if self.group is not None:
            terms.append(f'tags : "g{_hex(self.group)}"')
        return " AND ".join(f"({t})" for t in terms)

    def where(self, before_rowid: int | None) -> tuple[list[str], list[Any]]:
        """WHERE terms and their parameters (``rowid`` means the driving table's)."""
        terms: list[str] = []
        args: list[Any] = []
        if self.match is not None:
            tags = self._tags()
            terms.append("job_fts MATCH ?")
            args.append(f"({self.match}) AND {tags}" if tags else self.match)
        lo = None if self.since_ms is None else self.since_ms << ROWID_SHIFT
        hi = None if self.until_ms is None else (self.until_ms + 1) << ROWID_SHIFT
        if before_rowid is not None:
            hi = before_rowid if hi is None else min(hi, before_rowid)
        rid = "job_fts.rowid" if self.match is not None else "j.rowid"
        if lo is not None:
            terms.append(f"{rid} >= ?")
            args.append(lo)
        if hi is not None:
            terms.append(f"{rid} < ?")
            args.append(hi)
        for column, values in (("j.queue", self.queues), ("j.state", self.states)):
            if values is not None:
                terms.append(f"{column} IN ({','.join('?' * len(values))})")
                args.extend(values)
        for column, value, prefix in (
            ("j.id", self.id, self.id_prefix),
            ("j.name", self.name, self.name_prefix),
        ):
            if value is None:
                continue
            if prefix:
                terms.append(f"{column} >= ? AND {column} < ?")
                args.extend((value, value + _MAX_PREFIX_CHAR))
            else:
                terms.append(f"{column} = ?")
                args.append(value)
        if self.group is not None:
            terms.append("j.grp = ?")
            args.append(self.group)
        return terms, args

    def source(self) -> tuple[str, str]:
        """FROM clause and the rowid to order by.

        With a text search FTS5 drives (CROSS JOIN pins the loop order): left
        free, SQLite may walk a column index and run the MATCH once per row,
        hundreds of times slower.
        """
        if self.match is not None:
            return "job_fts CROSS JOIN jobs j ON j.rowid = job_fts.rowid", "job_fts.rowid"
        return "jobs j", "j.rowid"


class HistoryStore:
    """One SQLite database: a writer connection, and a reader one for a file."""

    def __init__(self, path: str | None, prefix: str) -> None:
        check_fts5()
        self.path = path
        self._lock = threading.Lock()
        self.writer = self._connect(path or ":memory:")
        self._setup(prefix)
        # An in-memory database is private to its connection: read through the writer.
        self.reader = self.writer if path is None else self._connect(path)
        self.reader_lock = self._lock if path is None else threading.Lock()

    @staticmethod
    def _connect(target: str) -> sqlite3.Connection:
        conn = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 10000")
        if target != ":memory:":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("PRAGMA cache_size = -65536")
        return conn

    def _setup(self, prefix: str) -> None:
        c = self.writer
        has_meta = c.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if has_meta:
            meta = dict(c.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("schema") != SCHEMA_VERSION or meta.get("prefix") != prefix:
                # A cache of another layout or another prefix: start again.
                for table in ("job_fts", "jobs", "cursors", "meta"):
                    c.execute(f"DROP TABLE IF EXISTS {table}")
        c.executescript(_SCHEMA)
        c.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        c.execute("INSERT OR IGNORE INTO meta VALUES ('prefix', ?)", (prefix,))

    def close(self) -> None:
        """Close both connections."""
        with self._lock:
            if self.reader is not self.writer:
                self.reader.close()
            self.writer.close()

    # -- writer ----------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        """One value of the meta table."""
        with self._lock:
            row = self.writer.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set one value of the meta table."""
        with self._lock:
            self.writer.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def get_cursor(self, queue: str, state: str) -> tuple[int, frozenset[str]] | None:
        """Score and ids at that score of the newest job indexed from a finished set."""
        with self._lock:
            row = self.writer.execute(
                "SELECT score, ids FROM cursors WHERE queue = ? AND state = ?", (queue, state)
            ).fetchone()
        if row is None:
            return None
        return int(row[0]), frozenset(x for x in str(row[1]).split("\n") if x)

    def known(self, queue: str, lo_ms: int, hi_ms: int) -> dict[str, int]:
        """Ids (with their finished time) indexed for ``queue`` finished in [lo, hi]."""
        with self._lock:
            rows = self.writer.execute(
                "SELECT id, finished FROM jobs WHERE rowid >= ? AND rowid < ? AND +queue = ?",
                (lo_ms << ROWID_SHIFT, (hi_ms + 1) << ROWID_SHIFT, queue),
            ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def write(
        self,
        queue: str,
        state: str,
        items: Iterable[tuple[str, int, Sequence[bytes | None]]],
        cursor: tuple[int, Iterable[str]],
        prep: RowPrep,
    ) -> int:
        """Index a batch read from one finished set and move its cursor, in one transaction.

        Returns how many jobs were written (a job indexed before is replaced).
        """
        rows = [r for r in (prep.row(queue, state, i, s, raw) for i, s, raw in items) if r]
        score, ids = cursor
        with self._lock:
            c = self.writer
            # No SAVEPOINT here: FTS5 flushes its pending terms at every statement
            # inside one, which makes a bulk insert about four times slower.
            for careful in (False, True):
                c.execute("BEGIN IMMEDIATE")
                try:
                    if careful:
                        self._upsert_one_by_one(c, rows)
                    else:
                        c.executemany(_UPSERT, rows)
                    c.execute(
                        "INSERT OR REPLACE INTO cursors VALUES (?, ?, ?, ?)",
                        (queue, state, score, "\n".join(sorted(ids))),
                    )
                    c.execute("COMMIT")
                    break
                except sqlite3.IntegrityError:
                    c.execute("ROLLBACK")
                    if careful:
                        raise
                except BaseException:
                    c.execute("ROLLBACK")
                    raise
        return len(rows)

    @staticmethod
    def _upsert_one_by_one(c: sqlite3.Connection, rows: list[Row]) -> None:
        """Two jobs wanted one rowid (same ms, same 20-bit hash): the later one
        takes the next free rowid."""
        for row in rows:
            rid = row[0]
            while True:
                taken = c.execute("SELECT queue, id FROM jobs WHERE rowid = ?", (rid,)).fetchone()
                if taken is None or tuple(taken) == (row[1], row[2]):
                    break
                rid += 1
            c.execute(_UPSERT, (rid, *row[1:]))

    def delete(self, pairs: Iterable[tuple[str, str]]) -> int:
        """Forget jobs (queue, id) that no longer exist."""
        with self._lock:
            c = self.writer
            c.execute("BEGIN IMMEDIATE")
            try:
                cur = c.executemany("DELETE FROM jobs WHERE queue = ? AND id = ?", list(pairs))
                n = cur.rowcount
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return max(0, n)

    def prune(self, queue: str, state: str, below_ms: int | None, limit: int) -> int:
        """Forget up to ``limit`` jobs of ``queue`` indexed in ``state`` that finished
        before ``below_ms`` (None: all): retention has deleted them."""
        hi = (1 << 63) - 1 if below_ms is None else below_ms << ROWID_SHIFT
        with self._lock:
            c = self.writer
            c.execute("BEGIN IMMEDIATE")
            try:
                cur = c.execute(
                    "DELETE FROM jobs WHERE rowid IN (SELECT rowid FROM jobs "
                    "WHERE queue = ? AND state = ? AND rowid < ? LIMIT ?)",
                    (queue, state, hi, limit),
                )
                n = cur.rowcount
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        return max(0, n)

    # -- reader ----------------------------------------------------------------
    def search(
        self, f: HistoryFilter, before_rowid: int | None, limit: int, marks: tuple[str, str]
    ) -> list[Found]:
        """One page of matching rows, newest finished first."""
        source, order = f.source()
        terms, args = f.where(before_rowid)
        if f.match is not None:
            snippet = f"snippet(job_fts, {int(f.snippet_column)}, ?, ?, '…', 16)"
            args = [marks[0], marks[1], *args]
        else:
            snippet = "substr(j.data, 1, 160)"
        where = f" WHERE {' AND '.join(terms)}" if terms else ""
        sql = f"SELECT {_COLUMNS}, {snippet} FROM {source}{where} ORDER BY {order} DESC LIMIT ?"
        with self.reader_lock:
            return [tuple(r) for r in self.reader.execute(sql, (*args, limit))]

    def count(self, f: HistoryFilter, cap: int) -> int:
        """How many rows match, counting at most ``cap + 1``."""
        source, _ = f.source()
        terms, args = f.where(None)
        where = f" WHERE {' AND '.join(terms)}" if terms else ""
        sql = f"SELECT count(*) FROM (SELECT 1 FROM {source}{where} LIMIT ?)"
        with self.reader_lock:
            row = self.reader.execute(sql, (*args, cap + 1)).fetchone()
        return int(row[0])

    def plan(self, f: HistoryFilter, limit: int, *, count: bool = False) -> list[str]:
        """The query plan of a search page, or of its count (for tests and tuning)."""
        source, order = f.source()
        terms, args = f.where(None)
        where = f" WHERE {' AND '.join(terms)}" if terms else ""
        if count:
            sql = f"SELECT count(*) FROM (SELECT 1 FROM {source}{where} LIMIT ?)"
        else:
            sql = f"SELECT j.rowid FROM {source}{where} ORDER BY {order} DESC LIMIT ?"
        with self.reader_lock:
            return [
                str(r[3]) for r in self.reader.execute("EXPLAIN QUERY PLAN " + sql, (*args, limit))
            ]

    def counts(self) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
        """Rows per (queue, state), and the cursor score of each (queue, state)."""
        with self.reader_lock:
            rows = self.reader.execute(
                "SELECT queue, state, count(*) FROM jobs GROUP BY queue, state"
            ).fetchall()
            cursors = self.reader.execute("SELECT queue, state, score FROM cursors").fetchall()
        return (
            {(str(q), str(s)): int(n) for q, s, n in rows},
            {(str(q), str(s)): int(n) for q, s, n in cursors},
        )
