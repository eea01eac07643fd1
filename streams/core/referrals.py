"""Referral attribution: pure rules and the share-index record of the join. No I/O.

The join: shares and touches (clicks/purchases carrying ``referrer_share_id``) are re-keyed by
share id into one topic, so a share and all its touches meet in one partition, in order. The
record kept per share id holds the share and the touches that arrived before it; a credit
goes to the sharer, re-keyed by the sharer's customer id. See docs/definitions.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EARLY_TOUCHES_KEPT = 1_000


@dataclass(frozen=True, slots=True)
class SharePost:
    share_id: str
    sharer_customer_id: str
    occurred_at_ms: int
    network: str
    anonymous: bool = False  # shared by an anonymous visitor: sharer_customer_id is its anonymous id

    def to_json(self) -> dict[str, Any]:
        return {"share_id": self.share_id, "sharer_customer_id": self.sharer_customer_id,
                "occurred_at_ms": self.occurred_at_ms, "network": self.network, "anonymous": self.anonymous}


@dataclass(frozen=True, slots=True)
class Touch:
    """A click or purchase that came through a shared link; ``credit_id`` is its event id."""

    credit_id: str
    customer_id: str
    share_id: str
    touch_type: str
    occurred_at_ms: int
    ingest_ms: int
    amount_cents: int
    anonymous: bool = False  # made by an anonymous visitor: customer_id is its anonymous id

    def to_json(self) -> dict[str, Any]:
        return {"credit_id": self.credit_id, "customer_id": self.customer_id, "share_id": self.share_id,
                "touch_type": self.touch_type, "occurred_at_ms": self.occurred_at_ms,
                "ingest_ms": self.ingest_ms, "amount_cents": self.amount_cents, "anonymous": self.anonymous}


@dataclass(frozen=True, slots=True)
class Credit:
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


@dataclass(frozen=True, slots=True)
class AttributionRules:
    window_ms: int
    allow_self_referral: bool
    pending_touch_ttl_ms: int

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
        return Credit(touch.credit_id, share.sharer_customer_id, touch.customer_id,
                      share.share_id, touch.touch_type, touch.occurred_at_ms, touch.amount_cents,
                      share.anonymous, touch.anonymous)


@dataclass(slots=True)
class ShareIndex:
    """State of one share id: the share once seen, and touches that came before it."""

    share: SharePost | None = None
    early: list[Touch] = field(default_factory=list)
    offset: int = -1  # highest offset of the index topic absorbed (see streams/core/replay.py)
    share_ingest_ms: int | None = None  # the share's ingest time: how long its touches waited

    def on_share(self, share: SharePost, offset: int, ingest_ms: int, rules: AttributionRules) -> list[Credit]:
        """Record the share (the first one wins) and credit the touches that waited for it.

        On a replay the credits are produced again: they may not have left before a crash,
        and the sharer's profile drops a credit id it has already counted.
        """
        if offset > self.offset:
            self.offset = offset
            if self.share is None:
                self.share, self.share_ingest_ms = share, ingest_ms
        if self.share != share:
            return []
        return [c for t in self.early if (c := rules.credit(share, t, self.share_ingest_ms)) is not None]

    def on_touch(self, touch: Touch, offset: int, rules: AttributionRules) -> list[Credit]:
        """Credit the touch if its share is known, otherwise keep it waiting (bounded)."""
        is_new = offset > self.offset
        self.offset = max(self.offset, offset)
        if self.share is not None:
            credit = rules.credit(self.share, touch, self.share_ingest_ms)
            return [credit] if credit is not None else []
        if is_new and len(self.early) < EARLY_TOUCHES_KEPT:
            self.early.append(touch)
        return []

    def expire(self, now_ingest_ms: int, ttl_ms: int) -> bool:
        """Drop touches that waited longer than ``ttl_ms`` for a share; True if nothing is left."""
        if self.share is None:
            self.early = [t for t in self.early if t.ingest_ms >= now_ingest_ms - ttl_ms]
        return self.share is None and not self.early

    def to_json(self) -> dict[str, Any]:
        return {
            "s": self.share.to_json() if self.share else None,
            "e": [t.to_json() for t in self.early],
            "o": self.offset,
            "i": self.share_ingest_ms,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShareIndex:
        share = SharePost(**data["s"]) if data["s"] else None
        # "i" is absent from records written before the share's ingest time was kept.
        return cls(share, [Touch(**t) for t in data["e"]], data["o"], data.get("i"))
