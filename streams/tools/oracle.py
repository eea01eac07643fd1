"""The independent second opinion: what the pipeline must produce from a list of records.

Computed straight from ``docs/definitions.md``, one definition at a time over the *set* of
accepted events (collect, then count, group, min and max), never as an incremental fold. It
shares no code with the pipeline (only :mod:`streams.core.events`, :mod:`streams.settings` and the
standard library), so a mistake has to be made twice, differently, to go unnoticed.

Results are plain dicts with integer cents and epoch milliseconds, keyed like the ClickHouse
tables, so tests can compare them field by field.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Protocol

from streams.core.events import (
    AnyEvent,
    Click,
    Event,
    EventType,
    Identify,
    Purchase,
    Share,
    Support,
    TicketAction,
    is_sentinel_id,
)
from streams.settings import Settings

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

OPEN_STATUSES = frozenset({TicketAction.OPENED, TicketAction.REPLIED, TicketAction.REOPENED})


class InputRecord(Protocol):
    """A published record as the oracle reads it (``streams.tools.simulate.SimRecord`` fits).

    ``malformed_reason`` set means the bytes are broken in that way and ``event`` is unused.
    """

    @property
    def topic_type(self) -> EventType: ...
    @property
    def key(self) -> bytes: ...
    @property
    def ingest_ms(self) -> int: ...
    @property
    def event(self) -> AnyEvent | None: ...
    @property
    def malformed_reason(self) -> str | None: ...
    @property
    def raw_value(self) -> bytes | None: ...
    @property
    def cutover_ms(self) -> int | None:
        """Set on a backfilled record: its import's cut-over (docs/definitions.md, history)."""


class DeadLetter(NamedTuple):
    topic_type: str
    key: bytes
    raw_value: bytes | None  # None when the record came as an event, not as bytes
    reason: str


@dataclass(frozen=True, slots=True)
class Accepted:
    """An accepted event: ``occurred_at_ms`` already clamped; ``late`` per the definition;
    ``history``: backfilled."""

    event: Event
    ingest_ms: int
    late: bool
    history: bool = False


@dataclass(slots=True)
class Expected:
    """Everything the pipeline must end up with.

    Keys: ``profiles[customer_id]``, ``hourly``/``daily[(customer_id, bucket_start_ms)]``,
    ``minutes[(minute_start_ms, event_type, channel)]``, ``credits[touch_event_id]``;
    event id sets hold ``(customer_id, event_id)`` pairs.
    """

    accepted: list[Accepted] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    duplicate_count: int = 0
    late_event_ids: set[tuple[str, str]] = field(default_factory=set)
    clamped_event_ids: set[tuple[str, str]] = field(default_factory=set)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    hourly: dict[tuple[str, int], dict[str, int]] = field(default_factory=dict)
    daily: dict[tuple[str, int], dict[str, int]] = field(default_factory=dict)
    minutes: dict[tuple[int, str, str], dict[str, int]] = field(default_factory=dict)
    credits: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Identity: accepted identifies in publish order, anonymous id -> customer (the first
    # identify wins), and how many named another customer. Profiles and buckets are keyed by
    # person: the customer for an identified anonymous id, the anonymous id otherwise.
    identifies: list[Identify] = field(default_factory=list)
    identities: dict[str, str] = field(default_factory=dict)
    identity_conflicts: int = 0


@dataclass(frozen=True, slots=True)
class Erasure:
    """Erasure of ``ids`` requested once the first ``after`` records were all processed."""

    after: int
    ids: frozenset[str]


def expected(records: Sequence[InputRecord], settings: Settings, erasure: Erasure | None = None) -> Expected:
    """The exact expected outcome of publishing ``records`` in this order, with ``erasure``
    (docs/definitions.md, erasure) when given."""
    result = Expected()
    erased: set[str] = set()
    if erasure is not None:
        erased = erased_people(records[:erasure.after], erasure.ids, settings)
        records = [*records[:erasure.after], *(r for r in records[erasure.after:] if not _names(r, erased))]
    _admit(records, settings, result)
    on_time = [a for a in result.accepted if not a.late]
    result.minutes = minute_totals(on_time)
    result.credits = referral_credits(result.accepted, settings)
    if erasure is not None:
        _drop_waiting_touches(result, erased, erasure.after, records)
    resolve_identities(result)
    by_person = [replace(a, event=as_person(a.event, result.identities)) for a in result.accepted]
    on_time_by_person = [a for a in by_person if not a.late]
    result.hourly = customer_buckets(on_time_by_person, HOUR_MS)
    result.daily = customer_buckets(on_time_by_person, DAY_MS)
    result.profiles = profiles(by_person, result.daily, person_credits(result, settings))
    if erasure is not None:
        _forget(result, erased)
    return result


# --- erasure ---------------------------------------------------------------------------------


def erased_people(before: Sequence[InputRecord], ids: Iterable[str], settings: Settings) -> set[str]:
    """The ids an erasure of ``ids`` removes: each of them, and the anonymous ids identified as
    one of them (an identify of such an id after the erasure erases it too; this oracle
    covers erasures after which no identify names an erased customer)."""
    seen = Expected()
    _admit(before, settings, seen)
    resolve_identities(seen)
    erased = set(ids)
    return erased | {anonymous for anonymous, customer in seen.identities.items() if customer in erased}


def _names(record: InputRecord, erased: set[str]) -> bool:
    """Whether a record published after the erasure belongs to an erased id (it is dropped)."""
    event = record.event
    if event is None:
        return record.key.decode(errors="replace") in erased
    return event.actor_id in erased


def _drop_waiting_touches(result: Expected, erased: set[str], cut: int, records: Sequence[InputRecord]) -> None:
    """A touch of an erased id still waiting for its share at the erasure is dropped from the
    share index: it earns its sharer nothing."""
    shared_before = {r.event.share_id for r in records[:cut] if isinstance(r.event, Share)}
    for credit_id, credit in list(result.credits.items()):
        if credit["referred_customer_id"] in erased and credit["share_id"] not in shared_before:
            del result.credits[credit_id]


def _forget(result: Expected, erased: set[str]) -> None:
    """The erased people leave every result; their earlier referrals stay counted in their
    referrers' profiles (docs/definitions.md), but no credit row names them."""
    # An identified anonymous id's past events are its customer's: erasing the id alone keeps them.
    people = {p for p in erased if p not in result.identities}
    result.profiles = {c: p for c, p in result.profiles.items() if c not in people}
    result.hourly = {k: v for k, v in result.hourly.items() if k[0] not in people}
    result.daily = {k: v for k, v in result.daily.items() if k[0] not in people}
    result.credits = {k: c for k, c in result.credits.items()
                      if c["sharer_customer_id"] not in erased and c["referred_customer_id"] not in erased}


# --- acceptance ------------------------------------------------------------------------------


def rejection(record: InputRecord, settings: Settings) -> str | None:
    """Dead-letter reason of a record, or None when it is accepted (before dedup)."""
    if record.malformed_reason is not None:
        return record.malformed_reason
    event = record.event
    if event is None:
        raise ValueError("a record needs an event or a malformed_reason")
    history = record.cutover_ms is not None
    if event.type != record.topic_type and not history:  # the backfill topic carries every type
        return "wrong_topic"
    if breaks_field_rule(event, settings.currency):
        return "invalid_field"
    if any(is_sentinel_id(name) for name in names_of(event)):
        return "sentinel_id"
    if record.key != event.actor_id.encode():
        return "key_mismatch"
    if history and not isinstance(event, Identify) and event.occurred_at_ms >= (record.cutover_ms or 0):
        return "after_cutover"
    return None


def breaks_field_rule(event: AnyEvent, currency: str) -> bool:
    """True when a decoded event breaks one of the field rules of the definitions."""
    if isinstance(event, Identify):
        return not event.event_id or not event.anonymous_id or not event.customer_id
    if not event.event_id or bool(event.customer_id) == (event.anonymous_id is not None):
        return True
    if event.anonymous_id is not None and not event.anonymous_id:
        return True
    if isinstance(event, Purchase):
        return event.amount_cents <= 0 or event.currency != currency
    if isinstance(event, Share):
        return not event.share_id or not event.network
    if isinstance(event, Support):
        bad_score = event.satisfaction is not None and not 1 <= event.satisfaction <= 5
        return bad_score or not event.ticket_id
    return False


def _admit(records: Iterable[InputRecord], settings: Settings, result: Expected) -> None:
    """Split records into dead letters, duplicates and accepted (clamped, late-marked) events.
    Duplicates are found within a lane: the live topics together, or the backfill; between
    them the cut-over decides."""
    seen: set[tuple[str, str]] = set()
    for record in records:
        reason = rejection(record, settings)
        if reason is not None:
            letter = DeadLetter(str(record.topic_type), record.key, record.raw_value, reason)
            result.dead_letters.append(letter)
            continue
        event = record.event
        assert event is not None
        history = record.cutover_ms is not None
        lane = "history:" if history else ""
        if isinstance(event, Identify):
            _admit_identify(event, seen, result, lane)
            continue
        if (lane + actor_key(event), event.event_id) in seen:  # the first occurrence in publish order wins
            result.duplicate_count += 1
            continue
        seen.add((lane + actor_key(event), event.event_id))
        identity = (event.actor_id, event.event_id)
        if event.occurred_at_ms > record.ingest_ms + settings.max_future_skew_ms:
            event = replace(event, occurred_at_ms=record.ingest_ms)
            result.clamped_event_ids.add(identity)
        # History is never late: its ingest time is when it was imported.
        late = not history and event.occurred_at_ms < record.ingest_ms - settings.allowed_lateness_ms
        if late:
            result.late_event_ids.add(identity)
        result.accepted.append(Accepted(event, record.ingest_ms, late, history))


# --- event-time buckets ----------------------------------------------------------------------


def _floor(ms: int, size_ms: int) -> int:
    return ms - ms % size_ms


def _amount(event: Event) -> int:
    return event.amount_cents if isinstance(event, Purchase) else 0


def customer_buckets(on_time: Iterable[Accepted], size_ms: int) -> dict[tuple[str, int], dict[str, int]]:
    """Per (customer, bucket start): events, per-type counts and revenue (events by person)."""
    groups: dict[tuple[str, int], list[Event]] = defaultdict(list)
    for accepted in on_time:
        event = accepted.event
        groups[(event.customer_id, _floor(event.occurred_at_ms, size_ms))].append(event)
    return {key: _bucket_counts(events) for key, events in groups.items()}


def _bucket_counts(events: list[Event]) -> dict[str, int]:
    by_type = Counter(e.type for e in events)
    return {
        "events": len(events),
        "clicks": by_type[EventType.CLICK],
        "shares": by_type[EventType.SHARE],
        "purchases": by_type[EventType.PURCHASE],
        "support_events": by_type[EventType.SUPPORT],
        "revenue_cents": sum(_amount(e) for e in events),
    }


def minute_totals(on_time: Iterable[Accepted]) -> dict[tuple[int, str, str], dict[str, int]]:
    """Per (minute start, event type, channel): events and revenue."""
    groups: dict[tuple[int, str, str], list[Event]] = defaultdict(list)
    for accepted in on_time:
        event = accepted.event
        key = (_floor(event.occurred_at_ms, MINUTE_MS), str(event.type), event.channel)
        groups[key].append(event)
    return {
        key: {"events": len(events), "revenue_cents": sum(_amount(e) for e in events)}
        for key, events in groups.items()
    }


# --- referrals -------------------------------------------------------------------------------


def referral_credits(accepted: list[Accepted], settings: Settings) -> dict[str, dict[str, Any]]:
    """One credit per credited touch, keyed by the touch's event id."""
    first_share: dict[str, Accepted] = {}
    for item in accepted:  # accepted is in publish order: the first share with an id wins
        if isinstance(item.event, Share):
            first_share.setdefault(item.event.share_id, item)
    credits: dict[str, dict[str, Any]] = {}
    for touch in accepted:
        event = touch.event
        if not isinstance(event, Click | Purchase) or not event.referrer_share_id:
            continue
        share = first_share.get(event.referrer_share_id)
        if share is not None and _credited(touch, share, settings):
            credits[event.event_id] = {
                "credit_id": event.event_id,
                "sharer_customer_id": share.event.actor_id,
                "referred_customer_id": event.actor_id,
                "sharer_anonymous": share.event.anonymous,
                "referred_anonymous": event.anonymous,
                "share_id": event.referrer_share_id,
                "touch_type": str(event.type),
                "amount_cents": _amount(event),
            }
    return credits


def _credited(touch: Accepted, share: Accepted, settings: Settings) -> bool:
    if actor_key(touch.event) == actor_key(share.event) and not settings.allow_self_referral:
        return False
    gap = touch.event.occurred_at_ms - share.event.occurred_at_ms
    if not 0 <= gap <= settings.attribution_window_ms:
        return False
    # A touch published before its share waits for it at most the pending TTL (ingest time).
    if share.ingest_ms - touch.ingest_ms > settings.pending_touch_ttl_ms:
        return False
    # A share earns for touches ingested at most its retention after it (ingest time).
    return touch.ingest_ms - share.ingest_ms <= settings.share_retention_ms


# --- profiles --------------------------------------------------------------------------------


def profiles(
    accepted: list[Accepted],
    daily: dict[tuple[str, int], dict[str, int]],
    credits: dict[str, dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    """Every field of the profile table, per customer with an accepted event."""
    events_of: dict[str, list[Event]] = defaultdict(list)
    for item in accepted:
        events_of[item.event.customer_id].append(item.event)
    days_of: dict[str, dict[int, dict[str, int]]] = defaultdict(dict)
    for (customer, day), counts in daily.items():
        days_of[customer][day] = counts
    credits_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for credit in credits.values():
        credits_of[credit["sharer_customer_id"]].append(credit)
    result = {}
    for customer, events in events_of.items():
        profile = lifetime_fields(events)
        profile.update(support_fields(events))
        profile.update(rolling_fields(days_of[customer], profile["last_seen_at"]))
        profile.update(referral_fields(credits_of[customer]))
        profile.update(score_fields(profile))
        result[customer] = profile
    return result


def lifetime_fields(events: list[Event]) -> dict[str, Any]:
    """Seen times, counts by type, revenue, order value, last purchase, shares by network."""
    times = [e.occurred_at_ms for e in events]
    purchases = [e for e in events if isinstance(e, Purchase)]
    revenue = sum(p.amount_cents for p in purchases)
    by_type = Counter(e.type for e in events)
    return {
        "first_seen_at": min(times),
        "last_seen_at": max(times),
        "events": len(events),
        "clicks": by_type[EventType.CLICK],
        "shares": by_type[EventType.SHARE],
        "purchases": len(purchases),
        "support_events": by_type[EventType.SUPPORT],
        "revenue_cents": revenue,
        "avg_order_value_cents": revenue // len(purchases) if purchases else 0,
        "last_purchase_at": max((p.occurred_at_ms for p in purchases), default=None),
        "shares_by_network": dict(Counter(e.network for e in events if isinstance(e, Share))),
    }


def tickets(support: list[Support]) -> dict[str, dict[str, Any]]:
    """Per ticket id: opened_at, first_reply_at, resolved_at and status."""
    by_ticket: dict[str, list[Support]] = defaultdict(list)
    for event in support:
        by_ticket[event.ticket_id].append(event)
    result = {}
    for ticket_id, steps in by_ticket.items():
        opened = [s.occurred_at_ms for s in steps if s.action is TicketAction.OPENED]
        replied = [s.occurred_at_ms for s in steps if s.action is TicketAction.REPLIED]
        resolved = [s.occurred_at_ms for s in steps if s.action is TicketAction.RESOLVED]
        latest = max(steps, key=lambda s: (s.occurred_at_ms, s.event_id))
        result[ticket_id] = {
            "opened_at": min(opened) if opened else min(s.occurred_at_ms for s in steps),
            "first_reply_at": min(replied, default=None),
            "resolved_at": max(resolved, default=None),
            "status": str(latest.action),
        }
    return result


def support_fields(events: list[Event]) -> dict[str, Any]:
    """Tickets, their KPIs and satisfaction."""
    support = [e for e in events if isinstance(e, Support)]
    per_ticket = tickets(support)
    replied = [t for t in per_ticket.values() if t["first_reply_at"] is not None]
    resolved = [t for t in per_ticket.values() if t["status"] == TicketAction.RESOLVED]
    reply_total = sum(t["first_reply_at"] - t["opened_at"] for t in replied)
    resolution_total = sum(t["resolved_at"] - t["opened_at"] for t in resolved)
    rated = [s for s in support if s.satisfaction is not None]
    latest_rated = max(rated, key=lambda s: (s.occurred_at_ms, s.event_id), default=None)
    return {
        "tickets": per_ticket,
        "open_tickets": sum(1 for t in per_ticket.values() if t["status"] in OPEN_STATUSES),
        "tickets_resolved": len(resolved),
        "first_reply_ms_total": reply_total,
        "first_reply_count": len(replied),
        "avg_first_reply_seconds": reply_total // len(replied) // 1000 if replied else 0,
        "resolution_ms_total": resolution_total,
        "resolution_count": len(resolved),
        "avg_resolution_seconds": resolution_total // len(resolved) // 1000 if resolved else 0,
        "latest_satisfaction": None if latest_rated is None else latest_rated.satisfaction,
        "satisfaction_sum": sum(s.satisfaction or 0 for s in rated),
        "satisfaction_count": len(rated),
    }


def rolling_fields(days: dict[int, dict[str, int]], last_seen_at: int) -> dict[str, int]:
    """7- and 30-day sums over the daily buckets of the days ending on last_seen_at's day."""
    last_day = _floor(last_seen_at, DAY_MS)
    week = [c for day, c in days.items() if last_day - 6 * DAY_MS <= day <= last_day]
    month = [c for day, c in days.items() if last_day - 29 * DAY_MS <= day <= last_day]
    return {
        "activity_7d": sum(c["events"] for c in week),
        "spend_7d_cents": sum(c["revenue_cents"] for c in week),
        "activity_30d": sum(c["events"] for c in month),
        "spend_30d_cents": sum(c["revenue_cents"] for c in month),
        "clicks_30d": sum(c["clicks"] for c in month),
        "shares_30d": sum(c["shares"] for c in month),
        "purchases_30d": sum(c["purchases"] for c in month),
    }


def referral_fields(credits: list[dict[str, Any]]) -> dict[str, int]:
    """What this customer's shares earned: credited touches, revenue, distinct customers."""
    purchases = [c for c in credits if c["touch_type"] == EventType.PURCHASE]
    return {
        "referred_clicks": sum(1 for c in credits if c["touch_type"] == EventType.CLICK),
        "referred_purchases": len(purchases),
        "referred_revenue_cents": sum(c["amount_cents"] for c in purchases),
        "referred_customers": len({c["referred_customer_id"] for c in credits}),
    }


# --- scores ----------------------------------------------------------------------------------


def recency_score(last_purchase_at: int | None, last_seen_at: int) -> int:
    """R: 5 within 6 whole days of last_seen_at, down to 1 (or no purchase)."""
    if last_purchase_at is None:
        return 1
    days = (last_seen_at - last_purchase_at) // DAY_MS
    for limit, score in ((6, 5), (13, 4), (29, 3), (89, 2)):
        if days <= limit:
            return score
    return 1


def _threshold_score(value: int, thresholds: tuple[int, int, int, int]) -> int:
    """5 at or above the first threshold, 4 at the second, ..., else 1."""
    for threshold, score in zip(thresholds, (5, 4, 3, 2), strict=True):
        if value >= threshold:
            return score
    return 1


def frequency_score(purchases: int) -> int:
    return _threshold_score(purchases, (10, 5, 3, 2))


def monetary_score(revenue_cents: int) -> int:
    return _threshold_score(revenue_cents, (100_000, 50_000, 20_000, 5_000))


def segment(profile: dict[str, Any], recency: int) -> str:
    """The first matching segment rule."""
    satisfaction = profile["latest_satisfaction"]
    purchases = profile["purchases"]
    if profile["referred_customers"] >= 2:
        return "advocate"
    if purchases >= 3 and recency >= 3:
        return "loyal"
    if (satisfaction is not None and satisfaction <= 2) or (purchases >= 1 and recency == 1):
        return "at_risk"
    if profile["last_seen_at"] - profile["first_seen_at"] < 7 * DAY_MS and purchases == 0:
        return "new"
    if profile["activity_7d"] > 0:
        return "active"
    return "dormant"


def score_fields(profile: dict[str, Any]) -> dict[str, Any]:
    """R, F, M, engagement score and segment, as of the profile's last_seen_at."""
    recency = recency_score(profile["last_purchase_at"], profile["last_seen_at"])
    engagement = (
        profile["clicks_30d"]
        + 3 * profile["shares_30d"]
        + 5 * profile["purchases_30d"]
        + 10 * profile["referred_purchases"]
    )
    return {
        "recency_score": recency,
        "frequency_score": frequency_score(profile["purchases"]),
        "monetary_score": monetary_score(profile["revenue_cents"]),
        "engagement_score": engagement,
        "segment": segment(profile, recency),
    }


# --- identity (docs/definitions.md, identity) ------------------------------------------------


def names_of(event: AnyEvent) -> list[str]:
    """The ids an event names: both for an identify, who acted otherwise."""
    return [event.anonymous_id, event.customer_id] if isinstance(event, Identify) else [event.actor_id]


def actor_key(event: Event) -> str:
    """Who acted, with customers and anonymous ids kept apart."""
    return f"anonymous:{event.anonymous_id}" if event.anonymous else f"customer:{event.customer_id}"


def _admit_identify(event: Identify, seen: set[tuple[str, str]], result: Expected, lane: str) -> None:
    identity = (f"{lane}identify:{event.anonymous_id}", event.event_id)
    if identity in seen:
        result.duplicate_count += 1
        return
    seen.add(identity)
    result.identifies.append(event)


def resolve_identities(result: Expected) -> None:
    """The first accepted identify of each anonymous id wins; a later one naming another
    customer is a conflict."""
    for event in result.identifies:
        known = result.identities.setdefault(event.anonymous_id, event.customer_id)
        if known != event.customer_id:
            result.identity_conflicts += 1


def person_of(actor_id: str, anonymous: bool, identities: dict[str, str]) -> str:
    return identities.get(actor_id, actor_id) if anonymous else actor_id


def as_person(event: Event, identities: dict[str, str]) -> Event:
    """The event as the person's: an identified anonymous id's events are its customer's."""
    if not event.anonymous:
        return event
    return replace(event, customer_id=person_of(event.actor_id, True, identities), anonymous_id=None)


def person_credits(result: Expected, settings: Settings) -> dict[str, dict[str, Any]]:
    """Credits between persons: both sides resolved, self-referrals of a person left out."""
    resolved = {}
    for credit_id, credit in result.credits.items():
        sharer = person_of(credit["sharer_customer_id"], credit["sharer_anonymous"], result.identities)
        referred = person_of(credit["referred_customer_id"], credit["referred_anonymous"], result.identities)
        if sharer == referred and not settings.allow_self_referral:
            continue
        resolved[credit_id] = {**credit, "sharer_customer_id": sharer, "referred_customer_id": referred}
    return resolved
