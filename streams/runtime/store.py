"""The worker's persistent table store (``rocksdb://``): state read from memory, kept on disk.

Faust's RocksDB store keeps one database per changelog partition and, in it, the changelog
offset the database holds everything up to, so that after a restart or a rebalance recovery
replays only the changelog's tail. This store keeps that on-disk layout and recovery, with two
changes for how the pipeline writes state (``streams.runtime.runner``):

- Reads come from a dict of the active partitions' keys (``data``; as the memory store's, so
  :class:`streams.runtime.runner.TableState` uses it directly): lookups are on the hot path, and a
  dict lookup costs a fraction of a RocksDB one. A partition's keys are loaded from its
  database when it becomes active and dropped when it stops being active.
- Writes reach the database only once their changelog records are delivered, batch by batch
  in the order they were sent, each partition's values and its offset in one atomic
  ``WriteBatch``: the database never holds a value the changelog lacks, and its offset is never
  ahead of its values. A crash loses at most what recovery reads back from the changelog.

The workers keep no standby partitions (``table_standby_replicas`` is 0,
``streams.runtime.app``): Faust reads a standby's changelog while the worker processes, and
under load a survivor's standby database missed a changelog record it claimed to hold, so
the partition it took over kept a stale profile. A partition that moves is replayed from its
changelog on the worker that takes it, from the offset that worker's database holds (from the
start when it never held it). Recovered records reach ``data`` only for loaded partitions.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import rocksdict
from faust.types import TP, EventT

from streams.runtime.fence import RocksStore

log = logging.getLogger(__name__)

# RocksDB caches blocks for reads, and reads happen only while a partition loads: a small
# cache. Smaller memtables than Faust's 3 x 64 MiB per partition database bound memory.
ROCKSDB_OPTIONS = {"block_cache_size": 32 * 2**20, "write_buffer_size": 16 * 2**20,
                   "max_write_buffer_number": 2}


@dataclass(slots=True)
class _Sent:
    """Changelog records of one send and the delivery futures of its batches."""

    records: list[tuple[int, bytes, bytes | None]]
    deliveries: list[asyncio.Future[Any]]
    waiting: int = field(default=0)


def decode_key(raw: bytes) -> str:
    """A str key as Faust's json key serializer wrote it; the slice skips json for the keys
    without escapes (every key the stages write), and a partition's load decodes them all."""
    if raw[:1] == b'"' and raw[-1:] == b'"' and b"\\" not in raw:
        return raw[1:-1].decode()
    key = json.loads(raw)
    if not isinstance(key, str):
        raise TypeError(f"table key {raw!r} is not a string")
    return key


def last_offsets(topic: str, deliveries: Iterable[asyncio.Future[Any]]) -> dict[int, int]:
    """Per partition of ``topic``, the base offset of the last batch delivered to it.

    Persisting a batch's base offset rather than its last record's makes recovery read that
    batch again (harmless: records are absolute values), and needs no record counts."""
    offsets: dict[int, int] = {}
    for future in deliveries:
        metadata = future.result()
        if metadata.topic == topic:
            offsets[metadata.partition] = max(metadata.offset, offsets.get(metadata.partition, -1))
    return offsets


class PersistentStore(RocksStore):
    """See the module docstring."""

    def __init__(self, *args: Any, options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, options={**ROCKSDB_OPTIONS, **(options or {})}, **kwargs)
        self.data: dict[str, bytes] = {}
        self.key_partition: dict[str, int] = {}  # TableState keeps it for the keys it writes
        self._loaded: set[int] = set()
        self._sent: list[_Sent] = []

    # -- writes of the worker (streams.runtime.runner.TableState) --------------------------------------

    def sent(self, records: list[tuple[int, bytes, bytes | None]], deliveries: Sequence[asyncio.Future[Any]]) -> None:
        """Save ``records`` to their databases once ``deliveries`` are all done.

        Sends must not overlap (the runner sends one at a time): then each partition's
        changelog holds the records in the order they are saved here."""
        if not records:
            return
        entry = _Sent(records, list(deliveries), waiting=len(deliveries))
        self._sent.append(entry)

        def delivered(_: asyncio.Future[Any]) -> None:
            entry.waiting -= 1
            if entry.waiting == 0:
                self._save_delivered()

        for future in entry.deliveries:
            future.add_done_callback(delivered)
        if not entry.deliveries:
            self._save_delivered()

    def _save_delivered(self) -> None:
        # In send order, up to the first send not delivered yet; a failed delivery stops the
        # worker, and what follows it is never saved.
        while self._sent and self._sent[0].waiting == 0:
            entry = self._sent[0]
            if any(future.cancelled() or future.exception() is not None for future in entry.deliveries):
                return
            self._sent.pop(0)
            offsets = last_offsets(self.table.changelog_topic.get_topic_name(), entry.deliveries)
            batches: dict[int, rocksdict.WriteBatch] = {}
            for partition, key, value in entry.records:
                if partition not in self._loaded:
                    continue  # revoked meanwhile: recovery reads it from the changelog
                batch = batches.get(partition)
                if batch is None:
                    batch = batches[partition] = rocksdict.WriteBatch(raw_mode=True)
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
            for partition, batch in batches.items():
                batch.put(self.offset_key, str(offsets[partition]).encode())
                self.db_for_partition(partition).write(batch)

    # -- recovery (Faust) ---------------------------------------------------------------------

    def apply_changelog_batch(self, batch: Iterable[EventT], to_key: Callable[[Any], Any],
                              to_value: Callable[[Any], Any]) -> None:
        batches: dict[int, rocksdict.WriteBatch] = {}
        offsets: dict[int, int] = {}
        for event in batch:
            message = event.message
            partition, raw_key = message.partition, cast(bytes, message.key)  # changelog keys are never None
            write = batches.get(partition)
            if write is None:
                write = batches[partition] = rocksdict.WriteBatch(raw_mode=True)
            offsets[partition] = max(message.offset, offsets.get(partition, -1))
            if message.value is None:
                write.delete(raw_key)
            else:
                write.put(raw_key, message.value)
            if partition not in self._loaded:
                continue  # an active one not loaded yet: its load reads the database
            key = to_key(event.key)
            if message.value is None:
                self.data.pop(key, None)
                self.key_partition.pop(key, None)
            else:
                self.data[key] = to_value(event.value)
                self.key_partition[key] = partition
        for partition, write in batches.items():
            write.put(self.offset_key, str(offsets[partition]).encode())
            self.db_for_partition(partition).write(write)

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP],
                           generation_id: int = 0) -> None:
        topics = self.table.changelog_topic.topics
        actives = {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic in topics}
        async with self.db_lock:
            for partition in self._loaded - actives:
                self._unload(partition)
            for partition in set(self.open_partitions) - actives:
                self.close_partition(partition)
            for partition in sorted(actives - self._loaded):
                if not await self.open_partition(partition, generation_id):
                    return  # rebalanced again meanwhile: the next rebalance loads what is active
                self._load(partition)
                await asyncio.sleep(0)

    def _load(self, partition: int) -> None:
        data, key_partition = self.data, self.key_partition
        loaded = 0
        for key, value in self._stored_items(partition):
            data[key] = value
            key_partition[key] = partition
            loaded += 1
        self._loaded.add(partition)
        offset = self.db_for_partition(partition).get(self.offset_key)
        log.info("%s partition %d loaded from disk: %d keys, changelog read up to offset %s",
                 self.table.name, partition, loaded, offset.decode() if offset else "none")

    def _stored_items(self, partition: int) -> Iterator[tuple[str, bytes]]:
        for raw, value in self.db_for_partition(partition).items():
            if raw != self.offset_key:
                yield decode_key(raw), value

    def _unload(self, partition: int) -> None:
        gone = [key for key, p in self.key_partition.items() if p == partition]
        for key in gone:
            del self.data[key], self.key_partition[key]
        self._loaded.discard(partition)

    async def stop(self) -> None:
        for partition in self.open_partitions:
            self.close_partition(partition)
        self._loaded.clear()
