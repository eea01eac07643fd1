"""The checkpoint's commit order, one test per step that can fail: deliveries, then rows, then
settled deletes, then acks; a failure or a death at any point leaves every later step undone,
so the batch's offsets are never acknowledged and it is processed again."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from faust.types import TP
from prometheus_client import CollectorRegistry

from streams.runtime.checkpoint import Checkpoint, Settled
from streams.runtime.fence import InFlight
from streams.runtime.metrics import Metrics

TP0 = TP("clicks", 0)


class Steps:
    """The collaborators of a checkpoint, logging each step they take in ``done``. A step
    whose name is in ``fail`` raises; one whose name is in ``held`` waits until released."""

    def __init__(self, full_at_rows: int = 1_000) -> None:
        self.done: list[str] = []
        self.fail: set[str] = set()
        self.held: dict[str, asyncio.Event] = {}
        self.buffered_rows = 0
        self.full_at_rows = full_at_rows
        self.is_paused = False
        self.acked: list[int] = []
        self.deleted: list[str] = []

    def hold(self, step: str) -> asyncio.Event:
        self.held[step] = asyncio.Event()
        return self.held[step]

    async def step(self, name: str) -> None:
        if name in self.held:
            await self.held[name].wait()
        if name in self.fail:
            raise RuntimeError(f"{name} failed")
        self.done.append(name)

    # -- the sink
    @property
    def full(self) -> bool:
        return self.buffered_rows >= self.full_at_rows

    async def flush(self) -> int:
        await self.step("rows")
        written, self.buffered_rows = self.buffered_rows, 0
        return written

    # -- the runner and the consumer
    async def delete_settled(self, settled: Sequence[Settled]) -> None:
        await self.step("deletes")
        self.deleted.extend(key for _, key, _ in settled)

    def acknowledge(self, in_flight: InFlight, offsets: dict[TP, list[int]]) -> None:
        self.done.append("acks")
        self.acked.extend(offsets[TP0])

    def checkpoint(self, flush_wait_s: float = 0.0) -> Checkpoint:
        return Checkpoint("test", self, self.delete_settled, self.acknowledge,  # type: ignore[arg-type]
                          lambda: self.is_paused, Metrics(CollectorRegistry()), flush_wait_s)


def owe(checkpoint: Checkpoint, steps: Steps, *offsets: int, delivery: asyncio.Future[None] | None = None) -> None:
    """A processed batch of ``offsets``: one row and one settled key per offset."""
    if delivery is None:
        delivery = asyncio.get_running_loop().create_future()
        delivery.set_result(None)
    steps.buffered_rows += len(offsets)
    checkpoint.owe([delivery], InFlight(), {TP0: list(offsets)},
                   [(0, f"m{offset}", b"settled") for offset in offsets], [0] * len(offsets))


def test_a_commit_takes_the_steps_in_order() -> None:
    async def scenario() -> None:
        steps = Steps()
        checkpoint = steps.checkpoint()
        owe(checkpoint, steps, 0, 1)
        await checkpoint.commit()
        assert steps.done == ["rows", "deletes", "acks"]
        assert steps.acked == [0, 1] and steps.deleted == ["m0", "m1"]

    asyncio.run(scenario())


def test_rows_wait_for_the_deliveries() -> None:
    async def scenario() -> None:
        steps = Steps()
        checkpoint = steps.checkpoint()
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        owe(checkpoint, steps, 0, delivery=delivery)
        commit = asyncio.ensure_future(checkpoint.commit())
        await asyncio.sleep(0.01)
        assert steps.done == [] and "Kafka to acknowledge records sent" in checkpoint.describe()
        delivery.set_result(None)
        await asyncio.wait_for(commit, 1)
        assert steps.done == ["rows", "deletes", "acks"]

    asyncio.run(scenario())


def test_a_failed_delivery_writes_no_rows_deletes_nothing_and_acks_nothing() -> None:
    async def scenario() -> None:
        steps = Steps()
        checkpoint = steps.checkpoint()
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivery.set_exception(RuntimeError("no leader"))
        owe(checkpoint, steps, 0, delivery=delivery)
        with pytest.raises(RuntimeError, match="no leader"):
            await checkpoint.commit()
        assert steps.done == [] and steps.acked == []

    asyncio.run(scenario())


ORDER = ["rows", "deletes", "acks"]


@pytest.mark.parametrize("failing", ["rows", "deletes"])
def test_a_failed_insert_or_delete_leaves_every_later_step_undone(failing: str) -> None:
    async def scenario() -> None:
        steps = Steps()
        steps.fail.add(failing)
        checkpoint = steps.checkpoint()
        owe(checkpoint, steps, 0)
        with pytest.raises(RuntimeError, match=f"{failing} failed"):
            await checkpoint.commit()
        assert steps.done == ORDER[:ORDER.index(failing)] and steps.acked == []

    asyncio.run(scenario())


@pytest.mark.parametrize("dies_before", ["rows", "deletes"])
def test_a_death_between_two_steps_leaves_every_later_step_undone(dies_before: str) -> None:
    """The process dies (the commit is cancelled) while a step waits: what was done is a prefix
    of the order, and nothing is acknowledged."""
    async def scenario() -> None:
        steps = Steps()
        steps.hold(dies_before)
        checkpoint = steps.checkpoint()
        owe(checkpoint, steps, 0, 1)
        commit = asyncio.ensure_future(checkpoint.commit())
        await asyncio.sleep(0.01)
        commit.cancel()
        with pytest.raises(asyncio.CancelledError):
            await commit
        assert steps.done == ORDER[:ORDER.index(dies_before)]
        assert steps.acked == []

    asyncio.run(scenario())


def test_a_death_before_the_deliveries_complete_leaves_everything_undone() -> None:
    async def scenario() -> None:
        steps = Steps()
        checkpoint = steps.checkpoint()
        owe(checkpoint, steps, 0, delivery=asyncio.get_running_loop().create_future())
        commit = asyncio.ensure_future(checkpoint.commit())
        await asyncio.sleep(0.01)
        commit.cancel()
        with pytest.raises(asyncio.CancelledError):
            await commit
        assert steps.done == [] and steps.acked == []

    asyncio.run(scenario())


def test_a_commit_acks_only_the_batches_owed_when_it_started() -> None:
    async def scenario() -> None:
        steps = Steps()
        released = steps.hold("rows")
        checkpoint = steps.checkpoint()
        owe(checkpoint, steps, 0, 1)
        commit = asyncio.ensure_future(checkpoint.commit())
        await asyncio.sleep(0.01)
        owe(checkpoint, steps, 2, 3)  # processed while the first commit inserts
        released.set()
        await asyncio.wait_for(commit, 1)
        assert steps.acked == [0, 1]
        await checkpoint.commit()
        assert steps.acked == [0, 1, 2, 3]

    asyncio.run(scenario())


def test_a_commit_is_due_after_the_wait_when_the_sink_is_full_and_at_once_when_paused() -> None:
    async def scenario() -> None:
        steps = Steps(full_at_rows=3)
        checkpoint = steps.checkpoint(flush_wait_s=3600)
        assert not checkpoint.due  # nothing owed
        owe(checkpoint, steps, 0)
        assert not checkpoint.due
        steps.is_paused = True  # a rebalance waits for the acks
        assert checkpoint.due
        steps.is_paused = False
        owe(checkpoint, steps, 1, 2)
        assert checkpoint.due  # the sink is full
        assert steps.checkpoint(flush_wait_s=0).due is False  # a new one owes nothing

    asyncio.run(scenario())


def test_a_full_sink_holds_the_next_batch_until_a_commit_empties_it() -> None:
    async def scenario() -> None:
        steps = Steps(full_at_rows=2)
        checkpoint = steps.checkpoint(flush_wait_s=3600)
        owe(checkpoint, steps, 0, 1)
        room = asyncio.ensure_future(checkpoint.wait_for_room())
        await asyncio.sleep(0.01)
        assert not room.done()
        running = asyncio.ensure_future(checkpoint.run(poll_s=0.01))
        await asyncio.wait_for(room, 1)
        assert steps.acked == [0, 1]
        running.cancel()

    asyncio.run(scenario())


def test_a_commit_starts_once_its_rows_have_waited_flush_wait_not_at_the_next_poll() -> None:
    async def scenario() -> None:
        steps = Steps()
        checkpoint = steps.checkpoint(flush_wait_s=0.05)
        running = asyncio.ensure_future(checkpoint.run(poll_s=30))  # a poll would come far too late
        await asyncio.sleep(0.01)  # the loop sleeps, nothing owed
        owe(checkpoint, steps, 0)  # the first batch owed wakes it: due flush_wait after the start
        await asyncio.wait_for(_acked(steps, [0]), 5)
        owe(checkpoint, steps, 1)  # due flush_wait after the commit before started
        await asyncio.wait_for(_acked(steps, [0, 1]), 5)
        running.cancel()

    asyncio.run(scenario())


async def _acked(steps: Steps, offsets: list[int]) -> None:
    while steps.acked != offsets:
        await asyncio.sleep(0.005)
