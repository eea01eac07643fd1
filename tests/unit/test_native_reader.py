"""The compiled Avro body reader (``native/``, ``streams_native.RecordReader``) against fastavro,
an independent implementation of the same specification: every Avro type, skipped fields,
and damaged bodies."""

from __future__ import annotations

import io
import json
import random
from typing import Any

import fastavro
import pytest
from streams_native import RecordReader

from streams.contracts.codec import strip_logical_types

# Every type the reader knows, named types referenced again by name, and a field written after
# the wanted ones that must be skipped correctly for the trailing-bytes check to hold.
SCHEMA: dict[str, Any] = {
    "type": "record", "name": "Everything", "namespace": "test.native",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "flag", "type": "boolean"},
        {"name": "small", "type": "int"},
        {"name": "big", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "ratio", "type": "float"},
        {"name": "exact", "type": "double"},
        {"name": "blob", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}},
        {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
        {"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["a", "b", "c"]}},
        {"name": "maybe", "type": ["null", "string"]},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "scores", "type": {"type": "map", "values": ["null", "long"]}},
        {"name": "inner", "type": {"type": "record", "name": "Inner", "fields": [
            {"name": "state", "type": "State"}, {"name": "digest", "type": "test.native.Digest"}]}},
        {"name": "history", "type": {"type": "array", "items": "Inner"}},
        {"name": "note", "type": ["null", "string", "long"]},
    ],
}
FIELDS = [f["name"] for f in SCHEMA["fields"]]
PARSED = fastavro.parse_schema(SCHEMA)
PLAIN = fastavro.parse_schema(strip_logical_types(SCHEMA))  # raw values, as ours reads them


def _random_record(rng: random.Random) -> dict[str, Any]:
    def text() -> str:
        return "".join(rng.choice("aé€𝄞z-") for _ in range(rng.randrange(0, 12)))

    def inner() -> dict[str, Any]:
        return {"state": rng.choice("abc"), "digest": rng.randbytes(4)}

    return {
        "id": text(), "flag": rng.random() < 0.5, "small": rng.randrange(-2**31, 2**31),
        "big": rng.randrange(-2**63, 2**63), "ratio": rng.choice([0.5, -2.25, 1e10]),
        "exact": rng.uniform(-1e300, 1e300), "blob": rng.randbytes(rng.randrange(0, 9)),
        "digest": rng.randbytes(4), "state": rng.choice("abc"),
        "maybe": rng.choice([None, text()]), "tags": [text() for _ in range(rng.randrange(0, 4))],
        "scores": {text(): rng.choice([None, rng.randrange(-10**6, 10**6)]) for _ in range(rng.randrange(0, 4))},
        "inner": inner(), "history": [inner() for _ in range(rng.randrange(0, 3))],
        "note": rng.choice([None, text(), rng.randrange(-99, 99)]),
    }


def _body(record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, PARSED, record)
    return out.getvalue()


def _fastavro(body: bytes) -> dict[str, Any]:
    """fastavro's reading of a whole body; raises if it does not consume every byte."""
    stream = io.BytesIO(body)
    record: dict[str, Any] = fastavro.schemaless_reader(stream, PLAIN, None)  # type: ignore[assignment]
    if stream.tell() != len(body):
        raise ValueError("trailing bytes")
    return record


def _reader(wanted: list[str], converters: list[Any] | None = None) -> RecordReader:
    return RecordReader(json.dumps(SCHEMA), wanted, converters or [None] * len(wanted), lambda *values: values)


def test_every_type_reads_as_fastavro_reads_it() -> None:
    rng = random.Random(20261201)
    reader = _reader(FIELDS)
    for _ in range(500):
        body = _body(_random_record(rng))
        expected = _fastavro(body)
        assert reader.read(b"\x00head" + body, 5) == tuple(expected[name] for name in FIELDS)


def test_unwanted_fields_are_skipped_and_the_order_is_the_callers() -> None:
    rng = random.Random(7)
    wanted = ["note", "state", "id"]  # not the schema's order; everything else skipped
    reader = _reader(wanted, [None, str.upper, None])
    for _ in range(200):
        record = _random_record(rng)
        assert reader.read(_body(record), 0) == (record["note"], record["state"].upper(), record["id"])


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[:-1], "field note"),  # the last field cut short
        (lambda b: b + b"\x00", "1 trailing bytes"),
        (lambda b: b"\x01" + b[1:], "field id: negative length -1"),
        (lambda b: b"\x04\xff\xfe" + b[3:], "field id: invalid UTF-8"),
        (lambda b: b"\xff" * 11, "field id: a number longer than 10 bytes"),
    ],
    ids=["cut", "trailing", "negative-length", "utf8", "long-varint"],
)
def test_a_damaged_body_raises_value_error_naming_the_field(damage: Any, message: str) -> None:
    record = {**_random_record(random.Random(3)), "id": "abc", "note": "last"}
    with pytest.raises(ValueError, match=message):
        _reader(FIELDS).read(damage(_body(record)), 0)


def test_damaged_bodies_never_read_as_something_fastavro_refuses() -> None:
    rng = random.Random(11)
    reader = _reader(FIELDS)
    outcomes = {"both refuse": 0, "equal": 0, "only ours refuses": 0}
    for _ in range(3_000):
        body = bytearray(_body(_random_record(rng)))
        for _ in range(rng.randrange(1, 4)):
            body[rng.randrange(len(body))] = rng.randrange(256)
        damaged = bytes(body if rng.random() < 0.5 else body[: rng.randrange(0, len(body) + 2)])
        try:
            ours = reader.read(damaged, 0)
        except ValueError:
            ours = None
        try:
            theirs = _fastavro(damaged)
        except Exception:  # fastavro raises EOFError, IndexError, UnicodeDecodeError, ...
            assert ours is None, damaged
            outcomes["both refuse"] += 1
            continue
        if ours is None:  # e.g. a negative union index, which fastavro takes from the end
            outcomes["only ours refuses"] += 1
        else:
            assert ours == tuple(theirs[name] for name in FIELDS)
            outcomes["equal"] += 1
    assert outcomes["both refuse"] > 500 and outcomes["equal"] > 100, outcomes


def _zigzag(n: int) -> bytes:
    value, out = (n << 1) ^ (n >> 63), bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out) + bytes([value])


@pytest.mark.parametrize("items", ["null", "string"])
def test_a_block_count_the_body_cannot_hold_is_refused_at_once(items: str) -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "xs", "type": {"type": "array", "items": items}}]}
    reader = RecordReader(json.dumps(schema), ["xs"], [None], lambda xs: xs)
    with pytest.raises(ValueError, match="a block of 4611686018427387903 items"):
        reader.read(_zigzag(2**62 - 1) + b"\x00", 0)  # would loop ~forever over nulls
    thousand_nulls = _zigzag(1000) + b"\x00"  # legal: nulls take no bytes
    if items == "null":
        assert reader.read(thousand_nulls, 0) == [None] * 1000
        assert fastavro.schemaless_reader(io.BytesIO(thousand_nulls), fastavro.parse_schema(schema), None) == {
            "xs": [None] * 1000}
    else:
        with pytest.raises(ValueError, match="a block of 1000 items with 1 bytes left"):
            reader.read(thousand_nulls, 0)


@pytest.mark.parametrize(
    ("schema", "wanted", "message"),
    [
        ("[1, 2", ["id"], "schema is not JSON"),
        ('"string"', [], "not a record"),
        (json.dumps({"type": "record", "name": "R", "fields": [{"name": "x", "type": "Nope"}]}), [], "unknown type"),
        (json.dumps(SCHEMA), ["id", "absent"], 'no field "absent"'),
    ],
    ids=["not-json", "not-a-record", "unknown-type", "missing-field"],
)
def test_a_schema_it_cannot_read_is_refused_at_compile_time(schema: str, wanted: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RecordReader(schema, wanted, [None] * len(wanted), tuple)
