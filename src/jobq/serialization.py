"""The JSON envelope for job data and return values.

jobq stores payloads as compact UTF-8 JSON; it never uses pickle. Besides the
plain JSON types, a few common Python types round-trip exactly as single-key
*tagged objects*::

    Decimal("1.10")             {"$decimal": "1.10"}     exponent and trailing zeros kept
    datetime(..., tzinfo=...)   {"$datetime": "..."}     ``isoformat()``; naive or aware
    date(2024, 1, 2)            {"$date": "2024-01-02"}
    UUID("...")                 {"$uuid": "..."}

A user dict whose only key starts with ``"$"`` is written as
``{"$escape": {...the dict...}}`` so it can never be mistaken for a tag, now or
when more tags are added; :func:`decode` undoes this.

What comes back is what went in, with these documented exceptions: tuples come
back as lists; subclasses of ``dict``, ``list``, ``str``, ``int`` and ``float``
(``IntEnum``, ``StrEnum``, ``OrderedDict`` ...) come back as the base type; an
aware datetime comes back with a fixed-offset ``timezone`` carrying the same
UTC offset (a ``ZoneInfo`` zone name is not kept, nor is ``fold``).

Refused with :class:`~jobq.errors.SerializationError`, whose message names the
path of the offending item (``data["items"][3]["amount"]: float NaN is not
allowed``): other types (sets, bytes, custom objects), NaN and infinite floats
or Decimals, dict keys that are not ``str`` (JSON would silently turn ``1``
into ``"1"``), strings with lone surrogates (not valid UTF-8), ints beyond
Python's int/str conversion limit, reference cycles, and nesting deeper than
:data:`MAX_DEPTH`.

Speed: the usual payload, a flat dict of plain values, is encoded by
:mod:`msgspec` (about 15x the :mod:`json` encoder) once a type check of its
items has shown it needs nothing of the envelope; payloads without a ``"$"``
string are decoded by it too. Everything else takes the C-accelerated
:mod:`json` encoder plus a verifying C decode (which catches non-``str``
keys); only when something is wrong, or a tuple or ``"$"``-keyed dict needs
rewriting, is the value walked in Python. Both give the same values back.
"""

from __future__ import annotations

import json
import math
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from itertools import chain
from typing import Any, Final, NoReturn
from uuid import UUID

import msgspec

from .errors import PayloadTooLargeError, SerializationError

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_DEPTH",
    "PayloadTooLargeError",
    "SerializationError",
    "decode",
    "encode",
]

DEFAULT_LIMIT: Final = 512 * 1024
"""Default largest encoded payload, in bytes (``max_payload_bytes`` on ``Queue``)."""

MAX_DEPTH: Final = 200
"""Deepest nesting of lists and dicts that :func:`encode` accepts."""

_SUPPORTED: Final = (
    "None, bool, int, float, str, list, tuple, dict with str keys, Decimal, datetime, date and UUID"
)
_HINTS: Final[dict[type, str]] = {
    set: "; use a list",
    frozenset: "; use a list",
    bytes: "; encode it as text first (base64, say)",
    bytearray: "; encode it as text first (base64, say)",
    memoryview: "; encode it as text first (base64, say)",
}


class _ThreadState(threading.local):
    """Per-thread scratch space for the encode and decode hooks."""

    def __init__(self) -> None:
        self.tags = 0
        self.originals: dict[int, tuple[object, dict[str, Any]]] = {}


_state = _ThreadState()


# --------------------------------------------------------------------- encoding


def _default(obj: object) -> dict[str, str]:
    """``json`` hook: turn a supported non-JSON type into its tagged object."""
    if isinstance(obj, Decimal):
        if not obj.is_finite():
            raise ValueError("non-finite Decimal")
        tagged = {"$decimal": Decimal.__str__(obj)}
    elif isinstance(obj, datetime):  # before date: datetime is a subclass of date
        tagged = {"$datetime": datetime.isoformat(obj)}
    elif isinstance(obj, date):
        tagged = {"$date": date.isoformat(obj)}
    elif isinstance(obj, UUID):
        tagged = {"$uuid": UUID.__str__(obj)}
    else:
        raise TypeError(f"object of type {type(obj).__name__} is not JSON-serialisable")
    _state.tags += 1
    return tagged


_FAST_ENCODE: Final = msgspec.json.Encoder().encode
_FAST_DECODE: Final = msgspec.json.Decoder().decode

_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False,
    allow_nan=False,
    separators=(",", ":"),
    default=_default,
)

_KEEP_BRACKETS_AND_QUOTES: Final = bytes(c for c in range(256) if c not in b'[]{}"')
_BRACKETS_AS_PARENS: Final = bytes.maketrans(b"[{]}", b"(())")


def _json_deeper_than(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON ``raw`` nests arrays/objects more than ``limit`` deep.

    All C-speed byte operations; callers skip it when the number of brackets
    (an upper bound on the depth) is small.
    """
    if b"\\" in raw:  # drop escaped backslashes, then escaped quotes
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Now every '"' opens or closes a string. Keep only brackets and quotes, and
    # drop quote pairs with nothing between them: that merges or removes strings
    # without losing any bracket outside them.
    skeleton = raw.translate(None, _KEEP_BRACKETS_AND_QUOTES).replace(b'""', b"")
    if b'"' in skeleton:  # some string holds brackets: keep what is outside strings
        skeleton = b"".join(skeleton.split(b'"')[::2])
    skeleton = skeleton.translate(_BRACKETS_AS_PARENS)
    for _ in range(limit):
        if not skeleton:
            return False
        skeleton = skeleton.replace(b"()", b"")  # peel off the innermost level
    return bool(skeleton)


def encode(value: object, *, limit: int | None = DEFAULT_LIMIT, what: str = "data") -> bytes:
    """Encode ``value`` as compact UTF-8 JSON in jobq's envelope.

    ``limit`` is the largest accepted size in bytes (``None``: no limit) and
    ``what`` names the value in error messages ("data", "return value").

    Raises :class:`~jobq.errors.SerializationError` (naming the path of the
    first offending item) if the value cannot be stored exactly, and
    :class:`~jobq.errors.PayloadTooLargeError` if the encoding is over
    ``limit``. Tuples are stored as lists.
    """
    flat = _flat_exact(value)
    if flat:
        try:
            raw = _FAST_ENCODE(value)
        except (TypeError, ValueError, OverflowError):  # a lone surrogate, say
            pass  # the path below names the problem
        else:
            if b'{"$' not in raw:  # else its only key may need escaping: see below
                if limit is not None and len(raw) > limit:
                    _raise_too_large(len(raw), limit, what)
                return raw
    state = _state
    state.tags = 0
    try:
        text = _ENCODER.encode(value)
        raw = text.encode("utf-8")
    except (TypeError, ValueError, RecursionError):  # incl. UnicodeEncodeError
        raw = _encode_slow(value, what)
    else:
        if limit is not None and len(raw) > limit:
            # Rewriting can only make it longer, so it is too large either way.
            _raise_too_large(len(raw), limit, what)
        if (
            text.count('{"$') != state.tags  # a user dict needs escaping
            or (text.count("[") + text.count("{") > MAX_DEPTH and _json_deeper_than(raw))
            or not (flat or _decodes_back_to(text, value))  # non-str keys, tuples
        ):
            raw = _encode_slow(value, what)
    if limit is not None and len(raw) > limit:
        _raise_too_large(len(raw), limit, what)
    return raw


_FLAT_SCALARS: Final = frozenset({str, int, float, bool, type(None)})
_JUST_DICT: Final = frozenset({dict})
_JUST_STR: Final = frozenset({str})
_NO_FLOAT_SCALARS: Final = _FLAT_SCALARS - {float}
# Digits as "0", the rest as " ": 19 digits in a row may be an int past 64
# bits (or digits in a string). A byte translation is ~10x faster than a regex.
_DIGITS_AS_ZERO: Final = bytes(48 if 48 <= c <= 57 else 32 for c in range(256))
_LONG_DIGITS: Final = b"0" * 19


def encode_flat_batch(values: Sequence[object], limit: int | None) -> list[bytes] | None:
    """What :func:`encode` gives for each of ``values``, or None to use it.

    For a batch of flat dicts (str keys, str/int/bool/None values: the usual
    bulk add), checked over the whole batch at once instead of item by item;
    anything else (floats, nesting, a long run of digits, a ``"$"`` key, a
    value over ``limit``) is None, for :func:`encode` to handle (and name).
    """
    if not values:
        return []
    if frozenset(map(type, values)) != _JUST_DICT or max(map(len, values)) > 32:  # type: ignore[arg-type]
        return None
    dicts: Sequence[dict[Any, Any]] = values  # type: ignore[assignment]
    if frozenset(map(type, chain.from_iterable(dicts))) != _JUST_STR:
        return None
    if not frozenset(map(type, chain.from_iterable(map(dict.values, dicts)))) <= _NO_FLOAT_SCALARS:
        return None
    try:
        out = list(map(_FAST_ENCODE, dicts))
    except (TypeError, ValueError, OverflowError):
        return None
    joined = b"".join(out)
    if b'{"$' in joined or _LONG_DIGITS in joined.translate(_DIGITS_AS_ZERO):
        return None
    if limit is not None and max(map(len, out)) > limit:
        return None
    return out


_INT64_MIN: Final = -(2**63)
_UINT64_MAX: Final = 2**64 - 1


def _flat_exact(value: object) -> bool:
    """Whether ``value`` is a dict of ``str`` keys and plain scalar values.

    Such a value (the usual job payload) comes back from its JSON exactly once
    an encoder has taken it (lone surrogates raise there), so the verifying
    decode can be skipped. Exact types only: a subclass may encode to
    something else. Floats must be finite and ints within 64 bits, which
    msgspec would otherwise write as null or past Python's int/str limit.
    """
    if type(value) is not dict or len(value) > 32:
        return False
    scalars = _FLAT_SCALARS
    for k, v in value.items():
        kind = type(v)
        if type(k) is not str or kind not in scalars:
            return False
        if kind is float:
            if not math.isfinite(v):
                return False
        elif kind is int and not _INT64_MIN <= v <= _UINT64_MAX:
            return False
    return True


def _decodes_back_to(text: str, value: object) -> bool:
    """Whether decoding ``text`` gives back something equal to ``value``."""
    try:
        return bool(_loads(text) == value)
    except Exception:
        return False


def _raise_too_large(size: int, limit: int, what: str) -> NoReturn:
    raise PayloadTooLargeError(
        f"{what}: encoded size is {size} bytes, over the limit of {limit} bytes; store "
        f"large blobs elsewhere and pass a reference, or raise the limit with "
        f"Queue(..., max_payload_bytes=N) (None for no limit)"
    )


def _encode_slow(value: object, what: str) -> bytes:
    """Validate ``value`` item by item, then encode a rewritten copy of it."""
    bad = _find_bad_path(value)
    if bad is not None:
        path, problem = bad
        raise SerializationError(f"{what}{path}: {problem}")
    try:
        return _ENCODER.encode(_rewritten(value)).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:  # a misbehaving subclass, say
        raise SerializationError(f"{what}: cannot be encoded: {exc}") from exc


def _is_container(item: object) -> bool:
    return isinstance(item, (dict, list, tuple))


def _scalar_problem(item: object) -> str | None:
    """Why ``item`` (not a list, tuple or dict) cannot be encoded, or ``None``."""
    if item is None or isinstance(item, bool):
        return None
    if isinstance(item, str):
        return None if _is_utf8(item) else "string contains a lone surrogate (not valid UTF-8)"
    if isinstance(item, int):
        if item.bit_length() > 10_000:
            try:
                int.__repr__(item)
            except ValueError:
                return (
                    f"int with more than {sys.get_int_max_str_digits()} digits is over "
                    "Python's int/str conversion limit"
                )
        return None
    if isinstance(item, float):
        if math.isfinite(item):
            return None
        name = "NaN" if math.isnan(item) else ("Infinity" if item > 0 else "-Infinity")
        return f"float {name} is not allowed (JSON has no NaN or Infinity)"
    if isinstance(item, Decimal):
        return None if item.is_finite() else f"Decimal {item} is not allowed (only finite ones)"
    if isinstance(item, (date, UUID)):  # date includes datetime
        return None
    hint = _HINTS.get(type(item), "")
    return (
        f"object of type {type(item).__name__} is not JSON-serialisable{hint} "
        f"(supported: {_SUPPORTED})"
    )


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _entries(container: object) -> Iterator[tuple[object, object]]:
    if isinstance(container, dict):
        return iter(container.items())
    assert isinstance(container, (list, tuple))
    return enumerate(container)


def _key_segment(key: str) -> str:
    shown = key if len(key) <= 60 else key[:57] + "..."
    literal = json.dumps(shown, ensure_ascii=False)
    if not _is_utf8(literal):
        literal = json.dumps(shown)
    return f"[{literal}]"


def _format_path(segments: list[str]) -> str:
    if len(segments) <= 24:
        return "".join(segments)
    return f"{''.join(segments[:10])}...{''.join(segments[-10:])} (a path of {len(segments)} steps)"


def _find_bad_path(value: object) -> tuple[str, str] | None:
    """Find the first item of ``value`` that cannot be encoded.

    Returns ``(path, problem)``, the path written like ``["items"][3]`` (empty
    for ``value`` itself), or ``None`` if everything can be encoded. Iterative,
    so any depth (and any reference cycle) is safe.
    """
    if not _is_container(value):
        problem = _scalar_problem(value)
        return None if problem is None else ("", problem)
    path: list[str] = []  # one segment per frame but the first
    frames: list[tuple[Iterator[tuple[object, object]], object]] = [(_entries(value), value)]
    on_path = {id(value)}
    while frames:
        entries, container = frames[-1]
        entry = next(entries, None)
        if entry is None:
            frames.pop()
            on_path.discard(id(container))
            if path:
                path.pop()
            continue
        key, child = entry
        if isinstance(container, dict):
            if not isinstance(key, str):
                return (
                    _format_path(path),
                    f"dict key {key!r} is of type {type(key).__name__}; JSON object keys "
                    "must be str (JSON would silently turn it into a string)",
                )
            if not _is_utf8(key):
                return _format_path(path), f"dict key {key!r} contains a lone surrogate"
            segment = _key_segment(key)
        else:
            segment = f"[{key}]"
        if not _is_container(child):
            problem = _scalar_problem(child)
            if problem is not None:
                return _format_path([*path, segment]), problem
            continue
        path.append(segment)
        if id(child) in on_path:
            return _format_path(path), "circular reference (the value contains itself)"
        if len(frames) >= MAX_DEPTH:
            return _format_path(path), f"nested deeper than {MAX_DEPTH} levels"
        frames.append((_entries(child), child))
        on_path.add(id(child))
    return None


def _shell(item: object) -> tuple[object, dict[str, object] | list[object] | None]:
    """Return (what to store in the parent, the empty container to fill or None)."""
    if isinstance(item, dict):
        new: dict[str, object] = {}
        if len(item) == 1 and next(iter(item)).startswith("$"):
            return {"$escape": new}, new
        return new, new
    if isinstance(item, (list, tuple)):
        items: list[object] = []
        return items, items
    return item, None


def _rewritten(value: object) -> object:
    """Copy a valid ``value``: tuples become lists, ``"$"``-keyed dicts get escaped.

    Iterative; ``value`` must have passed :func:`_find_bad_path`.
    """
    top, fill = _shell(value)
    todo: list[tuple[object, dict[str, object] | list[object]]] = []
    if fill is not None:
        todo.append((value, fill))
    while todo:
        source, target = todo.pop()
        for key, child in _entries(source):
            stored, child_fill = _shell(child)
            if isinstance(target, dict):
                target[str(key)] = stored
            else:
                target.append(stored)
            if child_fill is not None:
                todo.append((child, child_fill))
    return top


# --------------------------------------------------------------------- decoding


def _parse_decimal(text: str) -> Decimal:
    number = Decimal(text)
    if not number.is_finite():
        raise ValueError("non-finite Decimal")
    return number


_TAG_PARSERS: Final[dict[str, Callable[[str], object]]] = {
    "$decimal": _parse_decimal,
    "$datetime": datetime.fromisoformat,
    "$date": date.fromisoformat,
    "$uuid": UUID,
}


def _object_hook(obj: dict[str, Any]) -> Any:
    """``json`` hook: turn tagged objects back into Python values."""
    if len(obj) != 1:
        return obj
    for key in obj:
        if key.startswith("$"):
            return _untag(obj, key)
    return obj


def _untag(obj: dict[str, Any], key: str) -> Any:
    # json calls the hook innermost-first, so by the time an {"$escape": ...} is
    # seen its content has already been through the hook. ``originals`` maps
    # each object the hook made to the dict it was made from, so the escape can
    # hand back the user's dict exactly as written.
    originals = _state.originals
    content = obj[key]
    if key == "$escape":
        made_from = originals.get(id(content))
        if made_from is not None:
            result: object = made_from[1]
        elif isinstance(content, dict):
            result = content
        else:
            return obj
    else:
        parse = _TAG_PARSERS.get(key)
        if parse is None or type(content) is not str:
            return obj
        try:
            result = parse(content)
        except (ValueError, ArithmeticError):  # decimal.InvalidOperation is the latter
            return obj
    originals[id(result)] = (result, obj)
    return result


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


_DECODER: Final = json.JSONDecoder(object_hook=_object_hook, parse_constant=_refuse_constant)


def _loads(text: str) -> Any:
    try:
        return _DECODER.decode(text)
    finally:
        originals = _state.originals
        if originals:
            originals.clear()


def decode(raw: bytes | str, *, what: str = "data") -> Any:
    """Decode a payload written by :func:`encode`.

    ``what`` names the payload in error messages. Raises
    :class:`~jobq.errors.SerializationError` for bytes that are not UTF-8 or
    text that is not JSON, NaN and Infinity included (a corrupt record). A
    ``"$"``-keyed object that is not a valid tag (which :func:`encode` never
    writes) is returned as a plain dict.
    """
    if type(raw) is bytes and b'"$' not in raw:  # no tag nor escape in it
        try:
            return _FAST_DECODE(raw)
        except (msgspec.MsgspecError, RecursionError):
            pass  # the path below gives the same value or names the problem
    if isinstance(raw, str):
        text = raw
    else:
        try:
            text = str(raw, "utf-8")
        except UnicodeDecodeError as exc:
            raise SerializationError(
                f"{what}: corrupt record, not valid UTF-8 ({exc.reason} at byte {exc.start})"
            ) from None
    try:
        return _loads(text)
    except (ValueError, RecursionError) as exc:
        raise SerializationError(f"{what}: corrupt record, not valid JSON ({exc})") from None
