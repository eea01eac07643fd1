"""Event-time bucketing: pure arithmetic on UTC epoch milliseconds.

Faust's windowed tables expire on the wall clock; these helpers work on event time, so a
replay or a backlog lands in the same buckets as live traffic. See docs/definitions.md.
"""

from __future__ import annotations

from typing import NamedTuple

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def floor_to(ms: int, size_ms: int) -> int:
    """Start of the UTC bucket of ``size_ms`` that holds ``ms`` (correct for negative ms too)."""
    return ms - ms % size_ms


class EventTime(NamedTuple):
    """The event time the pipeline uses, with how it was classified against ingest time.
    ``history``: a backfilled event, never late (docs/definitions.md, history)."""

    occurred_at_ms: int
    late: bool
    clamped: bool
    history: bool = False


def classify(occurred_at_ms: int, ingest_ms: int, allowed_lateness_ms: int,
             max_future_skew_ms: int) -> EventTime:
    """Apply the far-future clamp, then the lateness rule.

    Both depend only on the event and its Kafka record timestamp, never on what else has been
    seen, so the answer is the same on a replay, a backlog or a rebalance.
    """
    if occurred_at_ms > ingest_ms + max_future_skew_ms:
        return EventTime(ingest_ms, late=False, clamped=True)
    return EventTime(occurred_at_ms, late=occurred_at_ms < ingest_ms - allowed_lateness_ms,
                     clamped=False)


def classify_history(occurred_at_ms: int, ingest_ms: int, max_future_skew_ms: int) -> EventTime:
    """A backfilled event: the far-future clamp applies, lateness does not (its ingest time is
    when the import published it, not when it happened)."""
    clamped = classify(occurred_at_ms, ingest_ms, 0, max_future_skew_ms).clamped
    return EventTime(ingest_ms if clamped else occurred_at_ms, late=False, clamped=clamped, history=True)


def trailing_days(last_day_ms: int, days: int, *bucket_sets: dict[int, list[int]]) -> list[int]:
    """Column-wise sums of the daily buckets (of every set) of the ``days`` UTC days ending on
    ``last_day_ms``."""
    first = last_day_ms - (days - 1) * DAY_MS
    inside = [counts for buckets in bucket_sets for day, counts in buckets.items() if first <= day <= last_day_ms]
    return [sum(column) for column in zip(*inside, strict=True)] if inside else []


def week_and_month(last_day_ms: int, *bucket_sets: dict[int, list[int]]) -> tuple[list[int], list[int]]:
    """``trailing_days`` over 7 and over 30 days. Most customers were active within one week
    only: when every bucket falls in the 7 days, both are the sums of all of them, with no
    window to test per bucket (a snapshot's costliest step otherwise)."""
    filled = [buckets for buckets in bucket_sets if buckets]
    if len(filled) == 1:
        buckets = filled[0]
        if len(buckets) == 1 and last_day_ms in buckets:  # a customer seen on one day, the last
            counts = buckets[last_day_ms]
            return list(counts), list(counts)
        if min(buckets) >= last_day_ms - 6 * DAY_MS and max(buckets) <= last_day_ms:
            sums = [sum(column) for column in zip(*buckets.values(), strict=True)]
            return sums, list(sums)
    return trailing_days(last_day_ms, 7, *bucket_sets), trailing_days(last_day_ms, 30, *bucket_sets)


def keep_newest(buckets: dict[int, list[int]], limit: int) -> None:
    """Drop the oldest buckets beyond ``limit`` (they are final in ClickHouse by then)."""
    if len(buckets) > limit:
        for start in sorted(buckets)[: len(buckets) - limit]:
            del buckets[start]
