"""Replay and duplicate detection for state records: what makes the pipeline exact.

Kafka delivers at least once: after a crash or a rebalance, records after the last committed
offset arrive again, and producers send the same ``event_id`` twice. Records reach a state
record through *lanes*: a lane is an input topic read on the key's own partition (named by the
topic), or the records of one other partition of that topic re-routed to the key's partition
(named ``topic@partition``, see ``streams.stages``). Each lane delivers a key's records in the
offset order of the partition it reads. Every state record keeps (in the same changelog value
as its data, so the two cannot disagree):

- ``offsets``: the highest source offset it has absorbed, per lane. An offset at or below it
  is a replay and is not applied again.
- ``recent``: per lane, the ids accepted within the last ``RECENT_WINDOW`` offsets of that
  lane (at most ``RECENT_KEPT``). A new offset with an id known in any lane of the same topic
  is a duplicate: a producer resending (to the same partition or, with a random partitioner,
  to another), or a referral credit produced again after a crash. Both come soon after the
  original, so a window in offsets of the lane fits them and does not shrink when another
  lane runs ahead. (Credits are also recognised by where they were produced, without a
  window: ``streams.core.referrals.CreditOrigin``.)
- ``dropped``: per lane, the offsets of the duplicates dropped (rare, so a short list covers
  any replay). A replayed offset not in it was originally accepted: what it produced
  downstream (referral messages, rows, per-minute totals held in other records) is produced
  again, because it may not have left before the crash; each downstream dedups by id or offset.

The changelog is flushed before offsets are committed, so state is never behind the commit;
it may be ahead, which is exactly the replay case above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

RECENT_WINDOW = 200_000  # offsets of one topic partition
RECENT_KEPT = 1_000  # ids per topic and key, a memory cap for very active keys
DROPPED_KEPT = 32


class Admission(StrEnum):  # a str: batch counts use it as a label as it is
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
    # Whether a re-routed lane exists, so that a duplicate may sit in another lane of its topic
    # (derived, not serialized): without one, the other lanes are other topics' and need no look.
    rerouted: bool = field(default=False, compare=False)

    def admit(self, lane: str, offset: int, item_id: str) -> Admission:
        """Classify a record and, when it is new to this state record, remember it."""
        if offset <= self.offsets.get(lane, -1):
            if offset in self.dropped.get(lane, ()):
                return Admission.REPLAYED_DUPLICATE
            return Admission.REPLAYED
        self.offsets[lane] = offset
        recent = self.recent.get(lane)
        if recent is None:
            recent = self.recent[lane] = {}
            self.rerouted = self.rerouted or lane != lane_topic(lane)
        _forget_older(recent, offset - RECENT_WINDOW)
        if item_id in recent or (self.rerouted and self._known_in_another_lane(lane, item_id)):
            dropped = self.dropped.setdefault(lane, [])
            dropped.append(offset)
            del dropped[:-DROPPED_KEPT]
            return Admission.DUPLICATE
        recent[item_id] = offset
        if len(recent) > RECENT_KEPT:
            del recent[next(iter(recent))]
        return Admission.NEW

    def _known_in_another_lane(self, lane: str, item_id: str) -> bool:
        topic = lane_topic(lane)
        return any(item_id in ids and other != lane and lane_topic(other) == topic
                   for other, ids in self.recent.items())

    def to_json(self) -> list[Any]:
        return [self.offsets, self.recent, self.dropped]

    @classmethod
    def from_json(cls, data: list[Any]) -> ReplayBook:
        return cls(data[0], data[1], data[2], rerouted=any(lane != lane_topic(lane) for lane in data[1]))


def _forget_older(recent: dict[str, int], oldest: int) -> None:
    # Insertion order is offset order: stop at the first id still inside the window.
    while recent:
        first = next(iter(recent))
        if recent[first] >= oldest:
            return
        del recent[first]


def absorb(offsets: dict[str, int], lane: str, offset: int) -> bool:
    """For records without ids of their own: True (and remember it) if ``offset`` is new."""
    if offset <= offsets.get(lane, -1):
        return False
    offsets[lane] = offset
    return True


def rerouted_lane(topic: str, origin_partition: int) -> str:
    """The lane of ``topic``'s records that arrived on ``origin_partition`` and were re-routed."""
    return f"{topic}@{origin_partition}"


def lane_topic(lane: str) -> str:
    """The input topic a lane reads."""
    return lane.partition("@")[0]
