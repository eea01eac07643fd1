"""Thin Faust agents: records in, a stage's pure processing, state/messages/rows out.

Acknowledgement is ours, not Faust's: agents iterate a ``noack`` stream, hand records to a
:class:`BatchRunner`, and it acks them only after the rows they produced are in ClickHouse
(``take()`` would ack in a ``finally`` even when the insert failed). While ClickHouse is down
the runner blocks in ``flush``, the agent stops pulling records and Faust pauses fetching:
memory stays bounded and nothing is acked that is not written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder
from faust.types import EventT, StreamT, TableT

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
    """Batches an agent's events through a stage; acks them after their rows are written.

    Nothing is processed while Faust restores tables from their changelogs (``in_recovery``):
    a batch read from a half-restored store would write stale state back. When the
    assignment changes (``generation``), the stage drops what it cached from the old one.
    """

    def __init__(self, name: str, process: Callable[[Sequence[SourceRecord]], BatchOutput],
                 state: TableState, sink: ClickHouseSink, metrics: Metrics, sender: BatchSender,
                 max_events: int, max_wait_s: float, flush_wait_s: float,
                 in_recovery: Callable[[], bool], generation: Callable[[], int],
                 on_new_generation: Callable[[], None]) -> None:
        self.name = name
        self.process = process
        self.in_recovery = in_recovery
        self.generation = generation
        self.on_new_generation = on_new_generation
        self.seen_generation = generation()
        self.state = state
        self.sink = sink
        self.metrics = metrics
        self.sender = sender
        self.max_events = max_events
        self.max_wait_s = max_wait_s
        self.flush_wait_s = flush_wait_s
        self.stream: StreamT | None = None
        self.pending: list[EventT] = []
        self.unacked: list[EventT] = []
        self.deletes_after_flush: list[tuple[int, str]] = []
        self.ingest_times: list[int] = []
        self.pending_since = 0.0
        self.last_flush = time.monotonic()
        self.lock = asyncio.Lock()

    async def add(self, stream: StreamT, event: EventT) -> None:
        self.stream = stream
        if not self.pending:
            self.pending_since = time.monotonic()
        self.pending.append(event)
        while len(self.pending) >= self.max_events:
            await self.run()
            if self.pending:  # tables are being restored: wait, the stream stays paused
                await asyncio.sleep(0.05)

    async def tick(self) -> None:
        """Called by a timer: process a partial batch and flush rows that waited long enough."""
        now = time.monotonic()
        if self.pending and now - self.pending_since >= self.max_wait_s:
            await self.run()
        elif self.unacked and now - self.last_flush >= self.flush_wait_s:
            async with self.lock:
                await self._flush()

    async def run(self) -> None:
        async with self.lock:
            if self.in_recovery():
                return
            if self.generation() != self.seen_generation:
                self.seen_generation = self.generation()
                self.on_new_generation()
            events, self.pending = self.pending, []
            if events:
                await self._process(events)
            if self.sink.full or time.monotonic() - self.last_flush >= self.flush_wait_s:
                await self._flush()

    async def _process(self, events: list[EventT]) -> None:
        started = time.perf_counter()
        records = [_source_record(event) for event in events]
        out = self.process(records)
        await self.sender.send([*self.state.apply(out.state_writes), *out.messages])
        for table, row in out.rows:
            self.sink.add(table, row)
        self.unacked.extend(events)
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
        assert self.stream is not None or not self.unacked
        for event in self.unacked:
            await self.stream.ack(event)  # type: ignore[union-attr]
        self.unacked.clear()
        self.ingest_times.clear()
        self.last_flush = time.monotonic()
        self.metrics.sink_buffered.labels(self.name).set(self.sink.buffered_rows)


def _source_record(event: EventT) -> SourceRecord:
    message = event.message
    return SourceRecord(message.topic, message.partition, message.offset, message.key,
                        message.value, round(message.timestamp * 1000))
