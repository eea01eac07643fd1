"""Identity stitching on its own (``streams.core.identity``, the contracts' identity rules):
sentinel ids, which identify wins, forwarded events folded once, events kept before an
identify, and credits resolved to persons. The whole pipeline against the oracle, with crashes, is
in test_stages_vs_oracle.py."""

from __future__ import annotations

import dataclasses
import random

import orjson
import pytest

from streams.contracts.codec import Codec, validate
from streams.core.events import Click, Event, Identify, Purchase, Share, Support, TicketAction, is_sentinel_id
from streams.core.identity import (
    PENDING_KEPT,
    IdentifyOutcome,
    absorb_forwarded,
    forwarded_lane,
    identify,
    keep_pending,
    person_view,
    record_person_credit,
)
from streams.core.profile import PersonCredit, Profile
from streams.core.referrals import SharePost, Touch
from streams.core.replay import lane_topic
from streams.core.windows import HOUR_MS
from streams.errors import ValidationError
from streams.settings import load_settings
from streams.stages.records import InputRecord
from streams.stages.referral_stage import ReferralStage
from tests.support.inmemory import DictState

T0 = 1_793_491_200_000


@pytest.mark.parametrize("value", ["anonymous", "null", "undefined", "none", "0", "-1", "guest", "",
                                   "   ", "NULL", " Guest ", "Anonymous", "\tnone\n"])
def test_sentinel_ids_identify_no_one(value: str) -> None:
    assert is_sentinel_id(value)


@pytest.mark.parametrize("value", ["c-1", "anon-7", "00", "-2", "null-device", "guests"])
def test_real_ids_are_not_sentinels(value: str) -> None:
    assert not is_sentinel_id(value)


def _reason(event: Event | Identify) -> str:
    with pytest.raises(ValidationError) as caught:
        validate(event, "EUR")
    return caught.value.reason


ANON_CLICK = Click("e1", "", T0, "web", None, "/", None, None, "dev-1")
IDENTIFY = Identify("i1", "c-1", T0, "web", None, "dev-1")


def test_validation_of_who_acted() -> None:
    validate(ANON_CLICK, "EUR")
    validate(IDENTIFY, "EUR")
    assert _reason(dataclasses.replace(ANON_CLICK, anonymous_id="NULL")) == "sentinel_id"
    assert _reason(dataclasses.replace(ANON_CLICK, anonymous_id=" ")) == "sentinel_id"
    assert _reason(dataclasses.replace(ANON_CLICK, customer_id="guest", anonymous_id=None)) == "sentinel_id"
    assert _reason(dataclasses.replace(ANON_CLICK, customer_id="c-1")) == "invalid_field"  # both ids
    assert _reason(dataclasses.replace(ANON_CLICK, anonymous_id="")) == "invalid_field"
    assert _reason(dataclasses.replace(IDENTIFY, customer_id="undefined")) == "sentinel_id"
    assert _reason(dataclasses.replace(IDENTIFY, anonymous_id="anonymous")) == "sentinel_id"
    assert _reason(dataclasses.replace(IDENTIFY, customer_id="")) == "invalid_field"
    # Field rules come first (the definitions' order of reasons).
    bad_amount = Purchase("e2", "", T0, "web", None, "o", 0, "EUR", None, None, "null")
    assert _reason(bad_amount) == "invalid_field"


def test_anonymous_events_and_identifies_round_trip_and_old_versions_still_decode() -> None:
    codec = Codec()
    assert codec.decode(codec.encode(ANON_CLICK)) == ANON_CLICK
    assert codec.decode(codec.encode(IDENTIFY)) == IDENTIFY
    assert ANON_CLICK.actor_id == "dev-1" and ANON_CLICK.anonymous and IDENTIFY.actor_id == "dev-1"
    # A click written before anonymous_id existed (v1 ids, known to the embedded registry)
    # reads as a known customer's.
    known = dataclasses.replace(ANON_CLICK, customer_id="c-1", anonymous_id=None)
    v3 = codec.encode(known)
    v1_id = (int.from_bytes(v3[1:5], "big") - 2).to_bytes(4, "big")
    # The v1 body is the v3 body without the two trailing nulls (user_agent, anonymous_id).
    assert codec.decode(v3[:1] + v1_id + v3[5:-2]) == known


def test_the_first_identify_wins() -> None:
    anonymous = Profile("dev-1", anonymous=True)
    assert identify(anonymous, "c-1") is IdentifyOutcome.LINKED
    assert identify(anonymous, "c-1") is IdentifyOutcome.CONFIRMED
    assert identify(anonymous, "c-2") is IdentifyOutcome.CONFLICT
    assert anonymous.identified_as == "c-1"


def _events(rng: random.Random, n: int) -> list[Event]:
    """Random events of one person, tickets shared between its ids."""
    out: list[Event] = []
    for i in range(n):
        at = T0 + rng.randrange(40 * 24) * HOUR_MS + rng.randrange(HOUR_MS)
        kind = rng.randrange(4)
        if kind == 0:
            out.append(Click(f"e{i}", "x", at, "web", None, "/", None, None))
        elif kind == 1:
            out.append(Share(f"e{i}", "x", at, "web", None, f"s{i}", rng.choice("ab"), None, None))
        elif kind == 2:
            out.append(Purchase(f"e{i}", "x", at, "web", None, "o", rng.randint(1, 9_000), "EUR", None, None))
        else:
            out.append(Support(f"e{i}", "x", at, "web", None, f"t{rng.randrange(4)}",
                               rng.choice(list(TicketAction)), "chat", rng.choice((None, 1, 5))))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_forwarded_events_count_once_however_often_a_lane_is_sent_again(seed: int) -> None:
    """Each sending of a lane starts from its first event (a restart resends what was kept
    from before the identify) and stops anywhere (a crash): the customer folds each once."""
    rng = random.Random(seed)
    events = _events(rng, 120)
    lanes = {lane: [(offset, event) for offset, event in enumerate(events) if offset % 3 == n]
             for n, lane in enumerate(("interactions.clicks", "interactions.clicks@2", "interactions.support"))}
    whole, customer = Profile("c-1"), Profile("c-1")
    for event in events:
        whole.apply(event, event.occurred_at_ms, False)
    sendings = [[rng.randrange(len(sent) + 1) for sent in lanes.values()] for _ in range(4)]
    sendings.append([len(sent) for sent in lanes.values()])  # the last one runs to the end
    for stops in sendings:
        for (lane, sent), stop in zip(lanes.items(), stops, strict=True):
            for offset, event in sent[:stop]:
                if absorb_forwarded(customer, forwarded_lane("dev-1", lane), offset):
                    customer.apply(event, event.occurred_at_ms, False)
    assert customer.snapshot() == whole.snapshot()
    assert {start: customer.bucket_row(start, daily=True) for start in customer.daily} == \
        {start: whole.bucket_row(start, daily=True) for start in whole.daily}


def test_forwarded_lanes_keep_anonymous_ids_and_customers_apart() -> None:
    lanes = [forwarded_lane(anonymous_id, lane) for anonymous_id in ("dev-1", "dev@1", "dev%401")
             for lane in ("interactions.clicks", "interactions.clicks@3")]
    assert len(set(lanes)) == len(lanes)
    # Duplicates are looked for among the lanes of one topic: one anonymous id's, never the
    # customer's own (their events are different events even with equal ids).
    assert {lane_topic(lane) for lane in lanes[:2]} == {"dev-1>interactions.clicks"}
    assert lane_topic(lanes[2]) != lane_topic(lanes[0]) and "interactions.clicks" not in map(lane_topic, lanes)
    customer = Profile("c-1")
    assert absorb_forwarded(customer, lanes[0], 5) and absorb_forwarded(customer, lanes[2], 5)
    assert not absorb_forwarded(customer, lanes[0], 5) and not absorb_forwarded(customer, lanes[0], 4)


def test_events_before_an_identify_are_kept_up_to_the_bound() -> None:
    anonymous = Profile("dev-1", anonymous=True)
    kept = [keep_pending(anonymous, ["interactions.clicks", offset, "interactions.clicks", T0, "v"])
            for offset in range(PENDING_KEPT + 5)]
    assert kept == [True] * PENDING_KEPT + [False] * 5
    assert [entry[1] for entry in anonymous.pending] == list(range(PENDING_KEPT))


def test_credits_resolve_to_persons_and_self_referrals_earn_nothing() -> None:
    sharer = Profile("c-1")
    sharer.apply_credit("click", "c-7", 0)  # between known customers: counted at once
    assert record_person_credit(sharer, "t1", PersonCredit(0, "dev-9", "click", 0))
    assert record_person_credit(sharer, "t2", PersonCredit(0, "dev-9", "purchase", 500))
    assert record_person_credit(sharer, "t3", PersonCredit(0, "dev-5", "click", 0))
    before = person_view(sharer).snapshot()
    assert (before["referred_clicks"], before["referred_purchases"], before["referred_customers"]) == (3, 1, 3)
    # dev-9 turns out to be c-7, dev-5 the sharer itself: the resolved copies replace the others.
    assert record_person_credit(sharer, "t1", PersonCredit(1, "c-7", "click", 0))
    assert record_person_credit(sharer, "t2", PersonCredit(1, "c-7", "purchase", 500))
    assert record_person_credit(sharer, "t3", PersonCredit(1, "c-1", "click", 0))
    assert not record_person_credit(sharer, "t3", PersonCredit(0, "dev-5", "click", 0))  # arrives late
    after = person_view(sharer).snapshot()
    assert (after["referred_clicks"], after["referred_purchases"], after["referred_revenue_cents"],
            after["referred_customers"]) == (2, 1, 500, 1)
    allowed = person_view(sharer, allow_self_referral=True).snapshot()
    assert (allowed["referred_clicks"], allowed["referred_customers"]) == (3, 2)


def test_identity_state_survives_the_changelog() -> None:
    customer = Profile("c-1")
    anonymous = Profile("dev-1", anonymous=True, touch_credits={"t1": {"credit_id": "t1"}})
    anonymous.apply(Click("e1", "", T0, "web", None, "/", None, None, "dev-1"), T0, False)
    keep_pending(anonymous, ["interactions.clicks", 7, "interactions.clicks@1", T0, "\x00\xff"])
    assert identify(anonymous, "c-1") is IdentifyOutcome.LINKED
    absorb_forwarded(customer, forwarded_lane("dev-1", "interactions.clicks@1"), 7)
    record_person_credit(customer, "t9", PersonCredit(1, "c-2", "click", 0))
    for profile in (customer, anonymous):
        assert Profile.from_json(orjson.loads(orjson.dumps(profile.to_json()))) == profile


def test_a_credit_goes_straight_to_the_sharer_once_the_touching_visitor_is_identified() -> None:
    settings = load_settings({})
    stage = ReferralStage(settings, DictState())
    share = SharePost("s1", "c-1", T0, "x")
    touches = [Touch("t1", "dev-9", "s1", "click", T0 + 1, T0, 0, anonymous=True),
               Touch("t2", "dev-9", "s1", "purchase", T0 + 2, T0, 500, anonymous=True, person="c-7")]
    items = [("share", share.to_json()), *(("touch", t.to_json()) for t in touches)]
    records = [InputRecord(settings.referral_index_topic, 0, offset, b"s1", orjson.dumps({"k": kind, **item}), T0)
               for offset, (kind, item) in enumerate(items)]
    sent = {orjson.loads(m.value or b"")["credit_id"]: (m.key, orjson.loads(m.value or b""))
            for m in stage.process(records).messages}
    assert sent["t1"][0] == b"dev-9" and "rv" not in sent["t1"][1]  # its partition names the person
    assert sent["t2"][0] == b"c-1" and (sent["t2"][1]["rv"], sent["t2"][1]["rp"]) == (1, "c-7")

