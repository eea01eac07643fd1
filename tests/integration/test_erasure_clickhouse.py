"""The eraser on ClickHouse 18.16 (the local stack), over the real migrations: the scenarios of
tests/unit/test_erasure_chdb.py (modern engine), plus what only a server has: the analyst user,
and the mutations' own record of what they deleted.

Each test gets a fresh database from the ``clickhouse_settings`` fixture (tests/conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from clickhouse_driver import Client

from streams.clickhouse.client import connect
from streams.clickhouse.migrate import migrate
from streams.settings import Settings
from tests.support import erasure_tables as scenario
from tests.support.analyst import as_analyst

pytestmark = pytest.mark.integration

NOW = int(time.time() * 1000)


@pytest.fixture()
def admin(clickhouse_settings: Settings) -> Iterator[Client]:
    """Admin client on the migrated test database holding the scenario's rows (no tombstones)."""
    migrate(clickhouse_settings, echo=lambda _: None)
    client = connect(clickhouse_settings, admin=True, database=clickhouse_settings.clickhouse_database)
    scenario.write(clickhouse_settings, client, scenario.table_rows(NOW))
    yield client
    client.disconnect()


def test_the_views_hide_erased_ids_as_soon_as_their_tombstones_exist(clickhouse_settings: Settings,
                                                                     admin: Client) -> None:
    scenario.views_hide_erased_ids_at_once(clickhouse_settings, admin, NOW)
    analyst = connect(as_analyst(clickhouse_settings))
    try:
        assert not set(scenario.ERASED) & scenario.shown_ids(analyst)
        assert scenario.totals(analyst) == scenario.TOTALS_WITHOUT_ERASED
    finally:
        analyst.disconnect()


def test_purge_deletes_verifies_records_and_forgets(clickhouse_settings: Settings, admin: Client) -> None:
    scenario.purge_deletes_verifies_records_and_forgets(clickhouse_settings, admin, NOW)
    # The deletes named the ids by hash only: their mutations, which the server keeps, hold no id.
    commands = repr(admin.execute("SELECT command FROM system.mutations WHERE database = currentDatabase()"))
    assert scenario.id_hash(scenario.GONE) in commands
    assert not any(raw in commands for raw in (*scenario.ERASED, scenario.REQUEST))
    # The analyst reads the bookkeeping of erasures, with no request id or customer id in it.
    analyst = connect(as_analyst(clickhouse_settings))
    try:
        rows = repr(analyst.execute("SELECT * FROM erasure_requests"))
    finally:
        analyst.disconnect()
    assert scenario.id_hash(scenario.REQUEST) in rows
    assert not any(raw in rows for raw in (*scenario.ERASED, scenario.REQUEST, scenario.KEPT))


def test_no_delete_starts_while_mutations_run(clickhouse_settings: Settings, admin: Client) -> None:
    def start_stuck_mutation() -> None:
        for statement in scenario.STUCK_MUTATION:  # 18.16 returns at once; the mutation keeps failing
            admin.execute(statement)

    try:
        scenario.no_delete_starts_while_mutations_run(clickhouse_settings, admin, NOW, start_stuck_mutation)
    finally:
        admin.execute("DROP TABLE IF EXISTS stuck")  # and its mutation: 18.16 has no KILL MUTATION


def test_an_id_with_rows_left_keeps_its_tombstone_until_a_later_cycle(clickhouse_settings: Settings,
                                                                      admin: Client) -> None:
    scenario.rows_left_keep_the_tombstone_until_a_later_cycle(clickhouse_settings, admin, NOW)


def test_nothing_is_deleted_before_every_partition_acknowledges(clickhouse_settings: Settings,
                                                                 admin: Client) -> None:
    scenario.nothing_is_deleted_before_every_partition_acknowledges(clickhouse_settings, admin, NOW)
