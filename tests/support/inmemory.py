"""Runs the pipeline's stages over simulated records without Kafka: logs, stores and a
ReplacingMergeTree-like row store are dicts. Used to test the stages against the oracle,
including crashes (state rolled back to a checkpoint, records after it replayed) and
different interleavings of the input topics.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.clickhouse.sink import ClickHouseSink
from streams.clickhouse.tables import TABLES
from streams.contracts.codec import Codec, validate
from streams.core.erasure import ErasureRequest
from streams.core.history import cutover_headers
from streams.settings import Settings
from streams.stages.partitioning import partition_for
from streams.stages.profile_stage import ProfileStage
from streams.stages.records import BatchOutput, InputRecord, OutMessage, SourceRecord
from streams.stages.referral_stage import ReferralStage
from streams.tools.simulate import SimRecord, SimulationConfig, generate, record_value
from tests.support.compare import TABLE_KEYS
from tests.support.view_rows import as_views

#: An upstream producer's choice of partition: (key, value, partitions) -> partition.
Partitioner = Callable[[bytes, bytes, int], int]


def murmur2_partitioner(key: bytes, value: bytes, partitions: int) -> int:
    """The Java client's and kafka-python's default for keyed records."""
    return partition_for(key, partitions)


def crc32_partitioner(key: bytes, value: bytes, partitions: int) -> int:
    """librdkafka's default for keyed records (``consistent_random``): CRC32 of the key."""
    return zlib.crc32(key) % partitions


def random_partitioner(seed: int) -> Partitioner:
    """An explicit random partition per record, ignoring the key. A resent copy goes where the
    first went (what a producer retry does), so the first published copy stays the first read."""
    return lambda key, value, partitions: random.Random(zlib.crc32(value) ^ seed).randrange(partitions)


class DictState:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def keys_with_prefix(self, prefix: str) -> Iterable[str]:
        return [k for k in self.data if k.startswith(prefix)]

    def apply(self, writes: Iterable[tuple[int, str, bytes | None]]) -> None:
        for _, key, value in writes:
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value


@dataclass
class RowStore:
    """Keeps, per table key, the row with the highest version (ties: the last written)."""

    tables: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))

    def add(self, table: str, row: dict[str, Any] | tuple[Any, ...]) -> None:
        if type(row) is tuple:  # values in column order, told apart as ClickHouseSink.add does
            row = dict(zip(TABLES[table].column_names, row, strict=True))
        key = tuple(row[c] for c in TABLE_KEYS[table])
        current = self.tables[table].get(key)
        if current is None or row.get("version", 0) >= current.get("version", 0):
            self.tables[table][key] = row


@dataclass
class Log:
    """A topic: per partition, a list of records (the offset is the index)."""

    records: dict[int, list[SourceRecord]] = field(default_factory=lambda: defaultdict(list))

    def append(self, topic: str, partition: int, key: bytes | None, value: bytes | None, ts: int,
               headers: Sequence[tuple[str, bytes]] = ()) -> None:
        part = self.records[partition]
        part.append(InputRecord(topic, partition, len(part), key, value, ts, headers))


class InMemoryPipeline:
    def __init__(self, settings: Settings, requested_erasures: Mapping[str, ErasureRequest] | None = None) -> None:
        self.settings = settings
        codec = Codec()
        self.profile_state = DictState()
        self.share_state = DictState()
        # A clock a second ahead at every look: watermarks go out with every batch.
        self.profile_stage = ProfileStage(settings, codec.decode, lambda e: validate(e, settings.currency),
                                          self.profile_state, clock=itertools.count().__next__,
                                          requested_erasures=requested_erasures)
        self.referral_stage = ReferralStage(settings, self.share_state,
                                            erased_at_start=(requested_erasures or {}).keys())
        self.logs: dict[str, Log] = defaultdict(Log)
        self.read: dict[tuple[str, int], int] = defaultdict(int)  # next offset to read
        self.rows = RowStore()
        self.dead_letters: list[OutMessage] = []
        self.counts: Counter[tuple[str, ...]] = Counter()  # the stages' metric counts, summed

    def publish(self, records: Sequence[SimRecord], partitioner: Partitioner = murmur2_partitioner) -> None:
        """Live records to their type's topic, backfilled ones to the backfill topic."""
        for r in records:
            history = r.cutover_ms is not None
            topic = self.settings.backfill_topic if history else self.settings.input_topics[r.topic_type]
            value = record_value(r)
            partition = partitioner(r.key, value, self.settings.topic_partitions)
            headers = cutover_headers(r.cutover_ms) if r.cutover_ms is not None else ()
            self.logs[topic].append(topic, partition, r.key, value, r.ingest_ms, headers)

    def dead_letter_reasons(self) -> list[str]:
        """The reason of every record sent to the dead-letter topic, sorted."""
        return sorted(dict(m.headers)["reason"].decode() for m in self.dead_letters)

    def final_rows(self) -> dict[str, list[dict[str, Any]]]:
        """Every table's rows, the buckets and per-minute totals as the views show them."""
        return as_views({table: list(rows.values()) for table, rows in self.rows.tables.items()})

    def _route(self, out: BatchOutput, state: DictState) -> None:
        state.apply(out.state_writes)
        self.counts.update(out.counts)
        # Rows land at once here, so deletes that wait for a flush can follow right away.
        state.apply((partition, key, None) for partition, key in out.deletes_after_flush)
        for table, row in out.rows:
            self.rows.add(table, row)
        for m in out.messages:
            if m.topic == self.settings.dead_letter_topic:
                self.dead_letters.append(m)
            else:
                self.logs[m.topic].append(m.topic, m.partition, m.key, m.value, m.timestamp_ms or 0, m.headers)

    def _unread(self, topics: Iterable[str]) -> list[list[SourceRecord]]:
        return [part[self.read[(t, p)]:] for t in topics for p, part in self.logs[t].records.items()]

    def step(self, rng: random.Random, batch: int, read_last: frozenset[str] = frozenset(),
             sweep_index: bool = False) -> bool:
        """Read up to ``batch`` records from a random interleaving of unread partitions; those of
        the ``read_last`` topics only once nothing else of their stage is unread. With
        ``sweep_index``, the worker's sweep of the share index (expiry of waiting touches,
        retirement of shares) runs after it: on a timer there, at any point of the reading."""
        progressed = False
        for stage, topics, state in (
            (self.profile_stage, [*self.settings.input_topics.values(), self.settings.backfill_topic,
                                  self.settings.repartition_topic, self.settings.referral_credits_topic,
                                  self.settings.erasures_topic],
             self.profile_state),
            (self.referral_stage, [self.settings.referral_index_topic], self.share_state),
        ):
            first = [t for t in topics if t not in read_last]
            queues = [q for q in self._unread(first) if q] or [q for q in self._unread(topics) if q]
            taken: list[SourceRecord] = []
            while queues and len(taken) < batch:
                queue = rng.choice(queues)
                n = rng.randint(1, 50)
                taken.extend(queue[:n])
                del queue[:n]
                queues = [q for q in queues if q]
            for record in taken:
                self.read[(record.topic, record.partition)] = record.offset + 1
            if taken:
                self._route(stage.process(taken), state)
                progressed = True
        if sweep_index:
            out, _ = self.referral_stage.expire(set(range(self.settings.topic_partitions)))
            self._route(out, self.share_state)
        return progressed

    def run(self, rng: random.Random, batch: int = 500, read_last: frozenset[str] = frozenset(),
            sweep_index: bool = False) -> None:
        """Read until nothing is unread (``step``)."""
        while self.step(rng, batch, read_last, sweep_index):
            pass

    def checkpoint(self) -> dict[str, Any]:
        """What a commit makes durable: read offsets, plus state and log lengths at that time."""
        return {"profile": dict(self.profile_state.data), "share": dict(self.share_state.data),
                "read": dict(self.read),
                "lengths": {(t, p): len(part) for t, log in self.logs.items() for p, part in log.records.items()}}

    def crash_to(self, checkpoint: dict[str, Any], rng: random.Random) -> None:
        """A kill -9 after ``checkpoint`` was committed.

        Offsets go back to it. Each state key independently keeps its newest changelog value
        or falls back to the checkpoint's (changelog records after the commit may or may not
        have reached the broker); derived messages not yet read may be lost the same way.
        """
        read_before_crash = dict(self.read)
        self.read = defaultdict(int, checkpoint["read"])
        for state, saved in ((self.profile_state, checkpoint["profile"]), (self.share_state, checkpoint["share"])):
            # Keys written or deleted since the checkpoint, each independently: a tombstone
            # may be lost as well.
            for key in sorted(state.data.keys() | saved.keys()):
                if rng.random() < 0.5:
                    if key in saved:
                        state.data[key] = saved[key]
                    else:
                        state.data.pop(key, None)
        for topic in (self.settings.repartition_topic, self.settings.referral_index_topic,
                      self.settings.referral_credits_topic):
            for partition, part in self.logs[topic].records.items():
                # Records a consumer has read were committed by the broker: they stay.
                keep = max(checkpoint["lengths"].get((topic, partition), 0),
                           read_before_crash.get((topic, partition), 0))
                if rng.random() < 0.5:
                    del part[keep:]
        self.profile_stage.forget_partitions()
        self.referral_stage.forget_partitions()
        self.referral_stage.ingest_clock_ms = 0  # a new process starts its clock again


def run_with_crashes(settings: Settings, records: Sequence[SimRecord], rng: random.Random,
                     partitioner: Partitioner = murmur2_partitioner, sweep_index: bool = False,
                     batch: int = 300) -> InMemoryPipeline:
    """Three crashes at random points, each back to a checkpoint taken a few batches before."""
    pipeline = InMemoryPipeline(settings)
    pipeline.publish(records, partitioner)
    for _ in range(3):
        for _ in range(rng.randint(2, 6)):
            pipeline.step(rng, batch, sweep_index=sweep_index)
        checkpoint = pipeline.checkpoint()
        for _ in range(rng.randint(1, 6)):
            pipeline.step(rng, batch, sweep_index=sweep_index)
        pipeline.crash_to(checkpoint, rng)
    pipeline.run(rng, sweep_index=sweep_index)
    return pipeline


def write_simulated_rows(client: Any, settings: Settings, config: SimulationConfig) -> None:
    """Write the rows the pipeline makes of ``config``'s traffic to ClickHouse through the sink,
    without Kafka or a worker (``client``: clickhouse-driver's or one with its ``execute``)."""
    pipeline = InMemoryPipeline(settings)
    pipeline.publish(generate(config))
    pipeline.run(random.Random(config.seed))
    sink = ClickHouseSink(settings, lambda: client)
    for table, rows in pipeline.rows.tables.items():
        for row in rows.values():
            sink.add(table, row)
    asyncio.run(sink.flush())
