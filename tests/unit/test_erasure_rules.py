"""Erasure's pure rules on their own: the request contract, the keyed hash, the anonymous ids
a customer is erased with, referred people kept as keys, and the settings that bound how long
an erased person's records may stay in Kafka. Through the stages: test_erasure_vs_oracle.py."""

from __future__ import annotations

import orjson
import pytest

from streams.core.erasure import ErasureRequest, keyed_hash, read_request, suppression_key
from streams.core.identity import (
    LINKED_KEPT,
    absorb_forwarded,
    forwarded_lane,
    keyed_referees,
    link,
    linked_anonymous_ids,
    person_view,
)
from streams.core.profile import PersonCredit, Profile
from streams.errors import DecodeError, SettingsError
from streams.runtime.app import changelog_configs
from streams.settings import Secret, load_settings, require_erasure_key


def test_a_request_round_trips_and_bad_ones_say_what_is_wrong() -> None:
    request = ErasureRequest("r-1", "cust-9", 1_764_460_800_000)
    assert read_request(request.encode()) == request
    by_hash = ErasureRequest("", "dev-9", 1, request_hash=keyed_hash(b"k" * 16, "r-1"))
    assert read_request(by_hash.encode()) == by_hash and b"r-1" not in by_hash.encode()
    for value, problem in ((b"{", "not JSON"), (b"[]", "JSON object"),
                           (b'{"customer_id": "c", "requested_at_ms": 1}', "request_id"),
                           (b'{"request_id": "r", "customer_id": " ", "requested_at_ms": 1}', "customer_id"),
                           (b'{"request_id": "r", "customer_id": "c", "requested_at_ms": true}', "requested_at_ms"),
                           (b'{"request_id": "r", "customer_id": "c", "requested_at_ms": -1}', "requested_at_ms")):
        with pytest.raises(DecodeError, match=problem) as raised:
            read_request(value)
        assert raised.value.reason == "bad_erasure_request"


def test_the_keyed_hash_names_no_one_without_its_key() -> None:
    first, again = keyed_hash(b"k" * 16, "cust-1"), keyed_hash(b"k" * 16, "cust-1")
    assert first == again and first != keyed_hash(b"j" * 16, "cust-1") and first != keyed_hash(b"k" * 16, "cust-2")
    assert "cust-1" not in first and len(first) == 32
    assert suppression_key(first) == f"x:{first}"


def test_the_keyed_hash_is_hmac_sha256_whichever_key_came_before() -> None:
    # RFC 4231, test case 2, between uses of other keys: hashes written under one key stay valid.
    for key in (b"k" * 16, b"Jefe", b"j" * 100, b"Jefe"):
        keyed_hash(key, "cust-1")
        assert keyed_hash(b"Jefe", "what do ya want for nothing?") == "5bdcc146bf60754e6a042426089575c7"


def test_a_customer_is_erased_with_the_anonymous_ids_whose_events_it_absorbed() -> None:
    customer = Profile("c-1")
    for anonymous_id in ("dev-1", "dev@2", "dev%403>x"):
        absorb_forwarded(customer, forwarded_lane(anonymous_id, "interactions.clicks@2"), 1)
    customer.book.admit("interactions.clicks", 4, "e-1")  # its own lane names no one
    assert linked_anonymous_ids(customer) == {"dev-1", "dev@2", "dev%403>x"}
    assert link(customer, "dev-4")  # identified, no event yet: kept by the link itself
    assert "dev-4" in linked_anonymous_ids(customer)
    assert Profile.from_json(orjson.loads(orjson.dumps(customer.to_json()))).linked == {"dev-4"}
    crowded = Profile("c-2", linked={f"dev-{n}" for n in range(LINKED_KEPT)})
    assert link(crowded, "dev-0") and not link(crowded, "dev-new")  # past the bound


def test_referred_people_are_kept_as_keys_and_older_state_is_converted() -> None:
    def key(i: str) -> str:
        return "#" + keyed_hash(b"k" * 16, i)

    credits = {"t1": PersonCredit(1, "c-1", "click", 0), "t2": PersonCredit(1, key("c-9"), "click", 0)}
    sharer = Profile("c-1", referred_customers={"c-7", "#c-6", key("c-8")}, person_credits=credits)
    keyed_referees(sharer, key)
    assert sharer.referred_customers == {key("c-7"), key("#c-6"), key("c-8")}  # "#c-6" is an id
    assert {c.referred_person for c in sharer.person_credits.values()} == {key("c-1"), key("c-9")}
    person = person_view(sharer, referee_key=key).snapshot()  # t1 is a self-referral
    assert (person["referred_clicks"], person["referred_customers"]) == (1, 4)
    assert all("c-" not in referred for referred in sharer.referred_customers)


def test_the_erasure_key_is_required_by_the_commands_that_hash() -> None:
    for key in ("", "short"):
        with pytest.raises(SettingsError, match="STREAMS_ERASURE_KEY"):
            require_erasure_key(load_settings({}, erasure_key=Secret(key)))
    assert require_erasure_key(load_settings({"STREAMS_ERASURE_KEY": "x" * 16})) == b"x" * 16


def test_retention_is_bounded_by_the_erasure_deadline() -> None:
    with pytest.raises(SettingsError, match="STREAMS_INPUT_RETENTION_MS"):
        load_settings({"STREAMS_ERASURE_DEADLINE_S": "86400", "STREAMS_INPUT_RETENTION_MS": "86400001"})
    with pytest.raises(SettingsError, match="must be at least 1"):
        load_settings({"STREAMS_INPUT_RETENTION_MS": "-1"})
    assert load_settings({"STREAMS_ERASURE_DEADLINE_S": "86400", "STREAMS_INPUT_RETENTION_MS": "86400000"})
    configs = changelog_configs(load_settings({"STREAMS_ERASURE_DEADLINE_S": "86400",
                                               "STREAMS_INPUT_RETENTION_MS": "3600000"}))
    assert int(configs["max.compaction.lag.ms"]) + int(configs["delete.retention.ms"]) <= 86_400_000
