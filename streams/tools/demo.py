"""``streams demo``: topics, migrations, a simulated day of traffic, what landed, and the report.

Runs against the local stack and its worker (``make demo`` starts them; they keep running
until ``make down``). The health line is measured on this run: how long the accepted events
took from the first publish to being visible in ClickHouse, and the worker's lag afterwards.
(Event-time freshness means nothing here: simulated events are stamped up to a day ago.)
"""

from __future__ import annotations

import sys
import time
import urllib.request
from dataclasses import dataclass
from operator import attrgetter

from clickhouse_driver import Client
from prometheus_client.parser import text_string_to_metric_families

from streams.clickhouse.client import connect
from streams.clickhouse.migrate import migrate
from streams.core.windows import HOUR_MS
from streams.publisher import Publisher
from streams.settings import Settings
from streams.tools import humanize
from streams.tools.humanize import count, duration
from streams.tools.journey import Journey, stitched_journey
from streams.tools.oracle import expected
from streams.tools.report import write_report
from streams.tools.simulate import SimulationConfig, generate, publish, recent_day_start_ms
from streams.topics import ensure_topics

#: Longest the demo waits for the accepted events to be visible in ClickHouse.
LANDING_TIMEOUT_S = 180.0


@dataclass(frozen=True, slots=True)
class Landing:
    """How this run's accepted events reached ClickHouse, in seconds from the first publish."""

    expected: int
    visible: int
    published_s: float  # the last record acknowledged by Kafka
    visible_s: float  # the last accepted event visible in ClickHouse (or the timeout)
    caught_up_s: float | None  # the worker's /metrics first showed no lag; None: not within the timeout

    def line(self) -> str:
        if self.visible < self.expected:
            return (f"only {count(self.visible)} of {count(self.expected, 'accepted events')} visible in ClickHouse "
                    f"after {duration(self.visible_s)}: see `deploy/local/stack logs worker`")
        text = (f"{count(self.expected, 'accepted events')} visible in ClickHouse "
                f"{duration(self.visible_s - self.published_s)} after publishing ended "
                f"({count(round(self.expected / self.visible_s), 'events/s')} end to end); ")
        if self.caught_up_s is None:
            return text + "the worker still lags (or its /metrics is unreachable)"
        return text + f"worker lag 0 records {duration(self.caught_up_s - self.published_s)} after publishing ended"


def _print_rows(client: Client, title: str, sql: str, currency: str, *, vertical: bool = False) -> None:
    rows, columns = client.execute(sql, with_column_types=True)
    names = [name for name, _ in columns]
    print(f"\n== {title}\n   {sql}")
    if not rows:
        print("   (no rows yet)")
    elif vertical:
        for row in rows:
            print("\n".join(humanize.vertical(dict(zip(names, row, strict=True)), currency)))
    else:
        print("\n".join(humanize.table(names, rows, currency)))


def worker_metrics(settings: Settings) -> dict[str, float] | None:
    """The demo's worker's source lag (changelogs left out) from its /metrics, or None if unreachable."""
    url = f"http://{settings.metrics_host}:{settings.metrics_port}/metrics"
    try:
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    except OSError:
        return None
    lag = sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
              if sample.name == "streams_consumer_lag_records" and not sample.labels["topic"].endswith("-changelog"))
    return {"lag": lag}


def _wait_for_landing(client: Client, settings: Settings, before: int, accepted: int, started: float,
                      published: float) -> Landing:
    def elapsed() -> float:
        return time.monotonic() - started

    visible, visible_s, caught_up_s = 0, 0.0, None
    while elapsed() < LANDING_TIMEOUT_S and (visible < accepted or caught_up_s is None):
        if visible < accepted:
            visible = client.execute("SELECT count() FROM events FINAL")[0][0] - before
            visible_s = elapsed()
            if sys.stdout.isatty():
                print(f"\r   events visible in ClickHouse: {count(visible)} of {count(accepted)}", end="", flush=True)
        if caught_up_s is None and (metrics := worker_metrics(settings)) is not None and metrics["lag"] == 0:
            caught_up_s = elapsed()
        time.sleep(0.25)
    print(f"\r   events visible in ClickHouse: {count(visible)} of {count(accepted)}")
    return Landing(accepted, visible, published - started, visible_s, caught_up_s)


def _print_journey(client: Client, journey: Journey, currency: str) -> None:
    print(f"\n== one stitched journey: {journey.visitor_device}, not signed in, follows {journey.friend}'s "
          f"shared link, browses, signs up as {journey.customer} and buys")
    _print_rows(client, "everything the person did, anonymous visits included",
                "SELECT occurred_at_ms, event_type, customer_id AS as_id, referrer_share_id, amount_cents "
                f"FROM identity_events WHERE person_id = '{journey.customer}' ORDER BY occurred_at_ms", currency)
    _print_rows(client, "the new customer, counted once",
                "SELECT customer_id, events, clicks, purchases, revenue_cents, first_seen_at_ms "
                f"FROM person_360 WHERE customer_id = '{journey.customer}'", currency)
    _print_rows(client, "the friend's credit on the leaderboard",
                "SELECT sharer_person_id, referred_clicks, referred_purchases, referred_revenue_cents, "
                f"referred_customers FROM person_referral_leaderboard WHERE sharer_person_id = '{journey.friend}'",
                currency)


def run_demo(settings: Settings, customers: int, events: int, *, report_path: str,
             prometheus_url: str) -> int:
    ensure_topics(settings)
    migrate(settings, echo=lambda _: None)
    start_ms = recent_day_start_ms()  # whole days show in the charts
    run = int(time.time())
    # Identity traffic in the mix (anonymous visits, identifies, conflicts, sentinel ids), and
    # one scripted stitched journey shown at the end.
    journey = stitched_journey(str(run), start_ms + 9 * HOUR_MS, settings.currency)
    records = generate(SimulationConfig(seed=run, customers=customers, events=events, start_ms=start_ms,
                                        anonymous_visits=0.2, sentinel_ids=0.002, old_shares=False))
    records = sorted(records + journey.records, key=attrgetter("ingest_ms"))
    accepted = len(expected(records, settings).accepted)
    client = connect(settings)
    before = client.execute("SELECT count() FROM events FINAL")[0][0]
    started = time.monotonic()
    with Publisher(settings) as publisher:
        sent = publish(records, publisher, settings)
    published = time.monotonic()
    print(f"published {count(sum(sent.values()), 'records')} in {duration(published - started)}: "
          f"{count(events, 'events')} for {count(customers, 'customers')}, with duplicates, late, far-future and "
          f"malformed ones ({count(accepted)} to be accepted)")
    landing = _wait_for_landing(client, settings, before, accepted, started, published)
    currency = settings.currency
    _print_rows(client, "referral leaderboard", "SELECT sharer_customer_id, referred_clicks, referred_purchases, "
                "referred_revenue_cents, referred_customers FROM referral_leaderboard LIMIT 5", currency)
    _print_rows(client, "one customer 360 row", "SELECT * FROM customer_360 ORDER BY events DESC LIMIT 1", currency,
                vertical=True)
    _print_rows(client, "support KPIs", "SELECT * FROM support_kpis", currency, vertical=True)
    _print_journey(client, journey, currency)
    _print_rows(client, "ingestion errors", "SELECT * FROM ingestion_errors_by_reason ORDER BY day, kind, reason",
                currency)
    client.disconnect()
    print(f"\nhealth: {landing.line()}")
    print(f"\nwhere to look next:\n  worker metrics  http://{settings.metrics_host}:{settings.metrics_port}/metrics"
          f"\n  Prometheus      {prometheus_url}"
          f"\n  ClickHouse      clickhouse-client --port {settings.clickhouse_port} --user analyst "
          f"-d {settings.clickhouse_database} (local password in deploy/clickhouse/users.xml)"
          "\n  data dictionary docs/data-dictionary.md\n  stop everything make down")
    path = write_report(settings, report_path)
    print(f"\nthe report of what landed, charts in one HTML file (open it in a browser):\n{path}")
    return 0
