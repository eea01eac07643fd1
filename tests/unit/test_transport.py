"""The consumer's rules for which fetched records are new: at or after the read offset (Faust's
rule), so records fetched again after a seek back are not delivered twice; and, for input
partitions, from the partition's next offset on, in order, none skipped, and only once the
seek of the current consumer generation set that offset."""

from __future__ import annotations

import faust
import pytest
from faust.types import TP

from streams.runtime import fence
from streams.runtime.transport import Consumer, Fetched, Ordered, in_order, unread
from streams.stages.records import InputRecord


def records(*offsets: int) -> list[InputRecord]:
    return [InputRecord("t", 0, offset, None, None, 0) for offset in offsets]


def test_everything_is_new_before_anything_was_read() -> None:
    fetched = records(5, 6, 7)
    assert unread(fetched, None) is fetched


def test_records_before_the_read_offset_are_dropped() -> None:
    assert [r.offset for r in unread(records(3, 4, 5, 6), 5)] == [5, 6]
    assert unread(records(1, 2), 5) == []


def test_a_fetch_starting_at_the_read_offset_is_passed_through_uncopied() -> None:
    fetched = records(5, 6)
    assert unread(fetched, 5) is fetched


# The consumer's rule for delivering one partition's records in order from its next offset.

def test_records_from_the_next_offset_are_delivered_as_fetched() -> None:
    fetched = records(5, 6, 7)
    assert in_order(fetched, 5, False) == Ordered(fetched, False, [])


def test_records_delivered_already_are_dropped() -> None:
    ordered = in_order(records(3, 4, 5, 6), 5, False)
    assert [r.offset for r in ordered.records] == [5, 6] and not ordered.read_again
    assert in_order(records(1, 2), 5, False) == Ordered([], False, [])


def test_records_starting_past_the_next_offset_are_held_back_and_read_again() -> None:
    assert in_order(records(8, 9), 5, False) == Ordered([], True, [])
    assert in_order(records(3, 4, 8, 9), 5, False) == Ordered([], True, [])


def test_read_again_and_still_past_the_next_offset_the_offsets_between_hold_nothing() -> None:
    fetched = records(8, 9)
    assert in_order(fetched, 5, True) == Ordered(fetched, False, [(5, 7)])


def test_offsets_between_the_records_of_one_fetch_hold_nothing() -> None:
    # A transaction's commit marker takes one offset in each partition it wrote to.
    fetched = records(5, 6, 8, 9, 12)
    assert in_order(fetched, 5, False) == Ordered(fetched, False, [(7, 7), (10, 11)])


# The consumer's hand-over across a rebalance: a partition's next offset holds only for the
# consumer generation whose seek set it.

class Channel:
    """An agent's channel: what was put in it."""

    def __init__(self) -> None:
        self.fetches: list[Fetched] = []

    async def put(self, fetched: Fetched) -> None:
        self.fetches.append(fetched)


def kept_through_a_rebalance(app: faust.App) -> tuple[Consumer, TP, Channel]:
    """A consumer that handed over records 100 to 119 of a partition in generation 2, whose
    runner processed none of them: the rebalance to generation 3 committed 100."""
    consumer = app.consumer
    assert isinstance(consumer, Consumer)
    tp = TP("t", 0)
    consumer.next_offsets, consumer.sought_generation = {tp: 120}, 2
    app.consumer_generation_id = 3
    setattr(consumer, "highwater", lambda tp: 200)  # noqa: B010 - no broker in a unit test
    return consumer, tp, Channel()


def test_records_fetched_after_a_rebalance_wait_for_its_seek(app: faust.App) -> None:
    consumer, tp, channel = kept_through_a_rebalance(app)
    # Fetched from the committed offset before the rebalance's seek ran: none is delivered (records
    # 120 on would be processed before 100 to 119, read again after the seek).
    app.loop.run_until_complete(consumer.hand_over({tp: records(*range(100, 130))}, None, {"t": channel}))  # type: ignore[dict-item]
    assert channel.fetches == [] and consumer.fetched_while_seeking == {tp}
    assert consumer.next_offsets[tp] == 120


def test_after_the_rebalance_s_seek_records_are_delivered_from_the_committed_offset(app: faust.App) -> None:
    consumer, tp, channel = kept_through_a_rebalance(app)
    consumer.next_offsets, consumer.sought_generation = {tp: 100}, 3  # what the seek sets
    app.loop.run_until_complete(consumer.hand_over({tp: records(*range(100, 130))}, None, {"t": channel}))  # type: ignore[dict-item]
    assert [(f.generation, f.records[0].offset, f.records[-1].offset) for f in channel.fetches] == [(3, 100, 129)]
    assert consumer.next_offsets[tp] == 130 and consumer.read_offsets[tp] == 129


def test_records_delivered_while_a_rebalance_came_leave_the_next_offset_to_its_seek(app: faust.App) -> None:
    consumer, tp, channel = kept_through_a_rebalance(app)
    consumer.next_offsets, consumer.sought_generation = {tp: 100}, 3

    class Rebalanced(Channel):
        async def put(self, fetched: Fetched) -> None:
            await super().put(fetched)
            app.consumer_generation_id = 4  # the runner drops what generation 3 delivered

    channel = Rebalanced()
    app.loop.run_until_complete(consumer.hand_over({tp: records(*range(100, 130))}, None, {"t": channel}))  # type: ignore[dict-item]
    assert [f.generation for f in channel.fetches] == [3]
    assert consumer.next_offsets[tp] == 100 and consumer.read_offsets[tp] is None


def test_changelog_records_are_handed_over_before_the_rebalance_s_seek(app: faust.App) -> None:
    # Recovery reads the changelogs before that seek: they take Faust's path, ungated.
    consumer, _, channel = kept_through_a_rebalance(app)
    changelog = TP("t-changelog", 0)
    handed: list[InputRecord] = []

    async def one_by_one(messages: list[InputRecord]) -> int:
        handed.extend(messages)
        return len(messages)

    setattr(consumer, "to_message", lambda tp, record: record)  # noqa: B010
    setattr(consumer, "hand_over_one_by_one", one_by_one)  # noqa: B010
    app.loop.run_until_complete(consumer.hand_over({changelog: records(7, 8)}, None, {"t": channel}))  # type: ignore[dict-item]
    assert [r.offset for r in handed] == [7, 8] and consumer.read_offsets[changelog] == 8


def test_a_seek_overtaken_by_a_rebalance_opens_no_partition(app: faust.App, monkeypatch: pytest.MonkeyPatch) -> None:
    consumer, tp, channel = kept_through_a_rebalance(app)
    setattr(app, "batch_channels", {"t": channel})  # noqa: B010 - the input topics

    async def seek_to_committed(self: Consumer) -> None:
        self.read_offsets[tp] = 100
        app.consumer_generation_id = 4  # the group rebalanced again while the seek ran

    async def seek_in_thread(tp: TP, offset: int) -> None:
        return None

    monkeypatch.setattr(fence.Consumer, "perform_seek", seek_to_committed)
    setattr(consumer, "assignment", lambda: {tp})  # noqa: B010
    setattr(consumer, "seek_in_thread", seek_in_thread)  # noqa: B010
    app.loop.run_until_complete(consumer.perform_seek())
    assert consumer.next_offsets == {tp: 100} and consumer.sought_generation == 3
    assert not consumer.sought(tp, 4)
