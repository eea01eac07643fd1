"""Event-time classification and bucketing (``streams.core.windows``), one rule per test.

Boundaries come from docs/definitions.md: late is *earlier than* ingest minus the allowed
lateness, clamped is *more than* the skew after ingest.
"""

from __future__ import annotations

from streams.core.windows import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    EventTime,
    classify,
    floor_to,
    keep_newest,
    trailing_days,
    week_and_month,
)

INGEST = 1_793_491_200_000 + 12 * HOUR_MS  # 2026-11-01T12:00Z
LATENESS = 3_600_000
SKEW = 300_000


def at(occurred_at_ms: int) -> EventTime:
    return classify(occurred_at_ms, INGEST, LATENESS, SKEW)


def test_an_event_between_the_limits_keeps_its_time_and_is_on_time() -> None:
    assert at(INGEST) == EventTime(INGEST, late=False, clamped=False)
    assert at(INGEST - 1_000) == EventTime(INGEST - 1_000, late=False, clamped=False)
    assert at(INGEST + 1_000) == EventTime(INGEST + 1_000, late=False, clamped=False)


def test_exactly_the_allowed_lateness_is_on_time_one_ms_more_is_late() -> None:
    assert at(INGEST - LATENESS).late is False
    assert at(INGEST - LATENESS - 1) == EventTime(INGEST - LATENESS - 1, late=True, clamped=False)


def test_exactly_the_future_skew_is_kept_one_ms_more_is_clamped_to_ingest() -> None:
    assert at(INGEST + SKEW) == EventTime(INGEST + SKEW, late=False, clamped=False)
    assert at(INGEST + SKEW + 1) == EventTime(INGEST, late=False, clamped=True)


def test_a_clamped_event_is_never_late() -> None:
    # Clamping puts it at ingest time, which no lateness (even 0) calls late.
    assert classify(INGEST + SKEW + 1, INGEST, 0, SKEW) == EventTime(INGEST, late=False, clamped=True)


def test_floor_to_maps_a_bucket_to_its_start_and_one_ms_earlier_to_the_previous_one() -> None:
    day = INGEST - 12 * HOUR_MS
    assert floor_to(day, DAY_MS) == day
    assert floor_to(day + DAY_MS - 1, DAY_MS) == day
    assert floor_to(day - 1, DAY_MS) == day - DAY_MS
    assert floor_to(INGEST + 59_999, MINUTE_MS) == INGEST
    assert floor_to(INGEST + HOUR_MS - 1, HOUR_MS) == INGEST


def test_floor_to_rounds_negative_times_down_not_towards_zero() -> None:
    assert floor_to(-1, HOUR_MS) == -HOUR_MS
    assert floor_to(-HOUR_MS, HOUR_MS) == -HOUR_MS


def test_trailing_days_sum_the_days_ending_on_the_last_day_inclusive() -> None:
    last = 100 * DAY_MS
    buckets = {last: [1, 10], last - 6 * DAY_MS: [2, 20], last - 7 * DAY_MS: [4, 40], last + DAY_MS: [8, 80]}
    assert trailing_days(last, 7, buckets) == [3, 30]
    assert trailing_days(last, 8, buckets) == [7, 70]
    assert trailing_days(last, 7, {}) == []


def test_keep_newest_drops_the_oldest_buckets_beyond_the_limit() -> None:
    buckets = {start: [start] for start in (3, 1, 4, 2)}
    keep_newest(buckets, 2)
    assert sorted(buckets) == [3, 4]
    keep_newest(buckets, 2)  # within the limit: untouched
    assert sorted(buckets) == [3, 4]


def test_week_and_month_are_the_trailing_sums_whether_or_not_every_bucket_is_in_the_week() -> None:
    last = 100 * DAY_MS
    recent = {last: [1, 10], last - 6 * DAY_MS: [2, 20]}
    older = {**recent, last - 7 * DAY_MS: [4, 40], last - 29 * DAY_MS: [8, 80], last - 30 * DAY_MS: [16, 160]}
    history = {last - 3 * DAY_MS: [32, 320]}
    later = {last: [1, 10], last + DAY_MS: [64, 640]}  # past the last day: in neither window
    # A customer seen on one day only: the last, within the week, within the month, before it.
    single = [{last + days * DAY_MS: [1, 10]} for days in (0, -3, -10, -40, 1)]
    for buckets in (recent, older, later, *single, {}):
        for sets in ((buckets,), (buckets, history), (buckets, {})):
            assert week_and_month(last, *sets) == (trailing_days(last, 7, *sets), trailing_days(last, 30, *sets))
    assert week_and_month(last, recent) == ([3, 30], [3, 30])
    assert week_and_month(last, older) == ([3, 30], [15, 150])
    assert week_and_month(last, later) == ([1, 10], [1, 10])
    assert [week_and_month(last, buckets) for buckets in single[2:]] == [([], [1, 10]), ([], []), ([], [])]
