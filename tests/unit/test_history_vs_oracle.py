"""Backfilled history through the stages, without Kafka, equals the oracle over the union of
live and backfilled traffic: 90 days of history (more days than a profile keeps buckets of)
read while a day of live traffic flows, in any interleaving, with crashes, and read again in
full; events sent live and again in the backfill count once (docs/definitions.md, history)."""

from __future__ import annotations

import dataclasses
import random

import pytest

from streams.core.windows import DAY_MS
from streams.settings import load_settings
from streams.tools.oracle import expected
from streams.tools.simulate import DEFAULT_START_MS, SimRecord, SimulationConfig, generate, history
from tests.support.compare import compare_all
from tests.support.inmemory import InMemoryPipeline, run_with_crashes

SETTINGS = load_settings({})
CUTOVER_MS = DEFAULT_START_MS
LIVE = SimulationConfig(seed=3, customers=150, events=3_000, start_ms=CUTOVER_MS, anonymous_visits=0.2,
                        sentinel_ids=0.005)
HISTORY = SimulationConfig(seed=4, customers=150, events=4_000, span_ms=90 * DAY_MS, anonymous_visits=0.2)


def union(live: list[SimRecord], backfill: list[SimRecord]) -> list[SimRecord]:
    """Both in the order of their ingest times, as a backfill running beside live traffic."""
    return sorted([*live, *backfill], key=lambda r: r.ingest_ms)


@pytest.fixture(scope="module")
def records() -> list[SimRecord]:
    live = generate(LIVE)
    backfill = history(HISTORY, CUTOVER_MS, publish_from_ms=CUTOVER_MS + 3_600_000, publish_span_ms=6 * 3_600_000)
    # Live events exported again in the file, those that occurred from the cut-over on: the
    # worker leaves them to the live topics.
    again = [dataclasses.replace(r, cutover_ms=CUTOVER_MS, ingest_ms=r.ingest_ms + 60_000)
             for r in live[::40] if r.event is not None and r.event.occurred_at_ms >= CUTOVER_MS]
    return union(live, [*backfill, *again])


def test_the_records_cover_what_the_rules_are_about(records: list[SimRecord]) -> None:
    truth = expected(records, SETTINGS)
    backfilled = [a for a in truth.accepted if a.history]
    days = {a.event.occurred_at_ms // DAY_MS for a in backfilled}
    assert len(days) > 80 and min(days) < (CUTOVER_MS - 60 * DAY_MS) // DAY_MS
    assert sum(d.reason == "after_cutover" for d in truth.dead_letters) > 50
    assert any(a.event.anonymous for a in backfilled)
    assert truth.duplicate_count > 0


@pytest.mark.parametrize("seed", [1, 2])
def test_history_beside_live_traffic_equals_the_oracle_for_any_interleaving(records: list[SimRecord],
                                                                           seed: int) -> None:
    truth = expected(records, SETTINGS)
    pipeline = InMemoryPipeline(SETTINGS)
    pipeline.publish(records)
    pipeline.run(random.Random(seed))
    assert compare_all(truth, pipeline.final_rows()) == {}
    assert pipeline.dead_letter_reasons() == sorted(d.reason for d in truth.dead_letters)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_crashes_during_a_backfill_change_nothing(records: list[SimRecord], seed: int) -> None:
    pipeline = run_with_crashes(SETTINGS, records, random.Random(seed))
    assert compare_all(expected(records, SETTINGS), pipeline.final_rows()) == {}


def test_reading_everything_again_onto_the_same_state_changes_nothing(records: list[SimRecord]) -> None:
    pipeline = InMemoryPipeline(SETTINGS)
    pipeline.publish(records)
    pipeline.run(random.Random(5))
    pipeline.read.clear()  # every offset again: the state already holds all of it
    pipeline.run(random.Random(6))
    assert compare_all(expected(records, SETTINGS), pipeline.final_rows()) == {}


def test_history_read_entirely_before_or_entirely_after_live_traffic_gives_the_same_result(
        records: list[SimRecord]) -> None:
    truth = expected(records, SETTINGS)
    for last in (SETTINGS.backfill_topic, *SETTINGS.input_topics.values()):
        pipeline = InMemoryPipeline(SETTINGS)
        pipeline.publish(records)
        others_last = frozenset({last} if last == SETTINGS.backfill_topic else SETTINGS.input_topics.values())
        pipeline.run(random.Random(7), read_last=others_last)
        assert compare_all(truth, pipeline.final_rows()) == {}
