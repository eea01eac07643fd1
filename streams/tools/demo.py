"""``streams demo``: topics, migrations, a worker, a simulated day of traffic, and what landed.

Runs against the local stack (``make demo`` starts it, and the demo's worker, which keep
running until ``make down``).
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

from clickhouse_driver import Client

from streams.clickhouse.client import connect
from streams.clickhouse.migrate import migrate
from streams.core.windows import DAY_MS
from streams.publisher import Publisher
from streams.settings import Settings
from streams.tools.simulate import SimulationConfig, generate, publish
from streams.topics import ensure_topics

PROMETHEUS_URL = "http://127.0.0.1:19090"


def _print_query(client: Client, title: str, sql: str) -> None:
    rows, columns = client.execute(sql, with_column_types=True)
    print(f"\n== {title}\n   {sql}")
    names = [name for name, _ in columns]
    print("   " + " | ".join(names))
    for row in rows:
        print("   " + " | ".join(str(v) for v in row))


def _prometheus(query: str) -> str:
    url = f"{PROMETHEUS_URL}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        body = json.loads(urllib.request.urlopen(url, timeout=5).read())
        result = body["data"]["result"]
        return f"{float(result[0]['value'][1]):.3g}" if result else "n/a"
    except OSError:
        return "n/a"


def run_demo(settings: Settings, customers: int, events: int) -> int:
    ensure_topics(settings)
    migrate(settings, echo=lambda _: None)
    start_ms = (int(time.time() * 1000) // DAY_MS - 1) * DAY_MS  # yesterday, so rolling windows show
    records = generate(SimulationConfig(seed=int(time.time()), customers=customers, events=events,
                                        start_ms=start_ms))
    with Publisher(settings) as publisher:
        sent = publish(records, publisher, settings)
    print(f"published {sum(sent.values())} records ({events} events for {customers} customers, with "
          "duplicates, late, far-future and malformed ones)")
    client = connect(settings)
    deadline = time.monotonic() + 180
    landed = 0
    while time.monotonic() < deadline:
        landed = client.execute("SELECT count() FROM events FINAL")[0][0]
        print(f"\r   events in ClickHouse: {landed}", end="", flush=True)
        if landed >= events:
            break
        time.sleep(2)
    print()
    _print_query(client, "referral leaderboard", "SELECT * FROM referral_leaderboard LIMIT 5")
    _print_query(client, "one customer 360 row", "SELECT * FROM customer_360 ORDER BY events DESC LIMIT 1")
    _print_query(client, "support KPIs", "SELECT * FROM support_kpis")
    _print_query(client, "ingestion errors", "SELECT * FROM ingestion_errors_by_reason")
    processed = _prometheus("sum(streams_events_processed_total)")
    lag = _prometheus('sum(streams_consumer_lag_records{topic!~".*-changelog"})')
    freshness = _prometheus("histogram_quantile(0.99, sum(rate(streams_event_freshness_seconds_bucket[5m])) by (le))")
    print(f"\nhealth: processed {processed} events, lag {lag} records, freshness p99 {freshness} s"
          " (freshness counts from the simulated ingest time)")
    print(f"\nwhere to look next:\n  worker metrics  http://{settings.metrics_host}:{settings.metrics_port}/metrics"
          f"\n  Prometheus      {PROMETHEUS_URL}\n  ClickHouse      clickhouse-client --port {settings.clickhouse_port}"
          " --user analyst --password analyst-local -d interactions\n  data dictionary docs/data-dictionary.md"
          "\n  stop everything make down")
    return 0
