"""The Kafka transport the workers use: Faust's aiokafka transport with batch delivery and
offset bookkeeping made safe for exactly-counted state.

Registered as the ``exact`` transport (entry point ``faust.transports``; broker URLs
``exact://host:port``). Four changes to ``faust.transport.consumer.Consumer``:

- Batch delivery. Faust hands every record to its conductor on its own: a message object, an
  ``asyncio.wait`` on four futures (the record, flow suspension, stop, crash), a lock, a
  queue and the stream machinery, which cost more than all of this pipeline's processing.
  Topics with a :class:`BatchConsumer` (``app.batch_consumers``) instead get each
  partition's fetched records as one list, with the same guarantees: nothing is delivered
  while flow is suspended (a rebalance), delivery waits for room and is cancelled by a
  suspension, a batch being processed counts as unacknowledged (:meth:`Consumer.begin_batch`:
  a rebalance waits for its acks), acks go through Faust's bookkeeping
  (:meth:`Consumer.ack_batch`), and the read offset advances only past delivered records.
  Other topics (table changelogs) take Faust's path.
- No offset gaps. When a record arrives further than one offset past the last one read,
  Faust marks the range in between as acknowledged, for compacted or transactional topics.
  Our input topics are neither, and a "gap" appears only after Faust moved the read offset
  back (the seek at the end of changelog recovery, after partitions were already resumed):
  the range then holds records still being processed, so marking them acknowledged lets a
  commit pass records that a crash would lose, and their real acks become duplicates. Here
  a commit only ever covers offsets that were acknowledged one by one.
- ``_new_offset`` drops duplicate acknowledged offsets before looking for the committable
  run (duplicates stop Faust's ``consecutive_numbers``, and commits then crawl).
- Faust's livelock check sees batch deliveries, and measures a partition's idleness from its
  assignment rather than from the worker's start (no false "Stream has not started
  processing" after a rebalance).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from time import monotonic
from typing import Any, Protocol, cast

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka
from faust.types import TP, Message
from faust.types.tuples import ack_lock
from mode import Service
from mode.types import ServiceT
from mode.utils.futures import notify

# Longest a fetch waits on the broker for records: what an offset lookup or a newly resumed
# partition may wait behind it. An idle worker sends ten fetches a second.
FETCH_MAX_WAIT_MS = 100


class BatchConsumer(Protocol):
    """Takes a partition's records in one call; see the module docstring."""

    async def wait_for_room(self) -> None:
        """Return once :meth:`accept` may be called (back-pressure; may be cancelled)."""

    def accept(self, tp: TP, records: Sequence[ConsumerRecord[bytes, bytes]], generation: int) -> None:
        """Take aiokafka's records of ``tp``, fetched under assignment ``generation``; called
        right after :meth:`wait_for_room`, with no await between."""


class InFlight:
    """A batch of records being processed, in the consumer's set of unacknowledged messages
    (which holds Faust messages otherwise): a rebalance waits until it is acked."""

    __slots__ = ("__weakref__", "acked", "refcount")  # what Faust reads of its messages

    def __init__(self) -> None:
        self.acked = False
        self.refcount = 1


def unread(records: Sequence[Any], read_offset: int | None) -> Sequence[Any]:
    """The fetched records not delivered yet (Faust's rule: at or after the read offset)."""
    if read_offset is None or not records or records[0].offset >= read_offset:
        return records
    return [record for record in records if record.offset >= read_offset]


class ConsumerThread(aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: aiokafka.Transport) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Faust passes 1500 and has no setting; aiokafka reads it when the consumer starts.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class Consumer(aiokafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        return None

    async def perform_seek(self) -> None:
        # Faust seeks every partition to its committed offset, but aiokafka's seek_to_committed
        # leaves a partition without one (no commit yet, or 0) where it is. After a rebalance that
        # position can be past records this worker fetched and never processed: records a runner
        # dropped as read under the old assignment, or records fetched while the partition was
        # paused for recovery (skipped in _deliver). Nothing read them again, and the next commit
        # passed them (Faust checks that acks start at the committed offset only when there is
        # one): an event lost for good, with no lag to show it. A reproduction of restart_bench's
        # rebalance under a trickle lost the first records of partitions without a commit so.
        # Input partitions without a commit are read again from their beginning instead, as
        # auto_offset_reset=earliest says.
        await super().perform_seek()
        batch_consumers: Mapping[str, BatchConsumer] = getattr(self.app, "batch_consumers", {})
        uncommitted = [tp for tp in self.assignment() if tp.topic in batch_consumers and not self._read_offset.get(tp)]
        if uncommitted:
            # IllegalStateError: the assignment changed meanwhile; the rebalance ends with a seek.
            with contextlib.suppress(IllegalStateError):
                await self._thread.seek_to_beginning(*(TopicPartition(tp.topic, tp.partition) for tp in uncommitted))
            for tp in uncommitted:
                self._read_offset[tp] = None

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        if len(acked) != len(set(acked)):
            acked[:] = sorted(set(acked))
        return super()._new_offset(tp)

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
        in_flight = InFlight()
        self._unacked_messages.add(cast(Message, in_flight))
        return in_flight

    def ack_batch(self, in_flight: InFlight, offsets: Mapping[TP, Sequence[int]]) -> None:
        """Acknowledge a batch's offsets: Faust's ``ack`` bookkeeping, once per partition."""
        with ack_lock:
            for tp, tp_offsets in offsets.items():
                if not self.app.topics.acks_enabled_for(tp.topic):
                    continue
                committed = self._committed_offset[tp]
                acked_index = self._acked_index[tp]
                acked = self._acked[tp]
                for offset in tp_offsets:
                    if (committed is None or offset >= committed) and offset not in acked_index:
                        acked_index.add(offset)
                        acked.append(offset)
                        self._n_acked += 1
            in_flight.acked = True
            self._unacked_messages.discard(cast(Message, in_flight))
            notify(self._waiting_for_ack)

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        batch_consumers: Mapping[str, BatchConsumer] = getattr(self.app, "batch_consumers", {})
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records, active_partitions = await self._wait_next_records(timeout=1.0)
                await self.sleep(0)  # getmany may return at once, again and again
                if records and not self.should_stop:
                    await self._deliver(records, active_partitions, batch_consumers)
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

    async def _deliver(self, records: Mapping[TP, Sequence[Any]], active_partitions: set[TP] | None,
                       batch_consumers: Mapping[str, BatchConsumer]) -> None:
        if not self.flow_active:
            await self.perform_seek()  # as Faust's getmany: a rebalance began, re-read later
            return
        generation = self.app.consumer_generation_id
        for tp, tp_records in records.items():
            if not self.flow_active or self.app.consumer_generation_id != generation:
                return  # the assignment changed: what was fetched is read again after the seek
            if active_partitions is not None and tp not in active_partitions \
                    and tp not in self._buffered_partitions:
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            new = unread(tp_records, self._read_offset[tp])
            if not new:
                continue
            if self._commit_every is not None and self._n_acked >= self._commit_every:
                self._n_acked = 0
                await self.commit()
            batch_consumer = batch_consumers.get(tp.topic)
            if batch_consumer is None:
                delivered = await self._deliver_one_by_one([self._to_message(tp, record) for record in new])
            else:
                delivered = len(new) if await self._deliver_batch(batch_consumer, tp, new, generation) else 0
            if delivered:
                self._read_offset[tp] = new[delivered - 1].offset
            if delivered < len(new):
                return  # flow was suspended

    async def _deliver_batch(self, batch_consumer: BatchConsumer, tp: TP,
                             records: Sequence[ConsumerRecord[bytes, bytes]], generation: int) -> bool:
        async def hand_over() -> None:
            await self.app.flow_control.acquire()
            await batch_consumer.wait_for_room()
            batch_consumer.accept(tp, records, generation)
            self.app.monitor.stream_inbound_time[tp] = monotonic()  # as Faust's streams do per record

        handed_over = hand_over()
        result = await self.wait_first(handed_over, self.suspend_flow.wait())
        return handed_over in result.done

    async def _deliver_one_by_one(self, messages: list[Message]) -> int:
        """Faust's own path, for topics without a batch consumer; returns how many were delivered."""
        for delivered, message in enumerate(messages):
            handed_over = self.callback(message)
            result = await self.wait_first(handed_over, self.suspend_flow.wait())
            if handed_over not in result.done:
                return delivered
        return len(messages)


class Transport(aiokafka.Transport):
    Consumer = Consumer
