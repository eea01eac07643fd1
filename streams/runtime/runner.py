"""Runs a stage's pure processing over batches of records: state, messages and rows out.

The consumer hands each partition's fetched records to a :class:`BatchRunner` in one call
(``streams.runtime.transport``), not one by one through Faust's streams, whose per-record machinery
costs more than the processing itself. Acknowledgement is ours: records are acked only after
the rows they produced are in ClickHouse. While ClickHouse is down the runner blocks in
``flush``, its buffer of records fills, the consumer stops handing over and stops fetching:
memory stays bounded and nothing is acked that is not written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.producer.message_accumulator import BatchBuilder
from faust.types import TP, TableT

from streams.clickhouse.sink import ClickHouseSink
from streams.runtime.metrics import Metrics
from streams.runtime.store import PersistentStore
from streams.runtime.transport import Consumer, InFlight
from streams.stages.records import BatchOutput, OutMessage, SourceRecord

log = logging.getLogger(__name__)

T = TypeVar("T")


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
            # The memory store drops the keys of partitions it no longer holds after each
            # rebalance, but knows the partitions only of keys it restored from the changelog:
            # tell it those of the keys written here too, or they stay in memory for good.
            key_partition = getattr(store, "_key_partition", None)
            self._key_partition = key_partition if isinstance(key_partition, dict) else None
        return self._local

    def get(self, key: str) -> bytes | None:
        return self.local.get(key)

    def keys_with_prefix(self, prefix: str) -> Iterable[str]:
        return [key for key in self.local if key.startswith(prefix)]

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
            # Keys as Faust's json key serializer writes them, so recovery reads them back.
            changelog.append(OutMessage(self.changelog_topic, partition, json.dumps(key).encode(), value))
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
            record = {"timestamp": m.timestamp_ms, "key": m.key, "value": m.value, "headers": list(m.headers)}
            if batch.append(**record) is None:  # full: send it, start another
                in_flight.append(await producer.send_batch(batch, m.topic, partition=m.partition))
                batch = producer.create_batch()
                batch.append(**record)
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
    """Runs a stage over batches of records; acks them after their rows are written.

    The consumer hands records over (``streams.runtime.transport.BatchConsumer``) and :meth:`run`, an
    app task, processes them. Nothing is processed while flow is paused: during a rebalance
    (records read under the old assignment are dropped, the consumer reads them again from
    the committed offsets) and while Faust restores tables from their changelogs, when a
    batch read from a half-restored store would write stale state back. When the assignment
    changes, the stage drops what it cached from the old one.
    """

    def __init__(self, name: str, process: Callable[[Sequence[SourceRecord]], BatchOutput],
                 state: TableState, sink: ClickHouseSink, metrics: Metrics, sender: BatchSender,
                 consumer: Callable[[], Consumer], max_events: int, max_wait_s: float,
                 flush_wait_s: float, paused: Callable[[], bool], generation: Callable[[], int],
                 on_new_generation: Callable[[], None]) -> None:
        self.name = name
        self.process = process
        self.state = state
        self.sink = sink
        self.metrics = metrics
        self.sender = sender
        self.consumer = consumer
        self.max_events = max_events
        self.max_wait_s = max_wait_s
        self.flush_wait_s = flush_wait_s
        self.paused = paused
        self.generation = generation
        self.on_new_generation = on_new_generation
        self.seen_generation = generation()
        self.pending: list[tuple[TP, int, Sequence[SourceRecord]]] = []  # (tp, generation, records)
        self.pending_records = 0
        self.unflushed = _Unflushed()
        self.flushing: asyncio.Future[None] | None = None
        self.pending_since = 0.0
        self.last_flush = time.monotonic()
        self.lock = asyncio.Lock()
        self.changelog_lock = asyncio.Lock()
        self.waits: dict[str, float] = {}  # what the runner awaits now, since when (describe())
        self.wake = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()

    # -- records in (called by the consumer) --------------------------------------------------

    async def wait_for_room(self) -> None:
        # Two batches' worth: one being processed, the next one filling.
        while self.pending_records >= 2 * self.max_events:
            self.room.clear()
            await self.room.wait()

    def accept(self, tp: TP, records: Sequence[ConsumerRecord[bytes, bytes]], generation: int) -> None:
        if not self.pending:
            self.pending_since = time.monotonic()
        self.pending.append((tp, generation, records))
        self.pending_records += len(records)
        if self.pending_records >= self.max_events:
            self.wake.set()

    # -- processing (an app task) -------------------------------------------------------------

    async def run(self) -> None:
        """Process batches and flush rows until the worker stops.

        Wakes when a batch is full, when a flush ends, or when a partial batch or a flush is
        due, whichever comes first."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self._until_due())
            self.wake.clear()
            if self.paused():
                # Nothing new is processed, but what was is flushed and acked at once: a
                # rebalance waits for those acks.
                await self.step(process=False)
                await asyncio.sleep(min(self.max_wait_s, self.flush_wait_s))
                continue
            await self.step()

    def _until_due(self) -> float:
        now = time.monotonic()
        due = now + min(self.max_wait_s, self.flush_wait_s)
        if self.pending:
            due = min(due, self.pending_since + self.max_wait_s)
        if self.unflushed.acks and self.flushing is None:
            due = min(due, self.last_flush + self.flush_wait_s)
        return max(0.0, due - now)

    async def step(self, process: bool = True) -> None:
        """Process the pending records if a batch is due; start a flush if rows waited long
        enough. A flush runs beside the next batches (it acks only what came before it), one at
        a time; a full sink waits for it."""
        async with self.lock:
            if self.flushing is not None and self.flushing.done():
                flushed, self.flushing = self.flushing, None
                flushed.result()  # a failed delivery stops the worker here
            process = process and not self.paused()  # checked again under the lock
            now = time.monotonic()
            if process and self.pending and (self.pending_records >= self.max_events
                                             or now - self.pending_since >= self.max_wait_s):
                chunks, self.pending, self.pending_records = self._current(self.pending), [], 0
                self.room.set()
                if chunks:
                    await self._process(chunks)
                now = time.monotonic()
            if self.flushing is None and self.unflushed.acks and (
                    not process or self.sink.full or now - self.last_flush >= self.flush_wait_s):
                self.flushing = asyncio.ensure_future(self._flush(self.unflushed))
                self.flushing.add_done_callback(lambda _: self.wake.set())
                self.unflushed = _Unflushed()
                self.last_flush = now  # flushes start every flush_wait_s, or as soon as one ends
            if self.flushing is not None and self.sink.full:
                await asyncio.wait([self.flushing])

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
            return result

    async def _write_state_now(self, writes: Callable[[], Iterable[tuple[int, str, bytes | None]]]) -> None:
        """Write state outside a batch and wait until its changelog records are delivered."""
        await _delivered(await self._send(writes))

    async def _send(self, writes: Callable[[], Iterable[tuple[int, str, bytes | None]]],
                    messages: Sequence[OutMessage] = ()) -> list[asyncio.Future[Any]]:
        """Apply state writes and send their changelog records (and ``messages``), one send at a
        time: the sends of a batch and of a flush's deletes would otherwise interleave, and a
        changelog partition could hold a key's writes in another order than the store applied
        them. ``writes`` is called under the lock, so what it checks still holds when it applies."""
        async with self.changelog_lock:
            changelog = self.state.apply(writes())
            with self._waiting_for("Kafka to take records (producer send)"):
                deliveries = await self.sender.send([*changelog, *messages])
            self.state.sent(changelog, deliveries)
        return deliveries

    def describe(self) -> str:
        """What the runner holds and waits on: the message when the worker is stalled says it."""
        now = time.monotonic()
        waits = "".join(f", waiting {now - since:.0f} s for {what}" for what, since in self.waits.items())
        return (f"{self.name} runner: {self.pending_records} records pending, {len(self.unflushed.acks)} "
                f"batches not flushed, {self.sink.buffered_rows} rows buffered{waits}")

    @contextlib.contextmanager
    def _waiting_for(self, what: str) -> Iterator[None]:
        self.waits[what] = time.monotonic()
        try:
            yield
        finally:
            del self.waits[what]

    def _sync_generation(self) -> int:
        generation = self.generation()
        if generation != self.seen_generation:
            self.seen_generation = generation
            self.on_new_generation()
        return generation

    def _current(self, chunks: list[tuple[TP, int, Sequence[SourceRecord]]]
                 ) -> list[tuple[TP, Sequence[SourceRecord]]]:
        """The records read under the current assignment (older ones are read again)."""
        generation = self._sync_generation()
        return [(tp, records) for tp, read_in, records in chunks if read_in == generation]

    async def _process(self, chunks: list[tuple[TP, Sequence[SourceRecord]]]) -> None:
        started = time.perf_counter()
        in_flight = self.consumer().begin_batch()  # a rebalance waits for its ack
        offsets: dict[TP, list[int]] = {}
        records: list[SourceRecord] = []
        for tp, chunk in chunks:
            offsets.setdefault(tp, []).extend(r.offset for r in chunk)
            records.extend(chunk)
        out = self.process(records)
        unflushed = self.unflushed
        unflushed.deliveries.extend(await self._send(lambda: out.state_writes, out.messages))
        for table, row in out.rows:
            self.sink.add(table, row)
        unflushed.acks.append((in_flight, offsets))
        # With the value it had (every write is a new bytes object): a later batch may write the
        # key again before the flush, and then it stays.
        unflushed.deletes.extend((partition, key, self.state.get(key)) for partition, key in out.deletes_after_flush)
        unflushed.ingest_times.extend(r.timestamp for r in records)
        self.metrics.sink_buffered.labels(self.name).set(self.sink.buffered_rows)
        self.metrics.count_batch(out.counts)
        self.metrics.batch_seconds.labels(self.name).observe(time.perf_counter() - started)

    async def _flush(self, batches: _Unflushed) -> None:
        # Acks only once state, messages and rows are all out: then a commit loses nothing.
        # The sink writes every row buffered when it starts, those of ``batches`` included.
        with self._waiting_for("Kafka to acknowledge records sent"):
            await _delivered(batches.deliveries)
        with self._waiting_for("ClickHouse inserts"):
            await self.sink.flush()  # retries until written; never returns without writing
        if batches.deletes:
            await self._write_state_now(lambda: [(partition, key, None) for partition, key, value in batches.deletes
                                                 if self.state.get(key) is value])  # not written again since
        now_ms = time.time() * 1000
        for ingest_ms in batches.ingest_times:
            self.metrics.freshness.observe(max(0.0, (now_ms - ingest_ms) / 1000))
        consumer = self.consumer()
        for in_flight, offsets in batches.acks:
            consumer.ack_batch(in_flight, offsets)
        self.metrics.sink_buffered.labels(self.name).set(self.sink.buffered_rows)


@dataclass(slots=True)
class _Unflushed:
    """What processed batches wait on until a flush: deliveries, then acks and deletes."""

    deliveries: list[asyncio.Future[Any]] = field(default_factory=list)
    acks: list[tuple[InFlight, dict[TP, list[int]]]] = field(default_factory=list)
    deletes: list[tuple[int, str, bytes | None]] = field(default_factory=list)  # settled state: key, value
    ingest_times: list[int] = field(default_factory=list)


async def _delivered(futures: Iterable[asyncio.Future[Any]]) -> None:
    for future in futures:
        await future

