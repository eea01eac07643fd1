"""Start-up on brand-new topics: a worker makes progress every time.

A fresh worker used to hang for good a few seconds after start, now and then: a batch queued
for a topic its producer did not track lost its partition leader when another topic became
tracked (``streams.runtime.runner._track_topic``). The first test reproduces that sequence on the
producer directly; the second starts fresh workers again and again.

The second test also failed about once in 20-60 starts with no worker at fault: the
simulator's oldest share is stamped 8-10 days back, Kafka rolls it into a segment of its own,
and a 7-day input retention deletes that segment at the broker's next retention check (every
5 minutes). A start whose publish-to-fetch window held that check waited for a record that no
longer existed, while its worker, idle with lag 0, was rightly healthy. Its topics now keep
every record, and a failure says how many records each topic lost to the broker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from streams.clickhouse.migrate import migrate
from streams.publisher import Publisher
from streams.runtime.runner import BatchSender
from streams.settings import Settings
from streams.stages.records import OutMessage
from streams.tools.simulate import SimulationConfig, generate, publish, recent_day_start_ms
from streams.topics import ensure_topics
from tests.conftest import unique
from tests.support.upstream import RETENTION_MS
from tests.support.worker import Worker, wait_until

STARTS = 20
METRICS_PORT = 21150
# Bounds on waiting for something that, when broken, never happens: not speed assertions.
PROGRESS_TIMEOUT_S = 90
DELIVERY_TIMEOUT_S = 30


def test_a_batch_queued_before_another_topic_is_tracked_is_delivered(kafka_bootstrap: str) -> None:
    first, second = unique("queued"), unique("tracked-later")
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.create_topics([NewTopic(first, 1, 1)])

    async def scenario() -> None:
        # Lingering keeps the first batch queued while the second topic is sent to. A stuck
        # batch fails only at aiokafka's request timeout (and stop() waits for it): past ours.
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=500,
                                    request_timeout_ms=2 * DELIVERY_TIMEOUT_S * 1000)
        await producer.start()
        try:
            await producer.client.force_metadata_update()  # no topic tracked: every topic is in the map
            sender = BatchSender(lambda: producer)
            queued = await sender.send([OutMessage(first, 0, b"k", b"v")])
            # A topic missing from the map: aiokafka tracks it, and the map then names only
            # the tracked topics.
            admin.create_topics([NewTopic(second, 1, 1)])
            await asyncio.wait_for(asyncio.gather(*await sender.send([OutMessage(second, 0, b"k", b"v")])),
                                   DELIVERY_TIMEOUT_S)
            await asyncio.wait_for(asyncio.gather(*queued), DELIVERY_TIMEOUT_S)
        finally:
            await producer.stop()

    try:
        asyncio.run(scenario())
    finally:
        admin.delete_topics([first, second])
        admin.close()


@pytest.fixture()
def database(clickhouse_settings: Settings) -> Iterator[Settings]:
    """A migrated database the workers of every start share (their rows are not compared)."""
    migrate(clickhouse_settings)
    yield clickhouse_settings


def test_fresh_workers_on_new_topics_make_progress_every_time(database: Settings, tmp_path: Path) -> None:
    records = generate(SimulationConfig(seed=7, customers=40, events=300, start_ms=recent_day_start_ms()))
    for start in range(STARTS):
        name = unique(f"start{start}")
        # New topics and a new consumer group (and so new changelog topics) every time. No
        # retention: the simulator's old shares are older than 7 days (module docstring).
        settings = dataclasses.replace(database, topic_prefix=name, app_id=f"{name}-app",
                                       metrics_port=METRICS_PORT, table_dir=str(tmp_path / name),
                                       input_retention_ms=RETENTION_MS)
        ensure_topics(settings)
        with Publisher(settings) as publisher:
            sent_per_topic = publish(records, publisher, settings)
        sent = sum(sent_per_topic.values())
        worker = Worker(settings, tmp_path / f"{name}.log")
        worker.start()
        try:
            wait_until(lambda w=worker, s=settings, n=sent: caught_up(w, s, n), timeout_s=PROGRESS_TIMEOUT_S,
                       poll_s=0.5)
            if start == 0:
                assert health(METRICS_PORT) == (200, "ok")
        except AssertionError:
            raise AssertionError(f"start {start + 1} of {STARTS} made no progress; "
                                 + diagnosis(worker, settings, sent_per_topic)) from None
        finally:
            worker.kill()


def caught_up(worker: Worker, settings: Settings, sent: int) -> bool:
    """Every published record consumed, and committed: no lag left on the inputs."""
    assert worker.process is not None and worker.process.poll() is None, "the worker exited"
    inputs = set(settings.input_topics.values())
    consumed = sum(value for labels, value in worker.samples(METRICS_PORT, "streams_events_consumed_total")
                   if labels["topic"] in inputs)
    lag = [value for labels, value in worker.samples(METRICS_PORT, "streams_consumer_lag_records")
           if labels["topic"] in inputs]
    return consumed >= sent and len(lag) == len(inputs) * settings.topic_partitions and not any(lag)


def diagnosis(worker: Worker, settings: Settings, sent: Mapping[str, int]) -> str:
    """What tells a stuck worker from missing input: records sent and deleted per topic, the
    worker's counts, lag and health, its threads' stacks and its log."""
    lines = []
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        for topic, count in sent.items():
            tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
            deleted = sum(consumer.beginning_offsets(tps).values())  # by retention, unread or not
            lines.append(f"{topic}: {count} sent, {deleted} deleted by the broker")
    finally:
        consumer.close()
    readings: list[tuple[str, Callable[[], object]]] = [
        ("consumed", lambda: worker.samples(METRICS_PORT, "streams_events_consumed_total")),
        ("lag", lambda: worker.samples(METRICS_PORT, "streams_consumer_lag_records")),
        ("/healthz", lambda: health(METRICS_PORT))]
    for what, read in readings:
        try:
            lines.append(f"{what}: {read()}")
        except OSError as error:
            lines.append(f"{what}: unavailable ({error})")
    return "\n".join([*lines, worker.stack_dump(), "worker log:", worker.log_path.read_text()[-6000:]])


def health(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())["status"]
    except urllib.error.HTTPError as error:  # 503 once stalled
        return error.code, json.loads(error.read())["status"]
