"""Moving between embedded ids and registry ids, on real records: Kafka and the local Apicurio.

Records are published with one id space, then read back from Kafka by the profile stage (the
worker's decode and dead-letter path) with the setting switched to the other; none may be
dead-lettered and every event must come back equal (schemas/README.md, schema ids).
"""

from __future__ import annotations

import dataclasses
import time

import pytest
from kafka import KafkaConsumer

from streams.contracts.codec import Codec, validate
from streams.contracts.registry import is_embedded_id, registry_from_settings
from streams.core.events import Event
from streams.publisher import Publisher
from streams.settings import Settings
from streams.stages.profile_stage import ProfileStage
from streams.stages.records import InputRecord
from streams.topics import ensure_topics
from tests.bench.sample import sample_events
from tests.support.inmemory import DictState

pytestmark = pytest.mark.integration

EVENTS = 400  # 100 of each type


def _publish(settings: Settings, events: list[Event]) -> None:
    ensure_topics(settings)
    with Publisher(settings) as publisher:
        for event in events:
            publisher.publish(event)
        publisher.flush()
        assert publisher.counts.failed == 0


def _read_back(settings: Settings, count: int) -> list[InputRecord]:
    consumer = KafkaConsumer(*settings.input_topics.values(), bootstrap_servers=settings.kafka_bootstrap_servers,
                             group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)
    records: list[InputRecord] = []
    deadline = time.monotonic() + 60
    try:
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(InputRecord(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp) for r in batch)
    finally:
        consumer.close()
    assert len(records) == count
    return records


def _consume(settings: Settings, records: list[InputRecord]) -> dict[str, Event]:
    """What the worker would make of ``records`` with ``settings``: events by id; no dead letters."""
    codec = Codec(registry_from_settings(settings))
    stage = ProfileStage(settings, codec.decode, lambda e: validate(e, settings.currency), DictState())
    out = stage.process(records)
    dead = [m for m in out.messages if m.topic == settings.dead_letter_topic]
    assert dead == []
    assert sum(n for key, n in out.counts.items() if key[0] == "processed") == len(records)
    return {event.event_id: event for event in map(codec.decode, (r.value or b"" for r in records))}


@pytest.mark.parametrize("written_with, read_with", [("embedded", "registry"), ("registry", "embedded")])
def test_records_stay_readable_across_a_switch_of_id_space(
        settings: Settings, schema_registry_url: str, written_with: str, read_with: str) -> None:
    events = sample_events(EVENTS)
    # Without a URL nothing but embedded ids can be written; with one, STREAMS_SCHEMA_IDS picks.
    url_for = {"embedded": "" if written_with == "embedded" else schema_registry_url, "registry": schema_registry_url}
    writer = dataclasses.replace(settings, schema_registry_url=url_for[written_with], schema_ids=written_with)
    reader = dataclasses.replace(settings, schema_registry_url=schema_registry_url, schema_ids=read_with)
    _publish(writer, events)
    records = _read_back(settings, len(events))
    assert {is_embedded_id(int.from_bytes((r.value or b"")[1:5], "big")) for r in records} == {
        written_with == "embedded"}
    assert _consume(reader, records) == {event.event_id: event for event in events}
