"""BatchRunner with its checkpoint, the project's real sink over an in-process insert client and
a producer whose deliveries the test completes: a batch is acked only after its state and
messages are delivered and its rows written, a commit acks only the batches that came before
it, records read under an old assignment are not processed, a full sink holds the next batch
back, a paused runner processes nothing but still commits (a rebalance waits for it), and
settled state is deleted after the commit unless a later batch wrote it again."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Sequence
from types import SimpleNamespace
from typing import Any

from faust.types import TP
from prometheus_client import CollectorRegistry

from streams.clickhouse.sink import ClickHouseSink
from streams.runtime.fence import InFlight
from streams.runtime.metrics import Metrics
from streams.runtime.runner import BatchRunner, TableState
from streams.runtime.transport import Fetched
from streams.settings import load_settings
from streams.stages.records import BatchOutput, InputRecord, OutMessage, SourceRecord
from tests.support.rows import row

TOPIC = "clicks"
TP0 = TP(TOPIC, 0)


class GatedClient:
    """An insert client whose inserts wait until the test opens the gate (they run in a thread)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.inserted: list[str] = []

    def execute(self, query: str, params: Any = None, *, columnar: bool = False, settings: Any = None) -> Any:
        assert self.gate.wait(10), "the test never opened the gate"
        self.inserted.extend(params[0])  # the first column: credit ids
        return len(params[0])

    def disconnect(self) -> None:
        pass


class Producer:
    """Stands in for BatchSender: every send is one delivery the test resolves."""

    def __init__(self) -> None:
        self.deliveries: list[asyncio.Future[None]] = []
        self.sent: list[OutMessage] = []
        self.deliver_at_once = False

    async def send(self, messages: Iterable[OutMessage]) -> list[asyncio.Future[None]]:
        self.sent.extend(messages)
        delivery = asyncio.get_running_loop().create_future()
        if self.deliver_at_once:
            delivery.set_result(None)
        self.deliveries.append(delivery)
        return [delivery]

    def deliver_all(self) -> None:
        for delivery in self.deliveries:
            if not delivery.done():
                delivery.set_result(None)


class Consumer:
    def __init__(self) -> None:
        self.in_flight: set[InFlight] = set()
        self.acked: list[int] = []

    def begin_batch(self) -> InFlight:
        in_flight = InFlight()
        self.in_flight.add(in_flight)
        return in_flight

    def ack_batch(self, in_flight: InFlight, offsets: dict[TP, list[int]]) -> None:
        self.in_flight.remove(in_flight)
        self.acked.extend(offsets[TP0])


def credit_rows(records: Sequence[SourceRecord]) -> BatchOutput:
    """A stage: one state write and one referral_credits row per record."""
    out = BatchOutput()
    for record in records:
        out.state_writes.append((0, f"k{record.offset}", f"v{record.offset}".encode()))  # a new object
        out.rows.append(("referral_credits", row("referral_credits", credit_id=f"c{record.offset}")))
    return out


class Harness:
    def __init__(self, flush_wait_s: float = 0.0, sink_max_rows: int = 20_000) -> None:
        self.client = GatedClient()
        self.producer = Producer()
        self.consumer = Consumer()
        self.generation = 1
        self.paused = False
        self.forgotten = 0
        self.processed: list[int] = []
        table = SimpleNamespace(data=SimpleNamespace(data={}),
                                changelog_topic=SimpleNamespace(get_topic_name=lambda: "profiles-changelog"))

        def process(records: Sequence[SourceRecord]) -> BatchOutput:
            self.processed.extend(r.offset for r in records)
            return credit_rows(records)

        def forget() -> None:
            self.forgotten += 1

        settings = load_settings({"STREAMS_SINK_MAX_ROWS": str(sink_max_rows)})
        self.runner = BatchRunner(
            "test", process, TableState(table),  # type: ignore[arg-type]
            ClickHouseSink(settings, lambda: self.client), Metrics(CollectorRegistry()),
            self.producer,  # type: ignore[arg-type]
            consumer=lambda: self.consumer,  # type: ignore[arg-type, return-value]
            flush_wait_s=flush_wait_s,
            paused=lambda: self.paused, generation=lambda: self.generation, on_new_generation=forget)
        self.checkpoint = self.runner.checkpoint

    def fetched(self, *offsets: int, generation: int | None = None) -> Fetched:
        records = [InputRecord(TOPIC, 0, offset, b"k", b"v", 1_000) for offset in offsets]
        return Fetched(TP0, records, self.generation if generation is None else generation)

    async def feed(self, *offsets: int, generation: int | None = None) -> None:
        await self.runner.run_batch([self.fetched(*offsets, generation=generation)])


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


def test_a_batch_is_acked_only_after_its_deliveries_and_rows() -> None:
    async def scenario() -> None:
        h = Harness()
        await h.feed(0, 1)
        assert h.processed == [0, 1] and h.consumer.acked == []
        commit = asyncio.ensure_future(h.checkpoint.commit())
        await settle()
        assert h.consumer.acked == []  # deliveries pending, insert not started
        h.producer.deliver_all()
        await settle()
        assert h.consumer.acked == [] and h.client.inserted == []  # the insert waits at the gate
        h.client.gate.set()
        await asyncio.wait_for(commit, 5)
        assert h.client.inserted == ["c0", "c1"] and h.consumer.acked == [0, 1]
        assert not h.consumer.in_flight

    asyncio.run(scenario())


def test_a_commit_acks_only_the_batches_before_it_and_the_next_commit_the_rest() -> None:
    async def scenario() -> None:
        h = Harness()
        await h.feed(0, 1)
        h.producer.deliver_all()
        first = asyncio.ensure_future(h.checkpoint.commit())
        await settle()  # the first commit is inserting, held at the gate
        await h.feed(2, 3)  # processed beside the running commit
        assert h.processed == [0, 1, 2, 3]
        h.producer.deliver_all()
        h.client.gate.set()
        await asyncio.wait_for(first, 5)
        assert h.consumer.acked == [0, 1]
        await asyncio.wait_for(h.checkpoint.commit(), 5)
        assert h.consumer.acked == [0, 1, 2, 3]
        assert sorted(h.client.inserted) == ["c0", "c1", "c2", "c3"]

    asyncio.run(scenario())


def test_records_read_under_an_old_assignment_are_not_processed() -> None:
    async def scenario() -> None:
        h = Harness()
        stale = h.fetched(0, 1)  # generation 1
        h.generation = 2  # a rebalance: the consumer reads from the committed offsets again
        await h.runner.run_batch([stale, h.fetched(0, 1, 2)])
        assert h.processed == [0, 1, 2] and h.forgotten == 1

    asyncio.run(scenario())


def test_a_full_sink_holds_the_next_batch_until_a_commit_writes_it() -> None:
    async def scenario() -> None:
        h = Harness(flush_wait_s=3600, sink_max_rows=2)
        h.producer.deliver_at_once = True
        h.client.gate.set()
        batch = asyncio.ensure_future(h.feed(0, 1))
        await settle()
        assert h.processed == [0, 1] and not batch.done()  # processed, waiting for room
        commits = asyncio.ensure_future(h.checkpoint.run(poll_s=0.01))
        await asyncio.wait_for(batch, 5)
        assert h.consumer.acked == [0, 1]
        commits.cancel()

    asyncio.run(scenario())


def test_a_paused_runner_commits_what_it_processed_but_processes_nothing_new() -> None:
    async def scenario() -> None:
        h = Harness(flush_wait_s=3600)  # no commit is due on its own
        await h.feed(0, 1)
        h.paused = True
        waiting = asyncio.ensure_future(h.feed(2, 3))
        h.producer.deliver_all()
        h.client.gate.set()
        commits = asyncio.ensure_future(h.checkpoint.run(poll_s=0.01))
        for _ in range(100):
            await asyncio.sleep(0.01)
            if h.consumer.acked:
                break
        assert h.consumer.acked == [0, 1] and h.processed == [0, 1] and not waiting.done()
        h.paused = False
        await asyncio.wait_for(waiting, 5)
        assert h.processed == [0, 1, 2, 3]
        commits.cancel()

    asyncio.run(scenario())


def test_settled_state_is_deleted_after_the_commit_unless_a_later_batch_wrote_it_again() -> None:
    async def scenario() -> None:
        h = Harness()
        store = h.runner.state.local

        def settle_keys(records: Sequence[SourceRecord]) -> BatchOutput:
            out = credit_rows(records)  # writes k<offset>
            out.deletes_after_flush.extend((0, f"k{r.offset - 10}") for r in records if r.offset >= 10)
            return out

        h.runner.process = settle_keys
        h.producer.deliver_at_once = True
        await h.feed(1, 2)
        h.client.gate.set()
        await asyncio.wait_for(h.checkpoint.commit(), 5)
        assert {"k1", "k2"} <= store.keys()

        h.client.gate.clear()
        await h.feed(11, 12)  # settles k1 and k2
        commit = asyncio.ensure_future(h.checkpoint.commit())  # waits at the gate
        await settle()
        await h.feed(1, 3)  # a replay writes k1 again before that commit deletes it
        h.client.gate.set()
        await asyncio.wait_for(commit, 5)
        assert "k2" not in store and "k1" in store
        assert [m.key for m in h.producer.sent if m.value is None] == [b'"k2"']  # the tombstone

    asyncio.run(scenario())


def test_state_of_partitions_lost_in_a_rebalance_leaves_the_memory_store() -> None:
    from faust.stores.memory import Store as MemoryStore

    store = SimpleNamespace(data={}, _key_partition={})
    table = SimpleNamespace(data=store, changelog_topic=SimpleNamespace(get_topic_name=lambda: "t-changelog"))
    state = TableState(table)  # type: ignore[arg-type]
    state.apply([(0, "c:kept", b"1"), (1, "c:moved", b"2"), (1, "c:gone", b"3")])
    state.apply([(1, "c:gone", None)])
    # Faust's own clean-up after the recovery that follows a rebalance: partition 1 moved away.
    asyncio.run(MemoryStore.on_recovery_completed(store, {TP("t-changelog", 0)}, set()))  # type: ignore[arg-type]
    assert store.data == {"c:kept": b"1"}


def test_changelog_keys_are_spelled_as_always_and_read_back_by_faust() -> None:
    import json

    from faust.serializers import codecs

    store = SimpleNamespace(data={}, _key_partition={})
    table = SimpleNamespace(data=store, changelog_topic=SimpleNamespace(get_topic_name=lambda: "t-changelog"))
    keys = ["c:cust-1", 'c:quote"back\\slash', "c:caf\u00e9-\u6771\u4eac", "a:tab\tnewline\n", "c:\U0001f600"]
    changelog = TableState(table).apply([(0, key, b"1") for key in keys])  # type: ignore[arg-type]
    # Byte for byte as json.dumps spells them, as every earlier version wrote them: compaction
    # keeps one record per key only if every write of it is spelled alike.
    assert [m.key for m in changelog] == [json.dumps(key).encode() for key in keys]
    assert [codecs.loads("json", m.key) for m in changelog] == keys  # what recovery decodes


def test_a_key_count_lets_batches_run_between_its_slices() -> None:
    store = SimpleNamespace(data={}, _key_partition={})
    table = SimpleNamespace(data=store, changelog_topic=SimpleNamespace(get_topic_name=lambda: "t-changelog"))
    state = TableState(table)  # type: ignore[arg-type]
    state.apply([(0, f"c:{i}", b"1") for i in range(25)] + [(0, f"m:0:{i}", b"1") for i in range(10)])

    async def count_beside_a_batch() -> tuple[int, bool]:
        counting = asyncio.ensure_future(state.count_with_prefix("c:", slice_size=10))
        await asyncio.sleep(0)  # the count's first slice
        count_done_before_the_batch = counting.done()
        state.apply([(0, "c:new", b"1")])  # a batch: the store changes while the count waits
        return await counting, count_done_before_the_batch

    assert asyncio.run(count_beside_a_batch()) == (25, False)  # the keys there when it began
    assert asyncio.run(state.count_with_prefix("c:", slice_size=10)) == 26
