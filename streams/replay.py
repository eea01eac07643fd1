"""Replay and duplicate detection for state records: what makes the pipeline exact.

Kafka delivers at least once: after a crash or a rebalance, records after the last committed
offset arrive again, and producers send the same ``event_id`` twice. Every state record keeps
(in the same changelog value as its data, so the two cannot disagree):

- ``offsets``: the highest source offset it has absorbed, per input topic. All of a key's
  records come from one partition of each co-partitioned topic, in offset order, so an offset
  at or below it is a replay and is not applied again.
- ``recent``: the most recent accepted ids, each with the ``topic@offset`` that first carried
  it. A new offset with a known id is a producer duplicate. A replay whose id maps to its own
  offset was originally accepted: what it produced downstream (referral messages, rows) is
  sent again, because it may not have left before the crash; downstream dedups by id.

The changelog is flushed before offsets are committed, so state is never behind the commit;
it may be ahead, which is exactly the replay case above.
"""

from __future__ import annotations

from enum import Enum

RECENT_KEPT = 64


class Admission(Enum):
    NEW = "new"  # apply it
    DUPLICATE = "duplicate"  # same id seen before at another offset: drop it
    REPLAYED = "replayed"  # already applied: do not apply, re-send its output
    REPLAYED_DUPLICATE = "replayed_duplicate"  # already dropped before: nothing to do


def admit(offsets: dict[str, int], recent: dict[str, str], topic: str, offset: int,
          item_id: str) -> Admission:
    """Classify a record for one state record and update its bookkeeping for NEW/DUPLICATE."""
    marker = f"{topic}@{offset}"
    if offset <= offsets.get(topic, -1):
        first = recent.get(item_id)
        # An id evicted from ``recent`` is treated as the original: re-sending is harmless.
        return Admission.REPLAYED if first in (marker, None) else Admission.REPLAYED_DUPLICATE
    offsets[topic] = offset
    if item_id in recent:
        return Admission.DUPLICATE
    recent[item_id] = marker
    if len(recent) > RECENT_KEPT:
        del recent[next(iter(recent))]
    return Admission.NEW


def absorb(offsets: dict[str, int], topic: str, offset: int) -> bool:
    """For records without ids of their own: True (and remember it) if ``offset`` is new."""
    if offset <= offsets.get(topic, -1):
        return False
    offsets[topic] = offset
    return True
