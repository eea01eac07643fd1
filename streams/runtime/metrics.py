"""Every Prometheus metric of a worker, built against a passed-in registry.

Names carry the ``streams_`` prefix and base units; labels are bounded (topic, event type,
table, reason, partition), never a customer id. The operator's reading of each metric is in
docs/operations.md.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import accumulate

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from streams.runtime import logs

FRESHNESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
GC_PAUSE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class BatchHistogram(Collector):
    """A histogram observed a batch of values at a time: one per event, from the commit path.

    prometheus_client's Histogram takes a lock and walks the buckets in Python for every value,
    a few per cent of the worker's time at one observation per event; here a batch costs one
    lock and a C ``bisect`` per value. Exposed as an ordinary histogram."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = list(buckets)
        self._counts = [0] * (len(self.bounds) + 1)  # per bucket, not cumulative; the last is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()  # observed on the event loop, collected by the endpoint thread

    def observe_many(self, values: Iterable[float]) -> None:
        bounds, counts = self.bounds, self._counts
        total = 0.0
        with self._lock:
            for value in values:
                counts[bisect_left(bounds, value)] += 1  # a value equal to a bound is in its bucket
                total += value
            self._sum += total

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        family = HistogramMetricFamily(self.name, self.documentation)
        cumulative = list(accumulate(counts))
        family.add_metric([], [(str(bound), n) for bound, n in zip(self.bounds, cumulative, strict=False)]
                          + [("+Inf", cumulative[-1])], total)
        yield family


class GcPauses(Collector):
    """Garbage-collector pauses by generation, timed from ``gc.callbacks`` (see :meth:`on_gc`).

    A collection stops every thread of the worker, and one of the oldest generation walks every
    object alive: with a worker's millions, that can take a second. No lock: a lock taken here
    could be the one held by the code whose allocation started the collection. Collections
    never overlap, and a scrape that reads a count mid-update is at most one pause behind."""

    name = "streams_gc_pause_seconds"

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._counts = [[0] * (len(GC_PAUSE_BUCKETS) + 1) for _ in range(3)]  # per generation, not cumulative
        self._sums = [0.0] * 3
        self._started = 0.0

    def on_gc(self, phase: str, info: Mapping[str, int]) -> None:
        """A ``gc.callbacks`` entry: called as each collection starts and stops."""
        if phase == "start":
            self._started = self._clock()
            return
        pause, generation = self._clock() - self._started, info["generation"]
        self._counts[generation][bisect_left(GC_PAUSE_BUCKETS, pause)] += 1
        self._sums[generation] += pause

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, "Pauses of the garbage collector, by generation "
                                       "(2: a full collection)", labels=["generation"])
        for generation, counts in enumerate(self._counts):
            cumulative = list(accumulate(counts))
            family.add_metric([str(generation)],
                              [(str(bound), n) for bound, n in zip(GC_PAUSE_BUCKETS, cumulative, strict=False)]
                              + [("+Inf", cumulative[-1])], self._sums[generation])
        yield family


class Metrics:
    """The worker's metrics; one instance per process, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        ProcessCollector(registry=registry)  # process_resident_memory_bytes, process_cpu_seconds_total
        r = registry
        self.consumed = Counter("streams_events_consumed_total", "Input records read, by topic and event type",
                                ["topic", "event_type"], registry=r)
        self.processed = Counter("streams_events_processed_total",
                                 "Events accepted into profiles (after dedup and replay checks)",
                                 ["topic", "event_type"], registry=r)
        self.dead_letters = Counter("streams_dead_letters_total", "Records sent to the dead-letter topic",
                                    ["topic", "reason"], registry=r)
        self.late = Counter("streams_late_events_total", "Events later than the allowed lateness",
                            ["topic"], registry=r)
        self.clamped = Counter("streams_clamped_events_total", "Far-future events clamped to ingest time",
                               ["topic"], registry=r)
        self.duplicates = Counter("streams_duplicate_events_total", "Events dropped as producer duplicates",
                                  ["topic"], registry=r)
        self.replayed = Counter("streams_replayed_records_total",
                                "Records seen again after a restart or rebalance and not re-applied",
                                ["topic"], registry=r)
        self.rerouted = Counter("streams_rerouted_records_total",
                                "Input records that arrived on another partition than their key's and were "
                                "re-routed to it (an upstream partitioner other than murmur2)",
                                ["topic"], registry=r)
        self.credits = Counter("streams_referral_credits_total", "Referral credits emitted by the join",
                               ["touch_type"], registry=r)
        self.identifies = Counter("streams_identifies_total",
                                  "Identifies accepted, by outcome: linked (the first of its anonymous id), "
                                  "confirmed (same customer again) or conflict (another customer: nothing merged)",
                                  ["outcome"], registry=r)
        self.identity_forwarded = Counter(
            "streams_identity_forwarded_events_total",
            "Events of identified anonymous ids forwarded to their customer: sent (by the anonymous id's "
            "partition), folded (new to the customer's profile) or replayed (folded already)",
            ["outcome"], registry=r)
        self.identity_not_kept = Counter(
            "streams_identity_events_not_kept_total",
            "Events of a not yet identified anonymous id past the most kept for its identify "
            "(streams.core.identity.PENDING_KEPT): its customer will not count them", registry=r)
        self.touches_dropped = Counter("streams_referral_touches_dropped_total",
                                       "Touches that earned nothing because their share id had the most touches "
                                       "that may wait for it (streams.core.referrals.EARLY_TOUCHES_KEPT)",
                                       ["reason"], registry=r)
        self.shares_retired = Counter("streams_referral_shares_retired_total",
                                      "Shares the share index forgot past their retention "
                                      "(STREAMS_SHARE_RETENTION_MS): later touches of theirs earn nothing",
                                      registry=r)
        self.erasures = Counter("streams_erasure_requests_total",
                                "Erasure requests read, by outcome: erased (first time), repeated (the id "
                                "was erased already: each step done again, idempotent) or rerouted (to the "
                                "id's partition)", ["outcome"], registry=r)
        self.erased_dropped = Counter("streams_erased_records_dropped_total",
                                      "Records of erased ids dropped instead of re-creating the person "
                                      "(replays, backfills, late events, credits)", ["topic"], registry=r)
        self.erased_from_index = Counter("streams_erasure_index_entries_dropped_total",
                                         "Share-index entries dropped by erasures: a share of an erased "
                                         "sharer, or a touch of an erased visitor waiting for its share",
                                         ["entry"], registry=r)
        self.lag = Gauge("streams_consumer_lag_records",
                         "Records between the committed offset (or the log start, when later) and the log end",
                         ["topic", "partition"], registry=r)
        self.last_processed = Gauge("streams_last_processed_timestamp_seconds",
                                    "Wall-clock time the last batch was processed", registry=r)
        self.freshness = BatchHistogram("streams_event_freshness_seconds",
                                        "From an event's ingest (Kafka timestamp) to its rows being in ClickHouse",
                                        FRESHNESS_BUCKETS)
        r.register(self.freshness)
        self.batch_seconds = Histogram("streams_batch_processing_seconds", "Time to fold one batch",
                                       ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.sink_rows = Counter("streams_sink_rows_total", "Rows written to ClickHouse", ["table"], registry=r)
        self.sink_batches = Counter("streams_sink_batches_total", "Inserts into ClickHouse", ["table"], registry=r)
        self.sink_latency = Histogram("streams_sink_insert_seconds", "Duration of one ClickHouse insert",
                                      ["table"], buckets=LATENCY_BUCKETS, registry=r)
        self.sink_retries = Counter("streams_sink_retries_total", "Inserts retried after an error",
                                    ["table"], registry=r)
        self.sink_failures = Counter("streams_sink_failures_total", "Insert attempts that failed, by cause",
                                     ["table", "reason"], registry=r)
        self.sink_failing = Gauge("streams_sink_failed_attempts_in_a_row",
                                  "Failed attempts of the insert in progress (0 once it succeeds)", ["table"],
                                  registry=r)
        registry.register(_OutageLogRecords())
        self.offset_gaps = _OffsetGaps()  # the worker points it at its consumer's counts
        registry.register(self.offset_gaps)
        self.sink_buffered = Gauge("streams_sink_buffered_rows", "Rows waiting in the sink buffer",
                                   ["stage"], registry=r)
        self.profiles = Gauge("streams_profiles", "Customer profiles held by this worker", registry=r)
        self.touches_waiting = Gauge("streams_referral_touches_waiting", "Touches waiting for their share",
                                     registry=r)
        self.rebalances = Counter("streams_rebalances_total", "Partition assignments received", registry=r)
        self.backfill_held = Gauge("streams_backfill_held_back",
                                   "1 while the worker reads no backfill because live input is behind "
                                   "(half of STREAMS_BACKFILL_LIVE_LAG_S; streams.runtime.backfill_gate)", registry=r)
        self.backfill_holds = Counter("streams_backfill_holds_total",
                                      "Times the worker stopped reading the backfill for live input", registry=r)
        self.gc_pauses = GcPauses()  # timed once the worker adds it to gc.callbacks (run_worker)
        registry.register(self.gc_pauses)
        self.stalled = Gauge("streams_stalled_seconds",
                             "Seconds with records waiting and no progress (the worker exits at "
                             "STREAMS_STALL_TIMEOUT_S; streams.runtime.liveness)", registry=r)

    def count_batch(self, counts: Mapping[tuple[str, ...], int]) -> None:
        """Turn a stage's batch counts (see streams.stages) into metric increments."""
        self.count(counts)
        self.last_processed.set(time.time())

    def count(self, counts: Mapping[tuple[str, ...], int]) -> None:
        """Turn a stage's counts, of a batch or of its housekeeping, into metric increments."""
        for key, n in counts.items():
            kind = key[0]
            if kind == "consumed":
                self.consumed.labels(key[1], key[2]).inc(n)
            elif kind == "processed":
                self.processed.labels(key[1], key[2]).inc(n)
            elif kind == "dead_letter":
                self.dead_letters.labels(key[1], key[2]).inc(n)
            elif kind == "late_event":
                self.late.labels(key[1]).inc(n)
            elif kind == "clamped_timestamp":
                self.clamped.labels(key[1]).inc(n)
            elif kind == "admission" and key[2] == "duplicate":
                self.duplicates.labels(key[1]).inc(n)
            elif kind == "admission" and key[2].startswith("replayed"):
                self.replayed.labels(key[1]).inc(n)
            elif kind == "rerouted":
                self.rerouted.labels(key[1]).inc(n)
            elif kind == "credit_emitted":
                self.credits.labels(key[1]).inc(n)
            elif kind == "identify":
                self.identifies.labels(key[1]).inc(n)
            elif kind == "identity_forward":
                self.identity_forwarded.labels(key[1]).inc(n)
            elif kind == "identity_not_kept":
                self.identity_not_kept.inc(n)
            elif kind == "erasure":
                self.erasures.labels(key[1]).inc(n)
            elif kind == "erasure_suppressed":
                self.erased_dropped.labels(key[1]).inc(n)
            elif kind == "erasure_index":
                self.erased_from_index.labels(key[1]).inc(n)
            elif kind == "touch_dropped":
                self.touches_dropped.labels(key[1]).inc(n)
            elif kind == "share_retired":
                self.shares_retired.inc(n)

    # The sink's metrics hooks (streams.clickhouse.sink.SinkMetrics).
    def on_insert(self, table: str, rows: int, seconds: float) -> None:
        self.sink_rows.labels(table).inc(rows)
        self.sink_batches.labels(table).inc()
        self.sink_latency.labels(table).observe(seconds)
        self.sink_failing.labels(table).set(0)

    def on_retry(self, table: str) -> None:
        self.sink_retries.labels(table).inc()

    def on_failure(self, table: str, reason: str, in_a_row: int) -> None:
        self.sink_failures.labels(table, reason).inc()
        self.sink_failing.labels(table).set(in_a_row)


class _OutageLogRecords(Collector):
    """Log records of each outage condition (``streams.runtime.logs``), counted before they are folded."""

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("streams_outage_log_records", "Log records of a known outage condition "
                                     "(written or folded into a summary line)", labels=["condition"])
        for condition, records in sorted(logs.totals().items()):
            family.add_metric([condition], records)
        yield family


class _OffsetGaps(Collector):
    """Offset ranges without records that the input's records skipped (``streams.runtime.transport``)."""

    def __init__(self) -> None:
        self.counts: Callable[[], Mapping[str, int]] = dict

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("streams_offset_gaps", "Input offsets the records read skipped: read again "
                                     "to be sure (re-read), a transaction marker (marker), or records deleted "
                                     "before they were read (missing)", labels=["outcome"])
        for outcome in ("re-read", "marker", "missing"):
            family.add_metric([outcome], self.counts().get(outcome, 0))
        yield family
