"""The rows of the raw ``events`` and ``ingestion_errors`` tables, built from a source record."""

from __future__ import annotations

import base64
from typing import Any

from streams.core.events import AnyEvent, Click, Event, Purchase, Share, Support
from streams.core.windows import EventTime
from streams.stages.records import SourceRecord


def event_row(record: SourceRecord, event: Event, time: EventTime) -> dict[str, Any]:
    """One row of the raw ``events`` table."""
    row: dict[str, Any] = {
        "event_id": event.event_id, "event_type": event.type,
        "customer_id": event.actor_id, "occurred_at_ms": time.occurred_at_ms,
        "ingest_ms": record.timestamp, "channel": event.channel,
        "session_id": event.session_id, "product_id": None, "referrer_share_id": None,
        "share_id": None, "network": None, "promotion_id": None, "order_id": None,
        "amount_cents": None, "currency": None, "ticket_id": None, "action": None,
        "support_channel": None, "satisfaction": None, "page": None,
        "is_late": int(time.late), "is_clamped": int(time.clamped),
        "source_topic": record.topic, "source_partition": record.partition,
        "source_offset": record.offset,
    }
    if isinstance(event, Click):
        row.update(page=event.page, product_id=event.product_id,
                   referrer_share_id=event.referrer_share_id)
    elif isinstance(event, Share):
        row.update(share_id=event.share_id, network=event.network,
                   product_id=event.product_id, promotion_id=event.promotion_id)
    elif isinstance(event, Purchase):
        row.update(order_id=event.order_id, amount_cents=event.amount_cents,
                   currency=event.currency, product_id=event.product_id,
                   referrer_share_id=event.referrer_share_id)
    elif isinstance(event, Support):
        row.update(ticket_id=event.ticket_id, action=event.action.value,
                   support_channel=event.support_channel, satisfaction=event.satisfaction)
    return row


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
