"""Thin Faust agents: records in, a stage's pure processing, state/messages/rows out.

Acknowledgement is ours, not Faust's: agents iterate a ``noack`` stream, hand records to a
:class:`BatchRunner`, and it acks them only after the rows they produced are in ClickHouse
(``take()`` would ack in a ``finally`` even when the insert failed). While ClickHouse is down
the runner blocks in ``flush``, the agent stops pulling records and Faust pauses fetching:
memory stays bounded and nothing is acked that is not written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence

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

    def get(self, key: str) -> bytes | None:
        value: bytes | None = self.table.data.get(key)
        return value

    def keys_with_prefix(self, prefix: str) -> Iterable[str]:
        return [key for key in self.table.data if key.startswith(prefix)]

    def __len__(self) -> int:
        return len(self.table.data)

    def apply(self, writes: Iterable[tuple[int, str, bytes | None]]) -> None:
        data = self.table.data
        for partition, key, value in writes:
            if value is None:
                data.pop(key, None)
                self.table.send_changelog(partition, key, None, value_serializer="raw")
            else:
                data[key] = value
                self.table.send_changelog(partition, key, value)


class BatchRunner:
    """Batches an agent's events through a stage; acks them after their rows are written."""

    def __init__(self, name: str, process: Callable[[Sequence[SourceRecord]], BatchOutput],
                 state: TableState, sink: ClickHouseSink, metrics: Metrics,
                 send: Callable[[OutMessage], asyncio.Future], max_events: int, max_wait_s: float,
                 flush_wait_s: float) -> None:
        self.name = name
        self.process = process
        self.state = state
        self.sink = sink
        self.metrics = metrics
        self.send = send
        self.max_events = max_events
        self.max_wait_s = max_wait_s
        self.flush_wait_s = flush_wait_s
        self.stream: StreamT | None = None
        self.pending: list[EventT] = []
        self.unacked: list[EventT] = []
        self.ingest_times: list[int] = []
        self.pending_since = 0.0
        self.last_flush = time.monotonic()
        self.lock = asyncio.Lock()

    async def add(self, stream: StreamT, event: EventT) -> None:
        self.stream = stream
        if not self.pending:
            self.pending_since = time.monotonic()
        self.pending.append(event)
        if len(self.pending) >= self.max_events:
            await self.run()

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
            events, self.pending = self.pending, []
            if events:
                self._process(events)
            if self.sink.full or time.monotonic() - self.last_flush >= self.flush_wait_s:
                await self._flush()

    def _process(self, events: list[EventT]) -> None:
        started = time.perf_counter()
        records = [_source_record(event) for event in events]
        out = self.process(records)
        self.state.apply(out.state_writes)
        for message in out.messages:
            self.send(message)
        for table, row in out.rows:
            self.sink.add(table, row)
        self.unacked.extend(events)
        self.ingest_times.extend(r.timestamp_ms for r in records)
        self.metrics.sink_buffered.labels(self.name).set(self.sink.buffered_rows)
        self.metrics.count_batch(out.counts)
        self.metrics.batch_seconds.labels(self.name).observe(time.perf_counter() - started)

    async def _flush(self) -> None:
        await self.sink.flush()  # retries until written; never returns without writing
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
