"""The consumer's rule for which fetched records are new: at or after the read offset (Faust's
rule), so records fetched again after a seek back are not delivered twice."""

from __future__ import annotations

from streams.runtime.transport import unread
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
