"""Referral attribution: pure rules and the share-index record of the join. No I/O.

The join: shares and touches (clicks/purchases carrying ``referrer_share_id``) are re-keyed by
share id into one topic, so a share and all its touches meet in one partition, in order. The
record kept per share id holds the share and the touches that arrived before it; a credit
goes to the sharer, re-keyed by the sharer's customer id. See docs/definitions.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

# Touches kept waiting for one share id: what a flood of touches for a share that never comes
# can hold until they expire. A backlog can bring a popular share's touches long before the
# share (its topic read behind the others), so the bound is far above any real share's reach.
EARLY_TOUCHES_KEPT = 100_000
# Waiting touches are stored in pages of this many (~200 KB): no record nears Kafka's 1 MB
# message limit, and a batch rewrites only the pages it added touches to.
WAITING_PAGE = 1_000


def waiting_pages(waiting: int) -> int:
    """Pages a share id's ``waiting`` touches are stored in; 0: inline in the share's record."""
    return 0 if waiting <= WAITING_PAGE else -(-waiting // WAITING_PAGE)


# The messages of the join (shares, touches, credits and their origins) are NamedTuples, not
# frozen dataclasses: one or more is built for every share, touch and credit, and a frozen
# dataclass's __init__ costs about four times as much.
class SharePost(NamedTuple):
    share_id: str
    sharer_customer_id: str
    occurred_at_ms: int
    network: str
    anonymous: bool = False  # shared by an anonymous visitor: sharer_customer_id is its anonymous id

    def to_json(self) -> dict[str, Any]:
        return {"share_id": self.share_id, "sharer_customer_id": self.sharer_customer_id,
                "occurred_at_ms": self.occurred_at_ms, "network": self.network, "anonymous": self.anonymous}


class Touch(NamedTuple):
    """A click or purchase that came through a shared link; ``credit_id`` is its event id.

    ``lane`` and ``lane_offset`` name the record it was read from: the records of one input
    partition as one partition's profile stage reads them, directly or re-routed, and the
    record's offset in that input partition. The stage sends a lane's touches in the lane's
    order, and sends a touch again when it reads its record again: the lane's offsets tell the
    copy (empty and -1 in touches sent before they were kept)."""

    credit_id: str
    customer_id: str
    share_id: str
    touch_type: str
    occurred_at_ms: int
    ingest_ms: int
    amount_cents: int
    anonymous: bool = False  # made by an anonymous visitor: customer_id is its anonymous id
    lane: str = ""
    lane_offset: int = -1
    # The customer an anonymous visitor was already identified as when its touch was read
    # (identities never change afterwards): its credit can go straight to the sharer.
    person: str | None = None

    def to_json(self) -> dict[str, Any]:
        found = {"credit_id": self.credit_id, "customer_id": self.customer_id, "share_id": self.share_id,
                 "touch_type": self.touch_type, "occurred_at_ms": self.occurred_at_ms,
                 "ingest_ms": self.ingest_ms, "amount_cents": self.amount_cents, "anonymous": self.anonymous,
                 "lane": self.lane, "lane_offset": self.lane_offset}
        if self.person is not None:
            found["person"] = self.person
        return found


class Credit(NamedTuple):
    credit_id: str
    sharer_customer_id: str
    referred_customer_id: str
    share_id: str
    touch_type: str
    touch_occurred_at_ms: int
    amount_cents: int
    # Which side is an anonymous id (docs/definitions.md, identity): such credits are resolved
    # to persons before they count.
    sharer_anonymous: bool = False
    referred_anonymous: bool = False
    referred_person: str | None = None  # an anonymous toucher's customer, when known (Touch.person)

    @property
    def involves_anonymous(self) -> bool:
        return self.sharer_anonymous or self.referred_anonymous

    def to_json(self) -> dict[str, Any]:
        return {"credit_id": self.credit_id, "sharer_customer_id": self.sharer_customer_id,
                "referred_customer_id": self.referred_customer_id, "share_id": self.share_id,
                "touch_type": self.touch_type, "touch_occurred_at_ms": self.touch_occurred_at_ms,
                "amount_cents": self.amount_cents, "sharer_anonymous": self.sharer_anonymous,
                "referred_anonymous": self.referred_anonymous}

    def row(self) -> dict[str, Any]:
        """The ``referral_credits`` row: ids as published (the analyst views resolve persons)."""
        return {"credit_id": self.credit_id, "sharer_customer_id": self.sharer_customer_id,
                "referred_customer_id": self.referred_customer_id, "share_id": self.share_id,
                "touch_type": self.touch_type, "touch_occurred_at_ms": self.touch_occurred_at_ms,
                "amount_cents": self.amount_cents}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Credit:
        return cls(**data)


def resolved_credit(credit: dict[str, Any], person: str | None, referred_id: str) -> dict[str, Any]:
    """A credit involving an anonymous toucher as the sharer's partition reads it: resolved
    ("rv" 1) to the customer ``person``, or not yet ("rv" 0, the anonymous ``referred_id``)."""
    return {**credit, "rv": 0 if person is None else 1, "rp": person or referred_id}


class CreditOrigin(NamedTuple):
    """Where the referral index produced a credit: its partition, the offset of the record that
    produced it, and its place among that record's credits.

    A partition's records produce their credits in offset order, the same ones whenever they
    are read (a touch read before its share is credited by the share's record alone), and
    Kafka keeps one producer's messages to a partition in order. So the credits a sharer
    receives from one index partition come in increasing origin, and one that does not come
    after the last counted is a credit produced again: :meth:`after` says so exactly, with
    one origin kept per index partition, however many credits a sharer earns."""

    partition: int
    offset: int
    place: int

    def to_json(self) -> list[int]:
        return [self.partition, self.offset, self.place]

    def after(self, counted: dict[int, tuple[int, int]]) -> bool:
        """Whether this credit comes after the last one counted from its partition (``counted``:
        partition -> (offset, place)); if so it is recorded as the last one."""
        last = counted.get(self.partition)
        if last is not None and (self.offset, self.place) <= last:
            return False
        counted[self.partition] = (self.offset, self.place)
        return True


def past_retention(share_ingest_ms: int, ingest_ms: int, retention_ms: int) -> bool:
    """Whether ingest time ``ingest_ms`` is past a share's retention: a touch ingested then earns
    nothing, and once touches are read up to then the share's record may go (a touch read later
    has a later ingest time)."""
    return ingest_ms > share_ingest_ms + retention_ms


@dataclass(frozen=True, slots=True)
class AttributionRules:
    window_ms: int
    allow_self_referral: bool
    pending_touch_ttl_ms: int
    share_retention_ms: int

    def credit(self, share: SharePost, touch: Touch, share_ingest_ms: int | None) -> Credit | None:
        """The credit ``touch`` earns for ``share``'s author, or None when a rule says no.

        ``share_ingest_ms`` is None only for a share recorded before the index kept it.
        """
        # Same raw id: a self-referral now; a person's other ids are its profile's to decide.
        same_id = touch.customer_id == share.sharer_customer_id and touch.anonymous == share.anonymous
        if same_id and not self.allow_self_referral:
            return None
        if not 0 <= touch.occurred_at_ms - share.occurred_at_ms <= self.window_ms:
            return None
        # A touch published before its share waits for it at most the TTL of ingest time. Decided
        # here, not by expire(): that runs on a timer, and a backlog brings both before it runs.
        if share_ingest_ms is not None and share_ingest_ms - touch.ingest_ms > self.pending_touch_ttl_ms:
            return None
        # A share earns for touches ingested up to its retention after it, and is forgotten then.
        if share_ingest_ms is not None and past_retention(share_ingest_ms, touch.ingest_ms, self.share_retention_ms):
            return None
        return Credit(touch.credit_id, share.sharer_customer_id, touch.customer_id,
                      share.share_id, touch.touch_type, touch.occurred_at_ms, touch.amount_cents,
                      share.anonymous, touch.anonymous, touch.person)


@dataclass(slots=True)
class ShareIndex:
    """State of one share id: the share once seen, and touches that came before it."""

    share: SharePost | None = None
    early: list[Touch] = field(default_factory=list)
    offset: int = -1  # highest offset of the index topic absorbed (see streams/core/replay.py)
    share_ingest_ms: int | None = None  # the share's ingest time: how long its touches waited
    share_offset: int | None = None  # the share's offset in the index (None: recorded before it was kept)
    lanes: dict[str, int] = field(default_factory=dict)  # per touch lane, the highest lane offset seen

    def on_share(self, share: SharePost, offset: int, ingest_ms: int, rules: AttributionRules) -> list[Credit]:
        """Record the share (the first one wins) and credit the touches that waited for it.

        The credits are produced again when the share's record is read again: they may not have
        left before a crash, and the sharer's profile counts each once (see :class:`CreditOrigin`).
        Another record of the share (a producer's duplicate) credits nothing.
        """
        if offset > self.offset:
            self.offset = offset
            if self.share is None:
                self.share, self.share_ingest_ms, self.share_offset = share, ingest_ms, offset
        if self.share != share or self.share_offset not in (None, offset):
            return []
        return [c for t in self.early if (c := rules.credit(share, t, self.share_ingest_ms)) is not None]

    def on_touch(self, touch: Touch, offset: int, rules: AttributionRules) -> list[Credit] | None:
        """Credit the touch if its share is known, otherwise keep it waiting; None when it cannot
        wait, ``EARLY_TOUCHES_KEPT`` touches waiting already: it earns nothing."""
        is_new = offset > self.offset
        self.offset = max(self.offset, offset)
        if is_new and touch.lane:
            # Each lane's touches reach the index in the lane's order: one at or below the lane's
            # highest was sent again (its record read again), and its first copy is handled.
            if touch.lane_offset <= self.lanes.get(touch.lane, -1):
                return []
            self.lanes[touch.lane] = touch.lane_offset
        if self.share is not None:
            if self.share_offset is not None and offset < self.share_offset:
                return []  # read again, from before its share: the share's record credits it
            credit = rules.credit(self.share, touch, self.share_ingest_ms)
            return [credit] if credit is not None else []
        if is_new:
            if len(self.early) >= EARLY_TOUCHES_KEPT:
                return None
            self.early.append(touch)
        return []

    def expire(self, now_ingest_ms: int, ttl_ms: int) -> bool:
        """Drop touches that waited longer than ``ttl_ms`` for a share; True if nothing is left."""
        if self.share is None:
            self.early = [t for t in self.early if t.ingest_ms >= now_ingest_ms - ttl_ms]
        return self.share is None and not self.early

    def to_json(self) -> dict[str, Any]:
        """The share's record; waiting touches are inline, or counted in "p" when paged."""
        pages = waiting_pages(len(self.early))
        return {
            "s": self.share.to_json() if self.share else None,
            "e": [] if pages else [t.to_json() for t in self.early],
            "o": self.offset,
            "i": self.share_ingest_ms,
            "p": pages,
            "so": self.share_offset,
            "ln": self.lanes,
        }

    def page_json(self, page: int) -> list[dict[str, Any]]:
        """Page ``page`` of the waiting touches, when ``to_json`` counts pages."""
        return [t.to_json() for t in self.early[page * WAITING_PAGE:(page + 1) * WAITING_PAGE]]

    @classmethod
    def from_json(cls, data: dict[str, Any], pages: Iterable[list[dict[str, Any]]] = ()) -> ShareIndex:
        """The index from its record and, when the record counts pages, those pages in order."""
        share = SharePost(**data["s"]) if data["s"] else None
        early = [Touch(**t) for t in data["e"]]
        early.extend(Touch(**t) for page in pages for t in page)
        # "i", "so" and "ln" are absent from records written before they were kept.
        return cls(share, early, data["o"], data.get("i"), data.get("so"), data.get("ln", {}))
