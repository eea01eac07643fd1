"""The persistent store's own rules: key decoding, and what reaches a partition's database when
(values only once their changelog records are delivered, in send order, with their offset)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest
from faust.types import TP

from streams.runtime.app import build_pipeline
from streams.runtime.store import PersistentStore, decode_key, last_offsets
from streams.settings import load_settings


class Delivered(NamedTuple):
    """The fields of aiokafka's RecordMetadata the store reads."""

    topic: str
    partition: int
    offset: int


@pytest.mark.parametrize("key", ["c:42", "s:a b", 'q:"quoted"', "back\\slash", "é", "\u2603", ""])
def test_decode_key_inverts_the_json_key_serializer(key: str) -> None:
    assert decode_key(json.dumps(key).encode()) == key


def test_last_offsets_are_the_last_batch_bases_of_the_changelog_only() -> None:
    loop = asyncio.new_event_loop()
    futures = []
    for result in (Delivered("log", 0, 10), Delivered("log", 0, 30), Delivered("log", 1, 5),
                   Delivered("other", 0, 99)):
        future: asyncio.Future[Any] = loop.create_future()
        future.set_result(result)
        futures.append(future)
    assert last_offsets("log", futures) == {0: 30, 1: 5}
    loop.close()


def stored(store: PersistentStore, partition: int) -> dict[bytes, bytes]:
    return dict(store._db_for_partition(partition).items())


def test_values_are_saved_once_delivered_in_send_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        pipeline = build_pipeline(load_settings({}, table_dir=str(tmp_path), store="rocksdb://"))
        store = pipeline.profiles.data
        assert isinstance(store, PersistentStore)
        store._load(0)
        topic = pipeline.profiles.changelog_topic.get_topic_name()
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        store.sent([(0, b'"k"', b"1"), (0, b'"gone"', b"x")], [first])
        store.sent([(0, b'"k"', b"2"), (0, b'"gone"', None)], [second])
        second.set_result(Delivered(topic, 0, 7))
        await asyncio.sleep(0)
        assert stored(store, 0) == {}  # the first send is not delivered yet: nothing is saved
        first.set_result(Delivered(topic, 0, 5))
        await asyncio.sleep(0)
        assert stored(store, 0) == {b'"k"': b"2", store.offset_key: b"7"}
        failed = loop.create_future()
        store.sent([(0, b'"k"', b"3")], [failed])
        failed.set_exception(RuntimeError("delivery failed"))
        await asyncio.sleep(0)
        assert stored(store, 0)[b'"k"'] == b"2"  # never saved: the changelog may lack it
        await store.stop()

    asyncio.run(scenario())


def test_recovered_records_reach_memory_only_for_loaded_partitions(tmp_path: Path) -> None:
    """Recovery writes every record to its partition's database; only a loaded partition's
    records also reach the values the worker reads. One not loaded yet gets them from its
    database when it loads."""
    async def scenario() -> None:
        pipeline = build_pipeline(load_settings({}, table_dir=str(tmp_path), store="rocksdb://"))
        store = pipeline.profiles.data
        assert isinstance(store, PersistentStore)
        topic = pipeline.profiles.changelog_topic.get_topic_name()
        store._load(0)  # partition 1 is not loaded yet
        store.apply_changelog_batch([changelog_event(topic, 0, 3, "k0", b"v0"),
                                     changelog_event(topic, 1, 8, "k1", b"v1")],
                                    to_key=lambda key: key, to_value=lambda value: value)
        assert store.data == {"k0": b"v0"}
        assert stored(store, 0) == {b'"k0"': b"v0", store.offset_key: b"3"}
        assert stored(store, 1) == {b'"k1"': b"v1", store.offset_key: b"8"}
        store._load(1)  # its load reads what recovery saved
        assert store.data == {"k0": b"v0", "k1": b"v1"}
        await store.stop()

    asyncio.run(scenario())


def test_workers_keep_no_standby_partitions(tmp_path: Path) -> None:
    """A partition that moves is replayed from its changelog (streams.runtime.store): Faust's
    standby reading, which ran beside processing, left a survivor's database without a record."""
    app = build_pipeline(load_settings({}, table_dir=str(tmp_path))).app
    assert app.conf.table_standby_replicas == 0


def changelog_event(topic: str, partition: int, offset: int, key: str, value: bytes) -> Any:
    """A changelog event with the fields the store's recovery reads."""
    message = SimpleNamespace(tp=TP(topic, partition), partition=partition, offset=offset,
                              key=json.dumps(key).encode(), value=value)
    return SimpleNamespace(message=message, key=key, value=value)
