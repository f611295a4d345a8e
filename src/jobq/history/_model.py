"""Search queries, results, and the text the index holds for a job."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from jobq.errors import ConfigurationError
from jobq.redaction import REDACTED

__all__ = [
    "FINISHED_STATES",
    "LIVE_STATES",
    "IndexStats",
    "QueueIndexStats",
    "SearchHit",
    "SearchQuery",
    "SearchResult",
]

FINISHED_STATES: Final = ("completed", "failed")
LIVE_STATES: Final = ("waiting", "prioritized", "paused", "delayed", "active", "waiting-children")
MAX_LIMIT: Final = 500
# The envelope's tagged scalars (jobq.serialization): index the value, not the tag.
_TAGS: Final = frozenset({"$decimal", "$datetime", "$date", "$uuid"})


def to_ms(value: datetime | int | None, what: str) -> int | None:
    """A bound as epoch ms: an int is ms already, a datetime must be aware."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConfigurationError(f"{what} must be an aware datetime (tzinfo set), got {value}")
        return int(value.timestamp() * 1000)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{what} must be a datetime or epoch ms, got {value!r}")
    return value


def ms_to_dt(ms: int | None) -> datetime | None:
    """Epoch ms as an aware UTC datetime."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def _tuple(value: Sequence[str] | str | None, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = (value,) if isinstance(value, str) else tuple(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise ConfigurationError(f"{what} must hold non-empty strings, got {item!r}")
    return items


@dataclass(frozen=True, kw_only=True, slots=True)
class SearchQuery:
    """What to look for; every field left out matches everything.

    ``id`` and ``name`` match exactly, or as a prefix when they end in ``*``
    (``"invoice-*"``). ``text`` searches the job data and ``error`` the
    failure reason and per-attempt error messages: each word is a term
    (``"acct-42"`` is the phrase *acct 42*), a word ending in ``*`` a prefix,
    and all words must match; quotes, brackets and operators (``NEAR``,
    ``OR``, ``-``) are plain text, never query syntax. ``since``/``until``
    (aware datetimes or epoch ms, ``until`` inclusive) bound the finished
    time of finished jobs and the created time of the others. ``states``
    picks from completed, failed, waiting, prioritized, paused, delayed,
    active, waiting-children. ``limit`` is at most 500; pass the result's
    ``next_cursor`` as ``cursor`` for the next page.
    """

    queues: Sequence[str] | None = None
    states: Sequence[str] | None = None
    id: str | None = None
    name: str | None = None
    text: str | None = None
    error: str | None = None
    group: str | None = None
    since: datetime | int | None = None
    until: datetime | int | None = None
    limit: int = 50
    cursor: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "queues", _tuple(self.queues, "queues"))
        states = _tuple(self.states, "states")
        if states is not None:
            bad = [s for s in states if s not in FINISHED_STATES + LIVE_STATES]
            if bad:
                known = ", ".join(FINISHED_STATES + LIVE_STATES)
                raise ConfigurationError(f"unknown state {bad[0]!r} in states; known: {known}")
        object.__setattr__(self, "states", states)
        if isinstance(self.limit, bool) or not isinstance(self.limit, int):
            raise ConfigurationError(f"limit must be an integer, got {self.limit!r}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ConfigurationError(f"limit must be between 1 and {MAX_LIMIT}, got {self.limit}")
        for name in ("id", "name", "text", "error", "group", "cursor"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigurationError(f"{name} must be a string, got {value!r}")
        since, until = self.since_ms, self.until_ms
        if since is not None and until is not None and since > until:
            raise ConfigurationError(f"since ({self.since}) is after until ({self.until})")

    @property
    def since_ms(self) -> int | None:
        """``since`` as epoch ms."""
        return to_ms(self.since, "since")

    @property
    def until_ms(self) -> int | None:
        """``until`` as epoch ms."""
        return to_ms(self.until, "until")

    def wants(self, state: str) -> bool:
        """Whether a job in ``state`` may match."""
        return self.states is None or state in self.states


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One job found. ``state`` is its state now, read from Redis after the search."""

    queue: str
    id: str
    name: str
    state: str
    group: str | None
    created_ms: int | None
    finished_ms: int | None
    attempts: int
    failed_reason: str | None
    snippet: str
    indexed: bool  # False: found by the live walk of unfinished jobs

    @property
    def created_at(self) -> datetime | None:
        """When the job was added (server clock, UTC)."""
        return ms_to_dt(self.created_ms)

    @property
    def finished_at(self) -> datetime | None:
        """When the job finished (server clock, UTC), None if it has not."""
        return ms_to_dt(self.finished_ms)


@dataclass(frozen=True, slots=True)
class SearchResult:
    """A page of hits, newest first: unfinished jobs, then finished ones.

    ``total`` counts the matches of the whole search (``total_exact`` False:
    at least that many, counting stopped there). ``live_scanned`` jobs were
    read by the live walk; ``live_truncated`` says some state had more jobs
    than the walk reads. ``dropped`` hits were left out because the job is
    gone or no longer in a wanted state. ``indexed_up_to``: every job that
    finished before it was indexed (None: no refresh has completed yet).
    """

    hits: list[SearchHit]
    total: int
    total_exact: bool
    live_scanned: int
    live_truncated: bool
    dropped: int
    indexed_up_to: datetime | None
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class QueueIndexStats:
    """How far the index of one queue is."""

    queue: str
    completed: int  # jobs indexed as completed
    failed: int  # jobs indexed as failed
    cursor_ms: int | None  # finished time of the newest indexed job
    pending: int  # jobs finished after the cursor, not indexed yet


@dataclass(frozen=True, slots=True)
class IndexStats:
    """The index as a whole: per queue, and how fresh it is."""

    queues: list[QueueIndexStats] = field(default_factory=list)
    indexed_up_to: datetime | None = None
    lag_seconds: float | None = None  # server now - indexed_up_to
    passes: int = 0
    path: str | None = None

    @property
    def total(self) -> int:
        """Jobs indexed in all queues."""
        return sum(q.completed + q.failed for q in self.queues)


# -- paging -------------------------------------------------------------------


def encode_cursor(live_skip: int, before_rowid: int | None) -> str:
    """The opaque cursor of the next page: live hits to skip, history before a row."""
    return f"{live_skip}.{'' if before_rowid is None else before_rowid}"


def decode_cursor(cursor: str | None) -> tuple[int, int | None]:
    """Undo :func:`encode_cursor`; a cursor of another making is refused clearly."""
    if not cursor:
        return 0, None
    m = re.fullmatch(r"(\d{1,9})\.(\d{1,19})?", cursor)
    if m is None:
        raise ConfigurationError(f"cursor {cursor!r} is not one a search returned as next_cursor")
    return int(m.group(1)), None if m.group(2) is None else int(m.group(2))


# -- pattern fields (id, name) ---------------------------------------------------


def exact_or_prefix(value: str | None) -> tuple[str | None, bool]:
    """``"abc*"`` -> ("abc", True); ``"abc"`` -> ("abc", False)."""
    if value is None or value in ("", "*"):
        return None, False
    if value.endswith("*"):
        return value.rstrip("*"), True
    return value, False


def matches_pattern(actual: str | None, value: str | None, prefix: bool) -> bool:
    """The live-walk form of an ``id``/``name``/``group`` filter."""
    if value is None:
        return True
    if actual is None:
        return False
    return actual.startswith(value) if prefix else actual == value


# -- full-text terms ---------------------------------------------------------------

_WORD = re.compile(r"\w+")


def _fold(text: str) -> str:
    # Close to FTS5's unicode61 tokenizer with remove_diacritics: case and accents go.
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def tokens(text: str) -> list[str]:
    """Words of ``text`` as the index tokenizes them (lower case, no accents)."""
    return _WORD.findall(_fold(text))


@dataclass(frozen=True, slots=True)
class Phrase:
    """One user word: its tokens in order, the last one a prefix if it ended in ``*``."""

    tokens: tuple[str, ...]
    prefix: bool


def parse_terms(text: str | None) -> list[Phrase]:
    """Split user input into phrases; words with no letter or digit are dropped."""
    if not text:
        return []
    out = []
    for word in text.split():
        prefix = word.endswith("*")
        toks = tuple(tokens(word))
        if toks:
            out.append(Phrase(toks, prefix))
    return out


def fts_expression(column: str, phrases: list[Phrase]) -> str:
    """An FTS5 MATCH expression: every phrase, in ``column``, all required.

    Tokens are letters and digits only and each phrase is double-quoted, so
    no user input reaches FTS5 as syntax.
    """
    parts = []
    for p in phrases:
        quoted = '"' + " ".join(p.tokens) + '"' + ("*" if p.prefix else "")
        parts.append(f"{column} : {quoted}")
    return " AND ".join(parts)


def phrases_match(phrases: list[Phrase], text: str) -> bool:
    """The live-walk form of a full-text filter: every phrase occurs in ``text``."""
    if not phrases:
        return True
    toks = tokens(text)
    for p in phrases:
        n = len(p.tokens)
        head, tail = list(p.tokens[:-1]), p.tokens[-1]
        found = False
        for i in range(len(toks) - n + 1):
            end = toks[i + n - 1]
            if toks[i : i + n - 1] == head and (end.startswith(tail) if p.prefix else end == tail):
                found = True
                break
        if not found:
            return False
    return True


def live_snippet(text: str, phrases: list[Phrase], marks: tuple[str, str], width: int = 160) -> str:
    """About ``width`` characters of ``text`` around the first word a phrase starts
    with, that word marked (the live-walk stand-in for FTS5's snippet)."""
    if phrases:
        lowered = text.lower()
        for p in phrases:
            m = re.search(r"\b" + re.escape(p.tokens[0]) + r"\w*", lowered)
            if m is None:
                continue
            end = m.end()
            start = max(0, m.start() - width // 3)
            head = ("…" if start else "") + text[start : m.start()]
            tail = text[end : end + width - len(head)]
            return head + marks[0] + text[m.start() : end] + marks[1] + tail
    return text[:width]


# -- the text of a job ----------------------------------------------------------------


def _walk(value: Any, redact: frozenset[str], out: list[str]) -> None:
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key in _TAGS:
                out.append(str(inner))
                return
            if key == "$escape" and isinstance(inner, dict):
                value = inner
        for key, inner in value.items():
            out.append(str(key))
            if redact and str(key).lower() in redact:
                out.append(REDACTED)
            else:
                _walk(inner, redact, out)
    elif isinstance(value, list):
        for inner in value:
            _walk(inner, redact, out)
    elif value is None:
        return
    elif value is True or value is False:
        out.append("true" if value else "false")
    else:
        out.append(str(value))


def data_text(raw: bytes | None, redact: frozenset[str], limit: int) -> str:
    """The job data flattened to ``key value key value ...``, secrets replaced.

    Data that is not valid JSON is indexed as raw text only when nothing is to
    be redacted (it could not be redacted reliably).
    """
    if not raw:
        return ""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return "" if redact else raw.decode("utf-8", "replace")[:limit]
    out: list[str] = []
    _walk(value, redact, out)
    return " ".join(out)[:limit]


def error_text(reason: bytes | None, errors: bytes | None, stacks: bool, limit: int) -> str:
    """The failure reason, then each attempt's error type and reason (and stack)."""
    parts: list[str] = []
    if reason:
        parts.append(reason.decode("utf-8", "replace"))
    if errors:
        try:
            items = json.loads(errors)
        except (ValueError, UnicodeDecodeError):
            items = []
        seen = set(parts)
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            for key in ("type", "reason", *(("stack",) if stacks else ())):
                text = item.get(key)
                if isinstance(text, str) and text and text not in seen:
                    seen.add(text)
                    parts.append(text)
    return "\n".join(parts)[:limit]


def group_of(group: bytes | None, options: bytes | None) -> str | None:
    """The job's group: the hash's ``g`` field, else its options."""
    if group:
        return group.decode("utf-8", "replace")
    if options and b'"group"' in options:
        try:
            g = json.loads(options).get("group")
        except (ValueError, AttributeError):
            return None
        return g if isinstance(g, str) else None
    return None
