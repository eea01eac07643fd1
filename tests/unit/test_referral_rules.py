"""Referral attribution and the share index (``streams.core.referrals``), one rule per test.

Expiry as the referral stage drives it (clock, store, rebalances) is in
test_referral_expiry.py; here are the rules of one share id's record.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from streams.core.referrals import (
    EARLY_TOUCHES_KEPT,
    WAITING_PAGE,
    AttributionRules,
    Credit,
    CreditOrigin,
    ShareIndex,
    SharePost,
    Touch,
    past_retention,
)

T0 = 1_793_491_200_000
WINDOW = 7 * 86_400_000
TTL = 86_400_000
RETENTION = 30 * 86_400_000
RULES = AttributionRules(window_ms=WINDOW, allow_self_referral=False, pending_touch_ttl_ms=TTL,
                         share_retention_ms=RETENTION)
SHARE = SharePost("s1", "sharer", T0, "x")


def touch(credit_id: str, *, after_share_ms: int = 1_000, customer: str = "buyer", ingest_ms: int = T0,
          touch_type: str = "click", amount_cents: int = 0) -> Touch:
    return Touch(credit_id, customer, SHARE.share_id, touch_type, T0 + after_share_ms, ingest_ms, amount_cents)


def credited(items: Sequence[Credit | Touch]) -> list[str]:
    """Credit ids of credits, or of the touches they would be (a touch's id is its credit's)."""
    return [item.credit_id for item in items]


# --- attribution rules ----------------------------------------------------------------------------


def test_the_attribution_window_includes_both_ends() -> None:
    assert RULES.credit(SHARE, touch("t", after_share_ms=0), T0) is not None
    assert RULES.credit(SHARE, touch("t", after_share_ms=WINDOW), T0) is not None


def test_a_touch_before_its_share_or_past_the_window_earns_nothing() -> None:
    assert RULES.credit(SHARE, touch("t", after_share_ms=-1), T0) is None
    assert RULES.credit(SHARE, touch("t", after_share_ms=WINDOW + 1), T0) is None


def test_a_self_referral_earns_nothing_unless_allowed() -> None:
    own = touch("t", customer=SHARE.sharer_customer_id)
    assert RULES.credit(SHARE, own, T0) is None
    assert AttributionRules(WINDOW, True, TTL, RETENTION).credit(SHARE, own, T0) is not None


def test_a_credit_carries_the_touch_id_sharer_referred_customer_share_type_time_and_amount() -> None:
    purchase = touch("t-9", after_share_ms=5, touch_type="purchase", amount_cents=1_250)
    assert RULES.credit(SHARE, purchase, T0) == Credit(
        credit_id="t-9", sharer_customer_id="sharer", referred_customer_id="buyer", share_id="s1",
        touch_type="purchase", touch_occurred_at_ms=T0 + 5, amount_cents=1_250)


def test_a_touch_by_an_identified_visitor_names_its_customer_even_after_waiting() -> None:
    visit = touch("t-3", customer="dev-1")._replace(anonymous=True, person="c-7")
    assert RULES.credit(SHARE, visit, T0).referred_person == "c-7"
    index = ShareIndex()
    index.on_touch(visit, 0, RULES)  # waits for its share, through the changelog
    restored = ShareIndex.from_json(orjson.loads(orjson.dumps(index.to_json())))
    credit, = restored.on_share(SHARE, 1, T0, RULES)
    assert (credit.referred_customer_id, credit.referred_anonymous, credit.referred_person) == ("dev-1", True, "c-7")
    # Not yet identified when read: no person, the toucher's partition resolves it.
    assert RULES.credit(SHARE, visit._replace(person=None), T0).referred_person is None


def test_a_touch_waits_for_its_share_at_most_the_ttl_of_ingest_time() -> None:
    waited = touch("t", ingest_ms=T0)
    assert RULES.credit(SHARE, waited, T0 + TTL) is not None
    assert RULES.credit(SHARE, waited, T0 + TTL + 1) is None


def test_a_share_earns_for_touches_ingested_at_most_its_retention_after_it() -> None:
    # Event times within the window: only the ingest times decide (a late touch, or a backfill).
    assert RULES.credit(SHARE, touch("t", ingest_ms=T0 + RETENTION), T0) is not None
    assert RULES.credit(SHARE, touch("t", ingest_ms=T0 + RETENTION + 1), T0) is None


def test_a_share_is_past_its_retention_once_every_touch_up_to_its_end_was_read() -> None:
    # A touch read later may have been ingested at the clock's time, still within the retention.
    assert not past_retention(T0, T0 + RETENTION, RETENTION)
    assert past_retention(T0, T0 + RETENTION + 1, RETENTION)


def test_a_share_recorded_without_its_ingest_time_does_not_hold_touches_to_the_ttl() -> None:
    # Share indexes written before the ingest time was kept: the timer's expiry alone applies.
    assert RULES.credit(SHARE, touch("t", ingest_ms=T0), None) is not None


# --- share index ----------------------------------------------------------------------------------


def test_a_touch_after_its_share_is_credited_at_once() -> None:
    index = ShareIndex()
    index.on_share(SHARE, 0, T0, RULES)
    assert credited(index.on_touch(touch("t1"), 1, RULES)) == ["t1"]


def test_a_touch_before_its_share_waits_and_is_credited_when_the_share_arrives() -> None:
    index = ShareIndex()
    assert index.on_touch(touch("t1"), 0, RULES) == []
    assert credited(index.early) == ["t1"]
    assert credited(index.on_share(SHARE, 1, T0, RULES)) == ["t1"]


def test_a_waiting_touch_is_held_to_the_attribution_rules_when_its_share_arrives() -> None:
    index = ShareIndex()
    index.on_touch(touch("in"), 0, RULES)
    index.on_touch(touch("out", after_share_ms=WINDOW + 1), 1, RULES)
    index.on_touch(touch("self", customer="sharer"), 2, RULES)
    assert credited(index.on_share(SHARE, 3, T0, RULES)) == ["in"]


def test_a_replayed_touch_offset_does_not_wait_twice() -> None:
    index = ShareIndex()
    index.on_touch(touch("t1"), 4, RULES)
    index.on_touch(touch("t1"), 4, RULES)  # the index partition replayed after a crash
    assert credited(index.early) == ["t1"]


def test_a_replayed_share_credits_its_waiting_touches_again() -> None:
    # The credits may not have left before the crash; the sharer's profile drops known ids.
    index = ShareIndex()
    index.on_touch(touch("t1"), 0, RULES)
    index.on_share(SHARE, 1, T0, RULES)
    assert credited(index.on_share(SHARE, 1, T0, RULES)) == ["t1"]


def test_the_first_share_with_an_id_wins() -> None:
    index = ShareIndex()
    index.on_touch(touch("t1"), 0, RULES)
    index.on_share(SHARE, 1, T0, RULES)
    rival = SharePost(SHARE.share_id, "someone-else", T0, "y")
    assert index.on_share(rival, 2, T0, RULES) == []
    assert index.share == SHARE
    assert [c.sharer_customer_id for c in index.on_touch(touch("t2"), 3, RULES)] == ["sharer"]


def test_a_touch_that_waited_past_the_ttl_earns_nothing_even_before_expiry_ran() -> None:
    index = ShareIndex()
    index.on_touch(touch("edge", ingest_ms=T0 + 1), 0, RULES)
    index.on_touch(touch("waited-too-long", ingest_ms=T0), 1, RULES)
    assert credited(index.on_share(SHARE, 2, T0 + 1 + TTL, RULES)) == ["edge"]


def test_waiting_touches_expire_by_the_ingest_clock_after_the_ttl() -> None:
    index = ShareIndex()
    index.on_touch(touch("edge", ingest_ms=T0), 0, RULES)
    index.on_touch(touch("gone", ingest_ms=T0 - 1), 1, RULES)
    assert index.expire(now_ingest_ms=T0 + TTL, ttl_ms=TTL) is False  # "edge" still waits
    assert credited(index.early) == ["edge"]
    assert index.expire(now_ingest_ms=T0 + TTL + 1, ttl_ms=TTL) is True  # nothing left: delete


def test_once_the_share_is_known_nothing_expires_and_the_record_is_kept() -> None:
    index = ShareIndex()
    index.on_touch(touch("t1", ingest_ms=T0), 0, RULES)
    index.on_share(SHARE, 1, T0, RULES)
    assert index.expire(now_ingest_ms=T0 + 10 * TTL, ttl_ms=TTL) is False
    assert credited(index.early) == ["t1"]  # kept, so that a replayed share credits it again


def test_at_most_early_touches_kept_touches_wait_first_come_first_kept() -> None:
    index = ShareIndex()
    assert all(index.on_touch(touch(f"t{offset}"), offset, RULES) == [] for offset in range(EARLY_TOUCHES_KEPT))
    assert index.on_touch(touch("one-too-many"), EARLY_TOUCHES_KEPT, RULES) is None  # dropped, and said so
    assert index.on_touch(touch("replayed"), 0, RULES) == []  # a replayed offset was kept already
    assert len(index.early) == EARLY_TOUCHES_KEPT
    assert index.early[-1].credit_id == f"t{EARLY_TOUCHES_KEPT - 1}"


def test_waiting_touches_are_stored_inline_up_to_a_page_then_in_pages() -> None:
    index = ShareIndex()
    for offset in range(WAITING_PAGE):
        index.on_touch(touch(f"t{offset}"), offset, RULES)
    assert (index.to_json()["p"], len(index.to_json()["e"])) == (0, WAITING_PAGE)
    index.on_touch(touch("next"), WAITING_PAGE, RULES)
    record = index.to_json()
    assert (record["p"], record["e"]) == (2, [])
    pages = [index.page_json(page) for page in range(record["p"])]
    assert [len(page) for page in pages] == [WAITING_PAGE, 1]
    assert ShareIndex.from_json(orjson.loads(orjson.dumps(record)), pages) == index


def test_an_index_restored_from_its_changelog_value_behaves_the_same() -> None:
    index = ShareIndex()
    index.on_touch(touch("t1"), 0, RULES)
    index.on_share(SHARE, 1, T0, RULES)
    restored = ShareIndex.from_json(orjson.loads(orjson.dumps(index.to_json())))
    assert restored == index
    assert credited(restored.on_share(SHARE, 1, T0, RULES)) == ["t1"]


# --- credits produced again -------------------------------------------------------------------


def test_a_touch_read_again_from_before_its_share_is_credited_by_the_share_alone() -> None:
    index = ShareIndex()
    index.on_touch(touch("early"), 0, RULES)
    assert credited(index.on_share(SHARE, 1, T0, RULES)) == ["early"]
    assert index.on_touch(touch("early"), 0, RULES) == []  # read again after a crash: the share credits it
    assert credited(index.on_share(SHARE, 1, T0, RULES)) == ["early"]  # ... when it is read again too
    assert credited(index.on_touch(touch("late"), 2, RULES) or []) == ["late"]


def test_a_duplicate_record_of_the_share_credits_nothing() -> None:
    index = ShareIndex()
    index.on_touch(touch("early"), 0, RULES)
    assert credited(index.on_share(SHARE, 1, T0, RULES)) == ["early"]
    assert index.on_share(SHARE, 2, T0, RULES) == []  # the producer sent the share twice


def test_a_credit_counts_only_after_the_last_counted_from_its_index_partition() -> None:
    counted: dict[int, tuple[int, int]] = {}
    assert CreditOrigin(0, 10, 0).after(counted)
    assert CreditOrigin(0, 10, 1).after(counted)  # the same record's next credit
    assert CreditOrigin(1, 3, 0).after(counted)  # another partition: its own order
    assert not CreditOrigin(0, 10, 1).after(counted)  # produced again
    assert not CreditOrigin(0, 7, 0).after(counted)  # produced again, an earlier record
    assert CreditOrigin(0, 11, 0).after(counted)
    assert counted == {0: (11, 0), 1: (3, 0)}


def test_a_touch_sent_again_from_its_lane_earns_nothing_and_does_not_wait_twice() -> None:
    def sent(credit_id: str, lane_offset: int, lane: str = "clicks>0") -> Touch:
        return touch(credit_id)._replace(lane=lane, lane_offset=lane_offset)

    waiting = ShareIndex()
    waiting.on_touch(sent("t1", 5), 0, RULES)
    assert waiting.on_touch(sent("t1", 5), 1, RULES) == []  # its record read again: sent again
    assert credited(waiting.on_share(SHARE, 2, T0, RULES)) == ["t1"]  # waited once

    index = ShareIndex()
    index.on_share(SHARE, 0, T0, RULES)
    assert credited(index.on_touch(sent("t2", 7), 1, RULES) or []) == ["t2"]
    assert index.on_touch(sent("t2", 7), 2, RULES) == []  # sent again
    assert credited(index.on_touch(sent("t3", 3, "clicks@1>0"), 3, RULES) or []) == ["t3"]  # another lane
    assert credited(index.on_touch(sent("t2", 7), 1, RULES) or []) == ["t2"]  # the index read again: again
