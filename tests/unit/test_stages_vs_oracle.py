"""The processing stages, run over simulated traffic without Kafka, equal the oracle exactly:
on a clean pass, under different interleavings of the topics, and after crashes that replay
records onto state that may already hold them."""

from __future__ import annotations

import dataclasses
import random

import orjson
import pytest

from streams.core.events import Share
from streams.core.referrals import WAITING_PAGE
from streams.settings import load_settings
from streams.tools.oracle import expected
from streams.tools.simulate import SimulationConfig, generate
from tests.support.compare import compare_all
from tests.support.inmemory import (
    InMemoryPipeline,
    Partitioner,
    crc32_partitioner,
    random_partitioner,
    run_with_crashes,
)

SETTINGS = load_settings({})
# With identity traffic: anonymous visits on several devices per customer, identifies before,
# during and long after them, replayed and conflicting identifies, sentinel ids.
CONFIG = SimulationConfig(seed=7, customers=150, events=4_000, anonymous_visits=0.2, sentinel_ids=0.005)


@pytest.fixture(scope="module")
def records():  # type: ignore[no-untyped-def]
    return generate(CONFIG)


@pytest.fixture(scope="module")
def truth(records):  # type: ignore[no-untyped-def]
    return expected(records, SETTINGS)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_clean_pass_equals_oracle_for_any_interleaving(records, truth, seed: int) -> None:  # type: ignore[no-untyped-def]
    pipeline = InMemoryPipeline(SETTINGS)
    pipeline.publish(records)
    pipeline.run(random.Random(seed))
    assert compare_all(truth, pipeline.final_rows()) == {}
    assert pipeline.dead_letter_reasons() == sorted(d.reason for d in truth.dead_letters)


@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_crashes_and_replays_change_nothing(records, truth, seed: int) -> None:  # type: ignore[no-untyped-def]
    pipeline = run_with_crashes(SETTINGS, records, random.Random(seed))
    assert compare_all(truth, pipeline.final_rows()) == {}


@pytest.fixture(scope="module")
def unordered_records():  # type: ignore[no-untyped-def]
    """Without conflicting identifies: a producer that spreads one key over partitions gives two
    identifies of one anonymous id no order, so which one wins is not defined (definitions)."""
    return generate(dataclasses.replace(CONFIG, identity_conflicts=0.0))


@pytest.mark.parametrize("partitioner", [crc32_partitioner, random_partitioner(5)], ids=["crc32", "random"])
@pytest.mark.parametrize("seed", [21, 22])
def test_any_upstream_partitioner_with_crashes_equals_oracle(records, truth, unordered_records,  # type: ignore[no-untyped-def]
                                                             partitioner: Partitioner, seed: int) -> None:
    if partitioner is not crc32_partitioner:  # keys spread over partitions: no publish order per key
        records, truth = unordered_records, expected(unordered_records, SETTINGS)
    pipeline = run_with_crashes(SETTINGS, records, random.Random(seed), partitioner)
    assert compare_all(truth, pipeline.final_rows()) == {}
    rerouted = pipeline.logs[SETTINGS.repartition_topic].records
    assert sum(1 for part in rerouted.values() for r in part if r.key is not None) > len(records) // 2


SKEWED = SimulationConfig(seed=9, customers=150, events=4_000, hot_customer=0.05, viral_share=0.2)
VIRAL = SimulationConfig(seed=9, customers=500, events=20_000, viral_share=0.5)  # one share, ~1,700 touches


@pytest.mark.parametrize("seed", [31, 32])
def test_skewed_traffic_with_crashes_equals_oracle(seed: int) -> None:
    """A hot customer (5 % of events) and a viral share (about 20 % of touches) change nothing
    about exactness: the hot profile and the share's index record survive replays too."""
    records = generate(SKEWED)
    pipeline = run_with_crashes(SETTINGS, records, random.Random(seed))
    assert compare_all(expected(records, SETTINGS), pipeline.final_rows()) == {}


def test_a_viral_share_read_after_all_its_touches_credits_every_one() -> None:
    """The worst order a backlog can be read in: every click and purchase before any share.
    The viral share's ~1,700 touches all wait for it (in pages) and are all credited."""
    records = generate(VIRAL)
    pipeline = InMemoryPipeline(SETTINGS)
    pipeline.publish(records)
    pipeline.run(random.Random(41), batch=2_000, read_last=frozenset({SETTINGS.input_topics["share"]}))
    assert compare_all(expected(records, SETTINGS), pipeline.final_rows()) == {}
    assert max(len(orjson.loads(raw)) for key, raw in pipeline.share_state.data.items() if key.startswith("w:")) \
        == WAITING_PAGE


@pytest.mark.parametrize("seed", [61, 62])
def test_touches_waiting_for_a_share_topic_read_behind_expire_only_as_the_oracle_says(seed: int) -> None:
    """Expiry of waiting touches runs on a timer, at any point of a backlog. With the shares
    read after every click and purchase, the clicks' ingest times run a day ahead of the
    shares': a touch may expire only once no share it could still be credited for (its ingest
    within the TTL of the touch's) can come."""
    settings = load_settings({}, pending_touch_ttl_ms=2 * 3_600_000)
    records = generate(SimulationConfig(seed=seed, customers=300, events=4_000))
    pipeline = InMemoryPipeline(settings)
    pipeline.publish(records)
    pipeline.run(random.Random(seed), batch=500, read_last=frozenset({settings.input_topics["share"]}),
                 sweep_index=True)
    assert compare_all(expected(records, settings), pipeline.final_rows()) == {}


@pytest.mark.parametrize("seed", [61, 62])
def test_shares_retired_as_the_traffic_goes_change_no_credit_from_the_oracle(seed: int) -> None:
    """Shares kept an hour of ingest time over a day of traffic, the shares topic read behind
    the touches, the sweep after every step: the retention cuts credits, the index forgets
    most shares, and every credit is still the oracle's."""
    settings = load_settings({}, share_retention_ms=3_600_000)
    records = generate(SimulationConfig(seed=seed, customers=300, events=4_000))
    pipeline = InMemoryPipeline(settings)
    pipeline.publish(records)
    pipeline.run(random.Random(seed), batch=300, read_last=frozenset({settings.input_topics["share"]}),
                 sweep_index=True)
    truth = expected(records, settings)
    assert compare_all(truth, pipeline.final_rows()) == {}
    assert len(truth.credits) < len(expected(records, SETTINGS).credits)  # the retention cut some
    shares = {r.event.share_id for r in records if isinstance(r.event, Share)}
    assert sum(1 for key in pipeline.share_state.data if key.startswith("s:")) < len(shares) / 4


@pytest.mark.parametrize("seed", [63, 67])
def test_crashes_after_shares_were_retired_change_no_credit_from_the_oracle(seed: int) -> None:
    """Three times: read until the index retires shares, then, a few batches later, crash back
    to before the batch that retired them. The state read again may hold retired shares or not
    (tombstones lost), and the shares and touches sent again find them or not: exact, as long
    as a crash goes back less than the retention (here hours of ingest time; a worker goes
    back seconds)."""
    settings = load_settings({}, share_retention_ms=8 * 3_600_000)
    records = generate(SimulationConfig(seed=seed, customers=500, events=15_000, span_ms=3 * 86_400_000))
    pipeline = InMemoryPipeline(settings)
    pipeline.publish(records)
    rng = random.Random(seed)
    crashes = retired = 0
    checkpoint = pipeline.checkpoint()
    while crashes < 3 and pipeline.step(rng, 100, sweep_index=True):
        if pipeline.counts[("share_retired",)] > retired:
            retired = pipeline.counts[("share_retired",)]
            for _ in range(rng.randint(0, 5)):
                pipeline.step(rng, 100, sweep_index=True)
            pipeline.crash_to(checkpoint, rng)  # back to before the step that retired shares
            crashes += 1
        checkpoint = pipeline.checkpoint()
    pipeline.run(rng, sweep_index=True)
    assert crashes == 3
    assert compare_all(expected(records, settings), pipeline.final_rows()) == {}


@pytest.mark.parametrize("seed", [51, 52, 53, 54])
def test_a_viral_share_replayed_after_its_credits_were_counted_counts_each_once(seed: int) -> None:
    """A crash after the viral share released its ~1,700 waiting touches and its sharer counted
    the credits: the share is read again and its credits produced again, more of them than the
    ids a profile keeps, and each is still counted once."""
    records = generate(VIRAL)
    rng = random.Random(seed)
    pipeline = InMemoryPipeline(SETTINGS)
    pipeline.publish(records)
    shares_last = frozenset({SETTINGS.input_topics["share"]})
    before_share = pipeline.checkpoint()
    while not paged_share_arrived(pipeline):
        before_share = pipeline.checkpoint()
        assert pipeline.step(rng, 2_000, shares_last)
    pipeline.step(rng, 2_000, shares_last)  # the sharer's profile counts the credits
    pipeline.crash_to(before_share, rng)
    pipeline.run(rng, 2_000, shares_last)
    assert compare_all(expected(records, SETTINGS), pipeline.final_rows()) == {}


@pytest.mark.parametrize("seed", [61, 62])
def test_touches_sent_again_after_a_long_replay_earn_their_credit_once(seed: int) -> None:
    """A crash far behind the profile stage: its records are read again and their touches sent
    to the index again, thousands for the viral share; none earns a second credit."""
    records = generate(VIRAL)
    rng = random.Random(seed)
    pipeline = InMemoryPipeline(SETTINGS)
    pipeline.publish(records)
    pipeline.step(rng, 2_000)
    early = pipeline.checkpoint()
    while pipeline.step(rng, 2_000):
        pass
    pipeline.crash_to(early, rng)
    pipeline.run(rng, 2_000)
    assert compare_all(expected(records, SETTINGS), pipeline.final_rows()) == {}


def paged_share_arrived(pipeline: InMemoryPipeline) -> bool:
    """Whether a share whose touches waited in pages has been read."""
    state = pipeline.share_state.data
    paged = {key.split(":", 2)[2] for key in state if key.startswith("w:")}
    return any(orjson.loads(state[f"s:{share_id}"])["s"] for share_id in paged)
