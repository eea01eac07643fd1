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
    IDENTIFY = "identify"


# Ids that identify nobody: clients send them when they know no one (docs/definitions.md,
# identity). Compared after trimming and lower-casing; an id that is only whitespace is one too.
SENTINEL_IDS = frozenset({"anonymous", "null", "undefined", "none", "0", "-1", "guest", ""})


def is_sentinel_id(value: str) -> bool:
    """True when ``value`` must never identify anyone (``"NULL"``, ``" guest "``, ``""``...)."""
    return value.strip().lower() in SENTINEL_IDS


class Actor:
    """Who did an interaction: a known customer (``customer_id``) or, before they sign in, an
    anonymous visitor (``anonymous_id``, with ``customer_id`` empty). Exactly one is set."""

    __slots__ = ()
    customer_id: str
    anonymous_id: str | None

    @property
    def actor_id(self) -> str:
        """The id the event is keyed and partitioned by."""
        return self.customer_id or self.anonymous_id or ""

    @property
    def anonymous(self) -> bool:
        return not self.customer_id


class TicketAction(StrEnum):
    OPENED = "opened"
    REPLIED = "replied"
    RESOLVED = "resolved"
    REOPENED = "reopened"


# Events are not changed after decoding, but not ``frozen``: a frozen dataclass's __init__ sets each
# field through object.__setattr__, five times the cost of a plain one, on every record read.
# ``unsafe_hash`` keeps them hashable by value, as frozen ones are.
@dataclass(slots=True, unsafe_hash=True)
class Click(Actor):
    event_id: str
    customer_id: str
    occurred_at_ms: int
    channel: str
    session_id: str | None
    page: str
    product_id: str | None
    referrer_share_id: str | None
    anonymous_id: str | None = None  # since the contracts' identity versions

    type = EventType.CLICK


@dataclass(slots=True, unsafe_hash=True)
class Share(Actor):
    event_id: str
    customer_id: str
    occurred_at_ms: int
    channel: str
    session_id: str | None
    share_id: str
    network: str
    product_id: str | None
    promotion_id: str | None
    anonymous_id: str | None = None  # since the contracts' identity versions

    type = EventType.SHARE


@dataclass(slots=True, unsafe_hash=True)
class Purchase(Actor):
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
    anonymous_id: str | None = None  # since the contracts' identity versions

    type = EventType.PURCHASE


@dataclass(slots=True, unsafe_hash=True)
class Support(Actor):
    event_id: str
    customer_id: str
    occurred_at_ms: int
    channel: str
    session_id: str | None
    ticket_id: str
    action: TicketAction
    support_channel: str
    satisfaction: int | None
    anonymous_id: str | None = None  # since the contracts' identity versions

    type = EventType.SUPPORT


@dataclass(slots=True, unsafe_hash=True)
class Identify:
    """An anonymous visitor is (from now on and before) the customer ``customer_id``."""

    event_id: str
    customer_id: str
    occurred_at_ms: int
    channel: str
    session_id: str | None
    anonymous_id: str

    type = EventType.IDENTIFY

    @property
    def actor_id(self) -> str:
        return self.anonymous_id


Event = Click | Share | Purchase | Support
AnyEvent = Event | Identify  # what input topics carry

EVENT_CLASSES: dict[EventType, type[Click] | type[Share] | type[Purchase] | type[Support] | type[Identify]] = {
    EventType.CLICK: Click,
    EventType.SHARE: Share,
    EventType.PURCHASE: Purchase,
    EventType.SUPPORT: Support,
    EventType.IDENTIFY: Identify,
}
