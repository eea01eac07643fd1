"""Codec: exact round trips, every decode error reason, field rules, fuzzed input."""

from __future__ import annotations

import dataclasses
import io
import json
import random
import shutil
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import fastavro
import pytest

from streams.contracts.codec import Codec, validate
from streams.contracts.registry import SCHEMAS_DIR, EmbeddedRegistry, schema_id_for
from streams.core.events import Click, Event, EventType, Purchase, Share, Support, TicketAction
from streams.errors import DecodeError, ValidationError
from tests.bench.sample import sample_events

CODEC = Codec()
T0 = 1_795_000_000_000

CLICK = Click("e-1", "c-1", T0, "web", "s-1", "/product/42", "p-42", "shr-9")
SHARE = Share("e-2", "c-1", T0 + 1, "ios", None, "shr-9", "whatsapp", None, "promo-1")
PURCHASE = Purchase("e-3", "c-2", T0 + 2, "web", None, "o-1", 1234, "EUR", "p-42", "shr-9")
SUPPORT = Support("e-4", "c-3", T0 + 3, "email", None, "t-1", TicketAction.REOPENED, "chat", 5)
ONE_OF_EACH: list[Event] = [CLICK, SHARE, PURCHASE, SUPPORT]


def _body_with(event_type: EventType, version: int, record: dict[str, Any]) -> bytes:
    """A record framed the way any Confluent-aware producer (logical types on) would."""
    schema = EmbeddedRegistry().schema(schema_id_for(event_type, version))
    out = io.BytesIO()
    out.write(b"\x00" + schema_id_for(event_type, version).to_bytes(4, "big"))
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def _record_of(event: Event, **changes: Any) -> dict[str, Any]:
    record = dataclasses.asdict(event)
    record["occurred_at"] = record.pop("occurred_at_ms")
    if "amount_cents" in record:
        record["amount"] = Decimal(record.pop("amount_cents")).scaleb(-2)
    return {**record, **changes}


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("event", ONE_OF_EACH, ids=lambda e: e.type.value)
def test_round_trip_every_type(event: Event) -> None:
    value = CODEC.encode(event)
    assert value[0] == 0
    assert CODEC.decode(value, event.type) == event
    assert CODEC.decode(value) == event


def test_round_trip_many_varied_events() -> None:
    events = sample_events(2_000)
    assert [CODEC.decode(CODEC.encode(e), e.type) for e in events] == events


def test_frames_with_the_latest_embedded_schema_id() -> None:
    registry = EmbeddedRegistry()
    for event in ONE_OF_EACH:
        schema_id, _ = registry.latest(event.type)
        assert int.from_bytes(CODEC.encode(event)[1:5], "big") == schema_id
    assert registry.latest(EventType.CLICK)[0] == schema_id_for(EventType.CLICK, 3)


@pytest.mark.parametrize(
    ("text", "cents"),
    [("0.01", 1), ("12.34", 1234), ("1.10", 110), ("9999999999.99", 999_999_999_999), ("-0.05", -5)],
)
def test_decimal_amounts_are_exact_cents(text: str, cents: int) -> None:
    # Written by a standard Avro writer from a Decimal, read by us: exact.
    value = _body_with(EventType.PURCHASE, 1, _record_of(PURCHASE, amount=Decimal(text)))
    decoded = CODEC.decode(value, EventType.PURCHASE)
    assert isinstance(decoded, Purchase) and decoded.amount_cents == cents
    # Written by us, read by the reference implementation (avro package, logical types on).
    ours = CODEC.encode(dataclasses.replace(PURCHASE, amount_cents=cents))
    schema = avro.schema.parse(json.dumps(EmbeddedRegistry().schema(301)))
    datum: Any = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(ours[5:])))
    assert datum["amount"] == Decimal(text)
    assert int(datum["occurred_at"].timestamp() * 1000) == PURCHASE.occurred_at_ms


def test_amount_beyond_precision_is_refused_on_encode() -> None:
    with pytest.raises(ValidationError) as caught:
        CODEC.encode(dataclasses.replace(PURCHASE, amount_cents=10**12))
    assert caught.value.field == "amount"


def test_older_and_newer_versions_decode_to_the_same_dataclass() -> None:
    v1 = _body_with(EventType.CLICK, 1, _record_of(CLICK))
    v2 = _body_with(EventType.CLICK, 2, _record_of(CLICK, user_agent="Mozilla/5.0"))
    assert v1[1:5] != v2[1:5]
    assert CODEC.decode(v1, EventType.CLICK) == CLICK == CODEC.decode(v2, EventType.CLICK)


def test_encode_names_a_field_of_the_wrong_type() -> None:
    with pytest.raises(ValidationError) as caught:
        CODEC.encode(dataclasses.replace(CLICK, page=None))  # type: ignore[arg-type]
    assert caught.value.field == "page"


# --- decode errors ----------------------------------------------------------------------------


def _reason(value: bytes, expected: EventType | None = None, codec: Codec = CODEC) -> str:
    with pytest.raises(DecodeError) as caught:
        codec.decode(value, expected)
    return caught.value.reason


def test_bad_magic() -> None:
    assert _reason(b"") == "bad_magic"
    assert _reason(b"\x01" + CODEC.encode(CLICK)[1:]) == "bad_magic"
    assert _reason(b'{"type": "click"}') == "bad_magic"


def test_truncated_header() -> None:
    for size in range(1, 5):
        assert _reason(CODEC.encode(CLICK)[:size]) == "truncated"


def test_unknown_schema_id() -> None:
    value = CODEC.encode(CLICK)
    for schema_id in (0, 104, 999, 0x7FFF_FF00):
        assert _reason(value[:1] + schema_id.to_bytes(4, "big") + value[5:]) == "unknown_schema"


def test_wrong_topic() -> None:
    assert _reason(CODEC.encode(PURCHASE), EventType.CLICK) == "wrong_topic"


@pytest.mark.parametrize(
    "damage",
    [
        lambda v: v[:-1],  # body cut short
        lambda v: v[:6],
        lambda v: v[:5],  # header only
        lambda v: v + b"\x00",  # trailing garbage
        lambda v: v[:5] + b"\x02\xff" + v[7:],  # invalid UTF-8 in event_id
        lambda v: v[:5] + b"\x7f" + v[6:],  # string length past the end
        lambda v: v[:5] + b"\x01" + v[6:],  # negative string length
    ],
    ids=["cut", "cut-to-6", "header-only", "trailing", "utf8", "long-length", "negative-length"],
)
def test_corrupt_body(damage: Any) -> None:
    assert _reason(damage(CODEC.encode(SUPPORT)), EventType.SUPPORT) == "corrupt_body"


def test_bad_enum_index_is_a_corrupt_body() -> None:
    value = bytearray(CODEC.encode(SUPPORT))
    action_at = value.index(b"t-1") + 3  # the enum index follows ticket_id
    value[action_at] = 0x10  # index 8: no such symbol
    assert _reason(bytes(value), EventType.SUPPORT) == "corrupt_body"


def _registry_with_edited(tmp_path: Path, event_type: str, edit: Any) -> EmbeddedRegistry:
    root = tmp_path / "schemas"
    shutil.copytree(SCHEMAS_DIR, root)
    path = root / event_type / "v1.avsc"
    schema = json.loads(path.read_text())
    edit(schema)
    path.write_text(json.dumps(schema))
    return EmbeddedRegistry(root)


def _set_type(name: str, new_type: Any) -> Any:
    def edit(schema: dict[str, Any]) -> None:
        next(f for f in schema["fields"] if f["name"] == name)["type"] = new_type

    return edit


@pytest.mark.parametrize(
    ("event_type", "edit"),
    [
        ("purchase", _set_type("amount", {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 3})),
        ("purchase", _set_type("occurred_at", {"type": "long", "logicalType": "timestamp-micros"})),
        ("support", _set_type("action", "string")),
        ("share", lambda s: s["fields"].pop()),
    ],
    ids=["decimal-scale-3", "timestamp-micros", "action-not-enum", "field-missing"],
)
def test_a_schema_that_breaks_the_contract_is_unknown(tmp_path: Path, event_type: str, edit: Any) -> None:
    # Reading such data "successfully" would mean wrong money, times or ticket states.
    codec = Codec(_registry_with_edited(tmp_path, event_type, edit))
    value = b"\x00" + schema_id_for(EventType(event_type), 1).to_bytes(4, "big") + b"\x00" * 40
    assert _reason(value, codec=codec) == "unknown_schema"


def test_random_bytes_only_ever_raise_decode_error() -> None:
    rng = random.Random(20261123)
    valid = [CODEC.encode(e) for e in sample_events(200)]
    headers = [b"\x00" + i.to_bytes(4, "big") for i in (101, 102, 201, 301, 401, 7)]
    outcomes: Counter[str] = Counter()
    for n in range(6_000):
        if n % 3 == 0:
            value = rng.choice([b"", b"\x00"]) + rng.randbytes(rng.randrange(0, 48))
        elif n % 3 == 1:
            value = rng.choice(headers) + rng.randbytes(rng.randrange(0, 80))
        else:
            mutable = bytearray(rng.choice(valid))
            for _ in range(rng.randrange(1, 4)):
                mutable[rng.randrange(5, len(mutable))] = rng.randrange(256)
            value = bytes(mutable[: rng.randrange(5, len(mutable) + 2)])
        try:
            CODEC.decode(value, rng.choice([None, *EventType]))
        except DecodeError as error:
            outcomes[error.reason] += 1
        else:
            outcomes["decoded"] += 1
    reasons = {"bad_magic", "truncated", "unknown_schema", "wrong_topic", "corrupt_body"}
    assert set(outcomes) == reasons | {"decoded"}, outcomes  # every path exercised


# --- field rules ------------------------------------------------------------------------------


def test_valid_events_pass() -> None:
    for event in ONE_OF_EACH:
        validate(event, "EUR")


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (dataclasses.replace(CLICK, event_id=""), "event_id"),
        (dataclasses.replace(SHARE, customer_id=""), "customer_id"),
        (dataclasses.replace(SHARE, share_id=""), "share_id"),
        (dataclasses.replace(SHARE, network=""), "network"),
        (dataclasses.replace(SUPPORT, ticket_id=""), "ticket_id"),
        (dataclasses.replace(PURCHASE, amount_cents=0), "amount"),
        (dataclasses.replace(PURCHASE, amount_cents=-1), "amount"),
        (dataclasses.replace(PURCHASE, currency="USD"), "currency"),
        (dataclasses.replace(SUPPORT, satisfaction=0), "satisfaction"),
        (dataclasses.replace(SUPPORT, satisfaction=6), "satisfaction"),
    ],
)
def test_each_rule_names_its_field(event: Event, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate(event, "EUR")
    assert caught.value.field == field
    assert caught.value.reason == "invalid_field"


def test_satisfaction_bounds_and_absence_are_valid() -> None:
    for satisfaction in (None, 1, 5):
        validate(dataclasses.replace(SUPPORT, satisfaction=satisfaction), "EUR")


def test_currency_rule_follows_the_reporting_currency() -> None:
    validate(dataclasses.replace(PURCHASE, currency="USD"), "USD")
