"""The soak's readings: freshness polled often, everything else sampled every few seconds.

Freshness is timed per event as in :mod:`tests.bench.freshness` (publish millisecond against
the poll at which its row was first visible), but polled from a small table that a materialized
view fills from ``events`` inserts (rows per ``ingest_ms``, ordered by it): a poll reads only
the milliseconds still missing rows, whereas the same query on ``events`` scans its whole
``ingest_ms`` column (~70 ms at 10M rows here, several times a second). The view is the bench's,
in the run's own database; ClickHouse pays one small aggregation per insert for it.
"""

from __future__ import annotations

import time
from collections import Counter

from clickhouse_driver import Client

from streams.clickhouse.client import connect
from streams.clickhouse.migrate import check_identifier
from streams.settings import Settings
from tests.bench.freshness import LandingTracker, PacedPublisher
from tests.bench.lag_watch import LagWatch
from tests.bench.landing import event_rows
from tests.bench.soak_figures import Sample, quantile
from tests.bench.soak_workload import Tally
from tests.bench.worker_probe import metric, resident_bytes
from tests.bench.worker_process import WorkerProcess

LANDED_VIEW = "soak_landed"
MB = 2**20


def create_landed_view(settings: Settings) -> None:
    """Rows landed per ``ingest_ms``, kept up to date by every insert into ``events``."""
    database = check_identifier(settings.clickhouse_database)
    admin = connect(settings, admin=True)
    try:
        admin.execute(f"CREATE MATERIALIZED VIEW IF NOT EXISTS `{database}`.{LANDED_VIEW} "
                      "ENGINE = SummingMergeTree() ORDER BY ingest_ms "
                      f"AS SELECT ingest_ms, count() AS rows FROM `{database}`.events GROUP BY ingest_ms")
    finally:
        admin.disconnect()


class SoakMeter:
    """Polls freshness (``poll``) and takes samples (``sample``) for one soak run."""

    def __init__(self, client: Client, worker: WorkerProcess, publisher: PacedPublisher, tally: Tally,
                 lag: LagWatch, latencies: Counter[int]) -> None:
        self.client, self.worker, self.publisher, self.tally, self.lag = client, worker, publisher, tally, lag
        self.started = time.monotonic()
        self.tracker = LandingTracker(int(time.time() * 1000))
        self.latencies = latencies  # the whole run's, ms -> events: bounded by the distinct values
        self.last_seen = self.started  # when an event was last first seen
        self._interval: Counter[int] = Counter()

    def poll(self) -> None:
        """Match the rows visible now against the events published; the poll is an event's
        "first visible" time, so the latency overestimates by at most the poll interval."""
        poll_start_ms = int(time.time() * 1000)
        counts = self.client.execute(f"SELECT ingest_ms, sum(rows) FROM {LANDED_VIEW} WHERE ingest_ms >= %(low)s "
                                     "GROUP BY ingest_ms", {"low": self.tracker.low_watermark_ms})
        self.tracker.absorb(self.publisher.sent_ms)  # after the query: every row it saw is absorbed
        self.tracker.record(poll_start_ms, counts)
        if self.tracker.latencies_ms:
            self._interval.update(self.tracker.latencies_ms)
            self.tracker.latencies_ms.clear()
            self.tracker.landed.clear()
            self.last_seen = time.monotonic()

    @property
    def in_flight(self) -> int:
        """Events published and absorbed whose rows are not visible yet."""
        return sum(self.tracker.outstanding.values())

    def sample(self) -> Sample:
        interval, self._interval = self._interval, Counter()
        self.latencies.update(interval)
        lag = self.lag.samples[-1].lag if self.lag.samples else None
        return Sample(
            at_s=time.monotonic() - self.started,
            published=self.publisher.sent,
            landed=event_rows(self.client),
            lag=None if lag is None else sum(lag.values()),
            rss_mb=resident_bytes(self.worker.pid) / MB,
            peak_rss_mb=self.worker.peak_rss_bytes() / MB,
            cpu_s=self.worker.cpu_seconds(),
            customers_held=metric(self.worker, "streams_profiles"),
            customers_published=len(self.tally.customers),
            shares_published=self.tally.by_type["share"],
            fresh_events=sum(interval.values()),
            fresh_p50_ms=quantile(interval, 0.5),
            fresh_p99_ms=quantile(interval, 0.99),
            bench_rss_mb=resident_bytes() / MB,
            bench_cpu_s=time.process_time(),
        )


def progress_line(sample: Sample, previous: Sample | None) -> str:
    """One line per sample: what a long run is doing, readable as it scrolls by."""
    dt = sample.at_s - (previous.at_s if previous else 0.0) or 1e-9
    rate = (sample.published - (previous.published if previous else 0)) / dt
    cores = (sample.cpu_s - (previous.cpu_s if previous else 0.0)) / dt
    bench_cores = (sample.bench_cpu_s - (previous.bench_cpu_s if previous else 0.0)) / dt
    held = "-" if sample.customers_held is None else f"{sample.customers_held:,.0f}"
    fresh = ("fresh -" if sample.fresh_p50_ms is None
             else f"fresh p50 {sample.fresh_p50_ms:,.0f} p99 {sample.fresh_p99_ms:,.0f} ms")
    return (f"[soak {sample.at_s:6.0f} s] published {sample.published:,} ({rate:,.0f}/s)  landed {sample.landed:,}  "
            f"lag {'-' if sample.lag is None else f'{sample.lag:,}'}  RSS {sample.rss_mb:,.0f} MB "
            f"(peak {sample.peak_rss_mb:,.0f}) {cores:.2f} cores  customers {held}  {fresh}  "
            f"bench {sample.bench_rss_mb:,.0f} MB {bench_cores:.2f} cores")
