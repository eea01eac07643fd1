"""Cluster mode as pure rules: the single-server migrations rendered ON CLUSTER (Replicated tables
per shard behind Distributed ones, views over qualified tables, bookkeeping on every node), the
sharding columns, and the settings that select it. The rendered SQL runs for real on the local
cluster profile in tests/integration/test_cluster_profile.py."""

from __future__ import annotations

import re

import pytest

from streams.clickhouse.cluster import (
    ClusterRenderError,
    create_database,
    render_replicated_everywhere,
    render_statement,
)
from streams.clickhouse.migrate import SCHEMA_MIGRATIONS_DDL, Target, load_migrations
from streams.clickhouse.tables import TABLES, VIEWS
from streams.errors import SettingsError
from streams.settings import load_settings
from streams.topics import plan_topics

CLUSTER, DB = "c2x2", "shop"


def test_every_sharding_column_set_is_part_of_its_dedup_key() -> None:
    # Otherwise two versions of one row could land on two shards, where FINAL cannot merge them.
    for table in TABLES.values():
        assert table.shard_by and set(table.shard_by) <= set(table.key), table.name


def test_customer_tables_are_sharded_by_customer() -> None:
    for name in ("events", "customer_profiles", "customer_hourly", "customer_daily"):
        assert TABLES[name].shard_by == ("customer_id",)
    assert TABLES["referral_credits"].shard_by == ("sharer_customer_id",)
    assert TABLES["identity_map"].shard_by == ("anonymous_id",)


def test_a_versioned_table_becomes_a_replicated_local_table_and_a_distributed_one() -> None:
    statement = ("-- profiles\nCREATE TABLE IF NOT EXISTS customer_profiles\n(\n    customer_id String,\n"
                 "    version UInt64\n)\nENGINE = ReplacingMergeTree(version)\nORDER BY customer_id")
    local, distributed = render_statement(statement, CLUSTER, DB)
    assert local == ("-- profiles\nCREATE TABLE IF NOT EXISTS shop.customer_profiles_local ON CLUSTER c2x2\n(\n"
                     "    customer_id String,\n    version UInt64\n)\n"
                     "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/shop/customer_profiles_local', "
                     "'{replica}', version)\nORDER BY customer_id")
    assert distributed == ("CREATE TABLE IF NOT EXISTS shop.customer_profiles ON CLUSTER c2x2 AS "
                           "shop.customer_profiles_local\n"
                           "ENGINE = Distributed(c2x2, shop, customer_profiles_local, cityHash64(customer_id))")


def test_an_engine_without_arguments_gets_only_the_path_and_replica() -> None:
    statement = ("CREATE TABLE IF NOT EXISTS referral_credits (credit_id String) ENGINE = ReplacingMergeTree()\n"
                 "ORDER BY (sharer_customer_id, credit_id)")
    local, distributed = render_statement(statement, CLUSTER, DB)
    assert "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/shop/referral_credits_local', " \
           "'{replica}')\nORDER BY (sharer_customer_id, credit_id)" in local
    assert distributed.endswith("cityHash64(sharer_customer_id))")


def test_a_view_runs_on_the_cluster_over_qualified_tables() -> None:
    statement = ("CREATE VIEW IF NOT EXISTS support_kpis AS\nSELECT sum(x) AS x\nFROM\n(\n"
                 "    SELECT open_tickets AS x\n    FROM customer_profiles FINAL\n)")
    [view] = render_statement(statement, CLUSTER, DB)
    assert view == ("CREATE VIEW IF NOT EXISTS shop.support_kpis ON CLUSTER c2x2 AS\nSELECT sum(x) AS x\nFROM\n(\n"
                    "    SELECT open_tickets AS x\n    FROM shop.customer_profiles FINAL\n)")


def test_a_view_over_a_view_reads_it_qualified() -> None:
    statement = "CREATE VIEW IF NOT EXISTS person_360 AS\nSELECT *\nFROM customer_360\nWHERE customer_id != ''"
    [view] = render_statement(statement, CLUSTER, DB)
    assert "\nFROM shop.customer_360\n" in view


def test_dropping_a_view_runs_on_the_cluster_qualified() -> None:
    # How a migration creates a view anew (18.16 has no DROP VIEW, no CREATE OR REPLACE VIEW).
    assert render_statement("-- anew\nDROP TABLE IF EXISTS customer_360", CLUSTER, DB) == [
        "-- anew\nDROP TABLE IF EXISTS shop.customer_360 ON CLUSTER c2x2"]


def test_the_bookkeeping_table_is_one_replication_group_over_every_node() -> None:
    rendered = render_replicated_everywhere(SCHEMA_MIGRATIONS_DDL, CLUSTER, DB)
    assert rendered.startswith("CREATE TABLE IF NOT EXISTS shop.schema_migrations ON CLUSTER c2x2\n(")
    assert "ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/shop/schema_migrations', '{replica}')\n" \
           "ORDER BY name" in rendered
    assert Target(DB, CLUSTER).bookkeeping_ddl == rendered
    assert Target(DB).bookkeeping_ddl == SCHEMA_MIGRATIONS_DDL


def test_every_migration_variant_renders_and_names_every_table_and_view_on_the_cluster() -> None:
    target = Target(DB, CLUSTER)
    created: list[str] = []
    dropped: list[str] = []
    for migration in load_migrations():
        for variant in filter(None, (migration.base, migration.modern)):
            for statement in variant.statements:
                for rendered in target.render(statement):
                    assert " ON CLUSTER c2x2" in rendered
                    for name in (*TABLES, *VIEWS):
                        assert f"FROM {name}\n" not in rendered and f"FROM {name} " not in rendered, name
                    if variant is migration.base:
                        created += re.findall(r"CREATE (?:TABLE|VIEW) IF NOT EXISTS shop\.(\w+)", rendered)
                        dropped += re.findall(r"DROP TABLE IF EXISTS shop\.(\w+)", rendered)
    # A view created anew is dropped first, once for each time it is created again.
    assert set(dropped) <= set(VIEWS)
    assert sorted(created) == sorted([*TABLES, *(t + "_local" for t in TABLES), *VIEWS, *dropped])


def test_one_server_runs_the_files_unchanged() -> None:
    statement = "CREATE TABLE IF NOT EXISTS events (a String) ENGINE = ReplacingMergeTree() ORDER BY a"
    assert Target(DB).render(statement) == [statement]
    assert Target(DB).create_database == "CREATE DATABASE IF NOT EXISTS `shop`"
    assert Target(DB, CLUSTER).create_database == create_database(DB, CLUSTER)


@pytest.mark.parametrize("statement", [
    "ALTER TABLE events ADD COLUMN x String",
    "CREATE TABLE IF NOT EXISTS unknown_table (a String) ENGINE = ReplacingMergeTree() ORDER BY a",
    "CREATE TABLE IF NOT EXISTS events (a String) ENGINE = Memory",
    "DROP TABLE IF EXISTS events",  # a table: its data, and on a cluster two tables
    "DROP TABLE IF EXISTS customer_360 SYNC",
    "DROP TABLE customer_360",
])
def test_a_statement_without_a_cluster_rendering_is_refused_with_what_to_do(statement: str) -> None:
    with pytest.raises(ClusterRenderError) as error:
        render_statement(statement, CLUSTER, DB)
    assert "cluster" in str(error.value)


def test_cluster_name_must_be_an_identifier() -> None:
    assert load_settings({"STREAMS_CLICKHOUSE_CLUSTER": "local_2x2"}).clickhouse_cluster == "local_2x2"
    with pytest.raises(SettingsError, match="STREAMS_CLICKHOUSE_CLUSTER='a b'"):
        load_settings({"STREAMS_CLICKHOUSE_CLUSTER": "a b"})


def test_min_insync_replicas_reaches_the_topics_and_cannot_exceed_the_replication() -> None:
    settings = load_settings({"STREAMS_TOPIC_REPLICATION": "3", "STREAMS_TOPIC_MIN_INSYNC_REPLICAS": "2"})
    assert {spec.configs["min.insync.replicas"] for spec in plan_topics(settings)} == {"2"}
    with pytest.raises(SettingsError, match="STREAMS_TOPIC_MIN_INSYNC_REPLICAS=2: must be at most"):
        load_settings({"STREAMS_TOPIC_MIN_INSYNC_REPLICAS": "2"})
