"""The fence: every private member of faust, aiokafka and mode that the worker uses, given a
public name here and used nowhere else.

Exact counting needs a few things these libraries offer no public way to do: acknowledge a
batch of offsets through Faust's commit bookkeeping, hold a rebalance until a batch is
acknowledged, bound a fetch's wait on the broker, send pre-built batches through aiokafka,
keep a table's keys per partition, open the RocksDB database of one partition. The worker does
them through the members named below and through this module only
(``tests/unit/test_private_access.py`` keeps private access out of every other module).
``tests/unit/test_fence.py`` checks on the versions pinned in ``pyproject.toml`` that each
member still exists with the shape used here, so that an upgrade fails a test, not the data.

Hooks Faust calls, overridden through a public name (the default calls Faust's own):

- ``Consumer._add_gap`` → :meth:`Consumer.on_offset_gap`
- ``Consumer._new_offset`` → :meth:`Consumer.committable_offset`
- ``Consumer._drain_messages`` → :meth:`Consumer.drain`
- ``Consumer._new_consumer_thread`` → :meth:`Consumer.new_consumer_thread`
- ``AIOKafkaConsumerThread._create_worker_consumer`` → :meth:`ConsumerThread.create_worker_consumer`
- ``Table._new_store_by_url`` → :meth:`Table.new_store_by_url`
- ``TableManager._update_channels`` (called) → :meth:`TableManager.update_channels`
- ``Worker._sentinel_task`` → :meth:`Worker.last_task`

State read or written:

- Faust's consumer: ``_read_offset``, ``_committed_offset``, ``_acked``, ``_acked_index``,
  ``_n_acked``, ``_commit_every``, ``_unacked_messages``, ``_waiting_for_ack``,
  ``_buffered_partitions``, ``_paused_partitions``, ``_thread`` (its ``_ensure_consumer`` and ``call_thread``),
  ``_to_message``, ``_wait_next_records``
- aiokafka's consumer ``_fetch_max_wait_ms``, ``_fetch_min_bytes`` and ``_subscription``;
  Faust's producer ``_ensure_producer``
- Faust's memory store ``_key_partition``; its RocksDB store ``_dbs``, ``_db_for_partition``,
  ``_try_open_db_for_partition``
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, cast

import faust
import faust.tables
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faust.stores import rocksdb
from faust.transport.drivers import aiokafka
from faust.types import TP, Message, StoreT
from mode.types import ServiceT
from mode.utils.futures import notify
from yarl import URL


class InFlight:
    """A batch of records being processed, kept in Faust's set of unacknowledged messages (which
    holds its message objects otherwise): a rebalance waits until it is acknowledged. The slots
    are what Faust reads of the objects in that set."""

    __slots__ = ("__weakref__", "acked", "refcount")

    def __init__(self) -> None:
        self.acked = False
        self.refcount = 1


class Consumer(aiokafka.Consumer):
    """Faust's aiokafka consumer, with the private members the transport uses made public."""

    # -- hooks --------------------------------------------------------------------------------

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        await self.on_offset_gap(tp, offset_from, offset_to)

    async def on_offset_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Records arrived past the next offset expected; Faust marks those in between acknowledged."""
        await self.acknowledge_gap(tp, offset_from, offset_to)

    async def acknowledge_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Faust's bookkeeping of offsets ``offset_from`` to ``offset_to`` (both included) that
        hold no records: a commit may pass them once a record after them is acknowledged."""
        await super()._add_gap(tp, offset_from, offset_to)

    def _new_offset(self, tp: TP) -> int | None:
        return self.committable_offset(tp)

    def committable_offset(self, tp: TP) -> int | None:
        """The offset a commit of ``tp`` may move to (Faust's: the end of the first run of
        consecutive acknowledged offsets), or None."""
        return super()._new_offset(tp)

    async def _drain_messages(self, fetcher: ServiceT) -> None:
        await self.drain(fetcher)

    async def drain(self, fetcher: ServiceT) -> None:
        """The fetch loop, run by ``fetcher`` until either stops: fetch, hand records over."""
        await super()._drain_messages(fetcher)

    def _new_consumer_thread(self) -> aiokafka.AIOKafkaConsumerThread:
        return self.new_consumer_thread()

    def new_consumer_thread(self) -> aiokafka.AIOKafkaConsumerThread:
        """The thread that owns the aiokafka consumer."""
        return super()._new_consumer_thread()

    # -- offsets ------------------------------------------------------------------------------

    @property
    def read_offsets(self) -> MutableMapping[TP, int | None]:
        """Per partition, the offset of the last record handed over (None: read from the
        committed offset on)."""
        return cast(MutableMapping[TP, int | None], self._read_offset)

    @property
    def committed_offsets(self) -> Mapping[TP, int | None]:
        """Per partition, the offset this worker last committed or read as committed."""
        return cast(Mapping[TP, int | None], self._committed_offset)

    def acked_offsets(self, tp: TP) -> list[int]:
        """The acknowledged offsets of ``tp`` not committed yet, Faust's list itself."""
        return cast(list[int], self._acked[tp])

    def mark_acked(self, tp: TP, offsets: Iterable[int]) -> None:
        """Faust's ``ack`` bookkeeping for ``offsets`` of ``tp``: each offset at or past the
        committed one is recorded once. The caller holds ``ack_lock``."""
        committed = self._committed_offset[tp]
        acked_index = self._acked_index[tp]
        acked = self._acked[tp]
        for offset in offsets:
            if (committed is None or offset >= committed) and offset not in acked_index:
                acked_index.add(offset)
                acked.append(offset)
                self._n_acked += 1

    def commit_due(self) -> bool:
        """Whether ``broker_commit_every`` acknowledgements were counted since the last time
        this said so (Faust's count-based commit; the timer-based one runs on its own)."""
        if self._commit_every is not None and self._n_acked >= self._commit_every:
            self._n_acked = 0
            return True
        return False

    def begin_in_flight(self) -> InFlight:
        """A new batch in the set of unacknowledged messages: a rebalance waits for it."""
        in_flight = InFlight()
        self._unacked_messages.add(cast(Message, in_flight))
        return in_flight

    def end_in_flight(self, in_flight: InFlight) -> None:
        """The batch is acknowledged: out of the set, and a waiting rebalance is woken."""
        in_flight.acked = True
        self._unacked_messages.discard(cast(Message, in_flight))
        notify(self._waiting_for_ack)

    # -- fetching -----------------------------------------------------------------------------

    @property
    def buffered_partitions(self) -> set[TP]:
        """Partitions whose fetched records are delivered although not active (Faust's rule)."""
        return cast(set[TP], self._buffered_partitions)

    @property
    def paused_partitions(self) -> set[TP]:
        """Partitions Faust does not fetch for now (recovery, flow control)."""
        return cast(set[TP], self._paused_partitions)

    async def next_records(self, timeout: float) -> tuple[Mapping[TP, list[Any]] | None, set[TP] | None]:
        """The next fetched records per partition, and the partitions active for delivery."""
        return await self._wait_next_records(timeout)

    def to_message(self, tp: TP, record: Any) -> Message:
        return self._to_message(tp, record)

    async def seek_in_thread(self, tp: TP, offset: int) -> None:
        """Faust's seek of ``tp`` to ``offset``, run in the consumer's thread. Faust's own seek
        calls aiokafka from the worker's event loop, while the fetcher whose state it changes
        runs on the thread's: the fetch under way could then move the position past the seek."""
        thread = self._thread
        await thread.call_thread(thread._ensure_consumer().seek, TopicPartition(tp.topic, tp.partition), offset)
        self._read_offset[tp] = offset if offset else None

    async def read_positions(self) -> dict[TP, int]:
        """:func:`consumed_positions` of the aiokafka consumer, read in its thread."""
        thread = self._thread
        consumer = thread._ensure_consumer()

        async def in_thread() -> dict[TP, int]:
            return consumed_positions(consumer)

        return cast(dict[TP, int], await thread.call_thread(in_thread))


class ConsumerThread(aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, with the creation of its aiokafka consumer made public."""

    def _create_worker_consumer(self, transport: aiokafka.Transport) -> AIOKafkaConsumer:
        return self.create_worker_consumer(transport)

    def create_worker_consumer(self, transport: aiokafka.Transport) -> AIOKafkaConsumer:
        return super()._create_worker_consumer(transport)


def set_fetch_wait(consumer: AIOKafkaConsumer, max_wait_ms: int, min_bytes: int) -> None:
    """How long a fetch waits on the broker for at least ``min_bytes`` of records; aiokafka
    reads both when it starts."""
    consumer._fetch_max_wait_ms = max_wait_ms
    consumer._fetch_min_bytes = min_bytes


def consumed_positions(consumer: AIOKafkaConsumer) -> dict[TP, int]:
    """Per assigned partition whose position is known, the offset the consumer reads next: past
    the transaction markers it fetched too, for which it returns no record. aiokafka's
    ``position()`` would wait for the unknown ones."""
    subscription = consumer._subscription.subscription
    if subscription is None or subscription.assignment is None:
        return {}
    return {TP(tp.topic, tp.partition): consumed.offset
            for tp, consumed in subscription.assignment.all_consumed_offsets().items()}


def aiokafka_producer(producer: Any) -> AIOKafkaProducer:
    """The aiokafka producer inside Faust's (created on first use)."""
    return cast(AIOKafkaProducer, producer._ensure_producer())


class Table(faust.Table):
    """Faust's table, with the creation of its store made public."""

    def _new_store_by_url(self, url: str | URL) -> StoreT:
        return self.new_store_by_url(url)

    def new_store_by_url(self, url: str | URL) -> StoreT:
        return super()._new_store_by_url(url)


class TableManager(faust.tables.TableManager):
    """Faust's table manager, with the update of its changelog subscriptions made public."""

    async def update_channels(self) -> None:
        await self._update_channels()


class Worker(faust.Worker):
    """Faust's worker, with the task mode runs after every service stopped made public."""

    async def _sentinel_task(self) -> None:
        await self.last_task()

    async def last_task(self) -> None:
        """Runs once every service has stopped, so that callbacks still queued run before the
        loop closes (mode's sleeps a second)."""
        await super()._sentinel_task()


def memory_key_partitions(store: object) -> dict[str, int] | None:
    """The memory store's key → partition map (by which it drops the keys of partitions it
    loses), or None for another store."""
    key_partition = getattr(store, "_key_partition", None)
    return key_partition if isinstance(key_partition, dict) else None


class RocksStore(rocksdb.Store):
    """Faust's RocksDB store, with its per-partition databases made public."""

    @property
    def open_partitions(self) -> list[int]:
        """Partitions whose database is open."""
        return list(self._dbs)

    def db_for_partition(self, partition: int) -> Any:
        """The partition's database (``rocksdict.Rdict``), opened if it is not."""
        return self._db_for_partition(partition)

    def close_partition(self, partition: int) -> None:
        db = self._dbs.pop(partition, None)
        if db is not None:
            db.close()

    async def open_partition(self, partition: int, generation_id: int) -> bool:
        """Open the partition's database, retrying while another process holds its lock;
        False when a rebalance to another generation came meanwhile."""
        return await self._try_open_db_for_partition(partition, generation_id=generation_id) is not None

