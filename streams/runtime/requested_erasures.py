"""The erasure requests still in the erasures topic, read once when a worker starts.

A worker drops the records of every id they name from its first batch on, before its state
says so: a state rebuilt from scratch (a new ``STREAMS_APP_ID`` replaying every topic) would
otherwise fold an erased person's old records again until their request is read again, the
topics being read at their own pace. The topic keeps requests as long as the input topics keep
records (the same retention), so every record that can be replayed has its request here.
"""

from __future__ import annotations

import logging
import time

from kafka import KafkaConsumer, TopicPartition

from streams.core.erasure import ErasureRequest, read_request
from streams.errors import DecodeError, StreamsError
from streams.settings import Settings

log = logging.getLogger(__name__)

# How long reading the topic to its end may take (a small topic; a broker that has just started).
READ_TIMEOUT_S = 60.0
PARTITIONS_RETRY_S = 0.5


def requested_erasures(settings: Settings) -> dict[str, ErasureRequest]:
    """Every id an erasure request in the topic names -> its first request."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False,
                             client_id=f"{settings.app_id}-erasures")
    deadline = time.monotonic() + READ_TIMEOUT_S
    try:
        partitions = _partitions(consumer, settings, deadline)
        assigned = [TopicPartition(settings.erasures_topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        ends = consumer.end_offsets(assigned)
        requests: dict[str, ErasureRequest] = {}
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise StreamsError(f"could not read {settings.erasures_topic} to its end in {READ_TIMEOUT_S:g} s: "
                                   "is Kafka reachable? The worker reads it before any input")
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    try:
                        request = read_request(record.value)
                    except DecodeError:
                        continue  # dead-lettered when the worker reads it
                    requests.setdefault(request.customer_id, request)
    finally:
        consumer.close()
    log.info("%d erased id(s) in %s: their records are dropped from the start", len(requests),
             settings.erasures_topic)
    return requests


def _partitions(consumer: KafkaConsumer, settings: Settings, deadline: float) -> set[int]:
    """The erasures topic's partitions, asked again until the deadline: a broker may not know a
    topic created a moment ago yet (the cluster's metadata spreads to every broker)."""
    while not (partitions := consumer.partitions_for_topic(settings.erasures_topic)):
        if time.monotonic() > deadline:
            raise StreamsError(f"Kafka knows no partition of {settings.erasures_topic} after {READ_TIMEOUT_S:g} s: "
                               "create the topics (streams topics) and check that Kafka is reachable")
        time.sleep(PARTITIONS_RETRY_S)
    return set(partitions)
