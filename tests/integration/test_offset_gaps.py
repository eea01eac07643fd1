"""Input offsets that hold no record: a worker reads every record there is, in order, and
commits past the offsets that hold none.

- Transactions: a transactional producer (librdkafka) leaves a commit marker after each
  transaction, an offset without a record. The worker ends exact, counts the markers, finds
  no records missing, and commits up to the last marker of each partition (one marker short of
  the log end: no record follows it). Having read past that marker, it reports no lag and is
  not stalled.
- Retention, before the first commit: every record of a partition deleted before a new
  consumer group read any. Nothing waits there: the worker reports no lag and no stall, and
  reads the records that come next.
- Retention: records deleted from the log while the worker was stopped, past its committed
  offset. The worker reads again from its committed offset to be sure, then goes on from the
  first record left, says so, and commits to the log end (before, its commits stopped at the
  deleted range for good).

Worker metrics port: 19170."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer
from kafka.structs import TopicPartition as KafkaTopicPartition

from streams.clickhouse.migrate import migrate
from streams.settings import Settings
from streams.tools.oracle import expected
from streams.tools.simulate import SimulationConfig, generate, publish, recent_day_start_ms
from streams.topics import ensure_topics
from tests.support.exact import source_lag, wait_for_exact
from tests.support.upstream import RETENTION_MS, LibrdkafkaPublisher, upstream_publisher
from tests.support.worker import Worker, wait_until

METRICS_PORT = 19170
CONFIG = SimulationConfig(seed=17, customers=200, events=3_000, start_ms=recent_day_start_ms())


@pytest.fixture()
def settings(clickhouse_settings: Settings, tmp_path: Path) -> Settings:
    # No retention on the input: the simulator's oldest shares are older than Kafka's default.
    settings = dataclasses.replace(clickhouse_settings, metrics_port=METRICS_PORT, table_dir=str(tmp_path / "state"),
                                   broker_session_timeout_s=6.0, input_retention_ms=RETENTION_MS)
    ensure_topics(settings)
    migrate(settings)
    return settings


@pytest.fixture()
def worker(settings: Settings, tmp_path: Path) -> Iterator[Worker]:
    worker = Worker(settings, tmp_path / "worker.log")
    yield worker
    worker.stop()
    print(worker.log_tail(4000))


def offset_gaps(worker: Worker) -> dict[str, float]:
    return {labels["outcome"]: value for labels, value in worker.samples(METRICS_PORT, "streams_offset_gaps_total")}


def test_records_published_in_transactions_are_all_read_and_counted_once(settings: Settings, worker: Worker) -> None:
    records = generate(CONFIG)
    publisher = LibrdkafkaPublisher(settings, transactional_id=f"upstream-{uuid.uuid4().hex[:8]}",
                                    transaction_records=50)
    publish(records, publisher, settings)
    publisher.close()

    worker.start()
    assert wait_for_exact(settings, expected(records, settings)) == {}
    wait_until(lambda: source_lag(worker, METRICS_PORT) == 0, timeout_s=60)
    assert_not_stalled(worker)
    gaps = offset_gaps(worker)
    assert gaps["missing"] == 0
    assert gaps["marker"] >= len(records) // 50  # a marker after each transaction, in each of its partitions


def test_records_deleted_past_the_committed_offset_are_skipped_and_said(settings: Settings, worker: Worker) -> None:
    records = generate(CONFIG)
    half = len(records) // 2
    publisher = upstream_publisher("kafka-python", settings)
    publish(records[:half], publisher, settings)
    worker.start()
    wait_until(lambda: source_lag(worker, METRICS_PORT) == 0, timeout_s=120)
    worker.stop()  # commits on the way out

    publish(records[half:], publisher, settings)
    publisher.close()
    clicks = settings.input_topics["click"]
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    committed = committed_offset(settings, clicks, 0)
    assert committed, f"no commit on {clicks}-0"
    deleted_to = committed + 20
    futures = admin.delete_records([TopicPartition(clicks, 0, deleted_to)])
    assert futures[TopicPartition(clicks, 0, deleted_to)].result(30).low_watermark == deleted_to

    worker.start()
    wait_until(lambda: source_lag(worker, METRICS_PORT) == 0, timeout_s=120)
    gaps = offset_gaps(worker)
    assert (gaps["marker"], gaps["missing"]) == (0, 1) and gaps["re-read"] >= 1
    log = worker.log_path.read_text()
    said = f"offsets {committed} to {deleted_to - 1} of TopicPartition(topic='{clicks}', partition=0) hold no records"
    assert f"{said}: going on from {deleted_to}" in log


def test_records_deleted_before_the_first_commit_are_not_waiting(settings: Settings, worker: Worker) -> None:
    records = generate(CONFIG)
    half = len(records) // 2
    publisher = upstream_publisher("kafka-python", settings)
    publish(records[:half], publisher, settings)
    clicks = settings.input_topics["click"]
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    deleted_to = log_end(settings, clicks, 0)
    futures = admin.delete_records([TopicPartition(clicks, 0, deleted_to)])
    assert futures[TopicPartition(clicks, 0, deleted_to)].result(30).low_watermark == deleted_to > 0

    worker.start()
    wait_until(lambda: source_lag(worker, METRICS_PORT) == 0, timeout_s=120)
    assert_not_stalled(worker)

    publish(records[half:], publisher, settings)
    publisher.close()
    wait_until(lambda: source_lag(worker, METRICS_PORT) == 0 and committed_offset(settings, clicks, 0)
               == log_end(settings, clicks, 0) > deleted_to, timeout_s=120)
    assert offset_gaps(worker)["missing"] == 0  # the deleted records were never expected


def assert_not_stalled(worker: Worker) -> None:
    for _ in range(5):  # at most the time since the last check (every second)
        assert worker.metric(METRICS_PORT, "streams_stalled_seconds") < 2
        time.sleep(1)


def log_end(settings: Settings, topic: str, partition: int) -> int:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        tp = KafkaTopicPartition(topic, partition)
        return int(consumer.end_offsets([tp])[tp])
    finally:
        consumer.close()


def committed_offset(settings: Settings, topic: str, partition: int) -> int | None:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=settings.app_id,
                             enable_auto_commit=False)
    try:
        offset = consumer.committed(KafkaTopicPartition(topic, partition))
    finally:
        consumer.close()
    return offset
