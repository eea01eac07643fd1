"""The checkpoint: what processed batches owe before their offsets may be committed, and the
one order in which it is paid.

A batch's processing (``streams.runtime.runner``) writes state to the local store and sends its
changelog records and messages (referral touches, credits, re-routed records) to Kafka, and
adds its rows to the sink's buffer. It then owes, and :meth:`Checkpoint.commit` pays, in this
order, each step starting only once the one before it succeeded:

1. **deliveries**: Kafka acknowledged every changelog record and message the batches sent;
2. **rows**: the sink wrote every buffered row to ClickHouse (``ClickHouseSink.flush`` retries
   until it has, or raises when only a person can fix the cause);
3. **settled deletes**: state the rows made redundant (per-minute totals written as rows) is
   deleted, unless a later batch wrote it again, and the tombstones are delivered;
4. **acks**: the batches' offsets are acknowledged to the consumer, which commits them on its
   timer (``broker_commit_interval``) or when a rebalance begins.

A failure in any step raises out of :meth:`run` and stops the worker, with none of the later
steps done; so does a crash between two steps. Either way the batches' offsets were never
committed, and the worker that next owns their partitions processes them again. That is safe
because every effect is an absolute value: a state record, a row keyed like its table's
ReplacingMergeTree, a message whose duplicate the receiving stage discards. Acknowledging
before the rows are written would let a commit pass events a crash then loses; deleting
settled state before the rows are written would lose the totals for good.

Commits run one at a time beside the processing of the next batches, which owe the next one;
a commit is due ``flush_wait_s`` after the one before it started (so rows wait at most that long
for their flush), when the sink's buffer is full, and at once while processing is paused (a
rebalance waits for the acks).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from faust.types import TP

from streams.runtime.fence import InFlight
from streams.runtime.metrics import Metrics

Offsets = Mapping[TP, Sequence[int]]
Settled = tuple[int, str, bytes | None]  # (partition, key, the value the batch left)


class RowSink(Protocol):
    """The part of ``streams.clickhouse.sink.ClickHouseSink`` the checkpoint uses."""

    @property
    def full(self) -> bool: ...
    @property
    def buffered_rows(self) -> int: ...
    async def flush(self) -> int: ...


@dataclass(slots=True)
class Owed:
    """What processed batches owe the next commit."""

    deliveries: list[asyncio.Future[Any]] = field(default_factory=list)
    acks: list[tuple[InFlight, Offsets]] = field(default_factory=list)
    settled: list[Settled] = field(default_factory=list)
    ingest_times: list[int] = field(default_factory=list)  # epoch ms, for the freshness metric


class Checkpoint:
    """See the module docstring. ``delete_settled`` writes tombstones for the settled keys a
    later batch did not write again and waits until they are delivered; ``acknowledge`` hands
    a batch's offsets to the consumer; ``paused`` says whether processing is paused."""

    def __init__(self, name: str, sink: RowSink, delete_settled: Callable[[Sequence[Settled]], Awaitable[None]],
                 acknowledge: Callable[[InFlight, Offsets], None], paused: Callable[[], bool],
                 metrics: Metrics, flush_wait_s: float) -> None:
        self.name = name
        self.sink = sink
        self.delete_settled = delete_settled
        self.acknowledge = acknowledge
        self.paused = paused
        self.metrics = metrics
        self.flush_wait_s = flush_wait_s
        self.owed = Owed()
        self.last_commit = time.monotonic()
        self.waits: dict[str, float] = {}  # the step a commit waits on, since when (describe())
        self.wake = asyncio.Event()
        self.committed = asyncio.Event()  # set at the end of each commit (wait_for_room)

    def owe(self, deliveries: Iterable[asyncio.Future[Any]], in_flight: InFlight, offsets: Offsets,
            settled: Iterable[Settled], ingest_times: Iterable[int]) -> None:
        """A processed batch: its deliveries, its offsets, the state its rows settle."""
        owed = self.owed
        owed.deliveries.extend(deliveries)
        owed.acks.append((in_flight, offsets))
        owed.settled.extend(settled)
        owed.ingest_times.extend(ingest_times)
        self.metrics.sink_buffered.labels(self.name).set(self.sink.buffered_rows)
        if self.sink.full or len(owed.acks) == 1:  # full, or the first owed: when is the commit due?
            self.wake.set()

    @property
    def due(self) -> bool:
        return bool(self.owed.acks) and (self.paused() or self.sink.full
                                         or time.monotonic() - self.last_commit >= self.flush_wait_s)

    async def run(self, poll_s: float) -> None:
        """Commit whenever a commit is due, until the worker stops; a failed commit raises.

        Between commits it sleeps until the next one is due, ``poll_s`` at most (a pause is
        seen by looking): rows wait ``flush_wait_s``, not up to a poll more."""
        while True:
            if not self.due:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self._until_due(poll_s))
                self.wake.clear()
                continue
            await self.commit()

    def _until_due(self, poll_s: float) -> float:
        if not self.owed.acks:
            return poll_s  # owe() wakes the loop for the first batch
        return min(poll_s, max(0.0, self.last_commit + self.flush_wait_s - time.monotonic()))

    async def wait_for_room(self) -> None:
        """Return once the sink's buffer has room: a full one waits for the commit that empties it."""
        while self.sink.full:
            self.committed.clear()
            self.wake.set()
            await self.committed.wait()

    async def commit(self) -> None:
        """Pay what is owed, in the order of the module docstring."""
        owed, self.owed = self.owed, Owed()
        self.last_commit = time.monotonic()  # commits start every flush_wait_s, or as soon as one ends
        try:
            with self._waiting_for("Kafka to acknowledge records sent"):
                for delivery in owed.deliveries:
                    await delivery  # a failed delivery raises here
            with self._waiting_for("ClickHouse inserts"):
                await self.sink.flush()  # every buffered row, those of later batches too
            if owed.settled:
                with self._waiting_for("Kafka to acknowledge deletes of settled state"):
                    await self.delete_settled(owed.settled)
            for in_flight, offsets in owed.acks:
                self.acknowledge(in_flight, offsets)
        finally:
                self.committed.set()
        now_ms = time.time() * 1000
        self.metrics.freshness.observe_many(max(0.0, (now_ms - ingest_ms) / 1000) for ingest_ms in owed.ingest_times)
        self.metrics.sink_buffered.labels(self.name).set(self.sink.buffered_rows)

    def describe(self) -> str:
        now = time.monotonic()
        waits = "".join(f", waiting {now - since:.0f} s for {what}" for what, since in self.waits.items())
        return f"{len(self.owed.acks)} batches not committed, {self.sink.buffered_rows} rows buffered{waits}"

    @contextlib.contextmanager
    def _waiting_for(self, what: str) -> Iterator[None]:
        self.waits[what] = time.monotonic()
        try:
            yield
        finally:
            del self.waits[what]
