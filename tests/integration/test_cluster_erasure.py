"""The eraser on the cluster profile of the local stack (ClickHouse 2 shards x 2 replicas, 18.16):
the views, read on a node of either shard, hide erased ids once their tombstones have replicated;
the deletes run on each shard's local tables through one node of the shard (no ON CLUSTER);
purge_once waits for every node and verifies every replica.

The fixture starts the cluster profile (``deploy/local/stack up --cluster``) unless it is up, and
stops it at the end if it started it."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest

from streams.clickhouse.client import connect
from streams.clickhouse.cluster import drop_database
from streams.clickhouse.erasure_sql import ERASURE_TARGETS, quote
from streams.clickhouse.migrate import migrate
from streams.settings import Settings, load_settings
from tests.conftest import unique
from tests.support import erasure_tables as scenario
from tests.support.cluster import NODES, cluster_environ, cluster_stack, node_client, replica_differences, whole_cluster

__all__ = ["cluster_stack", "whole_cluster"]  # fixtures, used by name

pytestmark = pytest.mark.integration

NOW = int(time.time() * 1000)


@pytest.fixture()
def cluster_settings(whole_cluster: None) -> Iterator[Settings]:
    """A test-unique database migrated on the cluster, dropped on every node afterwards."""
    name = unique("e")
    settings = load_settings(cluster_environ(), clickhouse_database=name)
    assert settings.clickhouse_cluster
    migrate(settings, echo=lambda _: None)
    yield settings
    admin = connect(dataclasses.replace(settings, clickhouse_timeout_s=300.0), admin=True)
    admin.execute(drop_database(settings.clickhouse_database, settings.clickhouse_cluster))
    admin.disconnect()


def local_rows(settings: Settings, node: int, ids: tuple[str, ...]) -> int:
    """Rows naming any of ``ids`` in one node's own replicas."""
    named = ", ".join(quote(i) for i in ids)
    client = node_client(settings, node)
    try:
        return sum(int(client.execute(f"SELECT count() FROM {table}_local WHERE "
                                      + " OR ".join(f"{c} IN ({named})" for c in columns))[0][0])
                   for table, columns in ERASURE_TARGETS.items())
    finally:
        client.disconnect()


def test_erased_ids_are_hidden_on_every_node_then_deleted_from_every_replica(cluster_settings: Settings) -> None:
    settings = cluster_settings
    admin = connect(settings, admin=True, database=settings.clickhouse_database)
    try:
        scenario.write(settings, admin, scenario.table_rows(NOW))
        assert replica_differences(settings) == []
        assert sum(local_rows(settings, node, scenario.ERASED) for node in NODES) > 0
        kept = scenario.other_rows(admin)
        scenario.write(settings, admin, scenario.tombstone_rows(NOW))
        # A query reads one replica per shard: the tombstones count there once replicated.
        assert replica_differences(settings) == []
        for node in (1, 3):  # one node of each shard
            client = node_client(settings, node)
            assert not set(scenario.ERASED) & scenario.shown_ids(client)
            assert scenario.totals(client) == scenario.TOTALS_WITHOUT_ERASED
            client.disconnect()

        reports = scenario.purge_until_verified(settings, admin, NOW)
        assert sum(len(r.verified) for r in reports) == len(scenario.ERASED)
        assert scenario.progress(admin) == scenario.expected_progress()
        assert admin.execute("SELECT count() FROM erased_customers") == [(0,)]
        assert [local_rows(settings, node, scenario.ERASED) for node in NODES] == [0, 0, 0, 0]
        assert replica_differences(settings) == []
        assert scenario.other_rows(admin) == kept
    finally:
        admin.disconnect()
