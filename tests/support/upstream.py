"""Upstream producers as users run them: kafka-python (murmur2, like the Java client) and
librdkafka through confluent-kafka, with its default partitioner (``consistent_random``: CRC32
of the key) or with an explicit random partition per record. Each can publish the simulator's
records (``streams.tools.simulate.publish`` takes any of them)."""

from __future__ import annotations

import random
import zlib
from typing import Any

from confluent_kafka import Producer

from streams.publisher import Publisher
from streams.settings import Settings
from streams.tools.simulate import SimRecord, publish

UPSTREAM_CLIENTS = ("kafka-python", "librdkafka", "librdkafka-random-partitions")


# Retention of the tests' topics: the longest allowed (the default erasure deadline). The
# simulator's old shares are stamped 8-10 days back: Kafka rolls them into a segment of their
# own, which the default 7-day retention would delete at its next check, mid-run.
RETENTION_MS = Settings().erasure_deadline_s * 1000


class LibrdkafkaPublisher:
    """confluent-kafka's producer with librdkafka's defaults, idempotent as a careful user sets it.
    ``partitioner="murmur2_random"`` places keys as the Java client and kafka-python do.

    With ``random_partitions`` each record names its partition: random, except that a resent
    copy of a record goes where the first went (what a producer retry does). With
    ``transactional_id`` the records are published in committed transactions of
    ``transaction_records`` each: every transaction leaves a marker in the log, an offset
    without a record."""

    def __init__(self, settings: Settings, *, random_partitions: bool = False, seed: int = 0,
                 transactional_id: str | None = None, transaction_records: int = 200,
                 partitioner: str = "consistent_random") -> None:
        self.partitions = settings.topic_partitions
        self.random_partitions = random_partitions
        self.seed = seed
        config: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap_servers,
                                  "enable.idempotence": True, "linger.ms": 5, "partitioner": partitioner}
        if transactional_id is not None:
            config["transactional.id"] = transactional_id
        self.producer = Producer(config)
        self.errors: list[str] = []
        self.transaction_records = transaction_records if transactional_id is not None else 0
        self.in_transaction = 0  # records produced in the open transaction
        if self.transaction_records:
            self.producer.init_transactions(30)
            self.producer.begin_transaction()

    def _on_delivery(self, error: Any, _message: Any) -> None:
        if error is not None:
            self.errors.append(str(error))

    def publish_raw(self, topic: str, key: bytes | None, value: bytes, timestamp_ms: int | None) -> None:
        extra: dict[str, Any] = {}
        if self.random_partitions:
            extra["partition"] = random.Random(zlib.crc32(value) ^ self.seed).randrange(self.partitions)
        if timestamp_ms is not None:
            extra["timestamp"] = timestamp_ms
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, on_delivery=self._on_delivery, **extra)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                self.producer.poll(0.1)
        self.producer.poll(0)
        if self.transaction_records:
            self.in_transaction += 1
            if self.in_transaction == self.transaction_records:
                self.commit_transaction()

    def commit_transaction(self) -> None:
        self.producer.commit_transaction(60)
        self.producer.begin_transaction()
        self.in_transaction = 0

    def flush(self) -> None:
        if self.in_transaction:
            self.commit_transaction()
        left = self.producer.flush(60)
        assert left == 0 and not self.errors, f"{left} records not delivered; errors: {self.errors[:3]}"

    def close(self) -> None:
        self.flush()


def upstream_publisher(client: str, settings: Settings) -> Publisher | LibrdkafkaPublisher:
    """A publisher of ``client`` (one of :data:`UPSTREAM_CLIENTS`); close it when done."""
    if client == "kafka-python":
        return Publisher(settings)
    return LibrdkafkaPublisher(settings, random_partitions=client == "librdkafka-random-partitions")


def publish_records(records: list[SimRecord], settings: Settings, client: str = "kafka-python") -> None:
    """Publish simulated ``records`` as upstream services using ``client`` would."""
    publisher = upstream_publisher(client, settings)
    try:
        publish(records, publisher, settings)
    finally:
        publisher.close()
