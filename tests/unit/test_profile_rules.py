"""The profile fold and its snapshot row (``streams.core.profile``), one rule of docs/definitions.md
per test. The oracle's own answers are in test_oracle.py; the whole stage against the oracle is
in test_stages_vs_oracle.py.
"""

from __future__ import annotations

from itertools import count
from typing import Any

import orjson
import pytest

from streams.clickhouse.tables import CUSTOMER_DAILY, CUSTOMER_HOURLY, CUSTOMER_PROFILES
from streams.core.events import Click, Event, Purchase, Share, Support, TicketAction
from streams.core.profile import (
    DAILY_KEPT,
    EVENTS,
    HOURLY_KEPT,
    OPTIONAL_JSON_KEYS,
    TICKETS_KEPT,
    PersonCredit,
    Profile,
    recency_score,
    scores,
)
from streams.core.windows import DAY_MS, HOUR_MS

T0 = 1_793_491_200_000  # 2026-11-01T00:00:00Z: a day boundary
_ids = count()


def _id(event_id: str | None) -> str:
    return event_id or f"e{next(_ids):06d}"


def click(at: int) -> Click:
    return Click(_id(None), "c1", at, "web", None, "/", None, None)


def share(at: int, network: str = "x") -> Share:
    return Share(_id(None), "c1", at, "web", None, f"sh-{at}", network, None, None)


def purchase(at: int, cents: int = 1_000) -> Purchase:
    return Purchase(_id(None), "c1", at, "web", None, "o", cents, "EUR", None, None)


def support(at: int, action: TicketAction, ticket: str = "t1", satisfaction: int | None = None,
            event_id: str | None = None) -> Support:
    return Support(_id(event_id), "c1", at, "web", None, ticket, action, "chat", satisfaction)


def fold(*events: Event, late: bool = False) -> Profile:
    """A profile of ``events``, folded in the order given, each at its own ``occurred_at``."""
    profile = Profile("c1")
    for event in events:
        profile.apply(event, event.occurred_at_ms, late)
    return profile


def row(*events: Event) -> dict[str, Any]:
    return fold(*events).snapshot()


# --- lifetime values ------------------------------------------------------------------------------


def test_first_and_last_seen_are_min_and_max_occurred_at_in_any_order() -> None:
    snapshot = row(click(T0 + 5), click(T0 - 3), click(T0))
    assert (snapshot["first_seen_at_ms"], snapshot["last_seen_at_ms"]) == (T0 - 3, T0 + 5)


def test_events_are_counted_in_total_and_by_type() -> None:
    snapshot = row(click(T0), click(T0), share(T0), purchase(T0), support(T0, TicketAction.OPENED))
    assert [snapshot[k] for k in ("events", "clicks", "shares", "purchases", "support_events")] == [5, 2, 1, 1, 1]


def test_revenue_sums_purchases_and_the_average_order_value_rounds_down() -> None:
    snapshot = row(purchase(T0, 1_000), purchase(T0, 1_001), purchase(T0, 1_001))
    assert (snapshot["revenue_cents"], snapshot["avg_order_value_cents"]) == (3_002, 1_000)


def test_without_purchases_the_average_order_value_is_zero_and_last_purchase_null() -> None:
    snapshot = row(click(T0))
    assert (snapshot["avg_order_value_cents"], snapshot["last_purchase_at_ms"]) == (0, None)


def test_last_purchase_is_the_latest_purchase_not_the_latest_event() -> None:
    assert row(purchase(T0 + 9), purchase(T0 + 2), click(T0 + 20))["last_purchase_at_ms"] == T0 + 9


def test_shares_are_counted_by_network_in_network_order() -> None:
    snapshot = row(share(T0, "x"), share(T0, "bsky"), share(T0, "x"))
    assert (snapshot["share_networks"], snapshot["share_network_counts"]) == (["bsky", "x"], [1, 2])


# --- tickets --------------------------------------------------------------------------------------


def test_a_ticket_opens_at_its_earliest_opened_event() -> None:
    ticket = fold(support(T0 + 5, TicketAction.OPENED), support(T0 + 2, TicketAction.OPENED),
                  support(T0, TicketAction.REPLIED)).tickets["t1"]
    assert ticket.start == T0 + 2


def test_a_ticket_without_an_opened_event_opens_at_its_earliest_event() -> None:
    ticket = fold(support(T0 + 5, TicketAction.RESOLVED), support(T0 + 2, TicketAction.REPLIED)).tickets["t1"]
    assert ticket.start == T0 + 2


def test_first_reply_is_the_earliest_reply_and_resolved_at_the_latest_resolution() -> None:
    ticket = fold(support(T0, TicketAction.OPENED),
                  support(T0 + 30, TicketAction.REPLIED), support(T0 + 10, TicketAction.REPLIED),
                  support(T0 + 40, TicketAction.RESOLVED), support(T0 + 90, TicketAction.RESOLVED),
                  support(T0 + 60, TicketAction.REOPENED)).tickets["t1"]
    assert (ticket.first_reply_at, ticket.resolved_at) == (T0 + 10, T0 + 90)


def test_status_is_the_action_of_the_latest_event_ties_broken_by_the_greater_event_id() -> None:
    tied = [support(T0 + 5, TicketAction.RESOLVED, event_id="b"), support(T0 + 5, TicketAction.REOPENED, event_id="a")]
    assert fold(*tied).tickets["t1"].status == "resolved"
    assert fold(*reversed(tied)).tickets["t1"].status == "resolved"


def test_opened_replied_and_reopened_tickets_are_open_resolved_ones_are_not() -> None:
    snapshot = row(support(T0, TicketAction.OPENED, "a"), support(T0, TicketAction.REPLIED, "b"),
                   support(T0, TicketAction.REOPENED, "c"), support(T0, TicketAction.RESOLVED, "d"))
    assert (snapshot["open_tickets"], snapshot["tickets_resolved"]) == (3, 1)


def test_first_reply_time_sums_over_tickets_with_a_reply() -> None:
    snapshot = row(support(T0, TicketAction.OPENED, "a"), support(T0 + 100, TicketAction.REPLIED, "a"),
                   support(T0, TicketAction.OPENED, "b"), support(T0 + 300, TicketAction.REPLIED, "b"),
                   support(T0, TicketAction.OPENED, "no-reply"))
    assert (snapshot["first_reply_ms_total"], snapshot["first_reply_count"]) == (400, 2)


def test_resolution_time_counts_only_tickets_whose_status_is_resolved() -> None:
    snapshot = row(support(T0, TicketAction.OPENED, "a"), support(T0 + 500, TicketAction.RESOLVED, "a"),
                   support(T0, TicketAction.OPENED, "b"), support(T0 + 100, TicketAction.RESOLVED, "b"),
                   support(T0 + 200, TicketAction.REOPENED, "b"))
    assert (snapshot["resolution_ms_total"], snapshot["resolution_count"]) == (500, 1)


def test_only_the_newest_tickets_are_kept() -> None:
    profile = fold(*(support(T0 + n, TicketAction.OPENED, f"t{n}") for n in range(TICKETS_KEPT + 1)))
    assert len(profile.tickets) == TICKETS_KEPT
    assert "t0" not in profile.tickets and f"t{TICKETS_KEPT}" in profile.tickets
    assert set(profile.to_json()["t"]) == set(profile.tickets)  # the evicted one leaves the record too


def test_the_state_record_holds_each_ticket_as_its_newest_event_left_it() -> None:
    profile = fold(support(T0, TicketAction.OPENED, "a"), support(T0 + 100, TicketAction.REPLIED, "a"),
                   support(T0 + 500, TicketAction.RESOLVED, "a", satisfaction=5), support(T0, TicketAction.OPENED, "b"))
    restored = Profile.from_json(orjson.loads(orjson.dumps(profile.to_json())))
    assert restored.tickets == profile.tickets
    assert restored.tickets["a"].status == "resolved" and restored.tickets["a"].first_reply_at == T0 + 100


# --- satisfaction ---------------------------------------------------------------------------------


def test_satisfaction_sums_and_counts_only_events_carrying_one() -> None:
    snapshot = row(support(T0, TicketAction.OPENED, satisfaction=4), support(T0 + 1, TicketAction.REPLIED),
                   support(T0 + 2, TicketAction.RESOLVED, satisfaction=2))
    assert (snapshot["satisfaction_sum"], snapshot["satisfaction_count"]) == (6, 2)


def test_latest_satisfaction_is_the_latest_carrying_one_ties_broken_by_the_greater_event_id() -> None:
    tied = [support(T0, TicketAction.OPENED, satisfaction=5, event_id="b"),
            support(T0, TicketAction.OPENED, satisfaction=1, event_id="a"),
            support(T0 - 1, TicketAction.OPENED, satisfaction=3)]
    assert fold(*tied).snapshot()["latest_satisfaction"] == 5
    assert fold(*reversed(tied)).snapshot()["latest_satisfaction"] == 5
    assert row(support(T0 + 9, TicketAction.OPENED), *tied)["latest_satisfaction"] == 5  # none on the latest


# --- event-time buckets ---------------------------------------------------------------------------


def test_a_late_event_counts_in_lifetime_values_but_in_no_bucket() -> None:
    profile = fold(purchase(T0, 700), late=True)
    snapshot = profile.snapshot()
    assert (snapshot["events"], snapshot["revenue_cents"]) == (1, 700)
    assert (profile.hourly, profile.daily) == ({}, {})
    assert (snapshot["activity_7d"], snapshot["spend_30d_cents"]) == (0, 0)


def test_an_event_counts_in_its_utc_hour_and_day() -> None:
    profile = fold(purchase(T0 + HOUR_MS - 1, 300), click(T0 + HOUR_MS))
    first_hour, second_hour = profile.bucket_row(T0, daily=False), profile.bucket_row(T0 + HOUR_MS, daily=False)
    day = profile.bucket_row(T0, daily=True)
    assert (first_hour["hour_start"], first_hour["purchases"], first_hour["clicks"], first_hour["revenue_cents"]) == (
        T0, 1, 0, 300)
    assert (second_hour["purchases"], second_hour["clicks"]) == (0, 1)
    assert (day["day"], day["events"], day["revenue_cents"]) == (T0, 2, 300)


def test_a_bucket_row_is_versioned_by_its_event_count() -> None:
    # Counts only grow, so the newer row of a bucket is the one with more events.
    assert fold(click(T0), click(T0 + 1)).bucket_row(T0, daily=True)["version"] == 2


def test_seven_day_values_cover_the_seven_utc_days_ending_on_the_day_of_last_seen() -> None:
    last = T0 + 20 * DAY_MS + 5
    snapshot = row(purchase(last - 6 * DAY_MS, 100), purchase(last - 7 * DAY_MS, 10), click(last))
    assert (snapshot["activity_7d"], snapshot["spend_7d_cents"]) == (2, 100)


def test_thirty_day_values_cover_the_thirty_utc_days_ending_on_the_day_of_last_seen() -> None:
    last = T0 + 40 * DAY_MS
    snapshot = row(share(last - 29 * DAY_MS), purchase(last - 30 * DAY_MS, 10), purchase(last, 100), click(last))
    assert [snapshot[k] for k in ("activity_30d", "spend_30d_cents", "clicks_30d", "shares_30d", "purchases_30d")] == [
        3, 100, 1, 1, 1]


def test_only_the_newest_hourly_buckets_are_kept() -> None:
    profile = fold(*(click(T0 + h * HOUR_MS) for h in range(HOURLY_KEPT + 1)))
    assert sorted(profile.hourly) == [T0 + h * HOUR_MS for h in range(1, HOURLY_KEPT + 1)]


def test_only_the_newest_daily_buckets_are_kept() -> None:
    profile = fold(*(click(T0 + d * DAY_MS) for d in range(DAILY_KEPT + 1)))
    assert sorted(profile.daily) == [T0 + d * DAY_MS for d in range(1, DAILY_KEPT + 1)]


def test_with_every_hour_kept_an_older_event_is_in_no_hourly_bucket_and_one_in_a_kept_hour_is_in_it() -> None:
    full = [click(T0 + h * HOUR_MS) for h in range(1, HOURLY_KEPT + 1)]
    kept = [T0 + h * HOUR_MS for h in range(1, HOURLY_KEPT + 1)]
    older = fold(*full, click(T0))
    assert sorted(older.hourly) == kept and older.counts[EVENTS] == HOURLY_KEPT + 1
    again = fold(*full, click(T0 + HOUR_MS + 1))  # an hour already kept: nothing is dropped
    assert sorted(again.hourly) == kept and again.hourly[T0 + HOUR_MS][EVENTS] == 2


# --- referral credits -----------------------------------------------------------------------------


def test_credits_count_referred_clicks_purchases_revenue_and_distinct_customers() -> None:
    profile = Profile("c1")
    profile.apply_credit("click", "friend", 0)
    profile.apply_credit("purchase", "friend", 2_500)
    profile.apply_credit("purchase", "neighbour", 500)
    snapshot = profile.snapshot()
    assert [snapshot[k] for k in ("referred_clicks", "referred_purchases", "referred_revenue_cents",
                                  "referred_customers")] == [1, 2, 3_000, 2]


# --- scores and segment ---------------------------------------------------------------------------


@pytest.mark.parametrize(("days", "score"), [(0, 5), (6, 5), (7, 4), (13, 4), (14, 3), (29, 3), (30, 2),
                                             (89, 2), (90, 1)])
def test_recency_score_by_whole_days_from_last_purchase_to_last_seen(days: int, score: int) -> None:
    assert recency_score(T0, T0 + days * DAY_MS + DAY_MS - 1) == score  # whole days: rounds down


def test_recency_score_without_a_purchase_is_one() -> None:
    assert recency_score(None, T0) == 1


SCORE_COLUMNS = ("recency_score", "frequency_score", "monetary_score", "engagement_score", "segment")


def row_scores(row: dict[str, Any]) -> dict[str, Any]:
    """``scores`` of a snapshot row's own values, by column name."""
    return dict(zip(SCORE_COLUMNS, scores(
        row["last_purchase_at_ms"], row["first_seen_at_ms"], row["last_seen_at_ms"], row["purchases"],
        row["revenue_cents"], row["clicks_30d"], row["shares_30d"], row["purchases_30d"],
        row["referred_purchases"], row["latest_satisfaction"], row["referred_customers"], row["activity_7d"]),
        strict=True))


def base_row(**values: Any) -> dict[str, Any]:
    """A snapshot row of a customer seen once, today, who bought nothing; ``values`` override."""
    return {"last_purchase_at_ms": None, "first_seen_at_ms": T0, "last_seen_at_ms": T0, "purchases": 0,
            "revenue_cents": 0, "clicks_30d": 0, "shares_30d": 0, "purchases_30d": 0, "referred_purchases": 0,
            "referred_customers": 0, "latest_satisfaction": None, "activity_7d": 0} | values


@pytest.mark.parametrize(("purchases", "score"), [(1, 1), (2, 2), (3, 3), (4, 3), (5, 4), (9, 4), (10, 5)])
def test_frequency_score_by_purchases(purchases: int, score: int) -> None:
    assert row_scores(base_row(purchases=purchases))["frequency_score"] == score


@pytest.mark.parametrize(("cents", "score"), [(4_999, 1), (5_000, 2), (19_999, 2), (20_000, 3), (49_999, 3),
                                              (50_000, 4), (99_999, 4), (100_000, 5)])
def test_monetary_score_by_revenue(cents: int, score: int) -> None:
    assert row_scores(base_row(revenue_cents=cents))["monetary_score"] == score


def test_engagement_weighs_30_day_clicks_shares_purchases_and_referred_purchases() -> None:
    values = base_row(clicks_30d=1, shares_30d=10, purchases_30d=100, referred_purchases=1_000)
    assert row_scores(values)["engagement_score"] == 1 + 30 + 500 + 10_000


def segment(**values: Any) -> str:
    return str(row_scores(base_row(**values))["segment"])


BOUGHT_TODAY = {"last_purchase_at_ms": T0, "purchases": 3}  # R = 5
BOUGHT_LONG_AGO = {"last_purchase_at_ms": T0 - 90 * DAY_MS, "purchases": 1}  # R = 1
OLD_CUSTOMER = {"first_seen_at_ms": T0 - 7 * DAY_MS}


def test_segment_advocate_with_two_referred_customers_before_any_other_rule() -> None:
    assert segment(referred_customers=2, **BOUGHT_TODAY) == "advocate"
    assert segment(referred_customers=1, **BOUGHT_TODAY) == "loyal"


def test_segment_loyal_with_three_purchases_and_recency_three_before_at_risk() -> None:
    assert segment(latest_satisfaction=1, **BOUGHT_TODAY) == "loyal"
    assert segment(**(BOUGHT_TODAY | {"last_purchase_at_ms": T0 - 29 * DAY_MS})) == "loyal"  # R = 3
    # Neither loyal nor anything else: R = 2, or only two purchases.
    assert segment(**(BOUGHT_TODAY | {"last_purchase_at_ms": T0 - 30 * DAY_MS})) == "dormant"
    assert segment(**(BOUGHT_TODAY | {"purchases": 2})) == "dormant"


def test_segment_at_risk_on_low_satisfaction_or_a_purchase_long_ago_before_new() -> None:
    assert segment(latest_satisfaction=2) == "at_risk"
    assert segment(latest_satisfaction=3) == "new"
    assert segment(**BOUGHT_LONG_AGO, **OLD_CUSTOMER) == "at_risk"


def test_segment_new_when_seen_for_under_seven_days_without_a_purchase_before_active() -> None:
    assert segment(first_seen_at_ms=T0 - 7 * DAY_MS + 1, activity_7d=1) == "new"
    assert segment(**OLD_CUSTOMER, activity_7d=1) == "active"


def test_segment_dormant_when_no_rule_matches() -> None:
    assert segment(**OLD_CUSTOMER) == "dormant"


# --- the snapshot row -----------------------------------------------------------------------------


def test_the_snapshot_row_has_exactly_the_customer_profiles_columns_in_order() -> None:
    assert tuple(row(click(T0))) == CUSTOMER_PROFILES.column_names


def test_bucket_rows_have_exactly_their_tables_columns_in_order() -> None:
    tickets = [support(T0 + n, TicketAction.OPENED, ticket=f"t{n}") for n in range(3)]
    profile = fold(*[click(T0)] * 4, share(T0), share(T0), *tickets, purchase(T0 + HOUR_MS, 700))
    assert [tuple(profile.bucket_row(start, daily=False)) for start in profile.hourly] == \
        [CUSTOMER_HOURLY.column_names] * 2
    assert tuple(profile.bucket_row(T0, daily=True)) == CUSTOMER_DAILY.column_names
    # events, clicks, shares, purchases, support events, revenue, version (the event count)
    assert profile.bucket_values(T0, daily=True) == ("c1", T0, 10, 4, 2, 1, 3, 700, 10)


def test_the_snapshot_carries_scores_computed_from_its_own_values() -> None:
    profile = fold(purchase(T0), purchase(T0 + DAY_MS), share(T0 + 2 * DAY_MS), click(T0 + 8 * DAY_MS))
    profile.apply_credit("purchase", "friend", 900)
    snapshot = profile.snapshot()
    assert {k: snapshot[k] for k in row_scores(snapshot)} == row_scores(snapshot)
    assert (snapshot["recency_score"], snapshot["frequency_score"], snapshot["segment"]) == (4, 2, "active")
    assert snapshot["engagement_score"] == 1 + 3 * 1 + 5 * 2 + 10 * 1  # clicks, shares, purchases, referred


def test_every_fold_and_credit_raises_the_version() -> None:
    profile = fold(click(T0), click(T0), late=True)
    profile.apply_credit("click", "friend", 0)
    assert profile.snapshot()["version"] == 3


def test_a_profile_restored_from_its_changelog_value_has_the_same_snapshot() -> None:
    profile = fold(click(T0), share(T0), purchase(T0), support(T0, TicketAction.REPLIED, satisfaction=4))
    profile.apply_credit("purchase", "friend", 900)
    restored = Profile.from_json(orjson.loads(orjson.dumps(profile.to_json())))
    assert restored.snapshot() == profile.snapshot()
    assert restored.to_json() == profile.to_json()


def _history(profile: Profile) -> None:
    profile.apply(share(T0 - 40 * DAY_MS), T0 - 40 * DAY_MS, late=False, history=True)


OPTIONAL_FIELDS: dict[str, Any] = {
    "anonymous": lambda p: setattr(p, "anonymous", True),
    "identified_as": lambda p: setattr(p, "identified_as", "cust-9"),
    "pending": lambda p: setattr(p, "pending", [["t.clicks", 4, "t.clicks", T0, "body"]]),
    "linked": lambda p: setattr(p, "linked", {"dev-1"}),
    "touch_credits": lambda p: setattr(p, "touch_credits", {"cr-1": {"sharer_customer_id": "cust-2"}}),
    "person_credits": lambda p: setattr(p, "person_credits", {"cr-2": PersonCredit(1, "k:ref", "purchase", 700)}),
    "history_daily": _history,
}


@pytest.mark.parametrize("written_before_credit_origins", [False, True])
@pytest.mark.parametrize("optional", ["none", "all", *OPTIONAL_FIELDS])
def test_a_restored_profile_keeps_every_optional_field(optional: str, written_before_credit_origins: bool) -> None:
    profile = fold(click(T0), purchase(T0))
    for name, set_field in OPTIONAL_FIELDS.items():
        if optional in (name, "all"):
            set_field(profile)
    profile.credit_origins = {} if written_before_credit_origins else {3: (17, 0)}
    value = orjson.loads(orjson.dumps(profile.to_json()))
    if written_before_credit_origins:
        del value["co"]
    assert Profile.from_json(value) == profile
    if optional == "all":  # the keys from_json looks for are every key of the optional fields
        assert set(value) - set(Profile("").to_json()) == OPTIONAL_JSON_KEYS
