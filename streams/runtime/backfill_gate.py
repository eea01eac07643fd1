"""Backfill at lower priority than live input (docs/operations.md, backfill): while the live
records a worker processes are further behind than half of ``STREAMS_BACKFILL_LIVE_LAG_S``, it
fetches nothing of the backfill topic, so a backfill slows down rather than live traffic
(``streams.core.history.hold_back_backfill``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from streams.core.history import hold_back_backfill
from streams.runtime.metrics import Metrics
from streams.runtime.transport import Consumer, Fetched
from streams.settings import Settings

log = logging.getLogger(__name__)


# Live input counts as caught up once no live record came for this long: one batch can take
# longer than the gate's interval, and a second without one does not mean live input is idle.
QUIET_S = 3.0


class BackfillGate:
    def __init__(self, settings: Settings, metrics: Metrics, consumer: Callable[[], Consumer],
                 clock: Callable[[], float] = time.time) -> None:
        self.live_topics = frozenset(settings.input_topics.values())
        self.backfill_topic = settings.backfill_topic
        self.bound_s = settings.backfill_live_lag_s
        self.metrics = metrics
        self.consumer = consumer
        self.clock = clock
        self.holding = False
        self.live_behind_ms: int | None = None  # the worst since the last adjust, None without live records
        self.live_seen_at = 0.0

    def observe(self, batch: Sequence[Fetched]) -> None:
        """Note how far behind the live records of a batch about to be processed are."""
        now = self.clock()
        now_ms = int(now * 1000)
        for fetched in batch:
            if fetched.tp.topic in self.live_topics and fetched.records:
                self.live_seen_at = now
                behind = now_ms - fetched.records[0].timestamp
                if self.live_behind_ms is None or behind > self.live_behind_ms:
                    self.live_behind_ms = behind

    def adjust(self) -> None:
        """Hold the backfill back or let it go, from what was observed since the last call."""
        behind_s = None if self.live_behind_ms is None else self.live_behind_ms / 1000
        self.live_behind_ms = None
        if behind_s is None and self.clock() - self.live_seen_at < QUIET_S:
            return  # no live batch this interval, but live input is not known to be idle yet
        holding = hold_back_backfill(self.holding, behind_s, self.bound_s)
        consumer = self.consumer()
        held = [tp for tp in consumer.assignment() if tp.topic == self.backfill_topic] if holding else []
        consumer.hold_back(frozenset(held))  # again each time: the assignment may have changed
        if holding != self.holding:
            live = "caught up" if behind_s is None else f"{behind_s:.1f} s behind"
            log.info("backfill %s: live input %s (bound %.1f s)", "held back" if holding else "read again", live,
                     self.bound_s)
            if holding:
                self.metrics.backfill_holds.inc()
        self.holding = holding
        self.metrics.backfill_held.set(int(holding))
