"""Runs a stage's pure processing over a batch of fetched records: state and messages to
Kafka, rows into the sink, and what the batch owes to the checkpoint.

An agent (``streams.runtime.agents``) hands a :class:`BatchRunner` the records of several
partitions' fetches at once, not one by one through Faust's per-record machinery, which costs
more than the processing itself. The batch's offsets are acknowledged by the checkpoint
(``streams.runtime.checkpoint``) once its rows are in ClickHouse. While ClickHouse is down the
sink's buffer fills, :meth:`BatchRunner.run_batch` waits for a commit that cannot complete,
the agent's channel fills, and the consumer stops handing over and stops fetching: memory
stays bounded and nothing is acknowledged that is not written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any, TypeVar, cast

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder
from faust.types import TP, TableT

from streams.clickhouse.sink import ClickHouseSink
from streams.runtime import fence
from streams.runtime.checkpoint import Checkpoint, Settled
from streams.runtime.metrics import Metrics
from streams.runtime.store import PersistentStore
from streams.runtime.transport import Consumer, Fetched
from streams.stages.records import BatchOutput, OutMessage, SourceRecord

log = logging.getLogger(__name__)

T = TypeVar("T")

# How often a paused runner looks whether processing may go on.
PAUSE_POLL_S = 0.05
# Keys a count goes through before it lets the event loop run a batch (~25 ms here).
COUNT_SLICE = 50_000


class TableState:
    """A Faust table used as a plain key-value store whose writes we batch.

    One changelog record per key per batch (the stage coalesces), sent to the partition the
    stage names, which is the source partition of the key: Faust recovers it with that
    partition's assignment. With the persistent store (``streams.runtime.store``) the records are
    saved to disk once delivered (:meth:`sent`).
    """

    def __init__(self, table: TableT) -> None:
        self.table = table
        self.changelog_topic = table.changelog_topic.get_topic_name()
        self._local: MutableMapping[str, bytes] | None = None
        self._key_partition: dict[str, int] | None = None

    @property
    def local(self) -> MutableMapping[str, bytes]:
        """The table's store; for the memory store its dict itself (the store's own mapping
        methods cost several calls per lookup, and this runs for every key of every batch)."""
        if self._local is None:
            store = self.table.data
            inner = getattr(store, "data", None)
            self._local = inner if isinstance(inner, dict) else cast(MutableMapping[str, bytes], store)
            # A store drops the keys of partitions it no longer holds after each rebalance by
            # its key -> partition map; the memory store's knows only keys it restored from the
            # changelog: tell it those of the keys written here too, or they stay in memory for good.
            self._key_partition = (store.key_partition if isinstance(store, PersistentStore)
                                   else fence.memory_key_partitions(store))
        return self._local

    def get(self, key: str) -> bytes | None:
        return self.local.get(key)

    def keys_with_prefix(self, prefix: str) -> Iterable[str]:
        return [key for key in self.local if key.startswith(prefix)]

    async def count_with_prefix(self, prefix: str, slice_size: int = COUNT_SLICE) -> int:
        """How many keys start with ``prefix``, counted in slices with the event loop free to run
        batches between them: a million keys take a few hundred ms to go through."""
        keys = list(self.local)  # a copy: the store changes while this waits
        count = 0
        for start in range(0, len(keys), slice_size):
            count += sum(1 for key in keys[start:start + slice_size] if key.startswith(prefix))
            await asyncio.sleep(0)
        return count

    def apply(self, writes: Iterable[tuple[int, str, bytes | None]]) -> list[OutMessage]:
        """Write to the local store; return the changelog records to send (None: a tombstone)."""
        data = self.local
        key_partition = self._key_partition if self._key_partition is not None else {}
        changelog = []
        for partition, key, value in writes:
            if value is None:
                data.pop(key, None)
                key_partition.pop(key, None)
            else:
                data[key] = value
                key_partition[key] = partition
            # Keys as Faust's json key serializer writes them (json.dumps of a str is this
            # function's result), so recovery reads them back and compaction sees one key.
            changelog.append(OutMessage(self.changelog_topic, partition, encode_basestring_ascii(key).encode(), value))
        return changelog

    def sent(self, changelog: Sequence[OutMessage], deliveries: Sequence[asyncio.Future[Any]]) -> None:
        """Tell a persistent store what :meth:`apply` sent: it saves it once delivered."""
        store = self.table.data
        if isinstance(store, PersistentStore):
            store.sent([(m.partition, cast(bytes, m.key), m.value) for m in changelog], deliveries)


class BatchSender:
    """Produces records as one aiokafka batch per topic partition, not one send per record.

    :meth:`send` returns the batches' delivery futures; the caller awaits them before it acks
    the events that produced the records: a failed delivery raises there, the worker stops,
    and the events are processed again.
    """

    def __init__(self, producer: Callable[[], AIOKafkaProducer]) -> None:
        self.producer = producer

    async def send(self, messages: Iterable[OutMessage]) -> list[asyncio.Future[Any]]:
        producer = self.producer()
        in_flight = []
        batches: dict[tuple[str, int], BatchBuilder] = {}
        for m in messages:
            where = (m.topic, m.partition)
            batch = batches.get(where)
            if batch is None:
                await _track_topic(producer, m.topic)
                batch = producer.create_batch()
            # Keywords spelled out: a dict unpacked with ** per record cost 0.3 us more (aiokafka
            # wants the headers as a list).
            headers = list(m.headers)
            if batch.append(timestamp=m.timestamp_ms, key=m.key, value=m.value, headers=headers) is None:
                in_flight.append(await producer.send_batch(batch, m.topic, partition=m.partition))  # full
                batch = producer.create_batch()
                batch.append(timestamp=m.timestamp_ms, key=m.key, value=m.value, headers=headers)
            batches[where] = batch
        for (topic, partition), batch in batches.items():
            in_flight.append(await producer.send_batch(batch, topic, partition=partition))
        return in_flight


async def _track_topic(producer: AIOKafkaProducer, topic: str) -> None:
    """Make ``topic`` one of the producer's tracked topics before anything is sent to it.

    aiokafka's ``send_batch`` tracks a topic (``client.add_topic``) only when its metadata
    wait finds the topic missing from the cluster map. While no topic is tracked, metadata
    requests ask for every topic, so a topic can be sent to without being tracked. Once any
    topic is tracked (a changelog created after start-up, missing from the map), each metadata
    response names only the tracked topics and replaces the whole partition map
    (``ClusterMetadata.update_metadata``): an untracked topic's partitions vanish, its queued
    batch has no leader, the sender re-requests metadata in a loop that never names it, and
    the next batch for that partition waits in ``add_batch`` for a drain that never comes
    (until the producer timeout). Tracking every topic we write keeps them all in the map.
    ``add_topic`` is a no-op for a tracked topic; for a new one it waits for fresh metadata.
    """
    await producer.client.add_topic(topic)


class BatchRunner:
    """Runs a stage over batches of fetched records; its checkpoint commits them.

    Nothing is processed while processing is paused: during a rebalance (records read under
    the old assignment are dropped, the consumer reads them again from the committed offsets)
    and while Faust restores tables from their changelogs, when a batch read from a
    half-restored store would write stale state back. When the assignment changes, the stage
    drops what it cached from the old one.
    """

    def __init__(self, name: str, process: Callable[[Sequence[SourceRecord]], BatchOutput],
                 state: TableState, sink: ClickHouseSink, metrics: Metrics, sender: BatchSender,
                 consumer: Callable[[], Consumer], flush_wait_s: float, paused: Callable[[], bool],
                 generation: Callable[[], int], on_new_generation: Callable[[], None]) -> None:
        self.name = name
        self.process = process
        self.state = state
        self.sink = sink
        self.metrics = metrics
        self.sender = sender
        self.consumer = consumer
        self.paused = paused
        self.generation = generation
        self.on_new_generation = on_new_generation
        self.seen_generation = generation()
        self.checkpoint = Checkpoint(name, sink, self.delete_settled,
                                     lambda in_flight, offsets: consumer().ack_batch(in_flight, offsets),
                                     paused, metrics, flush_wait_s)
        self.lock = asyncio.Lock()
        self.changelog_lock = asyncio.Lock()
        self.waits: dict[str, float] = {}  # what the runner awaits now, since when (describe())

    async def run_batch(self, fetches: Sequence[Fetched]) -> None:
        """Process the records fetched under the current assignment, once processing is not
        paused; return when the sink has room for the next batch's rows."""
        async with self.lock:
            while self.paused():
                await asyncio.sleep(PAUSE_POLL_S)
            generation = self._sync_generation()
            current = [fetched for fetched in fetches if fetched.generation == generation]
            if current:
                await self._process(current)
        await self.checkpoint.wait_for_room()

    async def maintain(self, task: Callable[[], tuple[BatchOutput, T]]) -> T | None:
        """Run a stage's housekeeping (a timer's) between batches and deliver its state writes.

        Skipped while paused; after a rebalance the stage first drops what it cached of the
        old assignment."""
        async with self.lock:
            if self.paused():
                return None
            self._sync_generation()
            out, result = task()
            await self._write_state_now(lambda: out.state_writes)
            self.metrics.count(out.counts)
            return result

    async def delete_settled(self, settled: Sequence[Settled]) -> None:
        """Delete settled state that no batch wrote again since (every write is a new bytes
        object), and wait until the tombstones are delivered."""
        await self._write_state_now(lambda: [(partition, key, None) for partition, key, value in settled
                                             if self.state.get(key) is value])

    async def _write_state_now(self, writes: Callable[[], Iterable[tuple[int, str, bytes | None]]]) -> None:
        """Write state outside a batch and wait until its changelog records are delivered."""
        for delivery in await self._send(writes):
            await delivery

    async def _send(self, writes: Callable[[], Iterable[tuple[int, str, bytes | None]]],
                    messages: Sequence[OutMessage] = ()) -> list[asyncio.Future[Any]]:
        """Apply state writes and send their changelog records (and ``messages``), one send at a
        time: the sends of a batch and of a commit's deletes would otherwise interleave, and a
        changelog partition could hold a key's writes in another order than the store applied
        them. ``writes`` is called under the lock, so what it checks still holds when it applies."""
        async with self.changelog_lock:
            changelog = self.state.apply(writes())
            self.waits["Kafka to take records (producer send)"] = time.monotonic()
            try:
                deliveries = await self.sender.send([*changelog, *messages])
            finally:
                del self.waits["Kafka to take records (producer send)"]
            self.state.sent(changelog, deliveries)
        return deliveries

    def describe(self) -> str:
        """What the runner holds and waits on: the message when the worker is stalled says it."""
        now = time.monotonic()
        waits = "".join(f", waiting {now - since:.0f} s for {what}" for what, since in self.waits.items())
        return f"{self.name} runner: {self.checkpoint.describe()}{waits}"

    def _sync_generation(self) -> int:
        generation = self.generation()
        if generation != self.seen_generation:
            self.seen_generation = generation
            self.on_new_generation()
        return generation

    async def _process(self, fetches: Sequence[Fetched]) -> None:
        started = time.perf_counter()
        in_flight = self.consumer().begin_batch()  # a rebalance waits for its ack
        offsets: dict[TP, list[int]] = {}
        records: list[SourceRecord] = []
        for tp, fetched_records, _ in fetches:
            offsets.setdefault(tp, []).extend(r.offset for r in fetched_records)
            records.extend(fetched_records)
        out = self.process(records)
        deliveries = await self._send(lambda: out.state_writes, out.messages)
        for table, row in out.rows:
            self.sink.add(table, row)
        # With the value it had: a later batch may write the key again before the commit, and then it stays.
        settled = [(partition, key, self.state.get(key)) for partition, key in out.deletes_after_flush]
        self.checkpoint.owe(deliveries, in_flight, offsets, settled, (r.timestamp for r in records))
        self.metrics.count_batch(out.counts)
        self.metrics.batch_seconds.labels(self.name).observe(time.perf_counter() - started)
