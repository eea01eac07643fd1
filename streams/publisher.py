"""Publisher library for upstream services: validate, encode, key by customer, send.

``Publisher`` wraps kafka-python's ``KafkaProducer`` with settings that neither lose nor
duplicate records on retries (acks from all in-sync replicas, idempotence, at most five
requests in flight). ``event_from_json``/``parse_lines`` are pure and turn the JSON-lines
form (what ``streams publish`` reads) into events; ``publish_lines`` sends them and reports
per line.

JSON form: the Avro field names plus ``"type"``, e.g.
``{"type": "purchase", "event_id": "e1", "customer_id": "c1", "occurred_at":
"2026-11-23T10:00:00Z", "channel": "web", "order_id": "o1", "amount": "12.34",
"currency": "EUR"}``. ``occurred_at`` is ISO 8601 with an offset or epoch milliseconds;
``amount`` is a decimal string (or an integer of whole units), never a float; optional fields
may be omitted. An anonymous visitor's event names ``anonymous_id`` instead of
``customer_id``; ``{"type": "identify", "event_id": "i1", "anonymous_id": "dev-7",
"customer_id": "c1", "occurred_at": ..., "channel": "web"}`` links it to a customer.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any

from kafka import KafkaProducer
from kafka.producer.future import FutureRecordMetadata

from streams.contracts.codec import Codec, contract_fields, validate
from streams.contracts.registry import SchemaRegistry, registry_from_settings
from streams.core.events import EVENT_CLASSES, AnyEvent, EventType, TicketAction
from streams.errors import ValidationError
from streams.settings import Settings

SAFE_PRODUCER_CONFIG: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,  # kafka-python >= 2.1 supports it; raises if a setting conflicts
    "retries": 2**31 - 1,  # bounded by delivery_timeout_ms, as in the Java client
    "max_in_flight_requests_per_connection": 5,  # the most idempotence keeps ordered
    "linger_ms": 5,
}
"""Producer defaults; ``Publisher(**producer_config)`` overrides any of them."""

MAX_TIMESTAMP_AHEAD_MS = 3_600_000
"""Kafka's default ``log.message.timestamp.after.max.ms`` (4.x): later record timestamps are
refused, and kafka-python 3.0.12's idempotent producer treats that refusal as fatal (every
later record fails too), so such timestamps are refused here, before sending."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class DeliveryCounts:
    """Records acknowledged by the broker and records that failed for good."""

    sent: int
    failed: int


class Publisher:
    """Sends events (or raw values) to the pipeline's input topics; a context manager."""

    def __init__(
        self,
        settings: Settings,
        registry: SchemaRegistry | None = None,
        **producer_config: Any,
    ) -> None:
        self.settings = settings
        self._codec = Codec(registry_from_settings(settings) if registry is None else registry)
        self._producer = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id=f"{settings.app_id}-publisher",
            **{**SAFE_PRODUCER_CONFIG, **producer_config},
        )
        self._lock = threading.Lock()  # callbacks run on the producer's I/O thread
        self._sent = 0
        self._failed = 0

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def publish(self, event: AnyEvent, *, timestamp_ms: int | None = None) -> FutureRecordMetadata:
        """Validate, encode and send ``event`` to its type's topic, keyed by who acted: the
        ``customer_id``, else the ``anonymous_id`` (an identify: its ``anonymous_id``).

        Raises ValidationError (naming the field) before anything is sent. The record
        timestamp is ``timestamp_ms`` or now (it is the event's ingest time; see
        :meth:`publish_raw` for its limit).
        """
        validate(event, self.settings.currency)
        value = self._codec.encode(event)
        topic = self.settings.input_topics[event.type]
        return self.publish_raw(topic, event.actor_id.encode(), value, timestamp_ms)

    def publish_raw(
        self, topic: str, key: bytes | None, value: bytes, timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> FutureRecordMetadata:
        """Send ``value`` as-is (no validation or encoding), e.g. deliberately bad records.

        Only ``timestamp_ms`` is checked: more than :data:`MAX_TIMESTAMP_AHEAD_MS` ahead of
        the clock raises ValidationError (the broker would refuse it and break the producer).
        """
        if timestamp_ms is not None and timestamp_ms > time.time() * 1000 + MAX_TIMESTAMP_AHEAD_MS:
            raise ValidationError("timestamp_ms", f"{timestamp_ms} is more than 1 h in the future")
        future = self._producer.send(topic, value=value, key=key, timestamp_ms=timestamp_ms, headers=headers)
        future.add_callback(self._on_sent)
        future.add_errback(self._on_failed)
        return future

    def _on_sent(self, _metadata: object) -> None:
        with self._lock:
            self._sent += 1

    def _on_failed(self, _error: BaseException) -> None:
        with self._lock:
            self._failed += 1

    @property
    def counts(self) -> DeliveryCounts:
        """Delivery outcomes so far (records still in flight are in neither count)."""
        with self._lock:
            return DeliveryCounts(self._sent, self._failed)

    def flush(self, timeout_s: float | None = None) -> None:
        """Block until every record sent so far is acknowledged or failed."""
        self._producer.flush(timeout=timeout_s)

    def close(self, timeout_s: float | None = None) -> None:
        """Flush and release the producer."""
        self._producer.close(timeout=timeout_s)


# --- JSON form ------------------------------------------------------------------------------


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError(name, f"must be a string, got {type(value).__name__}")
    return value


def _integer(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError(name, f"must be an integer, got {type(value).__name__}")
    return value


def epoch_ms(name: str, value: Any) -> int:
    """A time of the JSON form: epoch ms, or ISO 8601 with an offset; ValidationError names ``name``."""
    if not isinstance(value, str):
        return _integer(name, value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(name, f"not an ISO 8601 time: {value!r}") from None
    if moment.tzinfo is None:
        raise ValidationError(name, f"needs a UTC offset, e.g. 2026-11-23T10:00:00Z: {value!r}")
    return (moment - _EPOCH) // _MS


def _cents(name: str, value: Any) -> int:
    if isinstance(value, float):
        raise ValidationError(name, 'must be a decimal string like "12.34", never a float')
    if not isinstance(value, str):
        return _integer(name, value) * 100
    try:
        cents = Decimal(value) * 100
    except InvalidOperation:
        raise ValidationError(name, f"not a decimal number: {value!r}") from None
    if not cents.is_finite() or cents != cents.to_integral_value():
        raise ValidationError(name, f"needs at most 2 decimal places: {value!r}")
    return int(cents)


def _action(name: str, value: Any) -> TicketAction:
    try:
        return TicketAction(_text(name, value))
    except ValueError:
        raise ValidationError(name, f"must be one of {[a.value for a in TicketAction]}") from None


_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "occurred_at": epoch_ms,
    "amount": _cents,
    "action": _action,
    "satisfaction": _integer,
}


def _event_type(obj: Mapping[str, Any]) -> EventType:
    try:
        return EventType(str(obj.get("type")))
    except ValueError:
        choices = [t.value for t in EventType]
        raise ValidationError("type", f"must be one of {choices}, got {obj.get('type')!r}") from None


def _anonymous_interaction(event_type: EventType, obj: Mapping[str, Any]) -> bool:
    return event_type is not EventType.IDENTIFY and obj.get("anonymous_id") is not None


@functools.cache
def _optional_fields(event_type: EventType) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(EVENT_CLASSES[event_type]) if str(f.type).endswith("| None"))


def event_from_json(obj: Mapping[str, Any]) -> AnyEvent:
    """Build an event from its JSON form; ValidationError names the first bad field.

    Checks presence and types only; :func:`streams.contracts.codec.validate` applies the field rules.
    """
    if not isinstance(obj, Mapping):
        raise ValidationError("event", f"must be a JSON object, got {type(obj).__name__}")
    event_type = _event_type(obj)
    cls = EVENT_CLASSES[event_type]
    optional = _optional_fields(event_type)
    pairs = contract_fields(event_type)
    unknown = sorted(set(obj) - {"type"} - {name for _, name in pairs})
    if unknown:
        raise ValidationError(unknown[0], f"is not a {event_type} field")
    values: list[Any] = []
    for attr, name in pairs:
        value = obj.get(name)
        if value is None and name == "customer_id" and _anonymous_interaction(event_type, obj):
            value = ""  # an anonymous visitor's event carries anonymous_id instead
        if value is None and attr not in optional:
            raise ValidationError(name, "is required")
        values.append(None if value is None else _PARSERS.get(name, _text)(name, value))
    return cls(*values)


def event_to_json(event: AnyEvent) -> dict[str, Any]:
    """The JSON form of ``event`` (inverse of :func:`event_from_json`): epoch ms, amount string."""
    obj: dict[str, Any] = {"type": event.type.value}
    for attr, name in contract_fields(event.type):
        obj[name] = getattr(event, attr)
    if "amount" in obj:
        obj["amount"] = str(Decimal(obj["amount"]).scaleb(-2))
    if "action" in obj:
        obj["action"] = obj["action"].value
    return obj


# --- JSON lines -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineError:
    """Why input line ``line`` (1-based) was not published."""

    line: int
    message: str


@dataclass(slots=True)
class PublishReport:
    """Outcome of :func:`publish_lines`: ``failed == len(errors)``."""

    sent: int = 0
    failed: int = 0
    errors: list[LineError] = field(default_factory=list)


def parse_lines(lines: Iterable[str], currency: str) -> Iterator[tuple[int, AnyEvent | LineError]]:
    """(1-based line number, event or why not) for every non-blank JSON line; pure.

    Each event is also checked with :func:`streams.contracts.codec.validate` against ``currency``.
    """
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield number, parse_line(number, line, currency)


def parse_line(number: int, line: str, currency: str) -> AnyEvent | LineError:
    """One JSON line as a checked event, or why not (see :func:`parse_lines`)."""
    try:
        event = event_from_json(json.loads(line))
        validate(event, currency)
    except json.JSONDecodeError as exc:
        return LineError(number, f"invalid JSON: {exc}")
    except ValidationError as exc:
        return LineError(number, str(exc))
    return event


class _Tally:
    """Per-line delivery outcomes, updated from the producer's I/O thread."""

    def __init__(self) -> None:
        self.sent = 0
        self.failures: list[LineError] = []

    def on_sent(self, _metadata: object) -> None:
        self.sent += 1  # only the I/O thread writes it

    def on_failed(self, line: int, error: BaseException) -> None:
        self.failures.append(LineError(line, f"delivery failed: {error}"))


def publish_lines(publisher: Publisher, lines: Iterable[str]) -> PublishReport:
    """Publish JSON lines; invalid lines are reported (1-based) and skipped, not fatal.

    Flushes before returning, so the report covers every line. Kafka errors raised while
    sending (e.g. a missing topic after ``max_block_ms``) propagate.
    """
    tally = _Tally()
    errors: list[LineError] = []
    for number, item in parse_lines(lines, publisher.settings.currency):
        if isinstance(item, LineError):
            errors.append(item)
            continue
        try:
            future = publisher.publish(item)
        except ValidationError as exc:  # the schema refuses it (e.g. amount beyond precision)
            errors.append(LineError(number, str(exc)))
            continue
        future.add_callback(tally.on_sent)
        future.add_errback(tally.on_failed, number)
    publisher.flush()
    errors = sorted(errors + tally.failures, key=lambda e: e.line)
    return PublishReport(sent=tally.sent, failed=len(errors), errors=errors)
