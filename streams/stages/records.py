"""What the stages read and write: source records, outgoing messages, a batch's output, the
state they read, and the cache of decoded state records. No Faust, no I/O."""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import orjson

T = TypeVar("T")


class SourceRecord(Protocol):
    """A consumed record as the stages read it: aiokafka's ``ConsumerRecord`` in the worker
    (handed over as fetched, see ``streams.runtime.transport``), :class:`InputRecord` elsewhere."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp(self) -> int:
        """The Kafka record timestamp: the ingest time, epoch ms."""
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


class InputRecord(NamedTuple):
    """A source record built by hand (tests, the in-memory pipeline), or the origin of a
    re-routed one."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int
    headers: Sequence[tuple[str, bytes]] = ()


# A NamedTuple, not a frozen dataclass: several are built per batch of records, and a frozen
# dataclass's __init__ costs about four times as much.
class OutMessage(NamedTuple):
    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None  # None: the broker's time of sending


StateWrite = tuple[int, str, bytes | None]  # (partition, key, value; None deletes the key)


@dataclass(slots=True)
class BatchOutput:
    state_writes: list[StateWrite] = field(default_factory=list)
    messages: list[OutMessage] = field(default_factory=list)
    # (table, row): a dict by column name, or a tuple of values in column order (ClickHouseSink.add)
    rows: list[tuple[str, dict[str, Any] | tuple[Any, ...]]] = field(default_factory=list)
    counts: Counter[tuple[str, ...]] = field(default_factory=Counter)
    # State to delete only once this batch's rows are in ClickHouse: a record whose final
    # row is lost in a crash must still be there when its events are replayed.
    deletes_after_flush: list[tuple[int, str]] = field(default_factory=list)


class StateReader(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def keys_with_prefix(self, prefix: str) -> Iterable[str]: ...


def state_key(actor_id: str, anonymous: bool) -> str:
    """Store key of a profile: customers and anonymous ids are kept apart."""
    return f"a:{actor_id}" if anonymous else f"c:{actor_id}"


def encode_state(obj: Any) -> bytes:
    # orjson: state records are written for every touched key of every batch, and it encodes
    # them ~10x faster than json (tests/bench/stage_bench.py). Its bytes keep the ~4 KiB
    # buffer they were written in; state values live in the store, so they are copied to size.
    return memoryview(orjson.dumps(obj)).tobytes()


class DecodedCache(Generic[T]):
    """Decoded state records, so a hot key is not parsed again every batch.

    Values mirror what the stage last wrote to the store; the store stays the truth, and the
    cache is dropped whenever partitions move (a rebalance restores the store from Kafka).
    Bounded: the least recently written entries go first. An OrderedDict, because evicting
    a plain dict's first key gets slower as deleted slots pile up at its front: writes of
    100,000 keys through a full 50,000-entry cache took 30 us each that way, 1.8 us this way.
    """

    def __init__(self, limit: int = 50_000) -> None:
        self.limit = limit
        self.items: OrderedDict[str, T] = OrderedDict()

    def get(self, key: str) -> T | None:
        return self.items.get(key)

    def put(self, key: str, value: T) -> None:
        items = self.items
        items[key] = value
        items.move_to_end(key)
        if len(items) > self.limit:
            items.popitem(last=False)

    def discard(self, key: str) -> None:
        self.items.pop(key, None)

    def clear(self) -> None:
        self.items.clear()
