"""BI clients as the analyst: SQLAlchemy's ClickHouse dialect (clickhouse-sqlalchemy, the one
Superset uses) against the local ClickHouse 18.16, over both its protocols.

Superset, Metabase and Grafana send query settings with every query (``max_execution_time``,
result limits); the analyst's profile (``readonly=2`` in deploy/clickhouse/users.xml) accepts
them and still refuses every write and schema change. Rows are written through the sink first
(tests/support/rows.py), so each view is read with real rows and compared with the columns
docs/data-dictionary.md documents for it.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Iterator

import pytest
from clickhouse_driver import Client
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL

from streams.clickhouse.client import connect
from streams.clickhouse.migrate import migrate
from streams.clickhouse.tables import VIEWS
from streams.settings import Settings
from tests.support.analyst import as_analyst
from tests.support.dictionary import documented_columns
from tests.support.rows import traffic, write

PROTOCOLS = ("native", "http")
#: What a BI tool sets on its connection: a time limit and a result cap (values as URL text).
BI_SETTINGS = {"max_execution_time": "30", "max_result_rows": "100000", "result_overflow_mode": "break"}
READONLY = 164  # ClickHouse's error code for what a readonly profile refuses


def bi_engine(settings: Settings, protocol: str, **connection_settings: str) -> Engine:
    """An engine as Superset builds it: ``clickhouse+native://`` (settings as URL parameters) or
    ``clickhouse+http://`` (settings as the transport's ``ch_settings``), logged in as analyst."""
    analyst = as_analyst(settings)
    sent = {**BI_SETTINGS, **connection_settings}
    if protocol == "native":
        host, port, query, connect_args = analyst.clickhouse_host, analyst.clickhouse_port, sent, {}
    else:
        http = urllib.parse.urlsplit(os.environ.get("STREAMS_LOCAL_CLICKHOUSE_HTTP_URL", "http://127.0.0.1:18123"))
        host, port, query, connect_args = http.hostname or "127.0.0.1", http.port, {}, {"ch_settings": sent}
    url = URL.create(f"clickhouse+{protocol}", username=analyst.clickhouse_user,
                     password=analyst.clickhouse_password.reveal(), host=host, port=port,
                     database=analyst.clickhouse_database, query=query)
    return create_engine(url, connect_args=connect_args)


@pytest.fixture()
def admin(clickhouse_settings: Settings) -> Iterator[Client]:
    """Admin client on a migrated test database holding rows for every table."""
    migrate(clickhouse_settings, echo=lambda _: None)
    write(clickhouse_settings, traffic(customers=40), flush_every=10_000)
    client = connect(clickhouse_settings, admin=True, database=clickhouse_settings.clickhouse_database)
    yield client
    client.disconnect()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bi_client_reads_every_view_with_its_settings(clickhouse_settings: Settings, admin: Client,
                                                      protocol: str) -> None:
    documented = documented_columns()
    engine = bi_engine(clickhouse_settings, protocol)
    with engine.connect() as connection:
        changed = dict(connection.execute(text("SELECT name, value FROM system.settings WHERE changed")).all())
        assert {name: changed.get(name) for name in BI_SETTINGS} == BI_SETTINGS  # taken, not silently dropped
        assert changed["readonly"] == "2"
        for view in VIEWS:
            result = connection.execute(text(f"SELECT * FROM {view}"))
            assert list(result.keys()) == documented[view], view
            assert result.all(), f"{view}: no rows"
        assert connection.execute(text("SELECT count() FROM customer_360")).scalar() == 40
        # Settings per query (SQLAlchemy's execution options) are applied too. Numbers only: the
        # HTTP dialect writes them into a SETTINGS clause without quoting strings.
        with pytest.raises(Exception, match=r"Limit for rows to read exceeded: .* maximum: 5"):
            connection.execution_options(settings={"max_rows_to_read": 5}).execute(
                text("SELECT number FROM system.numbers LIMIT 1000")).all()
    engine.dispose()


REFUSED = {
    "INSERT INTO customer_profiles (customer_id, version) VALUES ('intruder', 1)": "Cannot insert into table",
    "ALTER TABLE customer_profiles ADD COLUMN intruder UInt8": "Cannot execute query in readonly mode",
    "ALTER TABLE events DELETE WHERE 1": "Cannot execute query in readonly mode",
    "DROP TABLE referral_credits": "Cannot drop table in readonly mode",
    "DROP TABLE customer_360": "Cannot drop table in readonly mode",  # a view; 18.16 has no DROP VIEW
    "CREATE TABLE intruder (a UInt8) ENGINE = Memory": "Cannot create table in readonly mode",
    "RENAME TABLE events TO intruder": "Cannot execute query in readonly mode",
    "OPTIMIZE TABLE events": "Cannot execute query in readonly mode",
    "TRUNCATE TABLE schema_migrations": "Cannot drop table in readonly mode",
    "INSERT INTO FUNCTION remote('127.0.0.1', system.one) VALUES (0)": "Cannot insert into table",
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bi_client_cannot_write_alter_or_drop(clickhouse_settings: Settings, admin: Client, protocol: str) -> None:
    # Settings that would lift the restrictions are part of the connection: they change nothing.
    engine = bi_engine(clickhouse_settings, protocol, allow_ddl="1")
    with engine.connect() as connection:
        for statement, message in REFUSED.items():
            with pytest.raises(Exception, match=f"Code: {READONLY}") as error:
                connection.execute(text(statement))
            assert message in str(error.value), (statement, str(error.value)[:300])
        with pytest.raises(Exception, match="Cannot modify 'readonly' setting in readonly mode"):
            connection.execute(text("SET readonly = 0"))
    engine.dispose()
    tables = {name for (name,) in admin.execute("SELECT name FROM system.tables WHERE database = currentDatabase()")}
    assert "intruder" not in tables and {"events", "referral_credits", "customer_360"} <= tables
    assert admin.execute("SELECT count() FROM schema_migrations") != [(0,)]
    assert admin.execute("SELECT count() FROM customer_profiles FINAL WHERE customer_id = 'intruder'") == [(0,)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_readonly_cannot_be_lowered_from_the_connection(clickhouse_settings: Settings, admin: Client,
                                                        protocol: str) -> None:
    """Native: 18.16 ignores a ``readonly`` the client sends; HTTP: it refuses the connection."""
    engine = bi_engine(clickhouse_settings, protocol, readonly="0")
    if protocol == "http":
        with pytest.raises(Exception, match="Setting 'readonly' cannot be overrided in readonly mode"):
            engine.connect()
    else:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT value FROM system.settings WHERE name = 'readonly'")).scalar() == "2"
            with pytest.raises(Exception, match="Cannot create table in readonly mode"):
                connection.execute(text("CREATE TABLE intruder (a UInt8) ENGINE = Memory"))
    engine.dispose()


def test_on_18_16_readonly_2_leaves_table_functions_open(clickhouse_settings: Settings, admin: Client) -> None:
    """The price of readonly=2 on 18.16 (docs/operations.md): table functions run; readonly=1
    refused them. Modern servers close them with grants (deploy/clickhouse/analyst-limits.xml)."""
    engine = bi_engine(clickhouse_settings, "native")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count() FROM numbers(3)")).scalar() == 3
    engine.dispose()
