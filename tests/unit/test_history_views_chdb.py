"""The views that add backfilled history to the buckets (migration 0011_history), on a modern
ClickHouse (chdb, in process): a backfilled event counts in its person's hour and day and in
its minute, next to the live rows of the same buckets, once however often its row is written;
live rows and late live events stay as they were. On 18.16 the integration tests read the same
views (tests/integration/test_backfill.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from streams.clickhouse.migrate import apply_migrations
from streams.clickhouse.sink import ClickHouseSink
from streams.clickhouse.tables import TABLES
from streams.settings import load_settings
from tests.support.chdb import ChdbClient

chdb_session = pytest.importorskip("chdb.session")

SETTINGS = load_settings({})
HOUR = 3_600_000
D1 = 1_790_000_000_000 // 86_400_000 * 86_400_000  # a UTC day long before the live traffic
T1 = D1 + 10 * HOUR + 5 * 60_000  # 10:05 that day


def row(table: str, **values: Any) -> dict[str, Any]:
    full = {name: None for name in TABLES[table].column_names}
    full.update(values)
    return full


def event(event_id: str, actor: str, kind: str, at: int, topic: str, amount: int | None = None) -> dict[str, Any]:
    return row("events", event_id=event_id, event_type=kind, customer_id=actor, occurred_at_ms=at, ingest_ms=at,
               channel="web", amount_cents=amount, is_late=0, is_clamped=0, source_topic=topic,
               source_partition=0, source_offset=0)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChdbClient]:
    session = chdb_session.Session(str(tmp_path_factory.mktemp("chdb_history")))
    session.query("SET output_format_json_quote_64bit_integers = 0")
    client = ChdbClient(session, "history_views")
    apply_migrations(client, echo=lambda _: None)
    live_bucket = dict(customer_id="alice", events=2, clicks=2, shares=0, purchases=0, support_events=0,
                       revenue_cents=0, version=2)
    rows = [
        ("customer_hourly", row("customer_hourly", hour_start=D1 + 10 * HOUR, **live_bucket)),
        ("customer_daily", row("customer_daily", day=D1, **live_bucket)),
        ("minute_totals", row("minute_totals", minute_start=T1 // 60_000 * 60_000, event_type="click", channel="web",
                              source_partition=1, events=2, revenue_cents=0, version=2)),
        ("events", event("l1", "alice", "click", T1, "interactions.clicks")),  # a live row: in the table already
        ("events", event("h1", "alice", "purchase", T1, "interactions.backfill", amount=1250)),
        ("events", event("h2", "dev-9", "click", T1 + HOUR, "interactions.backfill")),  # alice's device
        ("events", event("h3", "bob", "click", T1, "interactions.backfill")),
        ("identity_map", row("identity_map", anonymous_id="dev-9", customer_id="alice", version=1)),
    ]
    for _ in range(2):  # written twice, as after a replay
        sink = ClickHouseSink(SETTINGS, lambda: client)
        for table, values in rows:
            sink.add(table, values)
        asyncio.run(sink.flush())
    yield client
    session.close()


def test_history_counts_in_its_person_s_hours_beside_the_live_rows(client: ChdbClient) -> None:
    assert client.execute(f"SELECT customer_id, intDiv(toUInt64(hour_start), 3600) * 3600000 - {D1}, events, "
                          "clicks, purchases, revenue_cents FROM customer_hourly_all ORDER BY 1, 2") == [
        ("alice", 10 * HOUR, 3, 2, 1, 1250), ("alice", 11 * HOUR, 1, 1, 0, 0), ("bob", 10 * HOUR, 1, 1, 0, 0)]


def test_history_counts_in_its_person_s_days_and_in_the_daily_views(client: ChdbClient) -> None:
    assert client.execute("SELECT customer_id, events, clicks, purchases, revenue_cents FROM customer_daily_all "
                          "ORDER BY 1") == [("alice", 4, 3, 1, 1250), ("bob", 1, 1, 0, 0)]
    assert client.execute("SELECT active_customers, purchasing_customers, events, revenue_cents "
                          "FROM daily_engagement") == [(2, 1, 5, 1250)]
    assert client.execute("SELECT clicked_customers, purchased_customers, clicked_and_purchased_customers "
                          "FROM click_to_purchase_funnel") == [(2, 1, 1)]


def test_history_counts_in_its_minutes_beside_the_live_partials(client: ChdbClient) -> None:
    assert client.execute("SELECT event_type, events, revenue_cents, partitions_reporting FROM minute_totals_by_type "
                          "ORDER BY minute_start, event_type") == [
        ("click", 3, 0, 1), ("purchase", 1, 1250, 0), ("click", 1, 0, 0)]
