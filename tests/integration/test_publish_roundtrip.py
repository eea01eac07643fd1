"""Publisher -> real Kafka -> consumer -> codec, and topic provisioning, on the local broker."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import defaultdict
from collections.abc import Iterator

import pytest
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord

from streams.contracts.codec import Codec
from streams.contracts.registry import registry_from_settings
from streams.core.events import EventType, Purchase
from streams.errors import DecodeError, ValidationError
from streams.publisher import DeliveryCounts, Publisher, event_to_json, publish_lines
from streams.settings import Settings
from streams.topics import TopicDrift, ensure_topics, plan_topics
from tests.bench.sample import sample_events

pytestmark = pytest.mark.integration


def _read(bootstrap: str, topics: list[str], count: int, timeout_s: float = 60.0) -> list[ConsumerRecord]:
    """The first ``count`` records of ``topics`` (from the beginning, no consumer group)."""
    consumer = KafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


@pytest.fixture()
def admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    yield client
    client.close()


def test_publish_every_type_and_decode_it_back(settings: Settings, kafka_bootstrap: str) -> None:
    ensure_topics(settings)
    events = sample_events(1_200)  # 300 of each type
    ingest_ms = {e.event_id: int(time.time() * 1000) - 1_000_000 + n for n, e in enumerate(events)}
    with Publisher(settings) as publisher:
        futures = [publisher.publish(e, timestamp_ms=ingest_ms[e.event_id]) for e in events]
        publisher.flush()
        assert publisher.counts == DeliveryCounts(sent=len(events), failed=0)
    assert all(f.succeeded() for f in futures)

    records = _read(kafka_bootstrap, list(settings.input_topics.values()), len(events))
    topic_type = {topic: EventType(t) for t, topic in settings.input_topics.items()}
    codec = Codec(registry_from_settings(settings))
    decoded = {}
    partitions_of = defaultdict(set)
    for record in records:
        event = codec.decode(record.value, topic_type[record.topic])
        assert record.key == event.customer_id.encode()
        assert record.timestamp == ingest_ms[event.event_id]
        partitions_of[event.customer_id].add(record.partition)
        decoded[event.event_id] = event
    assert len(records) == len(events)
    assert decoded == {event.event_id: event for event in events}
    # Keyed by customer: each customer's events share a partition within a topic.
    by_topic_customer = defaultdict(set)
    for record in records:
        by_topic_customer[(record.topic, record.key)].add(record.partition)
    assert all(len(parts) == 1 for parts in by_topic_customer.values())


def test_invalid_events_are_refused_before_sending(settings: Settings) -> None:
    ensure_topics(settings)
    purchase = next(e for e in sample_events(8) if isinstance(e, Purchase))
    future_ms = int(time.time() * 1000) + 2 * 3_600_000
    with Publisher(settings) as publisher:
        with pytest.raises(ValidationError) as caught:
            publisher.publish(dataclasses.replace(purchase, currency="USD"))
        assert caught.value.field == "currency"
        with pytest.raises(ValidationError) as caught:
            publisher.publish(purchase, timestamp_ms=future_ms)  # would poison the producer
        assert caught.value.field == "timestamp_ms"
        publisher.flush()
        assert publisher.counts == DeliveryCounts(sent=0, failed=0)
        publisher.publish(purchase).get(timeout=30)  # still healthy
        assert publisher.counts == DeliveryCounts(sent=1, failed=0)


def test_publish_lines_reports_by_line_and_sends_the_rest(settings: Settings, kafka_bootstrap: str) -> None:
    ensure_topics(settings)
    events = sample_events(40)
    lines = [json.dumps(event_to_json(e)) for e in events]
    lines[3] = "not json"
    lines[10] = json.dumps({**event_to_json(events[10]), "event_id": ""})
    with Publisher(settings) as publisher:
        report = publish_lines(publisher, lines)
    assert (report.sent, report.failed) == (38, 2)
    assert [(e.line, e.message.split(":")[0]) for e in report.errors] == [
        (4, "invalid JSON"),
        (11, "invalid_field"),
    ]
    records = _read(kafka_bootstrap, list(settings.input_topics.values()), 38)
    codec = Codec(registry_from_settings(settings))
    assert sorted(codec.decode(r.value).event_id for r in records) == sorted(
        e.event_id for i, e in enumerate(events) if i not in (3, 10)
    )


def test_publish_raw_sends_bytes_as_they_are(settings: Settings, kafka_bootstrap: str) -> None:
    ensure_topics(settings)
    topic = settings.input_topics["click"]
    with Publisher(settings) as publisher:
        publisher.publish_raw(topic, b"cust-1", b"\x01garbage", timestamp_ms=1_000)
        publisher.publish_raw(topic, None, b"\x00\x00\x00")
        publisher.flush()
    records = _read(kafka_bootstrap, [topic], 2)
    assert sorted([(r.key, r.value) for r in records], key=repr) == sorted(
        [(b"cust-1", b"\x01garbage"), (None, b"\x00\x00\x00")], key=repr
    )
    reasons = set()
    for record in records:
        with pytest.raises(DecodeError) as caught:
            Codec(registry_from_settings(settings)).decode(record.value, EventType.CLICK)
        reasons.add(caught.value.reason)
    assert reasons == {"bad_magic", "truncated"}


def test_ensure_topics_is_idempotent(settings: Settings, admin: KafkaAdminClient) -> None:
    planned = [spec.name for spec in plan_topics(settings)]
    first = ensure_topics(settings)
    assert (first.created, first.existing, first.drift) == (planned, [], [])
    second = ensure_topics(settings)
    assert (second.created, second.existing, second.drift) == ([], planned, [])
    described = admin.describe_topics(planned)
    assert {len(t["partitions"]) for t in described} == {settings.topic_partitions}


def test_ensure_topics_reports_drift_without_altering(settings: Settings, admin: KafkaAdminClient) -> None:
    clicks, dlq = settings.input_topics["click"], settings.dead_letter_topic
    configs = dict(plan_topics(settings)[0].configs)
    admin.create_topics(
        {
            clicks: {"num_partitions": 2, "replication_factor": 1, "configs": configs},
            dlq: {
                "num_partitions": settings.topic_partitions,
                "replication_factor": 1,
                "configs": {**configs, "retention.ms": "60000"},
            },
        },
        wait_for_metadata=True,
    )
    report = ensure_topics(settings)
    assert sorted(report.existing) == sorted([clicks, dlq])
    assert len(report.created) == len(plan_topics(settings)) - 2
    assert sorted(report.drift, key=str) == sorted(
        [
            TopicDrift(clicks, "partitions", str(settings.topic_partitions), "2"),
            TopicDrift(dlq, "retention.ms", str(settings.input_retention_ms), "60000"),
        ],
        key=str,
    )
    assert len(admin.describe_topics([clicks])[0]["partitions"]) == 2  # left as it was
    assert ensure_topics(settings).drift == report.drift
