"""The eraser: the service that finishes erasures in ClickHouse (docs/operations.md, erasure).

The workers erase a person's state and write a tombstone row that hides them from the analyst
views at once; the eraser then deletes their rows from every table with throttled mutations,
checks that none is left, records the request as verified and removes the tombstone. It runs
as the admin user (mutations), apart from the workers (which insert only), one instance per
ClickHouse database, and exposes its own ``/metrics`` and ``/healthz``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from clickhouse_driver.errors import Error as ClickHouseError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from streams.clickhouse.client import connect
from streams.clickhouse.erasure import PurgeReport, purge_once
from streams.clickhouse.errors import describe
from streams.runtime.endpoint import serve
from streams.runtime.liveness import Health
from streams.settings import Settings, require_erasure_key

log = logging.getLogger(__name__)

# Seconds from a request to its verified deletion: minutes on a healthy stack, days at worst.
VERIFIED_BUCKETS = (10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 86_400.0, 7 * 86_400.0, 30 * 86_400.0)
# Passes in a row that may fail before the eraser reports itself unhealthy.
FAILED_PASSES_TOLERATED = 3


class EraserMetrics:
    """The eraser's metrics, on their own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.pending = Gauge("streams_erasure_pending", "Erased ids whose ClickHouse rows are not verified deleted "
                             "yet (tombstones left)", registry=r)
        self.overdue = Gauge("streams_erasure_overdue", "Erased ids not verified past the erasure deadline "
                             "(STREAMS_ERASURE_DEADLINE_S)", registry=r)
        self.verified = Counter("streams_erasure_verified_total", "Erased ids verified gone from every table",
                                registry=r)
        self.seconds_to_verified = Histogram("streams_erasure_seconds_to_verified",
                                             "From an erasure request reaching Kafka to its verified deletion",
                                             buckets=VERIFIED_BUCKETS, registry=r)
        self.throttled = Counter("streams_eraser_throttled_passes_total",
                                 "Passes that started no delete: STREAMS_ERASER_MAX_MUTATIONS mutations running",
                                 registry=r)
        self.failed = Counter("streams_eraser_failed_passes_total", "Passes that failed (ClickHouse unreachable "
                              "or refusing)", registry=r)
        self.last_pass = Gauge("streams_eraser_last_pass_timestamp_seconds", "When the last pass completed",
                               registry=r)

    def observe(self, report: PurgeReport) -> None:
        self.pending.set(report.still_pending)
        self.overdue.set(report.overdue)
        self.throttled.inc(int(report.throttled))
        for *_, seconds in report.verified:
            self.verified.inc()
            self.seconds_to_verified.observe(seconds)
        self.last_pass.set(time.time())


@dataclass(slots=True)
class _Passes:
    """Failed passes in a row, for ``/healthz``."""

    failed_in_a_row: int = 0
    last_error: str = ""

    def health(self) -> Health:
        healthy = self.failed_in_a_row < FAILED_PASSES_TOLERATED
        return Health(healthy, 0.0, 0, "" if healthy else f"{self.failed_in_a_row} passes failed: {self.last_error}")


def run_eraser(settings: Settings, *, once: bool = False) -> None:
    """Pass after pass every ``eraser_interval_s`` (one pass with ``once``)."""
    require_erasure_key(settings)
    registry = CollectorRegistry()
    metrics, passes = EraserMetrics(registry), _Passes()
    if not once:
        serve(settings.metrics_host, settings.eraser_metrics_port, registry, passes.health)
        log.info("eraser: metrics on http://%s:%d/metrics, a pass every %g s", settings.metrics_host,
                 settings.eraser_metrics_port, settings.eraser_interval_s)
    while True:
        try:
            report = one_pass(settings)
        except (ClickHouseError, OSError, EOFError) as error:  # the next pass tries again
            passes.failed_in_a_row += 1
            passes.last_error = describe(error)
            metrics.failed.inc()
            log.error("eraser: pass failed (%d in a row): %s", passes.failed_in_a_row, passes.last_error)
            if once:
                raise
        else:
            passes.failed_in_a_row = 0
            metrics.observe(report)
            log_pass(report)
        if once:
            return
        time.sleep(settings.eraser_interval_s)


def one_pass(settings: Settings) -> PurgeReport:
    client = connect(settings, admin=True, database=settings.clickhouse_database)
    try:
        return purge_once(settings, client, now_ms=int(time.time() * 1000))
    finally:
        client.disconnect()


def log_pass(report: PurgeReport) -> None:
    if report.throttled:
        log.info("eraser: mutations running at the limit, no delete started")
    if report.verified:
        slowest = max(seconds for *_, seconds in report.verified)
        log.info("eraser: %d erased id(s) verified gone from every table (slowest %.0f s after its request)",
                 len(report.verified), slowest)
    if report.overdue:
        log.error("eraser: %d erased id(s) past the erasure deadline and not verified: see docs/operations.md, "
                  "erasure", report.overdue)
    elif report.still_pending:
        log.info("eraser: %d erased id(s) pending", report.still_pending)
