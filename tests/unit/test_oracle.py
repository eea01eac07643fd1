"""The oracle against hand-computed answers, and against the bytes the simulator produces."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from itertools import count

import pytest

from streams.contracts.codec import Codec, validate
from streams.core.events import Click, Event, EventType, Identify, Purchase, Share, Support, TicketAction
from streams.errors import DecodeError
from streams.settings import Settings
from streams.tools.oracle import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    Expected,
    expected,
    frequency_score,
    monetary_score,
    recency_score,
)
from streams.tools.simulate import SimRecord, SimulationConfig, Tag, generate

S = Settings()
T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z, a day (hence hour and minute) boundary
_ids = count()


def _eid(event_id: str | None) -> str:
    return event_id or f"e{next(_ids):06d}"


def click(customer: str, at: int, *, ref: str | None = None, channel: str = "web",
          event_id: str | None = None) -> Click:
    return Click(_eid(event_id), customer, at, channel, None, "/", None, ref)


def share(customer: str, at: int, share_id: str, network: str = "x") -> Share:
    return Share(_eid(None), customer, at, "web", None, share_id, network, "p-1", None)


def purchase(customer: str, at: int, cents: int, *, ref: str | None = None,
             currency: str = "EUR") -> Purchase:
    return Purchase(_eid(None), customer, at, "ios", None, "o", cents, currency, None, ref)


def support(customer: str, at: int, ticket: str, action: TicketAction,
            satisfaction: int | None = None, event_id: str | None = None) -> Support:
    return Support(_eid(event_id), customer, at, "web", None, ticket, action, "chat", satisfaction)


def rec(event: Event | Identify, ingest: int | None = None, *, topic: EventType | None = None,
        key: bytes | None = None) -> SimRecord:
    """A record published on time (ingest = occurred) unless told otherwise."""
    return SimRecord(
        topic_type=event.type if topic is None else topic,
        key=event.actor_id.encode() if key is None else key,
        ingest_ms=event.occurred_at_ms if ingest is None else ingest,
        event=event,
    )


def run(*records: SimRecord, settings: Settings = S) -> Expected:
    return expected(list(records), settings)


# --- acceptance ------------------------------------------------------------------------------


def test_dead_letters_with_reasons() -> None:
    good = click("c1", T0)
    result = run(
        SimRecord(EventType.CLICK, b"c1", T0, None, "corrupt_body", b"\x00\x00\x00\x00\x65\xff"),
        rec(good, topic=EventType.SHARE),
        rec(purchase("c1", T0, -100)),
        rec(purchase("c1", T0, 0)),
        rec(purchase("c1", T0, 100, currency="USD")),
        rec(support("c1", T0, "t", TicketAction.OPENED, satisfaction=9)),
        rec(share("c1", T0, "")),
        rec(click("", T0), key=b""),
        rec(good, key=b"c2"),
        rec(good),
    )
    assert [d.reason for d in result.dead_letters] == [
        "corrupt_body", "wrong_topic", "invalid_field", "invalid_field", "invalid_field",
        "invalid_field", "invalid_field", "invalid_field", "key_mismatch"]
    assert result.dead_letters[0].raw_value == b"\x00\x00\x00\x00\x65\xff"
    assert [a.event for a in result.accepted] == [good]


def test_duplicates_first_occurrence_wins_per_customer() -> None:
    first = click("c1", T0, event_id="same")
    result = run(
        rec(first, T0),
        rec(first, T0 + S.allowed_lateness_ms + 1),  # would be late, but is only a duplicate
        rec(click("c2", T0, event_id="same")),  # same id, other customer: not a duplicate
    )
    assert result.duplicate_count == 1
    assert len(result.accepted) == 2
    assert not result.late_event_ids
    assert result.profiles["c1"]["events"] == 1


def test_late_counts_in_lifetime_but_not_in_buckets() -> None:
    on_edge = click("c1", T0)  # exactly the allowed lateness: still on time
    late = purchase("c1", T0 + 1, 2_000)
    result = run(
        rec(on_edge, T0 + S.allowed_lateness_ms),
        rec(late, T0 + 1 + S.allowed_lateness_ms + 1),
    )
    assert result.late_event_ids == {("c1", late.event_id)}
    assert result.profiles["c1"]["events"] == 2
    assert result.profiles["c1"]["revenue_cents"] == 2_000
    assert result.profiles["c1"]["spend_7d_cents"] == 0
    assert result.hourly == {("c1", T0): {"events": 1, "clicks": 1, "shares": 0, "purchases": 0,
                                          "support_events": 0, "revenue_cents": 0}}
    assert set(result.minutes) == {(T0, "click", "web")}


def test_far_future_is_clamped_to_ingest_time() -> None:
    ingest = T0 + 10 * MINUTE_MS
    edge = click("c1", ingest + S.max_future_skew_ms)  # exactly the skew: kept
    ahead = click("c1", ingest + S.max_future_skew_ms + 1)
    result = run(rec(edge, ingest), rec(ahead, ingest))
    assert result.clamped_event_ids == {("c1", ahead.event_id)}
    assert result.profiles["c1"]["first_seen_at"] == ingest
    assert result.profiles["c1"]["last_seen_at"] == ingest + S.max_future_skew_ms
    assert result.minutes[(ingest, "click", "web")]["events"] == 1
    assert not result.late_event_ids


def test_bucket_boundaries() -> None:
    before = T0 + HOUR_MS - 1  # hh:59:59.999
    result = run(
        rec(purchase("c1", before, 1_000)),
        rec(purchase("c1", T0 + HOUR_MS, 2_000)),
        rec(click("c1", T0 + DAY_MS - 1)),
        rec(click("c1", T0 + DAY_MS)),
    )
    assert result.hourly[("c1", T0)]["revenue_cents"] == 1_000
    assert result.hourly[("c1", T0 + HOUR_MS)]["revenue_cents"] == 2_000
    assert result.hourly[("c1", T0 + 23 * HOUR_MS)]["clicks"] == 1
    assert result.hourly[("c1", T0 + DAY_MS)]["clicks"] == 1
    assert result.daily[("c1", T0)] == {"events": 3, "clicks": 1, "shares": 0, "purchases": 2,
                                        "support_events": 0, "revenue_cents": 3_000}
    assert result.daily[("c1", T0 + DAY_MS)]["events"] == 1
    assert result.minutes[(T0 + HOUR_MS - MINUTE_MS, "purchase", "ios")] == {
        "events": 1, "revenue_cents": 1_000}
    assert result.minutes[(T0 + HOUR_MS, "purchase", "ios")]["revenue_cents"] == 2_000


def test_rolling_windows_are_whole_utc_days() -> None:
    last = T0 + 40 * DAY_MS + 5 * HOUR_MS
    day = T0 + 40 * DAY_MS
    result = run(*[rec(purchase("c1", at, 100)) for at in (
        day - 30 * DAY_MS,  # outside 30 days
        day - 29 * DAY_MS,  # first of the 30
        day - 7 * DAY_MS,  # outside 7 days
        day - 6 * DAY_MS,  # first of the 7
        last,
    )])
    profile = result.profiles["c1"]
    assert (profile["activity_7d"], profile["spend_7d_cents"]) == (2, 200)
    assert (profile["activity_30d"], profile["spend_30d_cents"]) == (4, 400)
    assert profile["purchases_30d"] == 4
    assert profile["purchases"] == 5


def test_lifetime_fields() -> None:
    result = run(
        rec(purchase("c1", T0, 1_000)),
        rec(purchase("c1", T0 + 1, 1_001)),
        rec(purchase("c1", T0 + 2, 1_001)),
        rec(share("c1", T0 + 3, "s1", "x")),
        rec(share("c1", T0 + 4, "s2", "x")),
        rec(share("c1", T0 + 5, "s3", "email")),
        rec(click("c1", T0 + 6)),
    )
    profile = result.profiles["c1"]
    assert profile["avg_order_value_cents"] == 1_000  # 3002 // 3
    assert profile["last_purchase_at"] == T0 + 2
    assert profile["shares_by_network"] == {"x": 2, "email": 1}
    assert (profile["events"], profile["clicks"], profile["shares"]) == (7, 1, 3)
    assert profile["engagement_score"] == 1 + 3 * 3 + 5 * 3


# --- referrals -------------------------------------------------------------------------------


def credited(result: Expected) -> set[str]:
    return set(result.credits)


def test_attribution_window_edges() -> None:
    window = S.attribution_window_ms
    at_edge = click("b", T0 + window, ref="s1")
    past = click("c", T0 + window + 1, ref="s1")
    before = click("d", T0 - 1, ref="s1")
    buy = purchase("b", T0 + 5, 4_200, ref="s1")
    result = run(rec(before), rec(share("a", T0, "s1")), rec(buy), rec(at_edge), rec(past))
    assert credited(result) == {at_edge.event_id, buy.event_id}
    assert result.credits[buy.event_id] == {
        "credit_id": buy.event_id, "sharer_customer_id": "a", "referred_customer_id": "b",
        "share_id": "s1", "touch_type": "purchase", "amount_cents": 4_200,
        "sharer_anonymous": False, "referred_anonymous": False}
    assert result.credits[at_edge.event_id]["amount_cents"] == 0
    profile = result.profiles["a"]
    assert (profile["referred_clicks"], profile["referred_purchases"]) == (1, 1)
    assert (profile["referred_revenue_cents"], profile["referred_customers"]) == (4_200, 1)


def test_self_referral_excluded_unless_allowed() -> None:
    own = click("a", T0 + 1, ref="s1")
    records = (rec(share("a", T0, "s1")), rec(own))
    assert not run(*records).credits
    assert credited(run(*records, settings=Settings(allow_self_referral=True))) == {own.event_id}


def test_touch_published_before_its_share_waits_up_to_the_ttl() -> None:
    ttl = S.pending_touch_ttl_ms
    waits = click("b", T0 + 1, ref="s1")
    too_long = click("c", T0 + 1, ref="s2")
    result = run(
        rec(waits, T0 + 1),
        rec(too_long, T0),
        rec(share("a", T0, "s1"), T0 + 1 + ttl),  # late, and exactly at the TTL: credited
        rec(share("a", T0, "s2"), T0 + ttl + 1),
    )
    assert credited(result) == {waits.event_id}


def test_a_share_earns_for_touches_ingested_up_to_its_retention_after_it() -> None:
    retention = S.share_retention_ms
    within = click("b", T0 + 1, ref="s1")
    past = click("c", T0 + 2, ref="s1")
    result = run(
        rec(share("a", T0, "s1"), T0),
        rec(within, T0 + retention),  # late by a month, at the retention's end: credited
        rec(past, T0 + retention + 1),
    )
    assert credited(result) == {within.event_id}


def test_late_touches_and_shares_still_earn_credits() -> None:
    late_touch = purchase("b", T0 + HOUR_MS, 900, ref="s1")
    result = run(
        rec(share("a", T0, "s1"), T0 + 3 * HOUR_MS),
        rec(late_touch, T0 + 5 * HOUR_MS),
    )
    assert len(result.late_event_ids) == 2
    assert credited(result) == {late_touch.event_id}
    assert result.profiles["a"]["referred_revenue_cents"] == 900


def test_first_share_with_an_id_wins_and_unknown_shares_earn_nothing() -> None:
    touch = click("c", T0 + 10, ref="s1")
    result = run(
        rec(share("a", T0 + 5, "s1")),
        rec(share("b", T0, "s1"), T0 + 5),
        rec(touch),
        rec(click("c", T0 + 10, ref="nope")),
    )
    assert result.credits[touch.event_id]["sharer_customer_id"] == "a"
    assert len(result.credits) == 1


# --- support ---------------------------------------------------------------------------------


def test_ticket_lifecycle_reopened_is_open_and_not_resolved() -> None:
    result = run(
        rec(support("c1", T0, "t1", TicketAction.OPENED)),
        rec(support("c1", T0 + 10 * MINUTE_MS, "t1", TicketAction.REPLIED)),
        rec(support("c1", T0 + 20 * MINUTE_MS, "t1", TicketAction.REPLIED)),
        rec(support("c1", T0 + HOUR_MS, "t1", TicketAction.RESOLVED)),
        rec(support("c1", T0 + 2 * HOUR_MS, "t1", TicketAction.REOPENED)),
        rec(support("c1", T0 + HOUR_MS, "t2", TicketAction.OPENED)),
        rec(support("c1", T0 + 3 * HOUR_MS, "t2", TicketAction.RESOLVED)),
    )
    profile = result.profiles["c1"]
    assert profile["tickets"] == {
        "t1": {"opened_at": T0, "first_reply_at": T0 + 10 * MINUTE_MS,
               "resolved_at": T0 + HOUR_MS, "status": "reopened"},
        "t2": {"opened_at": T0 + HOUR_MS, "first_reply_at": None,
               "resolved_at": T0 + 3 * HOUR_MS, "status": "resolved"},
    }
    assert (profile["open_tickets"], profile["tickets_resolved"]) == (1, 1)
    assert (profile["first_reply_ms_total"], profile["first_reply_count"]) == (600_000, 1)
    assert profile["avg_first_reply_seconds"] == 600
    assert (profile["resolution_ms_total"], profile["resolution_count"]) == (2 * HOUR_MS, 1)
    assert profile["avg_resolution_seconds"] == 7_200


def test_ticket_without_opened_event_and_status_ties() -> None:
    result = run(
        rec(support("c1", T0 + 5, "t1", TicketAction.REPLIED, event_id="b")),
        rec(support("c1", T0 + 5, "t1", TicketAction.RESOLVED, event_id="a")),
        rec(support("c1", T0 + 9, "t1", TicketAction.OPENED, event_id="c")),
        rec(support("c1", T0 + 7, "t2", TicketAction.REPLIED, event_id="d")),
        rec(support("c1", T0 + 20, "t3", TicketAction.RESOLVED, event_id="e")),
        rec(support("c1", T0 + 20, "t3", TicketAction.REPLIED, event_id="f")),
    )
    tickets = result.profiles["c1"]["tickets"]
    assert tickets["t1"]["opened_at"] == T0 + 9  # min of its opened events
    assert tickets["t1"]["status"] == "opened"
    assert tickets["t2"]["opened_at"] == T0 + 7  # no opened event: min of any of its events
    assert tickets["t3"]["status"] == "replied"  # same time: the greater event id decides
    assert result.profiles["c1"]["first_reply_ms_total"] == -4 + 0 + 0


def test_satisfaction_latest_by_time_then_event_id() -> None:
    result = run(
        rec(support("c1", T0 + 9, "t1", TicketAction.RESOLVED, 4, event_id="z")),
        rec(support("c1", T0 + 10, "t1", TicketAction.REOPENED, 2, event_id="b")),
        rec(support("c1", T0 + 10, "t1", TicketAction.RESOLVED, 5, event_id="c")),
        rec(support("c1", T0 + 11, "t1", TicketAction.REPLIED, None, event_id="d")),
    )
    profile = result.profiles["c1"]
    assert profile["latest_satisfaction"] == 5
    assert (profile["satisfaction_sum"], profile["satisfaction_count"]) == (11, 3)
    assert profile["tickets"]["t1"]["status"] == "replied"


# --- scores and segments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "score"),
    [(0, 5), (6, 5), (7, 4), (13, 4), (14, 3), (29, 3), (30, 2), (89, 2), (90, 1)],
)
def test_recency_thresholds(days: int, score: int) -> None:
    seen = T0 + 100 * DAY_MS
    assert recency_score(seen - days * DAY_MS, seen) == score
    # whole days: one ms short of the next day still counts as `days`
    assert recency_score(seen - (days + 1) * DAY_MS + 1, seen) == score
    assert recency_score(None, seen) == 1


@pytest.mark.parametrize(
    ("purchases", "score"), [(0, 1), (1, 1), (2, 2), (3, 3), (4, 3), (5, 4), (9, 4), (10, 5)]
)
def test_frequency_thresholds(purchases: int, score: int) -> None:
    assert frequency_score(purchases) == score


@pytest.mark.parametrize(
    ("cents", "score"),
    [(4_999, 1), (5_000, 2), (19_999, 2), (20_000, 3), (49_999, 3), (50_000, 4),
     (99_999, 4), (100_000, 5)],
)
def test_monetary_thresholds(cents: int, score: int) -> None:
    assert monetary_score(cents) == score


def test_segments_first_matching_rule() -> None:
    week = 7 * DAY_MS
    records = [
        # advocate: two distinct referred customers (and would be loyal too)
        rec(share("adv", T0, "s-adv")),
        rec(click("x1", T0 + 1, ref="s-adv")),
        rec(click("x2", T0 + 2, ref="s-adv")),
        *[rec(purchase("adv", T0 + i, 100)) for i in range(3)],
        # loyal: 3 purchases, R = 3 (20 days ago), despite a bad rating
        *[rec(purchase("loyal", T0 + i, 100)) for i in range(3)],
        rec(support("loyal", T0 + 20 * DAY_MS, "t", TicketAction.RESOLVED, 1)),
        # at risk by satisfaction
        rec(support("sad", T0, "t", TicketAction.RESOLVED, 2)),
        # at risk by recency: one purchase 90 days before last seen
        rec(purchase("gone", T0, 100)),
        rec(click("gone", T0 + 90 * DAY_MS)),
        # new: under 7 days between first and last seen, no purchase
        rec(click("new", T0)),
        rec(click("new", T0 + week - 1)),
        # active: 7 days or more, something this week
        rec(click("act", T0)),
        rec(click("act", T0 + week)),
        # dormant: 7 days or more, and this week's only event is late
        rec(click("dorm", T0)),
        rec(click("dorm", T0 + week), T0 + week + S.allowed_lateness_ms + 1),
    ]
    profiles = run(*records).profiles
    assert {c: p["segment"] for c, p in profiles.items() if not c.startswith("x")} == {
        "adv": "advocate", "loyal": "loyal", "sad": "at_risk", "gone": "at_risk",
        "new": "new", "act": "active", "dorm": "dormant"}
    assert profiles["loyal"]["recency_score"] == 3
    assert profiles["gone"]["recency_score"] == 1
    assert profiles["adv"]["engagement_score"] == 3 + 5 * 3


# --- against the simulator -------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulated() -> list[SimRecord]:
    return generate(SimulationConfig(seed=21, customers=300, events=12_000, malformed=0.02))


def test_declared_malformed_reasons_are_what_the_bytes_are(simulated: list[SimRecord]) -> None:
    codec = Codec()
    actual: Counter[tuple[str | None, str]] = Counter()
    for record in simulated:
        if record.malformed_reason is None:
            continue
        assert record.raw_value is not None
        try:
            event = codec.decode(record.raw_value, record.topic_type)
            validate(event, S.currency)
            reason = "key_mismatch" if record.key != event.customer_id.encode() else "accepted"
        except DecodeError as error:
            reason = error.reason
        actual[(record.malformed_reason, reason)] += 1
    assert all(declared == reason for declared, reason in actual)
    assert len(actual) == 7


def test_only_malformed_records_are_dead_lettered(simulated: list[SimRecord]) -> None:
    result = expected(simulated, S)
    malformed = [r for r in simulated if r.malformed_reason]
    assert [(d.key, d.raw_value, d.reason) for d in result.dead_letters] == [
        (r.key, r.raw_value, r.malformed_reason) for r in malformed]
    assert result.duplicate_count == sum(Tag.DUPLICATE in r.tags for r in simulated)
    assert {e for _, e in result.late_event_ids} == {
        r.event.event_id for r in simulated if Tag.LATE in r.tags and r.event}
    assert {e for _, e in result.clamped_event_ids} == {
        r.event.event_id for r in simulated if Tag.FAR_FUTURE in r.tags and r.event}
    tagged_touches = {r.event.event_id for r in simulated if r.event and {
        Tag.SELF_REFERRAL, Tag.OUTSIDE_WINDOW, Tag.UNKNOWN_SHARE} & set(r.tags)}
    assert tagged_touches and not tagged_touches & set(result.credits)
    assert {r.event.event_id for r in simulated if Tag.TOUCH_BEFORE_SHARE in r.tags and r.event} \
        <= set(result.credits)


def test_result_is_a_function_of_the_set(simulated: list[SimRecord]) -> None:
    """Without duplicates, reordering the records changes nothing (ingest times kept)."""
    unique = [r for r in simulated if Tag.DUPLICATE not in r.tags]
    shuffled = list(unique)
    random.Random(4).shuffle(shuffled)
    a, b = expected(unique, S), expected(shuffled, S)
    assert (a.profiles, a.hourly, a.daily, a.minutes, a.credits) == (
        b.profiles, b.hourly, b.daily, b.minutes, b.credits)
    assert (a.late_event_ids, a.clamped_event_ids) == (b.late_event_ids, b.clamped_event_ids)
    assert Counter(a.dead_letters) == Counter(b.dead_letters)


# --- identity --------------------------------------------------------------------------------


def anonymous(event: Event, device: str) -> Event:
    return dataclasses.replace(event, customer_id="", anonymous_id=device)


def test_identified_devices_are_their_customer_in_any_order() -> None:
    before = anonymous(click("", T0, ref="s1"), "dev-1")
    result = run(
        rec(Identify("i1", "bob", T0 - 5, "web", None, "dev-1")),  # arrives before the events
        rec(share("alice", T0 - 10, "s1")),
        rec(before),
        rec(anonymous(purchase("", T0 + 20, 900, ref="s1"), "dev-1")),
        rec(anonymous(click("", T0 + 30), "dev-2")),
        rec(click("bob", T0 + 40)),
        rec(Identify("i2", "bob", T0 + 50, "web", None, "dev-2")),  # a second device, identified after
        rec(Identify("i3", "carol", T0 + 60, "web", None, "dev-2")),  # a conflict: changes nothing
        rec(Identify("i2", "bob", T0 + 50, "web", None, "dev-2"), T0 + 70),  # a duplicate
        rec(anonymous(click("", T0 + 80), "dev-3")),  # never identified: a person of its own
    )
    assert result.identities == {"dev-1": "bob", "dev-2": "bob"}
    assert result.identity_conflicts == 1 and result.duplicate_count == 1
    assert set(result.profiles) == {"alice", "bob", "dev-3"}
    assert (result.profiles["bob"]["events"], result.profiles["bob"]["revenue_cents"]) == (4, 900)
    assert result.daily[("bob", T0)]["events"] == 4
    alice = result.profiles["alice"]
    assert (alice["referred_clicks"], alice["referred_purchases"], alice["referred_customers"]) == (1, 1, 1)
    assert result.credits[before.event_id]["referred_customer_id"] == "dev-1"  # the row keeps the id


def test_a_touch_by_the_sharers_own_device_is_a_self_referral_once_identified() -> None:
    own_click = anonymous(click("", T0 + 5, ref="s1"), "dev-1")
    shared_by_device = anonymous(share("", T0, "s2"), "dev-1")
    result = run(rec(share("alice", T0, "s1")), rec(own_click), rec(shared_by_device),
                 rec(click("bob", T0 + 9, ref="s2")),
                 rec(Identify("i1", "alice", T0 + 10, "web", None, "dev-1")))
    assert own_click.event_id in result.credits  # a credit between ids as published ...
    alice = result.profiles["alice"]
    assert (alice["referred_clicks"], alice["referred_customers"]) == (1, 1)  # ... but only bob counts


def test_sentinel_ids_are_dead_lettered_with_their_reason() -> None:
    result = run(rec(anonymous(click("", T0), " NULL ")),
                 rec(Identify("i1", "guest", T0, "web", None, "dev-1")))
    assert [d.reason for d in result.dead_letters] == ["sentinel_id", "sentinel_id"]
