"""Freshness: publish at a steady rate to a caught-up worker and time each event from publish
to its row being visible in ClickHouse's ``events`` table.

The publisher stamps each record with the wall time of its send (the Kafka timestamp, which
the worker stores as ``ingest_ms``). A poller asks ClickHouse every ``poll_s`` how many rows
there are per ``ingest_ms`` millisecond; rows new since the last poll were first visible at
that poll's start, so an event's latency is that start minus its publish millisecond (an
overestimate of at most one poll interval). Only milliseconds still missing rows are queried.

A p50 and p99 over the whole phase describe a steady state only if the worker keeps up with the
rate. When it does not, latency grows as the phase goes on and the p99 says more about the
phase's length than about the worker: the medians of its first and last thirds tell the two
apart.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from clickhouse_driver import Client

from streams.contracts.codec import Codec
from streams.contracts.registry import registry_from_settings
from streams.settings import Settings
from streams.tools.simulate import SimulationConfig, generate
from tests.bench.soak_figures import quantile
from tests.support.upstream import LibrdkafkaPublisher

Message = tuple[str, bytes, bytes]  # topic, key, value


@dataclass(frozen=True, slots=True)
class Freshness:
    target_rate: float
    achieved_rate: float
    published: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    missing: int
    p50_first_third_ms: float  # of the events published in the phase's first third
    p50_last_third_ms: float  # in its last third: larger when the worker fell behind


def clean_messages(settings: Settings, seed: int, customers: int, count: int) -> list[Message]:
    """``count`` well-formed, distinct events (no anomalies: every one must land), encoded."""
    now_ms = int(time.time() * 1000)
    config = SimulationConfig.for_settings(
        settings, seed=seed, customers=customers, events=count, start_ms=now_ms - 60_000, span_ms=60_000,
        out_of_order=0.0, late=0.0, duplicates=0.0, far_future=0.0, malformed=0.0)
    codec = Codec(registry_from_settings(settings))
    return [(settings.input_topics[r.topic_type], r.key, codec.encode(r.event))
            for r in generate(config) if r.event is not None]


class PacedPublisher(threading.Thread):
    """Sends ``messages`` at ``rate`` per second (0: as fast as it can), or fewer if ``stop`` is
    set first. ``sent`` counts the sends; ``sent_ms`` gets each one's publish millisecond until a
    :class:`LandingTracker` takes it, so a run of millions of events holds only the milliseconds
    not absorbed yet. ``messages`` may be a generator that makes them as they are needed.

    It sends through librdkafka (confluent-kafka) with the Java client's partitioner, so each
    record lands on its customer's partition: kafka-python took half a core at 5,000 records/s,
    taken from the worker it measures on a two-core machine."""

    def __init__(self, settings: Settings, messages: Iterable[Message], rate: float) -> None:
        super().__init__(name="paced-publisher", daemon=True)
        self.settings, self.messages, self.rate = settings, messages, rate
        self.sent_ms: deque[int] = deque()  # appended here, popped by the tracker's thread: both atomic
        self.sent = 0
        self.seconds = 0.0
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            publisher = LibrdkafkaPublisher(self.settings, partitioner="murmur2_random")
            started = time.perf_counter()
            for i, (topic, key, value) in enumerate(self.messages):
                if self.stop.is_set():
                    break
                ahead = started + i / self.rate - time.perf_counter() if self.rate > 0 else 0.0
                if ahead > 0.001:  # sleeping for less is mostly overhead
                    time.sleep(ahead)
                sent_ms = int(time.time() * 1000)
                publisher.publish_raw(topic, key, value, timestamp_ms=sent_ms)
                self.sent_ms.append(sent_ms)
                self.sent += 1
            self.seconds = time.perf_counter() - started
            publisher.flush()
        except BaseException as exc:  # reported by measure_freshness
            self.error = exc


class LandingTracker:
    """Matches rows seen per ``ingest_ms`` against events published in that millisecond.

    Milliseconds below the low watermark are forgotten (they are never asked for again), so its
    memory follows the events in flight, not the events published. ``latencies_ms`` grows with
    every event seen, and ``landed`` (publish ms, latency, events) with every millisecond
    seen: a long run takes and clears them as it goes.
    """

    def __init__(self, since_ms: int) -> None:
        self.since_ms = since_ms
        self.outstanding: Counter[int] = Counter()  # publish ms -> events not seen yet
        self.latencies_ms: list[int] = []
        self.landed: list[tuple[int, int, int]] = []
        self._seen: Counter[int] = Counter()
        self._published: Counter[int] = Counter()
        self._after_last_ms = since_ms

    def absorb(self, sent_ms: deque[int]) -> None:
        """Take the publish milliseconds sent since the last call (``sent_ms`` is emptied)."""
        while sent_ms:
            ms = sent_ms.popleft()
            self._published[ms] += 1
            self.outstanding[ms] += 1
            self._after_last_ms = max(self._after_last_ms, ms + 1)

    @property
    def low_watermark_ms(self) -> int:
        """No event published before this has a row still missing."""
        return min(self.outstanding, default=self._after_last_ms)

    def record(self, poll_start_ms: int, counts: Sequence[tuple[int, int]]) -> None:
        for ms, rows in counts:
            new = min(rows, self._published[ms]) - self._seen[ms]  # replayed rows count once
            if new > 0:
                self._seen[ms] += new
                self.latencies_ms.extend([poll_start_ms - ms] * new)
                self.landed.append((ms, poll_start_ms - ms, new))
                self.outstanding[ms] -= new
                if not self.outstanding[ms]:
                    del self.outstanding[ms]
        self._forget_settled()

    def _forget_settled(self) -> None:
        """Drop the counts of milliseconds every event of which was seen and that no query asks
        for again. The newest one is kept: more sends may still come in the same millisecond."""
        floor = min(self.low_watermark_ms, self._after_last_ms - 1)
        while self._published:
            oldest = next(iter(self._published))  # insertion order: sends come in time order
            if oldest >= floor:
                break
            del self._published[oldest]
            self._seen.pop(oldest, None)


def measure_freshness(settings: Settings, client: Client, messages: Iterable[Message], rate: float,
                      poll_s: float = 0.1, drain_s: float = 30.0,
                      enough: Callable[[], bool] = lambda: False) -> Freshness:
    """Publish ``messages`` at ``rate``/s while polling, or until ``enough()`` (asked at each
    poll); wait up to ``drain_s`` after the last."""
    tracker = LandingTracker(int(time.time() * 1000))
    publisher = PacedPublisher(settings, messages, rate)
    publisher.start()
    deadline = float("inf")
    while True:
        poll_start_ms = int(time.time() * 1000)
        counts = client.execute(  # live events only: a backfill's rows carry recent ingest times too
            "SELECT ingest_ms, count() FROM events WHERE ingest_ms >= %(low)s AND source_topic != %(backfill)s "
            "GROUP BY ingest_ms", {"low": tracker.low_watermark_ms, "backfill": settings.backfill_topic})
        tracker.absorb(publisher.sent_ms)  # after the query: every row it saw is absorbed
        tracker.record(poll_start_ms, counts)
        if enough():
            publisher.stop.set()
        if not publisher.is_alive():
            if publisher.error is not None:
                raise publisher.error
            deadline = min(deadline, time.monotonic() + drain_s)
            if not tracker.outstanding or time.monotonic() > deadline:
                break
        time.sleep(poll_s)
    return _summary(tracker, publisher, rate)


def medians_by_third(landed: Sequence[tuple[int, int, int]]) -> tuple[float, float]:
    """The median latency of the events published in the first third of the sends' time span,
    and of those published in its last third (``LandingTracker.landed``; 0 when none landed).
    Only landed events count: those never seen are reported apart (``Freshness.missing``)."""
    if not landed:
        return 0.0, 0.0
    first_ms, last_ms = min(ms for ms, _, _ in landed), max(ms for ms, _, _ in landed)
    third = (last_ms - first_ms) / 3
    early: Counter[int] = Counter()
    late: Counter[int] = Counter()
    for ms, latency, events in landed:
        if ms <= first_ms + third:
            early[latency] += events
        if ms >= last_ms - third:
            late[latency] += events
    return quantile(early, 0.5) or 0.0, quantile(late, 0.5) or 0.0


def _summary(tracker: LandingTracker, publisher: PacedPublisher, rate: float) -> Freshness:
    latencies = tracker.latencies_ms or [0]
    p99 = statistics.quantiles(latencies, n=100, method="inclusive")[98] if len(latencies) > 1 else latencies[0]
    first_third, last_third = medians_by_third(tracker.landed)
    return Freshness(target_rate=rate, achieved_rate=publisher.sent / max(publisher.seconds, 1e-9),
                     published=publisher.sent, p50_ms=statistics.median(latencies), p99_ms=p99,
                     max_ms=max(latencies), missing=sum(tracker.outstanding.values()),
                     p50_first_third_ms=first_third, p50_last_third_ms=last_third)
