"""Replay and duplicate admission (``streams.core.replay``), one rule per test.

The cross-lane basics (a duplicate found in another lane of the same topic only, offsets kept
per lane) are in test_repartition.py; the whole pipeline against the oracle under crashes is in
test_stages_vs_oracle.py.
"""

from __future__ import annotations

import orjson

from streams.core.replay import (
    DROPPED_KEPT,
    RECENT_KEPT,
    RECENT_WINDOW,
    Admission,
    ReplayBook,
    absorb,
    rerouted_lane,
)

LANE = "interactions.clicks"
OTHER_ORIGIN = rerouted_lane(LANE, 1)
THIRD_ORIGIN = rerouted_lane(LANE, 2)


def test_a_new_offset_with_a_new_id_is_new() -> None:
    book = ReplayBook()
    assert book.admit(LANE, 0, "a") is Admission.NEW
    assert book.admit(LANE, 1, "b") is Admission.NEW


def test_an_offset_at_or_below_the_highest_absorbed_is_replayed() -> None:
    book = ReplayBook()
    book.admit(LANE, 4, "a")
    book.admit(LANE, 7, "b")
    assert book.admit(LANE, 7, "b") is Admission.REPLAYED
    assert book.admit(LANE, 4, "a") is Admission.REPLAYED


def test_a_known_id_at_a_new_offset_is_a_duplicate() -> None:
    book = ReplayBook()
    book.admit(LANE, 0, "a")
    assert book.admit(LANE, 1, "a") is Admission.DUPLICATE


def test_a_replayed_duplicate_stays_dropped_and_its_original_stays_replayed() -> None:
    book = ReplayBook()
    book.admit(LANE, 0, "a")
    book.admit(LANE, 1, "a")  # dropped
    assert book.admit(LANE, 1, "a") is Admission.REPLAYED_DUPLICATE
    assert book.admit(LANE, 0, "a") is Admission.REPLAYED  # the accepted one: re-send its output


def test_an_id_is_remembered_for_exactly_the_recent_window_of_offsets() -> None:
    at_the_edge, past_it = ReplayBook(), ReplayBook()
    for book in (at_the_edge, past_it):
        book.admit(LANE, 10, "a")
    assert at_the_edge.admit(LANE, 10 + RECENT_WINDOW, "a") is Admission.DUPLICATE
    assert past_it.admit(LANE, 10 + RECENT_WINDOW + 1, "a") is Admission.NEW


def test_a_lane_running_ahead_does_not_make_another_lane_forget() -> None:
    book = ReplayBook()
    book.admit(OTHER_ORIGIN, 10, "a")
    book.admit(THIRD_ORIGIN, 10 * RECENT_WINDOW, "b")  # far ahead in its own offsets
    assert book.admit(THIRD_ORIGIN, 10 * RECENT_WINDOW + 1, "a") is Admission.DUPLICATE


def test_a_duplicate_is_found_between_two_rerouted_lanes_of_one_topic() -> None:
    book = ReplayBook()
    book.admit(OTHER_ORIGIN, 3, "a")
    assert book.admit(THIRD_ORIGIN, 3, "a") is Admission.DUPLICATE
    assert book.admit(LANE, 3, "a") is Admission.DUPLICATE  # and in the topic's own lane


def test_at_most_recent_kept_ids_are_remembered_per_lane_oldest_forgotten_first() -> None:
    book = ReplayBook()
    for offset in range(RECENT_KEPT + 1):
        book.admit(LANE, offset, f"id{offset}")
    assert len(book.recent[LANE]) == RECENT_KEPT
    assert book.admit(LANE, RECENT_KEPT + 1, "id1") is Admission.DUPLICATE
    assert book.admit(LANE, RECENT_KEPT + 2, "id0") is Admission.NEW


def test_at_most_dropped_kept_duplicate_offsets_are_remembered_oldest_forgotten_first() -> None:
    book = ReplayBook()
    book.admit(LANE, 0, "a")
    duplicates = range(1, DROPPED_KEPT + 2)
    for offset in duplicates:
        assert book.admit(LANE, offset, "a") is Admission.DUPLICATE
    assert book.dropped[LANE] == list(duplicates[1:])
    assert book.admit(LANE, duplicates[-1], "a") is Admission.REPLAYED_DUPLICATE
    # Beyond the cap a replayed duplicate reads as accepted: its output is re-sent, and
    # every downstream dedups by id (the documented cost of a short list).
    assert book.admit(LANE, duplicates[0], "a") is Admission.REPLAYED


def test_a_book_restored_from_its_changelog_value_admits_the_same_way() -> None:
    book = ReplayBook()
    book.admit(LANE, 0, "a")
    book.admit(LANE, 1, "a")
    book.admit(OTHER_ORIGIN, 5, "b")
    restored = ReplayBook.from_json(orjson.loads(orjson.dumps(book.to_json())))
    assert restored.admit(LANE, 0, "a") is Admission.REPLAYED
    assert restored.admit(LANE, 1, "a") is Admission.REPLAYED_DUPLICATE
    assert restored.admit(LANE, 2, "b") is Admission.DUPLICATE


def test_absorb_takes_each_offset_of_a_lane_once() -> None:
    offsets: dict[str, int] = {}
    assert absorb(offsets, LANE, 5) is True
    assert absorb(offsets, LANE, 5) is False
    assert absorb(offsets, LANE, 4) is False
    assert absorb(offsets, OTHER_ORIGIN, 4) is True  # another lane's offsets are its own
    assert offsets == {LANE: 5, OTHER_ORIGIN: 4}
