"""Runs a stage's pure processing over batches of records: state, messages and rows out.

The consumer hands each partition's fetched records to a :class:`BatchRunner` in one call
(``streams.transport``), not one by one through Faust's streams, whose per-record machinery
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
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder
from faust.types import ConsumerT, Message, TableT

from streams.metrics import Metrics
from streams.sink import ClickHouseSink
from streams.stages import BatchOutput, OutMessage, SourceRecord

log = logging.getLogger(__name__)


class TableState:
    """A Faust table used as a plain key-value store whose writes we batch.

    One changelog record per key per batch (the stage coalesces), sent to the partition the
    stage names, which is the source partition of the key: Faust recovers it with that
    partition's assignment.
    """

    def __init__(self, table: TableT) -> None:
        self.table = table
        self.changelog_topic = table.changelog_topic.get_topic_name()

    def get(self, key: str) -> bytes | None:
        value: bytes | None = self.table.data.get(key)
        return value

    def keys_with_prefix(self, prefix: str) -> Iterable[str]:
        return [key for key in self.table.data if key.startswith(prefix)]

    def apply(self, writes: Iterable[tuple[int, str, bytes | None]]) -> list[OutMessage]:
        """Write to the local store; return the changelog records to send (None: a tombstone)."""
        data = self.table.data
        changelog = []
        for partition, key, value in writes:
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
            # Keys as Faust's json key serializer writes them, so recovery reads them back.
            changelog.append(OutMessage(self.changelog_topic, partition, json.dumps(key).encode(), value))
        return changelog


class BatchSender:
    """Produces records as one aiokafka batch per topic partition, not one send per record.

    Delivery is confirmed in :meth:`wait_delivered`, which runs before events are acked: a
    failed delivery raises there, the worker stops, and the records are processed again.
    """

    def __init__(self, producer: Callable[[], AIOKafkaProducer]) -> None:
        self.producer = producer
        self.in_flight: list[asyncio.Future[Any]] = []

    async def send(self, messages: Iterable[OutMessage]) -> None:
        producer = self.producer()
        batches: dict[tuple[str, int], BatchBuilder] = {}
        for m in messages:
            where = (m.topic, m.partition)
            batch = batches.get(where) or producer.create_batch()
            record = {"timestamp": m.timestamp_ms, "key": m.key, "value": m.value, "headers": list(m.headers)}
            if batch.append(**record) is None:  # full: send it, start another
                self.in_flight.append(await producer.send_batch(batch, m.topic, partition=m.partition))
                batch = producer.create_batch()
                batch.append(**record)
            batches[where] = batch
        for (topic, partition), batch in batches.items():
            self.in_flight.append(await producer.send_batch(batch, topic, partition=partition))

    async def wait_delivered(self) -> None:
        in_flight, self.in_flight = self.in_flight, []
        for future in in_flight:
            await future


class BatchRunner:
    """Runs a stage over batches of records; acks them after their rows are written.

    The consumer hands records over (``streams.transport.BatchConsumer``) and :meth:`run`, an
    app task, processes them. Nothing is processed while flow is paused: during a rebalance
    (records read under the old assignment are dropped, the consumer reads them again from
    the committed offsets) and while Faust restores tables from their changelogs, when a
    batch read from a half-restored store would write stale state back. When the assignment
    changes, the stage drops what it cached from the old one.
    """

    def __init__(self, name: str, process: Callable[[Sequence[SourceRecord]], BatchOutput],
                 state: TableState, sink: ClickHouseSink, metrics: Metrics, sender: BatchSender,
                 consumer: Callable[[], ConsumerT], max_events: int, max_wait_s: float,
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
        self.pending: list[Message] = []
        self.unacked: list[Message] = []
        self.deletes_after_flush: list[tuple[int, str]] = []
        self.ingest_times: list[int] = []
        self.pending_since = 0.0
        self.last_flush = time.monotonic()
        self.lock = asyncio.Lock()
        self.batch_ready = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()

    # -- records in (called by the consumer) --------------------------------------------------

    async def wait_for_room(self) -> None:
        # Two batches' worth: one being processed, the next one filling.
        while len(self.pending) >= 2 * self.max_events:
            self.room.clear()
            await self.room.wait()

    def accept(self, messages: Sequence[Message]) -> None:
        if not self.pending:
            self.pending_since = time.monotonic()
        self.pending.extend(messages)
        if len(self.pending) >= self.max_events:
            self.batch_ready.set()

    # -- processing (an app task) -------------------------------------------------------------

    async def run(self) -> None:
        """Process batches and flush rows until the worker stops."""
        tick_s = min(self.max_wait_s, self.flush_wait_s)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.batch_ready.wait(), tick_s)
            if self.paused():
                await asyncio.sleep(tick_s)
                continue
            await self.step()

    async def step(self) -> None:
        """Process the pending records if a batch is due; flush if rows waited long enough."""
        async with self.lock:
            now = time.monotonic()
            if self.pending and (len(self.pending) >= self.max_events
                                 or now - self.pending_since >= self.max_wait_s):
                self.batch_ready.clear()
                messages, self.pending = self._current(self.pending), []
                self.room.set()
                if messages:
                    await self._process(messages)
            if self.unacked and (self.sink.full or now - self.last_flush >= self.flush_wait_s):
                await self._flush()

    def _current(self, messages: list[Message]) -> list[Message]:
        """The records read under the current assignment (older ones are read again)."""
        generation = self.generation()
        if generation != self.seen_generation:
            self.seen_generation = generation
            self.on_new_generation()
        if messages[0].generation_id == generation and messages[-1].generation_id == generation:
            return messages
        return [message for message in messages if message.generation_id == generation]

    async def _process(self, messages: list[Message]) -> None:
        started = time.perf_counter()
        consumer = self.consumer()
        for message in messages:
            consumer.track_message(message)  # a rebalance waits for these to be acked
        records = [_source_record(message) for message in messages]
        out = self.process(records)
        await self.sender.send([*self.state.apply(out.state_writes), *out.messages])
        for table, row in out.rows:
            self.sink.add(table, row)
        self.unacked.extend(messages)
        self.deletes_after_flush.extend(out.deletes_after_flush)
        self.ingest_times.extend(r.timestamp_ms for r in records)
        self.metrics.sink_buffered.labels(self.name).set(self.sink.buffered_rows)
        self.metrics.count_batch(out.counts)
        self.metrics.batch_seconds.labels(self.name).observe(time.perf_counter() - started)

    async def _flush(self) -> None:
        # Acks only once state, messages and rows are all out: then a commit loses nothing.
        await self.sender.wait_delivered()
        await self.sink.flush()  # retries until written; never returns without writing
        deletes, self.deletes_after_flush = self.deletes_after_flush, []
        if deletes:
            await self.sender.send(self.state.apply((partition, key, None) for partition, key in deletes))
            await self.sender.wait_delivered()
        now_ms = time.time() * 1000
        for ingest_ms in self.ingest_times:
            self.metrics.freshness.observe(max(0.0, (now_ms - ingest_ms) / 1000))
        ack = self.consumer().ack
        for message in self.unacked:
            ack(message)
        self.unacked.clear()
        self.ingest_times.clear()
        self.last_flush = time.monotonic()
        self.metrics.sink_buffered.labels(self.name).set(self.sink.buffered_rows)


def _source_record(message: Message) -> SourceRecord:
    return SourceRecord(message.topic, message.partition, message.offset, message.key,
                        message.value, round(message.timestamp * 1000))
