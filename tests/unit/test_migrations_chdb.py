"""Every migration and view on a modern ClickHouse (chdb, in process): both variants of each
migration, the runner's bookkeeping, column drift against streams.clickhouse.tables, and each
view's numbers after replays and newer versions. The 18.16 path runs in
tests/integration/test_clickhouse.py against the real server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from streams.clickhouse.client import connect, parse_version, server_version
from streams.clickhouse.migrate import (
    MIGRATIONS_DIR,
    MigrationError,
    apply_migrations,
    load_migrations,
    split_statements,
)
from streams.clickhouse.sink import ClickHouseSink
from streams.clickhouse.tables import TABLES, VIEWS
from streams.settings import load_settings
from tests.support.chdb import ChdbClient
from tests.support.dictionary import DICTIONARY, documented_columns
from tests.support.rows import row

chdb_session = pytest.importorskip("chdb.session")

OLD_VERSION = "18.16.1"


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    s = chdb_session.Session(str(tmp_path_factory.mktemp("chdb")))
    s.query("SET output_format_json_quote_64bit_integers = 0")
    yield s
    s.close()


def _migrated_clients(session: Any, prefix: str = "") -> dict[str, ChdbClient]:
    """Two databases: 'modern' (chdb's own version) and 'portable' (told it is 18.16)."""
    clients = {"modern": ChdbClient(session, f"{prefix}modern"),
               "portable": ChdbClient(session, f"{prefix}portable", OLD_VERSION)}
    for client in clients.values():
        assert apply_migrations(client, echo=lambda _: None) == [m.name for m in load_migrations()]
    return clients


@pytest.fixture(scope="module")
def migrated(session: Any) -> dict[str, ChdbClient]:
    return _migrated_clients(session)


# -- the client -------------------------------------------------------------------------------


def test_connect_takes_user_database_and_timeouts_from_settings() -> None:
    environ = {"STREAMS_CLICKHOUSE_PASSWORD": "w-secret", "STREAMS_CLICKHOUSE_ADMIN_PASSWORD": "a-secret"}
    settings = load_settings(environ, clickhouse_timeout_s=3.5, clickhouse_database="analytics")
    worker, admin = connect(settings), connect(settings, admin=True)  # lazy: no connection yet
    assert (worker.connection.user, worker.connection.password, worker.connection.database) == (
        "writer", "w-secret", "analytics")
    assert (admin.connection.user, admin.connection.password, admin.connection.database) == (
        "admin", "a-secret", "default")
    for client in (worker, admin):
        assert client.connection.connect_timeout == 3.5
        assert client.connection.send_receive_timeout == 3.5
        assert client.connection.sync_request_timeout == 3.5
    assert "w-secret" not in repr(settings) and "a-secret" not in repr(settings)


def test_server_version(migrated: dict[str, ChdbClient]) -> None:
    assert server_version(migrated["modern"]) >= (19, 6)
    assert server_version(migrated["portable"]) == (18, 16, 1)
    assert parse_version("21.8.15.7-lts") == (21, 8, 15, 7)


# -- the runner -------------------------------------------------------------------------------


def test_variant_follows_the_server_version(migrated: dict[str, ChdbClient]) -> None:
    modern = dict(migrated["modern"].execute("SELECT name, variant FROM schema_migrations"))
    portable = dict(migrated["portable"].execute("SELECT name, variant FROM schema_migrations"))
    assert modern["0006_ingestion_errors"] == "0006_ingestion_errors.modern.sql"
    assert modern["0003_customer_buckets"] == "0003_customer_buckets.sql"  # no modern variant
    assert all(not v.endswith(".modern.sql") for v in portable.values())
    ttl = migrated["modern"].execute("SHOW CREATE TABLE ingestion_errors")[0][0]
    assert "TTL" in ttl and "LowCardinality" in ttl
    assert "TTL" not in migrated["portable"].execute("SHOW CREATE TABLE ingestion_errors")[0][0]


def test_second_run_applies_nothing(migrated: dict[str, ChdbClient]) -> None:
    for client in migrated.values():
        assert apply_migrations(client) == []
        assert client.execute("SELECT count() FROM schema_migrations") == [(len(load_migrations()),)]


def test_dry_run_prints_the_sql_and_applies_nothing(session: Any, capsys: pytest.CaptureFixture[str]) -> None:
    client = ChdbClient(session, "dry")
    names = apply_migrations(client, dry_run=True)
    assert names == [m.name for m in load_migrations()]
    printed = capsys.readouterr().out
    assert "CREATE TABLE IF NOT EXISTS schema_migrations" in printed
    assert "CREATE TABLE IF NOT EXISTS events" in printed
    assert "-- migration 0006_ingestion_errors (0006_ingestion_errors.modern.sql)" in printed
    assert "CREATE VIEW IF NOT EXISTS minute_totals_by_type" in printed
    assert client.execute("SELECT count() FROM system.tables WHERE database = 'dry'") == [(0,)]


def test_changed_applied_migration_is_an_error(session: Any, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    client = ChdbClient(session, "edited")
    apply_migrations(client, migrations=load_migrations(directory), echo=lambda _: None)
    path = directory / "0004_minute_totals.modern.sql"
    path.write_text(path.read_text() + "\n-- an edit\n")
    with pytest.raises(MigrationError, match=r"0004_minute_totals\.modern\.sql: changed"):
        apply_migrations(client, migrations=load_migrations(directory))
    # Only the file that was applied counts: editing the variant not used is not an error.
    path.write_text((MIGRATIONS_DIR / path.name).read_text())
    base = directory / "0004_minute_totals.sql"
    base.write_text(base.read_text() + "\n-- an edit to the unused variant\n")
    assert apply_migrations(client, migrations=load_migrations(directory)) == []


def test_pending_migration_below_an_applied_one_is_an_error(session: Any, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    client = ChdbClient(session, "gap")
    apply_migrations(client, migrations=load_migrations(directory), echo=lambda _: None)
    (directory / "0000_late_arrival.sql").write_text("CREATE TABLE IF NOT EXISTS x (a UInt8) ENGINE = Memory")
    with pytest.raises(MigrationError, match="0000_late_arrival is pending but sorts before"):
        apply_migrations(client, migrations=load_migrations(directory))


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("0009_x.modern.sql", "CREATE TABLE IF NOT EXISTS x (a UInt8) ENGINE = Memory", "starts with"),
        ("0009_x.sql", "-- requires: 19.6\nSELECT 1", "only .modern.sql"),
        ("9_x.sql", "SELECT 1", "expected NNNN_name"),
        ("0009_x.sql", "-- nothing here\n", "no SQL statement"),
    ],
)
def test_malformed_files_are_refused(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(MigrationError, match=re.escape(message)):
        load_migrations(tmp_path)


def test_split_statements_ignores_semicolons_in_strings_and_comments() -> None:
    sql = "-- a; comment\nSELECT 'a;b', `c;d` /* e; */;\n\nSELECT 2; -- trailing; note\n"
    assert split_statements(sql) == ["-- a; comment\nSELECT 'a;b', `c;d` /* e; */", "SELECT 2"]


def test_every_statement_is_idempotent() -> None:
    """No transactional DDL: a migration interrupted half-way is re-run whole."""
    for migration in load_migrations():
        for variant in filter(None, (migration.base, migration.modern)):
            for statement in variant.statements:
                code = re.sub(r"--[^\n]*", "", statement).strip()
                drop = re.fullmatch(r"DROP TABLE IF EXISTS (\w+)", code)  # a view, to create it anew
                assert (drop and drop.group(1) in VIEWS) or re.match(r"CREATE (TABLE|VIEW) IF NOT EXISTS ", code), (
                    variant.filename, code[:60])


def _portable_form(sql: str) -> list[str]:
    """A modern variant's statements with its extras removed: LowCardinality and TTL."""
    out = []
    for statement in split_statements(sql):
        code = re.sub(r"--[^\n]*", "", statement)
        code = re.sub(r"LowCardinality\((Nullable\(String\)|String)\)", r"\1", code)
        code = re.sub(r"\nTTL [^\n]*", "", code)
        out.append(" ".join(code.split()))
    return out


def test_modern_variants_differ_from_the_base_only_by_gated_features() -> None:
    for migration in load_migrations():
        if migration.modern is not None:
            assert _portable_form(migration.modern.sql) == _portable_form(migration.base.sql), migration.name


# -- drift ------------------------------------------------------------------------------------


def _strip_low_cardinality(type_: str) -> str:
    return re.sub(r"LowCardinality\((.*)\)", r"\1", type_)


@pytest.mark.parametrize("database", ["modern", "portable"])
def test_tables_py_matches_the_migrated_tables(migrated: dict[str, ChdbClient], database: str) -> None:
    client = migrated[database]
    for table in TABLES.values():
        rows = client.execute(
            "SELECT name, type FROM system.columns WHERE database = currentDatabase() "
            f"AND table = '{table.name}' AND default_kind NOT IN ('ALIAS', 'MATERIALIZED') ORDER BY position"
        )
        assert [(name, _strip_low_cardinality(type_)) for name, type_ in rows] == [
            (c.name, c.type) for c in table.columns
        ], table.name
        sorting_key = client.execute(
            f"SELECT sorting_key FROM system.tables WHERE database = currentDatabase() AND name = '{table.name}'"
        )[0][0]
        assert tuple(k.strip() for k in sorting_key.split(",")) == table.key, table.name
    views = client.execute("SELECT name FROM system.tables WHERE database = currentDatabase() AND engine = 'View'")
    assert sorted(name for (name,) in views) == sorted(VIEWS)


def test_events_alias_column(migrated: dict[str, ChdbClient]) -> None:
    rows = migrated["modern"].execute(
        "SELECT type, default_kind FROM system.columns WHERE database = currentDatabase() "
        "AND table = 'events' AND name = 'occurred_at'"
    )
    assert rows == [("DateTime('UTC')", "ALIAS")]


# -- data through the sink, then every view ---------------------------------------------------

DAY = 86_400_000
# Recent times: the modern ingestion_errors expires rows 90 days after ingest (TTL), and
# customer_rfm measures recency up to now().
NOW = int(time.time() * 1000)
D1 = (NOW // DAY - 1) * DAY  # yesterday, UTC
D2 = D1 + DAY  # today
T0 = D1 + 22 * 3_600_000 + 13 * 60_000 + 20_000  # yesterday 22:13:20
M1 = T0 // 60_000 * 60_000  # yesterday 22:13:00


def text(ms: int, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """How chdb's JSON shows a Date / DateTime('UTC')."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime(fmt)


DAY1, DAY2 = text(D1, "%Y-%m-%d"), text(D2, "%Y-%m-%d")


def batches() -> list[list[tuple[str, dict[str, Any]]]]:
    """Three flushes: first versions; newer versions; then replays of rows already written."""
    now = NOW
    alice_v1 = row("customer_profiles", customer_id="alice", version=1, events=1, open_tickets=5, segment="new")
    alice_v3 = row(
        "customer_profiles", customer_id="alice", version=3, first_seen_at_ms=T0, last_seen_at_ms=now,
        events=9, clicks=3, purchases=3, revenue_cents=60_000, avg_order_value_cents=20_000,
        last_purchase_at_ms=now - 10 * DAY - 1000, share_networks=["x", "y"], share_network_counts=[2, 1],
        open_tickets=1, tickets_resolved=2, first_reply_ms_total=10_801_000, first_reply_count=2,
        resolution_ms_total=172_800_000, resolution_count=2, latest_satisfaction=4,
        satisfaction_sum=9, satisfaction_count=2, recency_score=5, frequency_score=3, monetary_score=4,
        segment="loyal",
    )
    bob_v2 = row("customer_profiles", customer_id="bob", version=2, first_seen_at_ms=T0, last_seen_at_ms=T0,
                 events=2, clicks=2, segment="new")
    carol_v1 = row(
        "customer_profiles", customer_id="carol", version=1, events=20, purchases=12, revenue_cents=150_000,
        last_purchase_at_ms=now - 100 * DAY, open_tickets=2, first_reply_ms_total=-1500, first_reply_count=1,
        latest_satisfaction=1, satisfaction_sum=1, satisfaction_count=1, recency_score=1, frequency_score=5,
        monetary_score=5, segment="at_risk",
    )

    def daily(customer: str, day: int, version: int, **values: Any) -> dict[str, Any]:
        return row("customer_daily", customer_id=customer, day=day, version=version, **values)

    alice_d1_v2 = daily("alice", D1, 3, events=3, clicks=2, purchases=1, revenue_cents=2000)
    bob_d1 = daily("bob", D1, 1, events=1, clicks=1)

    def minute(type_: str, partition: int, events: int, revenue: int = 0) -> dict[str, Any]:
        return row("minute_totals", minute_start=M1, event_type=type_, channel="web",
                   source_partition=partition, events=events, revenue_cents=revenue, version=events)

    def credit(cid: str, sharer: str, referred: str, share: str, amount: int = 0) -> dict[str, Any]:
        return row("referral_credits", credit_id=cid, sharer_customer_id=sharer, referred_customer_id=referred,
                   share_id=share, touch_type="purchase" if amount else "click",
                   touch_occurred_at_ms=T0, amount_cents=amount)

    def error(topic: str, partition: int, offset: int, kind: str, reason: str, ingest: int = T0) -> dict[str, Any]:
        return row("ingestion_errors", kind=kind, reason=reason, source_topic=topic, source_partition=partition,
                   source_offset=offset, ingest_ms=ingest, payload="AAE=")

    def event(event_id: str, customer: str, offset: int) -> dict[str, Any]:
        return row("events", event_id=event_id, event_type="click", customer_id=customer, occurred_at_ms=T0,
                   ingest_ms=T0, channel="web", page="/", source_topic="clicks", source_offset=offset)

    # An anonymous visit, identified as alice in the second flush: alice's rows hold what it did
    # (the pipeline folds it in), so its own rows must count nowhere in the customer views.
    anon_profile = row("customer_profiles", customer_id="a-1", version=1, first_seen_at_ms=T0, last_seen_at_ms=T0,
                       events=2, clicks=1, purchases=1, revenue_cents=500, open_tickets=1, first_reply_ms_total=1000,
                       first_reply_count=1, satisfaction_sum=5, satisfaction_count=1, segment="new")
    anon_daily = daily("a-1", D1, 1, events=2, clicks=1, purchases=1, revenue_cents=500)
    identified = row("identity_map", anonymous_id="a-1", customer_id="alice", version=1)

    first = [
        ("customer_profiles", alice_v1), ("customer_profiles", bob_v2),
        ("customer_profiles", anon_profile), ("customer_daily", anon_daily),
        ("customer_daily", daily("alice", D1, 1, events=1, clicks=1)), ("customer_daily", bob_d1),
        ("customer_hourly", row("customer_hourly", customer_id="alice", hour_start=M1 // 3_600_000 * 3_600_000,
                                events=1, version=1)),
        ("minute_totals", minute("click", 0, 1)), ("minute_totals", minute("click", 1, 3)),
        ("referral_credits", credit("t1", "alice", "bob", "s1")),
        ("referral_credits", credit("t2", "alice", "bob", "s1", amount=2000)),
        ("ingestion_errors", error("clicks", 0, 10, "dead_letter", "bad_magic")),
        ("events", event("e1", "bob", 1)),
    ]
    second = [
        ("customer_profiles", alice_v3), ("customer_profiles", carol_v1),
        ("customer_daily", alice_d1_v2),
        ("customer_daily", daily("bob", D2, 2, events=2, clicks=1, purchases=1, revenue_cents=500)),
        ("customer_daily", daily("carol", D2, 1, events=1, purchases=1, revenue_cents=700)),
        ("customer_hourly", row("customer_hourly", customer_id="alice", hour_start=M1 // 3_600_000 * 3_600_000,
                                events=2, version=2)),
        ("minute_totals", minute("click", 0, 2)), ("minute_totals", minute("purchase", 0, 1, 2000)),
        ("referral_credits", credit("t3", "alice", "carol", "s2")),
        ("referral_credits", credit("t4", "carol", "alice", "s9")),
        ("ingestion_errors", error("clicks", 0, 11, "dead_letter", "bad_magic")),
        ("ingestion_errors", error("purchases", 1, 5, "late_event", "late_event")),
        ("ingestion_errors", error("purchases", 1, 5, "clamped_timestamp", "clamped_timestamp")),
        ("ingestion_errors", error("shares", 2, 7, "dead_letter", "truncated", ingest=T0 + 2 * 3_600_000)),
        ("events", event("e2", "alice", 2)),
        ("identity_map", identified),
    ]
    replays = [
        ("customer_profiles", bob_v2), ("customer_profiles", alice_v1),  # same version; an old one
        ("customer_daily", alice_d1_v2), ("customer_daily", bob_d1),
        ("minute_totals", minute("click", 1, 3)),
        ("referral_credits", credit("t2", "alice", "bob", "s1", amount=2000)),
        ("ingestion_errors", error("clicks", 0, 10, "dead_letter", "bad_magic")),
        ("events", event("e1", "bob", 1)),
        ("identity_map", identified), ("customer_daily", anon_daily),
    ]
    return [first, second, replays]


def write(client: ChdbClient, batch: Sequence[tuple[str, dict[str, Any]]]) -> None:
    sink = ClickHouseSink(load_settings({}), lambda: client)
    for table, values in batch:
        sink.add(table, values)
    asyncio.run(sink.flush())
    assert sink.buffered_rows == 0


def views(client: ChdbClient) -> dict[str, list[dict[str, Any]]]:
    order = {
        "customer_360": "customer_id", "customer_rfm": "customer_id", "daily_engagement": "day",
        "referral_leaderboard": "", "support_kpis": "", "click_to_purchase_funnel": "day",
        "ingestion_errors_by_reason": "day, kind, reason", "minute_totals_by_type": "minute_start, event_type",
        "identity_events": "event_id", "identity_credits": "credit_id", "person_360": "customer_id",
        "person_referral_leaderboard": "", "customer_hourly_all": "customer_id, hour_start",
        "customer_daily_all": "customer_id, day",
    }
    return {v: client.dicts(f"SELECT * FROM {v}" + (f" ORDER BY {order[v]}" if order[v] else "")) for v in VIEWS}


@pytest.fixture(scope="module")
def loaded(migrated: dict[str, ChdbClient]) -> dict[str, ChdbClient]:
    for client in migrated.values():
        for batch in batches():
            write(client, batch)
    return migrated


@pytest.fixture(params=["modern", "portable"])
def client(request: pytest.FixtureRequest, loaded: dict[str, ChdbClient]) -> ChdbClient:
    return loaded[request.param]


def pick(rows: list[dict[str, Any]], *names: str) -> list[tuple[Any, ...]]:
    return [tuple(r[n] for n in names) for r in rows]


def test_customer_360(client: ChdbClient) -> None:
    rows = views(client)["customer_360"]
    assert pick(rows, "customer_id", "version", "events", "open_tickets", "revenue_cents") == [
        ("alice", 3, 9, 1, 60_000), ("bob", 2, 2, 0, 0), ("carol", 1, 20, 2, 150_000)]
    alice, bob, carol = rows
    assert alice["avg_first_reply_seconds"] == 5400  # 10 801 000 // 2 // 1000
    assert alice["avg_resolution_seconds"] == 86_400
    assert alice["avg_satisfaction"] == pytest.approx(4.5)
    assert alice["share_networks"] == ["x", "y"] and alice["share_network_counts"] == [2, 1]
    assert alice["first_seen_at"] == text(T0)
    assert bob["avg_first_reply_seconds"] is None and bob["avg_satisfaction"] is None
    assert bob["last_purchase_at"] is None and bob["last_purchase_at_ms"] is None
    assert carol["avg_first_reply_seconds"] == -2  # floor(-1.5), like Python's //
    assert views(client)["person_360"] == rows  # customer_360 counts people itself


def test_customer_rfm(client: ChdbClient) -> None:
    rows = views(client)["customer_rfm"]
    assert pick(rows, "customer_id", "days_since_last_purchase", "recency_now", "frequency_now",
                "monetary_now", "rfm_now", "rfm_score", "segment") == [
        ("alice", 10, 4, 3, 4, "434", "534", "loyal"),
        ("bob", None, 1, 1, 1, "111", "000", "new"),
        ("carol", 100, 1, 5, 5, "155", "155", "at_risk"),
    ]


def test_daily_engagement(client: ChdbClient) -> None:
    assert pick(views(client)["daily_engagement"], "day", "active_customers", "purchasing_customers", "events",
                "clicks", "shares", "purchases", "support_events", "revenue_cents") == [
        (DAY1, 2, 1, 4, 3, 0, 1, 0, 2000),
        (DAY2, 2, 2, 3, 1, 0, 2, 0, 1200),
    ]


def test_click_to_purchase_funnel(client: ChdbClient) -> None:
    assert pick(views(client)["click_to_purchase_funnel"], "day", "clicked_customers", "purchased_customers",
                "clicked_and_purchased_customers", "conversion") == [
        (DAY1, 2, 1, 1, 0.5),
        (DAY2, 1, 2, 1, 1.0),
    ]


def test_referral_leaderboard(client: ChdbClient) -> None:
    assert pick(views(client)["referral_leaderboard"], "sharer_customer_id", "referred_clicks",
                "referred_purchases", "referred_revenue_cents", "referred_customers", "credited_shares") == [
        ("alice", 2, 1, 2000, 2, 2),
        ("carol", 1, 0, 0, 1, 1),
    ]


def test_support_kpis(client: ChdbClient) -> None:
    [kpis] = views(client)["support_kpis"]
    assert kpis == {
        "open_tickets": 3, "customers_with_open_tickets": 2, "tickets_resolved": 2,
        "tickets_with_reply": 3, "avg_first_reply_seconds": 3599,  # 10 799 500 // 3 // 1000
        "tickets_resolved_timed": 2, "avg_resolution_seconds": 86_400,
        "satisfaction_responses": 3, "avg_satisfaction": pytest.approx(10 / 3),
    }


def test_ingestion_errors_by_reason(client: ChdbClient) -> None:
    assert pick(views(client)["ingestion_errors_by_reason"], "day", "kind", "reason", "errors") == [
        (DAY1, "clamped_timestamp", "clamped_timestamp", 1),
        (DAY1, "dead_letter", "bad_magic", 2),
        (DAY1, "late_event", "late_event", 1),
        (DAY2, "dead_letter", "truncated", 1),
    ]


def test_minute_totals_by_type(client: ChdbClient) -> None:
    assert pick(views(client)["minute_totals_by_type"], "minute_start", "event_type", "channel", "events",
                "revenue_cents", "partitions_reporting") == [
        (text(M1), "click", "web", 5, 0, 2),
        (text(M1), "purchase", "web", 1, 2000, 1),
    ]


def test_an_identified_anonymous_id_counts_once_in_its_customer(client: ChdbClient) -> None:
    # a-1's own rows stay in the tables; the views see only alice's, which hold them.
    assert client.execute("SELECT sum(events) FROM customer_daily FINAL") == [(9,)]
    assert client.execute("SELECT sum(events) FROM daily_engagement") == [(9 - 2,)]
    assert client.execute("SELECT sum(open_tickets) FROM customer_profiles FINAL") == [(4,)]
    for view in ("customer_360", "customer_rfm", "person_360"):
        assert "a-1" not in [r["customer_id"] for r in views(client)[view]], view


def test_tables_read_with_final(client: ChdbClient) -> None:
    counts = {t: client.execute(f"SELECT count() FROM {t} FINAL")[0][0] for t in TABLES}
    assert counts == {"events": 2, "customer_profiles": 4, "customer_hourly": 1, "customer_daily": 5,
                      "minute_totals": 3, "referral_credits": 4, "ingestion_errors": 5, "identity_map": 1,
                      "erased_customers": 0, "erasure_requests": 0}
    assert client.execute("SELECT max(events) FROM customer_hourly FINAL") == [(2,)]
    assert client.execute("SELECT occurred_at FROM events FINAL WHERE event_id = 'e1'") == [
        (text(T0),)]


def test_a_replayed_batch_changes_no_view(client: ChdbClient) -> None:
    before = views(client)
    for batch in batches()[:2]:
        write(client, batch)
    assert views(client) == before


# -- the data dictionary ----------------------------------------------------------------------

def test_data_dictionary_documents_every_column(migrated: dict[str, ChdbClient]) -> None:
    client = migrated["modern"]
    documented = documented_columns()
    for name in [*TABLES, *VIEWS]:
        columns = [c for (c,) in client.execute(
            f"SELECT name FROM system.columns WHERE database = currentDatabase() AND table = '{name}'")]
        missing = set(columns) - set(documented.get(name, []))
        assert not missing, f"docs/data-dictionary.md: {name} lacks {sorted(missing)}"
        stale = set(documented.get(name, [])) - set(columns)
        if name not in ("customer_hourly", "customer_daily"):  # one section documents both
            assert not stale, f"docs/data-dictionary.md: {name} documents unknown {sorted(stale)}"


def test_data_dictionary_examples_run(loaded: dict[str, ChdbClient]) -> None:
    text = DICTIONARY.read_text().split("## Example queries", 1)[1]
    block = text.split("```sql", 1)[1].split("```", 1)[0]
    statements = split_statements(block)
    assert len(statements) >= 8
    for statement in statements:
        loaded["modern"].execute(statement.replace(" FORMAT Vertical", ""))
