"""The rows of the raw ``events`` and ``ingestion_errors`` tables, built from a source record, and
of ``minute_totals``."""

from __future__ import annotations

import base64
from typing import Any

from streams.core.events import AnyEvent, Click, Event, Purchase, Share, Support
from streams.core.windows import EventTime
from streams.stages.records import SourceRecord


def event_row(record: SourceRecord, event: Event, time: EventTime) -> tuple[Any, ...]:
    """One row of the raw ``events`` table: its values in the table's column order (one row per
    input event: a tuple, not a dict of 25 names to build and check)."""
    page = product_id = referrer_share_id = share_id = network = promotion_id = order_id = None
    amount_cents = currency = ticket_id = action = support_channel = satisfaction = None
    if isinstance(event, Click):
        page, product_id, referrer_share_id = event.page, event.product_id, event.referrer_share_id
    elif isinstance(event, Share):
        share_id, network = event.share_id, event.network
        product_id, promotion_id = event.product_id, event.promotion_id
    elif isinstance(event, Purchase):
        order_id, amount_cents, currency = event.order_id, event.amount_cents, event.currency
        product_id, referrer_share_id = event.product_id, event.referrer_share_id
    elif isinstance(event, Support):
        ticket_id, action = event.ticket_id, event.action.value
        support_channel, satisfaction = event.support_channel, event.satisfaction
    return (event.event_id, event.type, event.actor_id, time.occurred_at_ms, record.timestamp, event.channel,
            event.session_id, product_id, referrer_share_id, share_id, network, promotion_id, order_id,
            amount_cents, currency, ticket_id, action, support_channel, satisfaction, page,
            int(time.late), int(time.clamped), record.topic, record.partition, record.offset)


def minute_totals_row(minute_ms: int, type_channel: str, partition: int, events: int,
                      revenue_cents: int) -> tuple[Any, ...]:
    """One row of ``minute_totals`` in the table's column order (a batch writes one per minute,
    type, channel and partition its events fell in). Its version is its count, which only
    grows."""
    event_type, channel = type_channel.split("|", 1)
    return (minute_ms, event_type, channel, partition, events, revenue_cents, events)


def error_row(record: SourceRecord, kind: str, reason: str, error_class: str, message: str,
              event: AnyEvent | None) -> dict[str, Any]:
    """One row of ``ingestion_errors``; the payload is kept base64-encoded."""
    return {
        "kind": kind, "reason": reason, "error_class": error_class, "message": message,
        "source_topic": record.topic, "source_partition": record.partition,
        "source_offset": record.offset,
        "record_key": (record.key or b"").decode("utf-8", "replace"),
        "event_id": event.event_id if event else "",
        "ingest_ms": record.timestamp,
        "occurred_at_ms": event.occurred_at_ms if event else None,
        "payload": base64.b64encode(record.value or b"").decode(),
    }
