"""The event stream's entries, read back as one event per job.

A script that handles many jobs at once (a bulk add, a worker's claim, a batch
of finished jobs) writes the same event of all of them as one stream entry
instead of one entry each (see ``new_batch`` in ``includes/common.lua``):

    e completed  id "12131415"  id# "2,2,2,2"  rv '{"a":1}nullnull7'  rv# "7,4,4,-"

``id`` holds the ids back to back and ``id#`` their lengths in bytes; every
other field ``F`` with a ``F#`` beside it is a per-job value stored the same
way (``-``: this job has none); the remaining fields are shared by all the
jobs. An entry without ``id#`` is one event, as written.
"""

from __future__ import annotations

__all__ = ["expand", "job_event"]

_LENGTHS = b"id#"


def _column(data: bytes, lengths: bytes, field: bytes) -> list[bytes | None]:
    out: list[bytes | None] = []
    pos = 0
    for token in lengths.split(b","):
        if token == b"-":
            out.append(None)
            continue
        if not token.isdigit():
            raise ValueError(f"event entry: bad length {token!r} in field {field!r}")
        end = pos + int(token)
        out.append(data[pos:end])
        pos = end
    if pos != len(data):
        raise ValueError(f"event entry: the lengths of field {field!r} do not add up")
    return out


def expand(fields: dict[bytes, bytes]) -> list[dict[bytes, bytes]]:
    """The events of one stream entry, in order: the entry itself, or one per job.

    Raises ValueError for a batch entry whose lengths do not match its values.
    """
    if _LENGTHS not in fields:
        return [fields]
    shared: dict[bytes, bytes] = {}
    columns: dict[bytes, list[bytes | None]] = {}
    for key, value in fields.items():
        if key.endswith(b"#"):
            base = key[:-1]
            columns[base] = _column(fields.get(base, b""), value, base)
        elif key + b"#" not in fields:
            shared[key] = value
    ids = columns[b"id"]
    for base, column in columns.items():
        if len(column) != len(ids):
            raise ValueError(f"event entry: {len(column)} values of {base!r} for {len(ids)} ids")
    events = []
    for i in range(len(ids)):
        event = dict(shared)
        for base, column in columns.items():
            piece = column[i]
            if piece is not None:
                event[base] = piece
        events.append(event)
    return events


def job_event(fields: dict[bytes, bytes], job_id: bytes) -> dict[bytes, bytes] | None:
    """The event of job ``job_id`` in one stream entry, or None if it has none."""
    if _LENGTHS not in fields:
        return fields if fields.get(b"id") == job_id else None
    if job_id not in fields.get(b"id", b""):
        return None  # cheap test first: a batch's ids are stored back to back
    for event in expand(fields):
        if event.get(b"id") == job_id:
            return event
    return None
