"""The demo's stitched journey: the visitor's anonymous clicks and later purchase are one
customer's, and the friend who shared the link is credited once for one referred person, by
the oracle and by the stages alike."""

from __future__ import annotations

import random

from streams.settings import load_settings
from streams.tools.journey import stitched_journey
from streams.tools.oracle import expected
from tests.support.compare import compare_all
from tests.support.inmemory import InMemoryPipeline

SETTINGS = load_settings({})
T0 = 1_793_491_200_000


def test_the_journey_is_one_person_and_one_credited_friend() -> None:
    journey = stitched_journey("r1", T0, SETTINGS.currency)
    truth = expected(journey.records, SETTINGS)
    assert truth.identities == {journey.visitor_device: journey.customer}
    customer = truth.profiles[journey.customer]
    assert (customer["events"], customer["clicks"], customer["purchases"], customer["revenue_cents"]) == (
        3, 2, 1, 8_900)
    assert customer["first_seen_at"] == T0 + 60 * 60_000  # the anonymous first click
    friend = truth.profiles[journey.friend]
    assert (friend["referred_clicks"], friend["referred_purchases"], friend["referred_customers"]) == (1, 1, 1)
    pipeline = InMemoryPipeline(SETTINGS)
    pipeline.publish(journey.records)
    pipeline.run(random.Random(1))
    assert compare_all(truth, pipeline.final_rows()) == {}
