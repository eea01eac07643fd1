"""Where ``streams backfill`` keeps its imports' progress, and what it reads to resume exactly.

The ledger is a compacted topic of one partition, keyed by import id (:func:`import_id`), each
value an :class:`ImportState`. A checkpoint records, once the brokers acknowledged every
record sent before it, how many items are done and the backfill topic's end offsets. Every
record of an import carries its import id and item number in headers, so a resumed import
reads the backfill topic from those offsets and sends none of the items that reached it after
the checkpoint: nothing is sent twice, whatever the size of the file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import TopicAlreadyExistsError

from streams.errors import StreamsError
from streams.settings import Settings

# How long the brokers may take to answer (metadata, offsets, reading the ledger to its end).
TIMEOUT_S = 60.0
IMPORT_HEADER = "import"
ITEM_HEADER = "item"


class BackfillError(StreamsError):
    """An import that cannot start or go on: the message says why and what to do."""


@dataclass(slots=True)
class ImportState:
    """One import's progress: items (lines or records) 1..``done`` are sent and acknowledged,
    reported bad, or skipped; ``offsets``: the backfill topic's end offset per partition then."""

    file: str
    cutover_ms: int
    done: int = 0
    sent: int = 0
    invalid: int = 0
    after_cutover: int = 0
    already_live: int = 0
    finished: bool = False
    offsets: dict[str, int] = field(default_factory=dict)

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, value: bytes) -> ImportState:
        return cls(**json.loads(value))


def import_id(digest: str, cutover_ms: int) -> str:
    """An import's name: its file's content and its cut-over."""
    return f"{digest}@{cutover_ms}"


def import_headers_of(key: str, cutover: tuple[tuple[str, bytes], ...]) -> list[tuple[str, bytes]]:
    """The headers every record of import ``key`` carries (with its :func:`item_header`)."""
    return [*cutover, (IMPORT_HEADER, key.encode())]


def item_header(number: int) -> tuple[str, bytes]:
    return ITEM_HEADER, str(number).encode()


class Ledger:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = f"{settings.topic_prefix}.backfill-ledger"

    def _consumer(self) -> KafkaConsumer:
        return KafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap_servers,
                             enable_auto_commit=False, client_id="streams-backfill")

    def ensure(self) -> None:
        admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers,
                                 client_id="streams-backfill")
        try:
            admin.create_topics([NewTopic(self.topic, 1, self.settings.topic_replication, topic_configs={
                "cleanup.policy": "compact",
                "min.insync.replicas": str(self.settings.topic_min_insync_replicas)})])
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()
        # A new topic reaches the brokers' metadata a moment later; a producer that asks first
        # logs an error for it.
        consumer = self._consumer()
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while not consumer.partitions_for_topic(self.topic):
                if time.monotonic() > deadline:
                    raise BackfillError(f"the ledger topic {self.topic} did not appear in {TIMEOUT_S:g} s")
                time.sleep(0.2)
                consumer.topics()  # a metadata refresh
        finally:
            consumer.close()

    def read(self, key: str) -> ImportState | None:
        """The latest state of import ``key``, reading the ledger to its end."""
        found: ImportState | None = None
        for record in self._read_from({TopicPartition(self.topic, 0): 0}):
            if record.key == key.encode() and record.value:
                found = ImportState.decode(record.value)
        return found

    def backfill_end_offsets(self) -> dict[str, int]:
        consumer = self._consumer()
        try:
            topic = self.settings.backfill_topic
            partitions = [TopicPartition(topic, p) for p in range(self.settings.topic_partitions)]
            return {str(tp.partition): offset for tp, offset in consumer.end_offsets(partitions).items()}
        finally:
            consumer.close()

    def items_sent_after(self, key: str, offsets: dict[str, int]) -> set[int]:
        """Numbers of the items of import ``key`` in the backfill topic past ``offsets``."""
        start = {TopicPartition(self.settings.backfill_topic, int(p)): offset for p, offset in offsets.items()}
        sent = set()
        for record in self._read_from(start):
            headers = dict(record.headers)
            if headers.get(IMPORT_HEADER) == key.encode():
                sent.add(int(headers[ITEM_HEADER]))
        return sent

    def _read_from(self, start: dict[TopicPartition, int]) -> Iterator[ConsumerRecord]:
        """Every record from ``start`` to the end offsets as of the call."""
        consumer = self._consumer()
        try:
            consumer.assign(list(start))
            for tp, offset in start.items():
                consumer.seek(tp, offset)
            ends = consumer.end_offsets(list(start))
            deadline = time.monotonic() + TIMEOUT_S
            while any(consumer.position(tp) < end for tp, end in ends.items()):
                if time.monotonic() > deadline:
                    raise BackfillError(f"could not read {sorted({tp.topic for tp in start})} to the end in "
                                        f"{TIMEOUT_S:g} s")
                for records in consumer.poll(timeout_ms=500).values():
                    yield from records
        finally:
            consumer.close()
