"""Confluent wire format + Avro <-> typed events, and the field rules of docs/definitions.md.

A value is ``0x00 | schema id (4 bytes, big-endian) | Avro binary body``. Bodies are read
with the *writer's* schema (looked up by id, compiled once per id) and mapped onto the
dataclasses of :mod:`streams.core.events` by field name, so fields added by later versions are
ignored and every registered version decodes to the same record. The wire format's bodies are
read by the compiled reader of ``native/`` (``streams_native.RecordReader``: the body straight
into the event object, ~10x fastavro's reader plus the dataclass call); fastavro encodes, and
reads Avro container files.

Logical types are left aside: ``timestamp-millis`` stays the epoch-ms ``long`` and
``decimal(12, 2)`` stays its unscaled two's-complement integer, which *is* the amount in cents.
That is exact (no ``Decimal``/``datetime`` round trip) and cheaper; the contract check at
compile time makes sure a schema's logical types mean what we assume.

Pure module: no Faust, Kafka or ClickHouse imports.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from io import BytesIO
from operator import itemgetter
from typing import IO, Any, cast

from fastavro import parse_schema, reader, schemaless_writer
from fastavro.validation import ValidationError as AvroValidationError
from fastavro.validation import validate as avro_validate

try:
    from streams_native import RecordReader
except ImportError as missing:  # pip install -e . alone does not build it
    raise ImportError("the compiled reader streams_native is not installed: `make install` builds it, "
                      "or `pip install ./native` (needs Rust's cargo)") from missing

from streams.contracts.registry import EmbeddedRegistry, Schema, SchemaRegistry, UnknownSchemaError, event_type_of
from streams.core.events import (
    EVENT_CLASSES,
    AnyEvent,
    Event,
    EventType,
    Identify,
    Purchase,
    Share,
    Support,
    TicketAction,
    is_sentinel_id,
)
from streams.errors import DecodeError, ValidationError

MAGIC_BYTE = 0
HEADER_SIZE = 5
AMOUNT_PRECISION = 12
_MAX_AMOUNT_CENTS = 10**AMOUNT_PRECISION - 1

# Dataclass field -> Avro field, where the names differ (units are in the dataclass name).
_AVRO_NAMES = {"occurred_at_ms": "occurred_at", "amount_cents": "amount"}
# What the stripped logical types must have said for the raw values to be ms and cents.
_LOGICAL_CONTRACT: dict[str, dict[str, Any]] = {
    "occurred_at": {"type": "long", "logicalType": "timestamp-millis"},
    "amount": {"type": "bytes", "logicalType": "decimal", "scale": 2},
}


def _cents_from_avro(unscaled: bytes) -> int:
    return int.from_bytes(unscaled, "big", signed=True)


def _cents_to_avro(cents: int) -> bytes:
    if not -_MAX_AMOUNT_CENTS <= cents <= _MAX_AMOUNT_CENTS:
        raise ValidationError("amount", f"{cents} cents exceeds decimal precision {AMOUNT_PRECISION}")
    return cents.to_bytes((cents.bit_length() + 8) // 8, "big", signed=True)


_FROM_AVRO: dict[str, Callable[[Any], Any]] = {"amount": _cents_from_avro, "action": TicketAction}
_TO_AVRO: dict[str, Callable[[Any], Any]] = {"amount": _cents_to_avro, "action": str}


@functools.cache
def contract_fields(event_type: EventType) -> tuple[tuple[str, str], ...]:
    """(dataclass attribute, Avro field) for every field of the event type, in order."""
    return tuple((f.name, _AVRO_NAMES.get(f.name, f.name)) for f in dataclasses.fields(EVENT_CLASSES[event_type]))


def later_fields(event_type: EventType) -> frozenset[str]:
    """Avro fields added by a later version of the type (a dataclass default): older versions'
    records lack them and are read with the default."""
    return frozenset(_AVRO_NAMES.get(f.name, f.name) for f in dataclasses.fields(EVENT_CLASSES[event_type])
                     if f.default is not dataclasses.MISSING)


def strip_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [strip_logical_types(v) for v in node]
    return node


def _check_contract(schema: Schema, event_type: EventType) -> None:
    """Refuse a schema whose fields cannot be mapped exactly onto the event's dataclass."""
    types = {f["name"]: f["type"] for f in schema["fields"]}
    missing = {avro for _, avro in contract_fields(event_type)} - later_fields(event_type) - set(types)
    if missing:
        raise UnknownSchemaError(f"{event_type} schema lacks fields {sorted(missing)}")
    for name, expected in _LOGICAL_CONTRACT.items():
        actual = types.get(name, expected)
        if not isinstance(actual, dict) or any(actual.get(k) != v for k, v in expected.items()):
            raise UnknownSchemaError(f"field {name} must be {expected}, schema has {actual}")
    action = types.get("action")
    if action is not None and not (isinstance(action, dict) and set(action.get("symbols", ["?"])) <= set(TicketAction)):
        raise UnknownSchemaError(f"field action must be an enum of {list(TicketAction)}")


@dataclasses.dataclass(frozen=True, slots=True)
class _Reader:
    event_type: EventType
    body: RecordReader  # Avro body -> event


@dataclasses.dataclass(frozen=True, slots=True)
class _Writer:
    header: bytes
    schema: Any
    to_record: Callable[[AnyEvent], dict[str, Any]]


def _written_fields(event_type: EventType, schema: Schema) -> list[str]:
    """The Avro fields of the event type that ``schema`` has, in the dataclass's order. Fields
    a writer's version predates are left out and take the dataclass default (the last fields
    of the dataclass, so positional construction still fits)."""
    written = {f["name"] for f in schema["fields"]}
    return [avro for _, avro in contract_fields(event_type) if avro in written]


def _body_reader(event_type: EventType, schema: Schema) -> RecordReader:
    names = _written_fields(event_type, schema)
    return RecordReader(json.dumps(schema), names, [_FROM_AVRO.get(name) for name in names],
                        EVENT_CLASSES[event_type])


def _builder(event_type: EventType, schema: Schema) -> Callable[[Any], AnyEvent]:
    """fastavro's record dict -> event (Avro container files)."""
    cls = EVENT_CLASSES[event_type]
    names = _written_fields(event_type, schema)
    get = itemgetter(*names)  # one C call for all fields
    conversions = [(i, _FROM_AVRO[name]) for i, name in enumerate(names) if name in _FROM_AVRO]

    def build(record: Any) -> AnyEvent:
        values = list(get(record))
        for i, convert in conversions:
            values[i] = convert(values[i])
        return cls(*values)

    return build


def _to_record(event_type: EventType) -> Callable[[AnyEvent], dict[str, Any]]:
    plan = [(attr, avro, _TO_AVRO.get(avro)) for attr, avro in contract_fields(event_type)]

    def to_record(event: AnyEvent) -> dict[str, Any]:
        return {avro: getattr(event, attr) if conv is None else conv(getattr(event, attr)) for attr, avro, conv in plan}

    return to_record


def _field_of(error: AvroValidationError) -> str:
    # fastavro names fields "com.interactions.events.Click.page"; report "page".
    return str(error.errors[0].field).rsplit(".", 1)[-1] if error.errors else "event"


def container_events(stream: IO[bytes]) -> Iterator[AnyEvent | DecodeError]:
    """The events of an Avro object container file written with a version of one of the
    contracts (its schema is in the file's header), in order; a record that maps onto no event
    is a DecodeError in its place. ``stream`` must be seekable: the header is read twice.

    Raises DecodeError (``unknown_schema``) when the file's schema is not a contract."""
    start = stream.tell()
    schema = json.loads(reader(stream).metadata["avro.schema"])
    try:
        event_type = event_type_of(schema)
        _check_contract(schema, event_type)
    except UnknownSchemaError as exc:
        raise DecodeError("unknown_schema", str(exc)) from None
    build = _builder(event_type, schema)
    stream.seek(start)
    for record in reader(stream):
        try:
            yield build(_without_logical_types(cast(dict[str, Any], record)))
        except (KeyError, TypeError, ValueError) as exc:
            yield DecodeError("corrupt_body", f"{type(exc).__name__}: {exc}")


def _without_logical_types(record: dict[str, Any]) -> dict[str, Any]:
    """A container file's record as the wire format's reader sees it: the ``Decimal`` and
    ``datetime`` fastavro makes of its logical types back to cents (bytes) and epoch ms."""
    for name, value in record.items():
        if isinstance(value, Decimal):
            record[name] = _cents_to_avro(int(value.scaleb(2)))
        elif isinstance(value, datetime):
            record[name] = int(value.timestamp() * 1000)
    return record


class Codec:
    """Encodes events to, and decodes them from, Confluent-framed Avro; thread-compatible."""

    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self._registry: SchemaRegistry = EmbeddedRegistry() if registry is None else registry
        self._readers: dict[int, _Reader] = {}
        self._writers: dict[EventType, _Writer] = {}

    def _reader(self, schema_id: int) -> _Reader:
        reader = self._readers.get(schema_id)
        if reader is None:
            event_type = self._registry.event_type(schema_id)
            schema = self._registry.schema(schema_id)
            _check_contract(schema, event_type)
            try:
                body = _body_reader(event_type, schema)
            except ValueError as exc:
                raise UnknownSchemaError(f"unparseable schema: {exc}") from exc
            reader = self._readers[schema_id] = _Reader(event_type, body)
        return reader

    def _writer(self, event_type: EventType) -> _Writer:
        writer = self._writers.get(event_type)
        if writer is None:
            schema_id, schema = self._registry.latest(event_type)
            _check_contract(schema, event_type)
            header = bytes([MAGIC_BYTE]) + schema_id.to_bytes(4, "big")
            parsed = parse_schema(strip_logical_types(schema))
            writer = self._writers[event_type] = _Writer(header, parsed, _to_record(event_type))
        return writer

    def decode(self, value: bytes, expected_type: EventType | None = None) -> AnyEvent:
        """Decode one record value; ``expected_type`` is the topic's type (None: any).

        Raises DecodeError with reason bad_magic, truncated, unknown_schema, wrong_topic or
        corrupt_body; registry outages raise RegistryError (not the record's fault).
        Field rules are :func:`validate`'s job.
        """
        if not value or value[0] != MAGIC_BYTE:
            raise DecodeError("bad_magic", "value is empty" if not value else f"magic byte {value[0]}")
        if len(value) < HEADER_SIZE:
            raise DecodeError("truncated", f"{len(value)} bytes, header needs {HEADER_SIZE}")
        schema_id = int.from_bytes(value[1:HEADER_SIZE], "big")
        try:
            reader = self._reader(schema_id)
        except UnknownSchemaError as exc:
            raise DecodeError("unknown_schema", f"schema id {schema_id}: {exc}") from None
        if expected_type is not None and reader.event_type != expected_type:
            raise DecodeError("wrong_topic", f"{reader.event_type} record on a {expected_type} topic")
        try:
            return reader.body.read(value, HEADER_SIZE)
        except ValueError as exc:  # the body does not fit the schema, or an enum symbol is unknown
            raise DecodeError("corrupt_body", str(exc)) from None

    def encode(self, event: AnyEvent) -> bytes:
        """Frame and encode ``event`` with the latest schema of its type.

        Raises ValidationError naming the field when a value does not fit the schema
        (wrong type, amount beyond the decimal's precision). Field rules are not checked.
        """
        writer = self._writer(event.type)
        record = writer.to_record(event)
        out = BytesIO()
        out.write(writer.header)
        try:
            schemaless_writer(out, writer.schema, record)
        except (TypeError, ValueError, OverflowError) as exc:
            try:  # slow path, errors only: find the offending field
                avro_validate(record, writer.schema, raise_errors=True)
            except AvroValidationError as found:
                raise ValidationError(_field_of(found), str(exc)) from None
            raise ValidationError("event", str(exc)) from None
        return out.getvalue()


def _require_text(field: str, value: str) -> None:
    if not value:
        raise ValidationError(field, "must not be empty")


def _validate_actor(event: Event) -> None:
    if event.customer_id and event.anonymous_id is not None:
        raise ValidationError("anonymous_id", "must be null when customer_id is set")
    if event.anonymous_id is None:
        _require_text("customer_id", event.customer_id)
    else:
        _require_text("anonymous_id", event.anonymous_id)


def _refuse_sentinel(field: str, value: str) -> None:
    if is_sentinel_id(value):
        raise ValidationError(field, f"{value!r} identifies no one", reason="sentinel_id")


def validate(event: AnyEvent, currency: str) -> None:
    """Apply the field rules of docs/definitions.md; ValidationError names the broken field.

    Sentinel ids are checked after every field rule: the definitions' order of reasons.
    """
    _require_text("event_id", event.event_id)
    if isinstance(event, Identify):
        _require_text("anonymous_id", event.anonymous_id)
        _require_text("customer_id", event.customer_id)
        _refuse_sentinel("anonymous_id", event.anonymous_id)
        _refuse_sentinel("customer_id", event.customer_id)
        return
    _validate_actor(event)
    _validate_fields(event, currency)
    _refuse_sentinel("anonymous_id" if event.anonymous else "customer_id", event.actor_id)


def _validate_fields(event: Event, currency: str) -> None:
    if isinstance(event, Purchase):
        if event.amount_cents <= 0:
            raise ValidationError("amount", f"must be > 0, got {event.amount_cents} cents")
        if event.currency != currency:
            raise ValidationError("currency", f"must be {currency}, got {event.currency!r}")
    elif isinstance(event, Share):
        _require_text("share_id", event.share_id)
        _require_text("network", event.network)
    elif isinstance(event, Support):
        _require_text("ticket_id", event.ticket_id)
        if event.satisfaction is not None and not 1 <= event.satisfaction <= 5:
            raise ValidationError("satisfaction", f"must be 1..5, got {event.satisfaction}")
