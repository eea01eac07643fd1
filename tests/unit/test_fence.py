"""The contract of the fence (streams/runtime/fence.py): every private member of faust, aiokafka
and mode it uses still exists, with the shape it uses, on the versions pinned in pyproject.toml.

An upgrade that renames, removes or reshapes one fails here, naming it, instead of breaking
the acknowledgement bookkeeping of a running worker. The last tests drive Faust's own
bookkeeping through the fence on a real (unstarted) consumer: the commit offset it computes
from acknowledged offsets, and a rebalance's wait for a batch in flight."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import faust
import faust.tables
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.stores import memory, rocksdb
from faust.transport.drivers import aiokafka
from faust.types import TP
from mode import worker as mode_worker

from streams.runtime import fence

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"
FENCED_LIBRARIES = ("faust-streaming", "aiokafka", "mode-streaming")

# (owner, private method, its parameters after self, a coroutine function?)
HOOKS_AND_METHODS: list[tuple[type, str, list[str], bool]] = [
    (aiokafka.Consumer, "_add_gap", ["tp", "offset_from", "offset_to"], True),
    (aiokafka.Consumer, "_new_offset", ["tp"], False),
    (aiokafka.Consumer, "_drain_messages", ["fetcher"], True),
    (aiokafka.Consumer, "_new_consumer_thread", [], False),
    (aiokafka.Consumer, "_wait_next_records", ["timeout"], True),
    (aiokafka.Consumer, "_to_message", ["tp", "record"], False),
    (aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer", ["transport"], False),
    (aiokafka.AIOKafkaConsumerThread, "_ensure_consumer", [], False),
    (aiokafka.AIOKafkaConsumerThread, "call_thread", ["fun", "args", "kwargs"], True),
    (faust.Table, "_new_store_by_url", ["url"], False),
    (faust.tables.TableManager, "_update_channels", [], True),
    (mode_worker.Worker, "_sentinel_task", [], True),
    (aiokafka.Producer, "_ensure_producer", [], False),
    (rocksdb.Store, "_db_for_partition", ["partition"], False),
    (rocksdb.Store, "_try_open_db_for_partition", ["partition", "max_retries", "retry_delay", "generation_id"], True),
]


def test_the_fenced_libraries_are_pinned_to_exact_versions_with_a_reason() -> None:
    text = PYPROJECT.read_text()
    for name in FENCED_LIBRARIES:
        pin = f'"{name}=={version(name)}"'
        assert pin in text, f"pyproject.toml must pin {pin}: streams/runtime/fence.py depends on its private members"
    assert "streams/runtime/fence.py" in text  # the reason, next to the pins


@pytest.mark.parametrize(("owner", "name", "parameters", "is_coroutine"), HOOKS_AND_METHODS,
                         ids=[f"{owner.__name__}.{name}" for owner, name, _, _ in HOOKS_AND_METHODS])
def test_a_fenced_method_exists_with_its_shape(owner: type, name: str, parameters: list[str],
                                               is_coroutine: bool) -> None:
    method = getattr(owner, name, None)
    assert method is not None, f"{owner.__module__}.{owner.__qualname__}.{name} is gone"
    signature = inspect.signature(method)
    assert [p.name for p in signature.parameters.values()][1:] == parameters, f"{name}{signature} changed"
    assert inspect.iscoroutinefunction(method) is is_coroutine



def consumer_of(app: faust.App) -> fence.Consumer:
    consumer = app.consumer
    assert isinstance(consumer, fence.Consumer)  # the exact:// transport's
    return consumer


def test_the_consumer_state_the_fence_reads_has_its_shape(app: faust.App) -> None:
    consumer = consumer_of(app)
    tp = TP("clicks", 0)
    assert consumer.read_offsets[tp] is None and consumer.committed_offsets[tp] is None
    assert consumer.acked_offsets(tp) == []
    assert consumer.buffered_partitions == set() and consumer.paused_partitions == set()
    assert consumer.commit_due() is False  # no broker_commit_every by default
    for name, kind in [("_acked_index", dict), ("_n_acked", int), ("_unacked_messages", object)]:
        assert isinstance(getattr(consumer, name), kind), name
    assert hasattr(consumer, "_waiting_for_ack") and hasattr(consumer, "_thread")


def test_the_fence_keeps_faust_s_commit_bookkeeping(app: faust.App) -> None:
    consumer = consumer_of(app)
    tp = TP("clicks", 0)
    committed: Any = consumer.committed_offsets
    committed[tp] = 10
    consumer.mark_acked(tp, [9, 10, 11, 12, 14])  # 9 is before the committed offset: ignored
    consumer.mark_acked(tp, [11])  # acknowledged twice: recorded once
    assert consumer.acked_offsets(tp) == [10, 11, 12, 14]
    assert consumer.committable_offset(tp) == 13  # the run 10..12 is committable
    assert consumer.acked_offsets(tp) == [14]


def test_a_rebalance_waits_for_a_batch_in_flight(app: faust.App) -> None:
    consumer = consumer_of(app)

    async def scenario() -> None:
        in_flight = consumer.begin_in_flight()
        waiting = asyncio.ensure_future(consumer.wait_empty())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        consumer.end_in_flight(in_flight)
        await asyncio.wait_for(waiting, 5)

    app.loop.run_until_complete(scenario())


def test_the_fetch_wait_is_the_attributes_aiokafka_reads() -> None:
    async def scenario() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
        # aiokafka's defaults, where set_fetch_wait writes
        assert (consumer._fetch_max_wait_ms, consumer._fetch_min_bytes) == (500, 1)
        fence.set_fetch_wait(consumer, 100, 65536)
        assert (consumer._fetch_max_wait_ms, consumer._fetch_min_bytes) == (100, 65536)

    asyncio.run(scenario())


def test_consumed_positions_are_those_aiokafka_knows() -> None:
    async def scenario() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
        assert fence.consumed_positions(consumer) == {}  # nothing assigned
        clicks, shares = TopicPartition("clicks", 0), TopicPartition("shares", 1)
        consumer._subscription.assign_from_user({clicks, shares})
        consumer._subscription.subscription.assignment.state_value(clicks).seek(42)
        assert fence.consumed_positions(consumer) == {TP("clicks", 0): 42}  # shares: position unknown

    asyncio.run(scenario())


def test_the_memory_store_keeps_a_key_partition_map(app: faust.App) -> None:
    table = app.Table("fence-contract", key_type=str, value_type=bytes)
    store = table.data
    assert isinstance(store, memory.Store)
    assert fence.memory_key_partitions(store) == {}


def test_the_rocksdb_store_keeps_its_databases_by_partition(app: faust.App, tmp_path: Path) -> None:
    app.conf.datadir = tmp_path
    table = app.Table("fence-rocks", key_type=str, value_type=bytes)
    store = fence.RocksStore("rocksdb://", app, table)
    assert store.open_partitions == []
    db = store.db_for_partition(3)
    db[b"k"] = b"v"
    assert store.open_partitions == [3]
    store.close_partition(3)
    assert store.open_partitions == []


def test_every_hook_the_fence_renames_is_called_by_faust_s_name() -> None:
    """Each override in the fence overrides a member of its base that exists: a typo or a
    rename upstream would leave the public hook silently uncalled."""
    renamed: list[tuple[type, str]] = [
        (fence.Consumer, "_add_gap"), (fence.Consumer, "_new_offset"), (fence.Consumer, "_drain_messages"),
        (fence.Consumer, "_new_consumer_thread"), (fence.ConsumerThread, "_create_worker_consumer"),
        (fence.Table, "_new_store_by_url"), (fence.Worker, "_sentinel_task"),
    ]
    for cls, name in renamed:
        assert name in vars(cls), f"the fence no longer overrides {cls.__qualname__}.{name}"
        base: Callable[..., Any] | None = getattr(cls.__mro__[1], name, None)
        assert base is not None, f"{cls.__mro__[1].__qualname__}.{name} is gone: the fence's hook is never called"
