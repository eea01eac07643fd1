"""Replay and duplicate detection for state records: what makes the pipeline exact.

Kafka delivers at least once: after a crash or a rebalance, records after the last committed
offset arrive again, and producers send the same ``event_id`` twice. Every state record keeps
(in the same changelog value as its data, so the two cannot disagree):

- ``offsets``: the highest source offset it has absorbed, per input topic. All of a key's
  records come from one partition of each co-partitioned topic, in offset order, so an offset
  at or below it is a replay and is not applied again.
- ``recent``: per input topic, the ids accepted within the last ``RECENT_WINDOW`` offsets of
  that topic's partition (at most ``RECENT_KEPT``). A new offset with a known id is a
  duplicate: a producer resending, or a referral credit produced again after a crash. Both
  come soon after the original in the same topic, so a window in offsets of that topic fits
  them and does not shrink when another topic runs ahead.
- ``dropped``: per input topic, the offsets of the duplicates dropped (rare, so a short list
  covers any replay). A replayed offset not in it was originally accepted: what it produced
  downstream (referral messages, rows, per-minute totals held in other records) is produced
  again, because it may not have left before the crash; each downstream dedups by id or offset.

The changelog is flushed before offsets are committed, so state is never behind the commit;
it may be ahead, which is exactly the replay case above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

RECENT_WINDOW = 200_000  # offsets of one topic partition
RECENT_KEPT = 1_000  # ids per topic and key, a memory cap for very active keys
DROPPED_KEPT = 32


class Admission(Enum):
    NEW = "new"  # apply it
    DUPLICATE = "duplicate"  # same id seen before at another offset: drop it
    REPLAYED = "replayed"  # already applied: do not apply, re-send its output
    REPLAYED_DUPLICATE = "replayed_duplicate"  # already dropped before: nothing to do


@dataclass(slots=True)
class ReplayBook:
    """The bookkeeping one state record keeps (serialized with it, see ``to_json``)."""

    offsets: dict[str, int] = field(default_factory=dict)
    recent: dict[str, dict[str, int]] = field(default_factory=dict)
    dropped: dict[str, list[int]] = field(default_factory=dict)

    def admit(self, topic: str, offset: int, item_id: str) -> Admission:
        """Classify a record and, when it is new to this state record, remember it."""
        if offset <= self.offsets.get(topic, -1):
            if offset in self.dropped.get(topic, ()):
                return Admission.REPLAYED_DUPLICATE
            return Admission.REPLAYED
        self.offsets[topic] = offset
        recent = self.recent.setdefault(topic, {})
        _forget_older(recent, offset - RECENT_WINDOW)
        if item_id in recent:
            dropped = self.dropped.setdefault(topic, [])
            dropped.append(offset)
            del dropped[:-DROPPED_KEPT]
            return Admission.DUPLICATE
        recent[item_id] = offset
        if len(recent) > RECENT_KEPT:
            del recent[next(iter(recent))]
        return Admission.NEW

    def to_json(self) -> list[Any]:
        return [self.offsets, self.recent, self.dropped]

    @classmethod
    def from_json(cls, data: list[Any]) -> ReplayBook:
        return cls(data[0], data[1], data[2])


def _forget_older(recent: dict[str, int], oldest: int) -> None:
    # Insertion order is offset order: stop at the first id still inside the window.
    while recent:
        first = next(iter(recent))
        if recent[first] >= oldest:
            return
        del recent[first]


def absorb(offsets: dict[str, int], topic: str, offset: int) -> bool:
    """For records without ids of their own: True (and remember it) if ``offset`` is new."""
    if offset <= offsets.get(topic, -1):
        return False
    offsets[topic] = offset
    return True
