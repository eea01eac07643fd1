"""The ClickHouse side against the real local server (ClickHouse 18.16 in deploy/local/stack):
migrations, dry-run, the sink's writes and replays, the analyst's rights, sink throughput.

Each test gets a fresh database from the ``clickhouse_settings`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest
from clickhouse_driver import Client
from clickhouse_driver.errors import ServerException

from streams.clickhouse.client import connect, server_version
from streams.clickhouse.migrate import apply_migrations, load_migrations, migrate
from streams.clickhouse.sink import ClickHouseSink
from streams.clickhouse.tables import TABLES, VIEWS
from streams.settings import Settings
from tests.support.analyst import as_analyst
from tests.support.rows import row as full_row
from tests.support.rows import traffic, write

pytestmark = pytest.mark.integration

MODERN = (19, 6)  # the '-- requires:' of every .modern.sql variant


@pytest.fixture()
def admin(clickhouse_settings: Settings) -> Iterator[Client]:
    """Admin client on the test database, after the migrations ran."""
    migrate(clickhouse_settings, echo=lambda _: None)
    client = connect(clickhouse_settings, admin=True, database=clickhouse_settings.clickhouse_database)
    yield client
    client.disconnect()


# -- migrations -------------------------------------------------------------------------------


def test_migrations_apply_once(clickhouse_settings: Settings) -> None:
    names = [m.name for m in load_migrations()]
    assert migrate(clickhouse_settings, echo=lambda _: None) == names
    assert migrate(clickhouse_settings, echo=lambda _: None) == []

    client = connect(clickhouse_settings, admin=True, database=clickhouse_settings.clickhouse_database)
    version = server_version(client)
    applied = dict(client.execute("SELECT name, variant FROM schema_migrations"))
    assert sorted(applied) == names
    for migration in load_migrations():
        assert applied[migration.name] == migration.variant_for(version).filename
    if version < MODERN:  # the local stack's 18.16: the portable files, no LowCardinality, no TTL
        assert all(not variant.endswith(".modern.sql") for variant in applied.values())

    for table in TABLES.values():
        rows = client.execute(
            "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = %(t)s "
            "AND default_kind NOT IN ('ALIAS', 'MATERIALIZED')", {"t": table.name})
        types = [(name, type_.replace("LowCardinality(", "", 1)[:-1] if type_.startswith("LowCardinality(")
                  else type_) for name, type_ in rows]
        assert types == [(c.name, c.type) for c in table.columns], table.name
    views = client.execute("SELECT name FROM system.tables WHERE database = currentDatabase() AND engine = 'View'")
    assert sorted(name for (name,) in views) == sorted(VIEWS)
    client.disconnect()


def test_dry_run_prints_and_applies_nothing(clickhouse_settings: Settings) -> None:
    printed: list[str] = []
    names = migrate(clickhouse_settings, dry_run=True, echo=printed.append)
    assert names == [m.name for m in load_migrations()]
    text = "\n".join(printed)
    assert f"CREATE DATABASE IF NOT EXISTS `{clickhouse_settings.clickhouse_database}`" in text
    assert "CREATE TABLE IF NOT EXISTS customer_profiles" in text
    assert "CREATE VIEW IF NOT EXISTS customer_360" in text

    admin = connect(clickhouse_settings, admin=True)
    exists = "SELECT count() FROM system.databases WHERE name = %(db)s"
    assert admin.execute(exists, {"db": clickhouse_settings.clickhouse_database}) == [(0,)]

    migrate(clickhouse_settings, echo=lambda _: None)
    printed.clear()
    assert migrate(clickhouse_settings, dry_run=True, echo=printed.append) == []
    assert printed == []
    admin.disconnect()


def test_migrating_a_deployment_with_data_makes_the_views_count_people(clickhouse_settings: Settings) -> None:
    # A deployment migrated up to 0008, with identified anonymous ids in its tables, then 0009 and on.
    database = clickhouse_settings.clickhouse_database
    admin = connect(clickhouse_settings, admin=True)
    admin.execute(f"CREATE DATABASE {database}")
    admin.disconnect()
    client = connect(clickhouse_settings, admin=True, database=database)
    migrations = load_migrations()
    people_views = [m.name for m in migrations].index("0009_people_views")
    apply_migrations(client, migrations=migrations[:people_views])
    write(clickhouse_settings, traffic(customers=20), flush_every=10_000)
    people = "SELECT sum(events) FROM customer_daily FINAL WHERE customer_id NOT LIKE 'a%'"
    assert client.execute("SELECT sum(events) FROM daily_engagement") > client.execute(people)
    assert migrate(clickhouse_settings, echo=lambda _: None) == [m.name for m in migrations[people_views:]]
    assert client.execute("SELECT sum(events) FROM daily_engagement") == client.execute(people)
    client.disconnect()


# -- the sink ---------------------------------------------------------------------------------


def read_views(client: Client) -> dict[str, list[tuple[Any, ...]]]:
    # Sorted in Python: every column of every view takes part, whatever its order.
    return {view: sorted(client.execute(f"SELECT * FROM {view}"), key=repr) for view in VIEWS}


def test_sink_writes_and_a_replay_changes_no_view(clickhouse_settings: Settings, admin: Client) -> None:
    rows = traffic()
    write(clickhouse_settings, rows, flush_every=997)
    before = read_views(admin)

    # What the views must say: the newest version per key, computed here in Python.
    newest: dict[tuple[str, tuple[Any, ...]], dict[str, Any]] = {}
    for table, row in rows:
        spec = TABLES[table]
        key = (table, tuple(row[k] for k in spec.key))
        if key not in newest or spec.version is None or row[spec.version] >= newest[key][spec.version]:
            newest[key] = row
    final = {t: [r for (table, _), r in newest.items() if table == t] for t in TABLES}
    counts = {t: admin.execute(f"SELECT count() FROM {t} FINAL")[0][0] for t in TABLES}
    assert counts == {t: len(final[t]) for t in TABLES}
    # The customer views count people: identified anonymous ids' own rows are left out.
    identified = {r["anonymous_id"] for r in final["identity_map"]}
    assert identified
    final = {t: [r for r in final[t] if r.get("customer_id") not in identified] if t.startswith("customer_")
             else final[t] for t in TABLES}
    assert admin.execute("SELECT count() FROM customer_360") == [(len(final["customer_profiles"]),)]
    assert admin.execute("SELECT count() FROM customer_rfm") == [(len(final["customer_profiles"]),)]
    assert admin.execute("SELECT count() FROM person_360") == [(len(final["customer_profiles"]),)]
    funnel = admin.execute("SELECT sum(clicked_customers) FROM click_to_purchase_funnel")
    assert funnel == [(sum(r["clicks"] > 0 for r in final["customer_daily"]),)]
    engagement = admin.execute("SELECT sum(events), sum(revenue_cents), sum(active_customers) FROM daily_engagement")
    assert engagement == [(sum(r["events"] for r in final["customer_daily"]),
                           sum(r["revenue_cents"] for r in final["customer_daily"]),
                           len(final["customer_daily"]))]
    [kpis] = admin.execute("SELECT open_tickets, tickets_with_reply, avg_first_reply_seconds FROM support_kpis")
    profiles = final["customer_profiles"]
    replies = sum(r["first_reply_count"] for r in profiles)
    assert kpis == (sum(r["open_tickets"] for r in profiles), replies,
                    sum(r["first_reply_ms_total"] for r in profiles) // replies // 1000)
    assert admin.execute("SELECT sum(events) FROM minute_totals_by_type") == [(3 * (1 + 2 + 3 + 4),)]
    leaderboard = admin.execute("SELECT sum(referred_purchases), sum(referred_revenue_cents) FROM referral_leaderboard")
    credits = final["referral_credits"]
    assert leaderboard == [(sum(r["touch_type"] == "purchase" for r in credits),
                            sum(r["amount_cents"] for r in credits))]

    # The same rows again, in different batches: nothing changes.
    write(clickhouse_settings, rows, flush_every=1499)
    assert read_views(admin) == before
    # ... nor when merges have collapsed the copies (plain OPTIMIZE; never FINAL DEDUPLICATE on 18.16).
    for table in TABLES:
        admin.execute(f"OPTIMIZE TABLE {table}")
    assert read_views(admin) == before


# -- rights -----------------------------------------------------------------------------------


def test_analyst_reads_views_but_cannot_write_or_change_schema(clickhouse_settings: Settings, admin: Client) -> None:
    write(clickhouse_settings, traffic(customers=20), flush_every=10_000)
    analyst = connect(as_analyst(clickhouse_settings))
    for view in VIEWS:
        analyst.execute(f"SELECT * FROM {view} LIMIT 10")
    assert analyst.execute("SELECT count() FROM customer_360") == [(20,)]

    refused = [
        ("INSERT INTO customer_profiles (customer_id, version) VALUES", [("x", 1)]),
        ("ALTER TABLE customer_profiles ADD COLUMN intruder UInt8", None),
        ("ALTER TABLE events DELETE WHERE 1", None),
        ("DROP TABLE referral_credits", None),
        ("DROP TABLE customer_360", None),  # a view; 18.16 has no DROP VIEW syntax
        ("CREATE TABLE intruder (a UInt8) ENGINE = Memory", None),
    ]
    for statement, data in refused:
        with pytest.raises(ServerException) as error:
            analyst.execute(statement, data) if data else analyst.execute(statement)
        assert error.value.code == 164, (statement, error.value.code)  # READONLY
    analyst.disconnect()
    assert admin.execute("SELECT count() FROM customer_profiles FINAL WHERE customer_id = 'x'") == [(0,)]
    assert "intruder" not in [name for (name,) in admin.execute("SELECT name FROM system.columns "
                                                                "WHERE database = currentDatabase()")]


def test_writer_may_insert_but_not_change_schema(clickhouse_settings: Settings, admin: Client) -> None:
    writer = connect(clickhouse_settings)
    with pytest.raises(ServerException):
        writer.execute("DROP TABLE events")
    with pytest.raises(ServerException):
        writer.execute("ALTER TABLE events ADD COLUMN intruder UInt8")
    writer.disconnect()
    assert admin.execute("EXISTS TABLE events") == [(1,)]


# -- throughput -------------------------------------------------------------------------------


def test_sink_throughput_200k_profiles(clickhouse_settings: Settings, admin: Client) -> None:
    """200k profile rows in batches of 20k through the sink; prints rows/s."""
    total, batch = 200_000, 20_000
    settings = dataclasses.replace(clickhouse_settings, sink_max_rows=batch)
    template = full_row("customer_profiles", version=1, first_seen_at_ms=1, last_seen_at_ms=2, events=7, clicks=3,
                    purchases=2, revenue_cents=12_345, share_networks=["x"], share_network_counts=[1],
                    segment="active")
    sink = ClickHouseSink(settings, lambda: connect(settings))
    add_seconds = flush_seconds = 0.0

    async def run() -> None:
        nonlocal add_seconds, flush_seconds
        for start in range(0, total, batch):
            t0 = time.perf_counter()
            for i in range(start, start + batch):
                sink.add("customer_profiles", {**template, "customer_id": f"c{i:07d}"})
            t1 = time.perf_counter()
            assert sink.full
            assert await sink.flush() == batch
            flush_seconds += time.perf_counter() - t1
            add_seconds += t1 - t0

    asyncio.run(run())
    sink.close()
    assert admin.execute("SELECT count() FROM customer_profiles") == [(total,)]
    seconds = add_seconds + flush_seconds
    print(f"\nsink throughput: {total} customer_profiles rows in batches of {batch}: "
          f"{total / seconds:,.0f} rows/s overall (add {total / add_seconds:,.0f} rows/s, "
          f"flush/insert {total / flush_seconds:,.0f} rows/s)")
