"""Tests for jobq.serialization: the JSON envelope for job data and return values."""

from __future__ import annotations

import json
import random
import sys
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from jobq.errors import PayloadError, PayloadTooLargeError, SerializationError
from jobq.serialization import (
    DEFAULT_LIMIT,
    MAX_DEPTH,
    _encode_slow,
    _flat_exact,
    _json_deeper_than,
    decode,
    encode,
    encode_flat_batch,
)

IST = timezone(timedelta(hours=5, minutes=30))


def short_id(value: object) -> str:
    try:
        text = repr(value)
    except ValueError:  # an int over the int/str conversion limit
        text = "huge int"
    return text if len(text) <= 40 else text[:37] + "..."


def listify(value: object) -> object:
    """What ``value`` should decode to: tuples turned into lists."""
    if isinstance(value, (list, tuple)):
        return [listify(v) for v in value]
    if isinstance(value, dict):
        return {k: listify(v) for k, v in value.items()}
    return value


def roundtrip(value: object) -> Any:
    return decode(encode(value))


def assert_same(a: object, b: object) -> None:
    """Deep equality that also checks types and Decimal exponents."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert isinstance(b, dict)
        assert list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, list):
        assert isinstance(b, list)
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, Decimal):
        assert isinstance(b, Decimal)
        assert a.as_tuple() == b.as_tuple()
    elif isinstance(a, datetime):
        assert isinstance(b, datetime)
        assert a == b
        assert a.utcoffset() == b.utcoffset()
        assert a.isoformat() == b.isoformat()
    elif isinstance(a, float) and a == 0:
        assert repr(a) == repr(b)
    else:
        assert a == b


# ----------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -1,
        2**63,
        -(2**200),
        10**4000,
        1.5,
        -0.0,
        1e300,
        5e-324,
        0.1,
        "",
        "plain",
        "héllo ✓ 🎉 \u0000 \n \" \\ ' </script>",
        [],
        {},
        [1, "a", None, True, 2.5],
        {"a": 1, "b": [1, 2, {"c": None}], "": "empty key", "é": "é"},
        Decimal("1.10"),
        Decimal("1.1"),
        Decimal("-0"),
        Decimal("0E-10"),
        Decimal("1E+999999"),
        Decimal("-12345678901234567890.000000000000000000001"),
        Decimal("3." + "14159265358979" * 100),
        datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=IST),
        datetime(2024, 1, 2, 3, 4, 5),
        datetime(2024, 1, 2, 3, 4, 5, 6),
        datetime(1, 1, 1),
        datetime(2024, 1, 2, tzinfo=UTC),
        datetime(2024, 1, 2, tzinfo=timezone(-timedelta(hours=3, minutes=15, seconds=7))),
        date(2024, 1, 2),
        date(999, 12, 31),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        uuid.uuid4(),
    ],
    ids=short_id,
)
def test_roundtrip_exact(value: object) -> None:
    assert_same(value, roundtrip(value))


def test_roundtrip_nested_mixture() -> None:
    value = {
        "order": {
            "id": uuid.UUID(int=7),
            "placed": datetime(2024, 5, 6, 7, 8, 9, 10, tzinfo=IST),
            "ship_by": date(2024, 5, 10),
            "lines": [
                {"sku": "A-1", "qty": 3, "price": Decimal("9.90"), "tags": ["x", "y"]},
                {"sku": "B-2", "qty": 1, "price": Decimal("100"), "meta": {"$decimal": "1.10"}},
            ],
            "total": Decimal("129.70"),
            "flags": [True, False, None],
        },
        "weights": [0.5, -0.25, 1e-9],
        "big": 2**100,
    }
    assert_same(value, roundtrip(value))


def test_decimal_exponent_is_kept() -> None:
    a, b = encode(Decimal("1.10")), encode(Decimal("1.1"))
    assert a == b'{"$decimal":"1.10"}'
    assert b == b'{"$decimal":"1.1"}'
    assert str(decode(a)) == "1.10"
    assert str(decode(b)) == "1.1"
    assert decode(a).as_tuple() != decode(b).as_tuple()


def test_decimal_huge_precision() -> None:
    digits = "9" * 5000
    value = Decimal(f"{digits}.{digits}")
    back = roundtrip(value)
    assert str(back) == str(value)
    assert back.as_tuple() == value.as_tuple()


def test_aware_datetime_keeps_offset() -> None:
    when = datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=IST)
    raw = encode({"when": when})
    assert raw == b'{"when":{"$datetime":"2024-03-01T12:30:15.123456+05:30"}}'
    back = decode(raw)["when"]
    assert isinstance(back, datetime)
    assert back == when
    assert back.utcoffset() == timedelta(hours=5, minutes=30)
    assert back.microsecond == 123456


def test_naive_datetime_stays_naive() -> None:
    back = roundtrip(datetime(2024, 3, 1, 12, 30))
    assert isinstance(back, datetime)
    assert back.tzinfo is None
    assert back == datetime(2024, 3, 1, 12, 30)


def test_date_is_not_confused_with_datetime() -> None:
    assert encode(date(2024, 1, 2)) == b'{"$date":"2024-01-02"}'
    assert type(roundtrip(date(2024, 1, 2))) is date
    assert type(roundtrip(datetime(2024, 1, 2))) is datetime


def test_uuid() -> None:
    u = uuid.UUID("a8098c1a-f86e-11da-bd1a-00112444be1e")
    assert encode(u) == b'{"$uuid":"a8098c1a-f86e-11da-bd1a-00112444be1e"}'
    back = roundtrip(u)
    assert isinstance(back, uuid.UUID)
    assert back == u


def test_bool_and_int_and_float_keep_their_types() -> None:
    back = roundtrip([True, 1, 1.0, 0, False])
    assert [type(x) for x in back] == [bool, int, float, int, bool]


def test_tuples_become_lists() -> None:
    assert roundtrip((1, (2, 3), {"a": (4,)})) == [1, [2, 3], {"a": [4]}]


def test_output_is_compact_utf8() -> None:
    assert encode({"a": [1, "é", None], "b": True}) == '{"a":[1,"é",null],"b":true}'.encode()


# -------------------------------------------------------------------- escaping


@pytest.mark.parametrize(
    "value",
    [
        {"$decimal": "1.10"},
        {"$datetime": "2024-01-01T00:00:00"},
        {"$date": "2024-01-01"},
        {"$uuid": "12345678-1234-5678-1234-567812345678"},
        {"$uuid": 5},
        {"$decimal": " 1.10 "},
        {"$decimal": "NaN"},
        {"$escape": {"a": 1}},
        {"$escape": {"$decimal": "1"}},
        {"$escape": {"$escape": {"$uuid": "12345678-1234-5678-1234-567812345678"}}},
        {"$escape": [1, 2]},
        {"$escape": 5},
        {"$foo": 1},
        {"$": None},
        {"$x": {"$decimal": "1"}},
        {"$x": {"$y": {"$z": {}}}},
        [{"$date": "2024-01-01"}, {"$date": date(2024, 1, 1)}],
        {"$decimal": Decimal("1.10")},
        {"a": ({"$uuid": "x"},)},
    ],
    ids=short_id,
)
def test_user_dicts_that_look_like_tags_roundtrip(value: object) -> None:
    raw = encode(value)
    assert b'{"$escape":' in raw
    assert_same(listify(value), decode(raw))


def test_escaped_decimal_lookalike_stays_a_dict() -> None:
    raw = encode({"$decimal": "1.10"})
    assert raw == b'{"$escape":{"$decimal":"1.10"}}'
    back = decode(raw)
    assert back == {"$decimal": "1.10"}
    assert type(back) is dict


def test_multi_key_dollar_dicts_are_not_escaped() -> None:
    value = {"$decimal": "1.10", "other": 1}
    raw = encode(value)
    assert raw == b'{"$decimal":"1.10","other":1}'
    assert decode(raw) == value


def test_decode_leaves_unknown_or_malformed_tags_alone() -> None:
    assert decode(b'{"$nope":1}') == {"$nope": 1}
    assert decode(b'{"$decimal":"abc"}') == {"$decimal": "abc"}
    assert decode(b'{"$decimal":"NaN"}') == {"$decimal": "NaN"}
    assert decode(b'{"$uuid":1}') == {"$uuid": 1}
    assert decode(b'{"$escape":1}') == {"$escape": 1}


# ------------------------------------------------------------------ size limit


def test_default_limit() -> None:
    assert DEFAULT_LIMIT == 512 * 1024
    encode("x" * (DEFAULT_LIMIT - 2))
    with pytest.raises(PayloadTooLargeError):
        encode("x" * (DEFAULT_LIMIT - 1))


def test_size_limit_exact_and_one_over() -> None:
    value = {"blob": "é" * 50}
    size = len(encode(value, limit=None))
    assert encode(value, limit=size) == encode(value, limit=None)
    with pytest.raises(PayloadTooLargeError) as info:
        encode(value, limit=size - 1, what="return value")
    message = str(info.value)
    assert message.startswith("return value:")
    assert str(size) in message
    assert str(size - 1) in message
    assert "max_payload_bytes" in message
    assert isinstance(info.value, PayloadError)


def test_size_limit_applies_after_escaping() -> None:
    value = ({"$x": 1},)  # takes the slow path; escaping adds bytes
    size = len(encode(value, limit=None))
    assert size == len(b'[{"$escape":{"$x":1}}]')
    encode(value, limit=size)
    with pytest.raises(PayloadTooLargeError):
        encode(value, limit=size - 1)


def test_no_limit() -> None:
    assert len(encode("x" * (DEFAULT_LIMIT * 2), limit=None)) == DEFAULT_LIMIT * 2 + 2


# -------------------------------------------------------------------- refusals


class Foo:
    pass


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            {"items": [0, 1, 2, {"amount": float("nan")}]},
            'data["items"][3]["amount"]: float NaN is not allowed',
        ),
        ({"x": float("inf")}, 'data["x"]: float Infinity is not allowed'),
        ([1.0, -float("inf")], "data[1]: float -Infinity is not allowed"),
        (float("nan"), "data: float NaN is not allowed"),
        ({"when": Foo()}, 'data["when"]: object of type Foo is not JSON-serialisable'),
        ({"tags": {1, 2}}, 'data["tags"]: object of type set is not JSON-serialisable'),
        ({"blob": b"abc"}, 'data["blob"]: object of type bytes is not JSON-serialisable'),
        ([object()], "data[0]: object of type object is not JSON-serialisable"),
        ({"t": datetime(2024, 1, 1).time()}, 'data["t"]: object of type time is not'),
        ({"d": timedelta(1)}, 'data["d"]: object of type timedelta is not'),
        ({"a": Decimal("NaN")}, 'data["a"]: Decimal NaN is not allowed'),
        ({"a": Decimal("sNaN")}, 'data["a"]: Decimal sNaN is not allowed'),
        ({"a": [Decimal("Infinity")]}, 'data["a"][0]: Decimal Infinity is not allowed'),
        ({"a": Decimal("-Infinity")}, 'data["a"]: Decimal -Infinity is not allowed'),
        ({"counts": {1: "a"}}, 'data["counts"]: dict key 1 is of type int'),
        ({"counts": {"ok": 1, 2: "a"}}, 'data["counts"]: dict key 2 is of type int'),
        ({True: 1}, "data: dict key True is of type bool"),
        ({None: 1}, "data: dict key None is of type NoneType"),
        ({1.5: 1}, "data: dict key 1.5 is of type float"),
        ({(1, 2): 1}, "data: dict key (1, 2) is of type tuple"),
        ({"s": "ok \ud800 bad"}, 'data["s"]: string contains a lone surrogate'),
        ({"k": {"\udfff": 1}}, "data[\"k\"]: dict key '\\udfff' contains a lone surrogate"),
        ("\ud83d", "data: string contains a lone surrogate"),
        ({"n": 10 ** (sys.get_int_max_str_digits() + 1)}, 'data["n"]: int with more than'),
        ([(1, {"x": [2, {3}]})], 'data[0][1]["x"][1]: object of type set'),
    ],
    ids=short_id,
)
def test_refused_with_path(value: object, message: str) -> None:
    with pytest.raises(SerializationError) as info:
        encode(value)
    assert str(info.value).startswith(message), str(info.value)
    assert isinstance(info.value, PayloadError)
    assert isinstance(info.value, TypeError)


def test_refusal_names_what() -> None:
    with pytest.raises(SerializationError, match=r"^return value\[\"r\"\]: float NaN"):
        encode({"r": float("nan")}, what="return value")


def test_first_bad_item_is_reported() -> None:
    with pytest.raises(SerializationError, match=r'^data\["b"\]\[1\]: object of type set'):
        encode({"a": [1, 2], "b": [3, {4}], "c": float("nan")})


def test_unrepresentable_key_shown_readably() -> None:
    with pytest.raises(SerializationError) as info:
        encode({"ключ": {"k" * 100: {"x": {5}}}})
    message = str(info.value)
    assert message.startswith('data["ключ"]["kkkk')
    assert '..."]["x"]: object of type set' in message


def test_circular_reference_refused() -> None:
    value: dict[str, Any] = {"a": []}
    value["a"].append(value)
    with pytest.raises(SerializationError, match=r'^data\["a"\]\[0\]: circular reference'):
        encode(value)


def test_shared_reference_is_not_circular() -> None:
    shared = [1, 2]
    assert roundtrip({"a": shared, "b": shared}) == {"a": [1, 2], "b": [1, 2]}


# ----------------------------------------------------------------------- depth


def nested_lists(depth: int, leaf: object = 0) -> object:
    value: object = leaf
    for _ in range(depth):
        value = [value]
    return value


def nested_dicts(depth: int, leaf: object = 0) -> object:
    value: object = leaf
    for _ in range(depth):
        value = {"k": value}
    return value


@pytest.mark.parametrize("make", [nested_lists, nested_dicts])
def test_max_depth_accepted(make: Callable[[int], object]) -> None:
    value = make(MAX_DEPTH)
    assert roundtrip(value) == value


def test_max_depth_with_tagged_leaf_accepted() -> None:
    value = nested_lists(MAX_DEPTH, Decimal("1.10"))
    back = roundtrip(value)
    assert back == value
    for _ in range(MAX_DEPTH):
        back = back[0]
    assert str(back) == "1.10"


@pytest.mark.parametrize("make", [nested_lists, nested_dicts])
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 500, 10_000])
def test_too_deep_refused(make: Callable[[int], object], depth: int) -> None:
    with pytest.raises(SerializationError, match=rf"nested deeper than {MAX_DEPTH} levels"):
        encode(make(depth))


def test_deep_refusal_message_is_short() -> None:
    with pytest.raises(SerializationError) as info:
        encode(nested_lists(10_000))
    assert len(str(info.value)) < 200
    assert f"(a path of {MAX_DEPTH} steps)" in str(info.value)


def test_many_brackets_in_strings_are_not_depth() -> None:
    value = {"s": "[" * 1000, "t": ["{" * 300, '\\"[[[' * 100], "u": "\\" * 7 + "]" * 500}
    assert roundtrip(value) == value


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


def _random_value(rng: random.Random, depth: int) -> object:
    strings = ["", "[", "]", "{}", '"', '\\"[', "\\", "\\\\", "a\\]", '\\\\"', "é[", "[[{"]
    kind = rng.randrange(6 if depth < 12 else 2)
    if kind == 0:
        return rng.choice(strings) + rng.choice(strings)
    if kind == 1:
        return rng.choice([0, 1.5, None, True])
    if kind in (2, 3):
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(strings) + str(i): _random_value(rng, depth + 1) for i in range(3)}


def test_json_depth_check_matches_real_depth() -> None:
    rng = random.Random(1234)
    for _ in range(400):
        value = _random_value(rng, 0)
        raw = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        real = _depth(value)
        for limit in (max(real - 1, 0), real, real + 1):
            assert _json_deeper_than(raw, limit) == (real > limit), (raw, real, limit)


# --------------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{not json",
        b"\xff\xfe\x00",
        b'{"a":1',
        b"[1,2]]",
        b"NaN",
        b'{"a":Infinity}',
        "-Infinity",
    ],
    ids=short_id,
)
def test_decode_corrupt_record(raw: bytes | str) -> None:
    with pytest.raises(SerializationError, match=r"^job 7 data: corrupt record"):
        decode(raw, what="job 7 data")


def test_decode_invalid_utf8_names_position() -> None:
    with pytest.raises(SerializationError, match=r"not valid UTF-8.*byte 6"):
        decode(b'{"a":"\xc3("}')


def test_decode_accepts_str_and_bytes_like() -> None:
    raw = encode({"a": [Decimal("1.0")]})
    expected = {"a": [Decimal("1.0")]}
    assert decode(raw) == expected
    assert decode(raw.decode()) == expected
    assert decode(bytearray(raw)) == expected  # type: ignore[arg-type]
    assert decode(memoryview(raw)) == expected  # type: ignore[arg-type]


def test_threads_do_not_interfere() -> None:
    values: list[dict[str, Any]] = [
        {
            "n": i,
            "d": Decimal(f"{i}.10"),
            "e": {"$decimal": str(i)},
            "w": (date(2024, 1, 1 + i % 28),),
        }
        for i in range(50)
    ]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                for value in values:
                    back = roundtrip(value)
                    assert back["d"] == value["d"]
                    assert back["e"] == value["e"]
                    assert back["w"] == list(value["w"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.parametrize(
    "value",
    [
        {"i": 1, "t": 0.25, "pad": "x" * 64, "ok": True, "none": None},
        {"$only": 1},  # escaped, as ever
        {"big": 10**30, "neg": -0.0, "text": 'quote " and {"$x": 1}'},
        {"nan": float("nan")},
        {"inf": float("-inf")},
        {"surrogate": "\ud800"},
        {1: "int key"},
        {"tuple": (1, 2)},
        {"nested": {"a": [1, 2]}},
    ],
)
def test_flat_dicts_skip_the_verifying_decode_with_the_same_outcome(value: Any) -> None:
    """A flat dict of plain scalars skips the decode check: same bytes, or the same refusal."""
    try:
        expected = _encode_slow(value, "data")
    except SerializationError:
        with pytest.raises(SerializationError):
            encode(value)
        return
    assert encode(value) == expected
    assert decode(encode(value)) == {
        k: list(v) if isinstance(v, tuple) else v for k, v in value.items()
    }


def test_flat_exact_takes_only_plain_scalars() -> None:
    assert _flat_exact({"i": 1, "f": 0.5, "s": "x", "b": False, "n": None})
    assert not _flat_exact({"l": [1]})
    assert not _flat_exact({1: "x"})
    assert not _flat_exact([1, 2])
    assert not _flat_exact({"e": Decimal("1.0")})


# --- the msgspec fast path ----------------------------------------------------------


def _random_scalar(rng: random.Random) -> object:
    kind = rng.randrange(7)
    if kind == 0:
        return "".join(
            chr(rng.choice([rng.randrange(32), rng.randrange(32, 0xD800)]))
            for _ in range(rng.randrange(12))
        )
    if kind == 1:
        return rng.choice([0.0, -0.0, 5e-324, 1.7976931348623157e308, 0.1, rng.uniform(-1e9, 1e9)])
    if kind == 2:
        return rng.choice([0, -1, 2**63 - 1, -(2**63), 2**64 - 1, rng.randrange(-(10**12), 10**12)])
    if kind == 3:
        return rng.choice([True, False])
    if kind == 4:
        return None
    if kind == 5:
        return "$" + str(rng.randrange(100))  # a value that looks like a tag's key
    return "x" * rng.randrange(200)


def test_flat_payloads_take_the_fast_path_and_decode_to_the_same_values() -> None:
    rng = random.Random(7)
    for _ in range(2_000):
        value = {f"k{i}": _random_scalar(rng) for i in range(rng.randrange(1, 8))}
        assert _flat_exact(value)
        raw = encode(value)
        # What the stdlib reads back is the value, types and -0.0 included.
        for back in (json.loads(raw), decode(raw)):
            assert back == value
            assert [type(v) for v in back.values()] == [type(v) for v in value.values()]
            assert [repr(v) for v in back.values()] == [repr(v) for v in value.values()]


@pytest.mark.parametrize(
    "value",
    [
        {"f": float("nan")},
        {"f": float("inf")},
        {"n": 2**64},
        {"n": -(2**63) - 1},
    ],
    ids=short_id,
)
def test_values_msgspec_would_write_differently_leave_the_fast_path(value: dict[str, Any]) -> None:
    assert not _flat_exact(value)  # msgspec writes NaN as null and ints past 64 bits


def test_a_lone_dollar_key_is_still_escaped_and_big_ints_still_round_trip() -> None:
    assert decode(encode({"$decimal": "1"})) == {"$decimal": "1"}
    assert encode({"$decimal": "1"}) == b'{"$escape":{"$decimal":"1"}}'
    assert decode(encode({"n": 2**64})) == {"n": 2**64}
    with pytest.raises(SerializationError, match="surrogate"):
        encode({"s": "\ud800"})


# --- a batch of flat dicts --------------------------------------------------------


def test_a_batch_of_flat_dicts_encodes_as_encode_does_item_by_item() -> None:
    rng = random.Random(11)
    fast = 0
    for _ in range(300):
        batch = [
            {
                f"k{i}": v
                for i in range(rng.randrange(0, 6))
                if type(v := _random_scalar(rng)) is not float
            }
            for _ in range(rng.randrange(1, 10))
        ]
        got = encode_flat_batch(batch, None)
        if got is not None:  # long digit runs take encode
            assert got == [encode(v) for v in batch]
            fast += 1
    assert fast > 100
    plain = [{"i": i, "s": "x" * (i % 70), "b": i % 2 == 0, "n": None} for i in range(500)]
    assert encode_flat_batch(plain, 1024) == [encode(v) for v in plain]
    assert encode_flat_batch([], None) == []


@pytest.mark.parametrize(
    "odd",
    [
        {"f": 0.5},  # a float may be NaN: encode checks it
        {"n": 2**64},
        {"n": -(2**63) - 1},
        {"s": "1234567890123456789"},  # a long run of digits, even in a string
        {"$only": 1},
        {1: "int key"},
        {"l": [1]},
        {"s": "\ud800"},
        {"big": "x" * 2_000},  # over the limit
        [1, 2],
        {f"k{i}": i for i in range(33)},
    ],
    ids=short_id,
)
def test_a_batch_with_anything_else_is_left_to_encode(odd: Any) -> None:
    batch = [{"i": 1}, odd, {"i": 2}]
    assert encode_flat_batch(batch, 1024) is None
