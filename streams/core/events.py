"""Typed interaction events: the in-process form of the Avro contracts in ``schemas/``.

Pure module: no Kafka, Faust or ClickHouse imports. Times are UTC epoch milliseconds,
money is integer minor units (cents), so folds stay exact and cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class EventType(StrEnum):
    CLICK = "click"
    SHARE = "share"
    PURCHASE = "purchase"
    SUPPORT = "support"


class TicketAction(StrEnum):
    OPENED = "opened"
    REPLIED = "replied"
    RESOLVED = "resolved"
    REOPENED = "reopened"


@dataclass(frozen=True, slots=True)
class Click:
    event_id: str
    customer_id: str
    occurred_at_ms: int
    channel: str
    session_id: str | None
    page: str
    product_id: str | None
    referrer_share_id: str | None

    type = EventType.CLICK


@dataclass(frozen=True, slots=True)
class Share:
    event_id: str
    customer_id: str
    occurred_at_ms: int
    channel: str
    session_id: str | None
    share_id: str
    network: str
    product_id: str | None
    promotion_id: str | None

    type = EventType.SHARE


@dataclass(frozen=True, slots=True)
class Purchase:
    event_id: str
    customer_id: str
    occurred_at_ms: int
    channel: str
    session_id: str | None
    order_id: str
    amount_cents: int
    currency: str
    product_id: str | None
    referrer_share_id: str | None

    type = EventType.PURCHASE


@dataclass(frozen=True, slots=True)
class Support:
    event_id: str
    customer_id: str
    occurred_at_ms: int
    channel: str
    session_id: str | None
    ticket_id: str
    action: TicketAction
    support_channel: str
    satisfaction: int | None

    type = EventType.SUPPORT


Event = Click | Share | Purchase | Support

EVENT_CLASSES: dict[EventType, type[Click] | type[Share] | type[Purchase] | type[Support]] = {
    EventType.CLICK: Click,
    EventType.SHARE: Share,
    EventType.PURCHASE: Purchase,
    EventType.SUPPORT: Support,
}
