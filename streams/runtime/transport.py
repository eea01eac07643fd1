"""The Kafka transport the workers use: Faust's aiokafka transport with batch delivery and
offset bookkeeping made safe for exactly-counted state.

Registered as the ``exact`` transport (entry point ``faust.transports``; broker URLs
``exact://host:port``). Four changes to Faust's consumer, made through the public names
``streams.runtime.fence`` gives its private members:

- Batch delivery. Faust hands every record to its conductor on its own: a message object, an
  ``asyncio.wait`` on four futures (the record, flow suspension, stop, crash), a lock, a
  queue and the stream machinery, which cost more than all of this pipeline's processing.
  Topics with a batch channel (``app.batch_channels``) instead get each partition's fetched
  records as one :class:`Fetched` item, which the channel's agent (``streams.runtime.agents``)
  receives, with the same guarantees: nothing is delivered while flow is suspended (a
  rebalance), delivery waits for room in the channel and is cancelled by a suspension, a
  batch being processed counts as unacknowledged (:meth:`Consumer.begin_batch`: a rebalance
  waits for its acks), acks go through Faust's bookkeeping (:meth:`Consumer.ack_batch`), and
  the read offset advances only past delivered records. Other topics (table changelogs) take
  Faust's path.
- Records in order, none skipped. Faust marks the offsets between the last record read and
  the next one as acknowledged, counting from its read offset; after its seek at the end of
  changelog recovery (partitions already resumed) that range held records still being
  processed, and a commit could pass records a crash would then lose. Here each input
  partition's next offset is one past the last record delivered; a seek sets it to the
  committed offset, or to the partition's first offset when it has none, and it holds only for
  the consumer generation of that seek: after a rebalance nothing is delivered until the
  rebalance's own seek has run (:meth:`Consumer.sought`). Records before it
  were delivered already and are dropped. A fetch that starts past it is not delivered: the
  consumer's position went past records nobody received (a fetch a rebalance cut short,
  records fetched while the seek of a recovery ran), and delivering later records first would
  have the stages take the skipped ones for replays when they came. The partition is read
  again from its next offset; when the records then start past it again, the offsets in
  between hold none (records deleted by retention, a transaction's commit marker) and are
  acknowledged, as are those between the records of one fetch, so that commits can pass them.
  All are counted (``streams_offset_gaps_total``). Seeks run in the consumer's thread, whose
  event loop owns the fetcher they move.
- Duplicate acknowledged offsets are dropped before looking for the committable run
  (duplicates stop Faust's ``consecutive_numbers``, and commits then crawl).
- Faust's livelock check sees batch deliveries, and measures a partition's idleness from its
  assignment rather than from the worker's start (no false "Stream has not started
  processing" after a rebalance).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from time import monotonic
from typing import Any, NamedTuple, cast

import faust
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import IllegalStateError
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka
from faust.types import TP, ChannelT, EventT, Message
from faust.types.tuples import ack_lock
from mode.types import ServiceT
from mode.utils.queues import ThrowableQueue

from streams.runtime import fence
from streams.runtime.fence import InFlight

log = logging.getLogger(__name__)


# Longest a fetch waits on the broker for records: what an offset lookup or a newly resumed
# partition may wait behind it. An idle worker sends ten fetches a second.
FETCH_MAX_WAIT_MS = 100
# Records a fetch waits for, up to FETCH_MAX_WAIT_MS: producers that send every few
# milliseconds (librdkafka's and the Java client's defaults) would otherwise make each fetch
# return a handful of records, and the worker's consumer thread pays per fetch (at 4,000
# events/s: 18 -> 7 us per record, docs/benchmarks.md "Freshness under live traffic"). A
# backlog fills it at once.
FETCH_MIN_BYTES = 64 * 1024


class Fetched(NamedTuple):
    """One partition's fetched records, the item a batch channel's agent receives."""

    tp: TP
    records: Sequence[ConsumerRecord[bytes, bytes]]
    generation: int  # of the assignment they were fetched under


class FetchChannel(faust.Channel[Fetched]):
    """The channel a batch topic's fetches reach their agent by; its queue is not cleared when
    flow resumes.

    Faust's channels clear their queue at every flow resume (the end of a rebalance or of a
    recovery), without waking a put waiting for room (asyncio's queue wakes those only on a
    get). The transport waits so whenever the agent holds a batch while processing is paused,
    as during a recovery: after the clear the agent waits for items and the transport for room,
    for good (a restarted worker stalled so). Stale fetches need no clearing: the runner drops
    those fetched under an older assignment."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetches: ThrowableQueue | None = None

    @property
    def queue(self) -> ThrowableQueue:
        if self.fetches is None:
            self.fetches = self.app.FlowControlQueue(maxsize=self.maxsize, clear_on_resume=False)
        return self.fetches


class Ordered(NamedTuple):
    """What to do with one partition's fetched records (:func:`in_order`)."""

    records: Sequence[Any]  # to deliver
    read_again: bool  # none delivered: the partition is to be read again from the offset expected
    empty: list[tuple[int, int]]  # offset ranges (both ends included) that hold no records


def in_order(records: Sequence[Any], expected: int, read_again_from_expected: bool) -> Ordered:
    """The records of one partition to deliver when ``expected`` is the offset the next one
    should have: those from it on. When they start past it, none, and the partition is to be
    read again from it, unless it was just read again from there: then the offsets in between
    hold no records, as do those between the records delivered."""
    if records[0].offset < expected:  # delivered already: fetched again after a seek
        records = [record for record in records if record.offset >= expected]
        if not records:
            return Ordered(records, False, [])
    if records[-1].offset - expected + 1 == len(records):
        return Ordered(records, False, [])  # nothing skipped: almost always
    if records[0].offset > expected and not read_again_from_expected:
        return Ordered([], True, [])
    empty, start = [], expected
    for record in records:
        if record.offset > start:
            empty.append((start, record.offset - 1))
        start = record.offset + 1
    return Ordered(records, False, empty)


def unread(records: Sequence[Any], read_offset: int | None) -> Sequence[Any]:
    """The fetched records not delivered yet (Faust's rule: at or after the read offset)."""
    if read_offset is None or not records or records[0].offset >= read_offset:
        return records
    return [record for record in records if record.offset >= read_offset]


class ConsumerThread(fence.ConsumerThread):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Partitions not fetched for now, apart from Faust's own pauses (Consumer.hold_back).
        self.held_back: frozenset[TP] = frozenset()

    def create_worker_consumer(self, transport: aiokafka.Transport) -> AIOKafkaConsumer:
        consumer = super().create_worker_consumer(transport)
        # Faust passes 1500 ms and 1 byte and has no setting for either.
        fence.set_fetch_wait(consumer, FETCH_MAX_WAIT_MS, FETCH_MIN_BYTES)
        return consumer

    async def getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        if self.held_back and active_partitions is not None:
            active_partitions = active_partitions - self.held_back
            if not active_partitions:  # aiokafka reads "no partitions" as all of them
                await asyncio.sleep(timeout)
                return {}
        return await super().getmany(active_partitions, timeout)


class Consumer(fence.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Per input partition, the offset its next delivered record should have (known once a
        # seek set it), and the offset it was last read again from.
        self.next_offsets: dict[TP, int] = {}
        self.read_again_from: dict[TP, int] = {}
        # The consumer generation whose seek set next_offsets: they hold only for it (sought()).
        self.sought_generation: int | None = None
        self.seeking = False  # perform_seek is running
        self.seek_lock = asyncio.Lock()  # Faust's recovery and a rebalance's fetch both seek
        self.fetched_while_seeking: set[TP] = set()
        self.offset_gaps: Counter[str] = Counter()  # by outcome: "re-read", "marker", "missing"
        self.fetched_up_to: dict[TP, int] = {}  # per input partition, the last record's offset fetched

    def new_consumer_thread(self) -> ConsumerThread:
        self.fetching = ConsumerThread(self, loop=self.loop, beacon=self.beacon)
        return self.fetching

    def hold_back(self, tps: frozenset[TP]) -> None:
        """Fetch nothing of ``tps`` until called again without them; records already fetched
        are delivered. Independent of Faust's pauses (recovery, flow control): it never
        resumes a partition Faust paused. Used for the backfill's lower priority."""
        self.fetching.held_back = tps

    async def on_offset_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        return None

    async def perform_seek(self) -> None:
        # Faust seeks every partition to its committed offset, but aiokafka's seek_to_committed
        # leaves a partition without one (no commit yet, or 0) where it is. After a rebalance that
        # position can be past records this worker fetched and never processed: records a runner
        # dropped as read under the old assignment, or records fetched while the partition was
        # paused for recovery. Nothing read them again, and the next commit passed them (Faust
        # checks that acks start at the committed offset only when there is one): an event lost
        # for good, with no lag to show it. Input partitions without a commit are read from their
        # first offset instead, as auto_offset_reset=earliest says.
        # Faust resumes the partitions before this seek, and the consumer thread fetches while it
        # runs: records fetched meanwhile are not delivered (hand_over) and their partitions are
        # sought again once every partition's next offset is known.
        async with self.seek_lock:
            self.seeking = True
            generation = self.app.consumer_generation_id
            try:
                await super().perform_seek()
                inputs = [tp for tp in self.assignment() if tp.topic in self.batch_channels]
                # The committed offsets this seek read, before the next await: a seek of an older
                # hand-over may move a read offset meanwhile.
                committed = {tp: self.read_offsets.get(tp) for tp in inputs}
                uncommitted = [tp for tp in inputs if not committed[tp]]
                first_offsets = await self.earliest_offsets(*uncommitted) if uncommitted else {}
                self.next_offsets = {tp: committed[tp] or first_offsets.get(tp, 0) for tp in inputs}
                self.read_again_from.clear()
                self.sought_generation = generation
                self.fetched_up_to = {tp: up_to for tp, up_to in self.fetched_up_to.items() if tp in self.next_offsets}
            except IllegalStateError:
                # The assignment changed while Faust sought (aiokafka's seek_to_committed awaits
                # each committed offset before its seek): the rebalance under way ends with a seek.
                return
            finally:
                self.seeking = False
            # From here on records are delivered from each partition's next offset (in_order),
            # whenever they were fetched.
            sought_again = {*uncommitted, *self.fetched_while_seeking}
            self.fetched_while_seeking.clear()
            # IllegalStateError: the assignment changed meanwhile; the rebalance ends with a seek.
            with contextlib.suppress(IllegalStateError):
                for tp in sought_again:
                    if tp in self.next_offsets:
                        await self.seek_in_thread(tp, self.next_offsets[tp])

    def sought(self, tp: TP, generation: int) -> bool:
        """Whether ``tp``'s next offset is known for consumer generation ``generation``, the
        current one: set by a seek of that generation that has ended. An earlier generation's is
        not. A partition kept through a rebalance was committed up to the first record its runner
        had not processed, and the runner drops every record delivered under the old generation,
        so the old next offset can be past the committed one: records delivered from there before
        the rebalance's seek were processed before the ones the seek reads again below them (a
        share read after its touches, which then waited for it for good)."""
        return (not self.seeking and generation == self.sought_generation == self.app.consumer_generation_id
                and tp in self.next_offsets)

    @property
    def batch_channels(self) -> Mapping[str, ChannelT[Fetched]]:
        return cast(Mapping[str, ChannelT[Fetched]], getattr(self.app, "batch_channels", {}))

    def log_end(self, tp: TP) -> int | None:
        """The log end of ``tp`` the fetches reported, if any; None once it is no longer assigned
        (aiokafka asserts it is: the assignment changes in the consumer's thread)."""
        try:
            return self.highwater(tp)
        except (AssertionError, KeyError):
            return None

    def describe(self, waiting: Mapping[TP, int], positions: Mapping[TP, int]) -> str:
        """Where the input records stand, for the message of a stalled worker: for each
        partition with records ``waiting``, its log end, the last record fetched, the offset the
        consumer reads next (``positions``) and the offset of the next record to hand over."""
        paused, held_back = self.paused_partitions, self.fetching.held_back
        generation = self.app.consumer_generation_id
        partitions = [
            f"{tp.topic}[{tp.partition}] {count} waiting: log end {self.log_end(tp)}, "
            f"fetched up to {self.fetched_up_to.get(tp, 'none')}, reads from {positions.get(tp, 'unknown')}, "
            f"next to hand over {self.next_offsets[tp] if self.sought(tp, generation) else 'unknown (not sought yet)'}"
            f"{', paused' if tp in paused else ''}{', held back' if tp in held_back else ''}"
            for tp, count in sorted(waiting.items()) if count]
        queued = sum(cast(FetchChannel, channel).queue.qsize() for channel in self.batch_channels.values())
        flow = f"flow {'active' if self.flow_active else 'suspended'}{', seeking' if self.seeking else ''}"
        return f"consumer: {flow}, {queued} fetches queued for the agents; " + "; ".join(
            partitions or ["no input partition has records waiting"])

    def committable_offset(self, tp: TP) -> int | None:
        acked = self.acked_offsets(tp)
        if len(acked) != len(set(acked)):
            acked[:] = sorted(set(acked))
        return super().committable_offset(tp)

    def verify_event_path(self, now: float, tp: TP) -> None:
        # Faust's livelock check (every 2.5 s) reports a partition with unread records as idle
        # when nothing was delivered from it for stream_processing_timeout, counted from the
        # worker's start when nothing was delivered at all; every rebalance forgets deliveries.
        # So a worker older than the timeout logged "Stream has not started processing TP" for
        # every lagging partition after each rebalance (a broker restart causes one) until its
        # first delivery. Count from the first check of the assignment instead.
        self.app.monitor.stream_inbound_time.setdefault(tp, now)
        super().verify_event_path(now, tp)

    def begin_batch(self) -> InFlight:
        """Mark a batch as being processed: a rebalance waits for its :meth:`ack_batch`."""
        return self.begin_in_flight()

    def ack_batch(self, in_flight: InFlight, offsets: Mapping[TP, Sequence[int]]) -> None:
        """Acknowledge a batch's offsets: Faust's ``ack`` bookkeeping, once per partition."""
        with ack_lock:
            for tp, tp_offsets in offsets.items():
                if self.app.topics.acks_enabled_for(tp.topic):
                    self.mark_acked(tp, tp_offsets)
            self.end_in_flight(in_flight)

    async def drain(self, fetcher: ServiceT) -> None:
        batch_channels = self.batch_channels
        try:
            while not (self.should_stop or fetcher.should_stop):
                self.diag.set_flag(CONSUMER_FETCHING)
                records, active_partitions = await self.next_records(timeout=1.0)
                await self.sleep(0)  # getmany may return at once, again and again
                if records and not self.should_stop:
                    await self.hand_over(records, active_partitions, batch_channels)
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def hand_over(self, records: Mapping[TP, Sequence[Any]], active_partitions: set[TP] | None,
                        batch_channels: Mapping[str, ChannelT[Fetched]]) -> None:
        # Before anything awaits: the consumer's position is past these records from now on.
        self.fetched_up_to.update((tp, tp_records[-1].offset) for tp, tp_records in records.items()
                                  if tp.topic in batch_channels and tp_records)
        if not self.flow_active:
            await self.perform_seek()  # as Faust's getmany: a rebalance began, re-read later
            return
        generation = self.app.consumer_generation_id
        read_offsets = self.read_offsets
        for tp, tp_records in records.items():
            if not self.flow_active or self.app.consumer_generation_id != generation:
                return  # the assignment changed: what was fetched is read again after the seek
            if active_partitions is not None and tp not in active_partitions \
                    and tp not in self.buffered_partitions:
                continue
            channel = batch_channels.get(tp.topic)
            if channel is not None and not self.sought(tp, generation):
                self.fetched_while_seeking.add(tp)  # sought again when the seek is done
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            new = unread(tp_records, read_offsets[tp])
            if not new:
                continue
            if self.commit_due():
                await self.commit()
            if channel is not None:
                if not self.sought(tp, generation):  # a seek started while the commit ran
                    self.fetched_while_seeking.add(tp)
                    continue
                if not await self.hand_over_in_order(tp, new, channel, generation):
                    return  # flow was suspended
                continue
            delivered = await self.hand_over_one_by_one([self.to_message(tp, record) for record in new])
            if delivered:
                read_offsets[tp] = new[delivered - 1].offset
            if delivered < len(new):
                return  # flow was suspended

    async def hand_over_in_order(self, tp: TP, records: Sequence[Any], channel: ChannelT[Fetched],
                                 generation: int) -> bool:
        """Put ``tp``'s records from its next offset on (:meth:`in_order`) in its agent's channel;
        False when flow was suspended first. A rebalance that came while this waited drops them
        (they carry its generation), and its seek says where the partition goes on from."""
        new = await self.in_order(tp, records)
        if not new:
            return True
        if not await self.hand_over_batch(channel, Fetched(tp, new, generation)):
            return False
        if self.sought(tp, generation):
            self.next_offsets[tp] = new[-1].offset + 1
            self.read_again_from.pop(tp, None)
            self.read_offsets[tp] = new[-1].offset
        return True

    async def in_order(self, tp: TP, records: Sequence[Any]) -> Sequence[Any]:
        """The records of ``tp`` to deliver (:func:`in_order`): when they start past its next
        offset, the partition is read again from it; offsets without records are acknowledged."""
        expected = self.next_offsets[tp]
        ordered = in_order(records, expected, self.read_again_from.get(tp) == expected)
        if ordered.read_again:
            self.read_again_from[tp] = expected
            self.offset_gaps["re-read"] += 1
            log.info("records of %s arrived past the next offset expected, %d: reading again from it", tp, expected)
            with contextlib.suppress(IllegalStateError):  # no longer assigned: nothing to read
                await self.seek_in_thread(tp, expected)
        for offset_from, offset_to in ordered.empty:
            await self.no_records_at(tp, offset_from, offset_to)
        return ordered.records

    async def no_records_at(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Offsets ``offset_from`` to ``offset_to`` hold no records: acknowledged (Faust counts
        them once a record after them is), and said."""
        # One offset is a transaction's commit marker, as every transaction leaves one in each
        # partition it wrote to; more were records deleted before this worker read them.
        marker = offset_from == offset_to
        self.offset_gaps["marker" if marker else "missing"] += 1
        log.log(logging.DEBUG if marker else logging.WARNING,
                "offsets %d to %d of %s hold no records: going on from %d", offset_from, offset_to, tp,
                offset_to + 1)
        await self.acknowledge_gap(tp, offset_from, offset_to)

    async def hand_over_batch(self, channel: ChannelT[Fetched], fetched: Fetched) -> bool:
        """Put ``fetched`` in the agent's channel (waits while it is full); False when flow
        was suspended first."""
        async def put() -> None:
            await channel.put(cast(EventT[Fetched], fetched))
            self.app.monitor.stream_inbound_time[fetched.tp] = monotonic()  # as Faust's streams do per record

        handed_over = put()
        result = await self.wait_first(handed_over, self.suspend_flow.wait())
        return handed_over in result.done

    async def hand_over_one_by_one(self, messages: list[Message]) -> int:
        """Faust's own path, for topics without a batch channel; returns how many were delivered."""
        for delivered, message in enumerate(messages):
            handed_over = self.callback(message)
            result = await self.wait_first(handed_over, self.suspend_flow.wait())
            if handed_over not in result.done:
                return delivered
        return len(messages)


class Transport(aiokafka.Transport):
    Consumer = Consumer
