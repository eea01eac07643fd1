"""The consumer's rules for which fetched records are new: at or after the read offset (Faust's
rule), so records fetched again after a seek back are not delivered twice; and, for input
partitions, from the partition's next offset on, in order, none skipped."""

from __future__ import annotations

from streams.runtime.transport import Ordered, in_order, unread
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
