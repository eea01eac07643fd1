"""The eraser on a modern ClickHouse (chdb, in process), over the real migrations: the views hide
erased ids as soon as their tombstones exist; purge_once deletes every row naming them, verifies,
records it and removes the tombstones, leaving everyone else's rows alone; it starts no delete
while mutations run; an id with rows left keeps its tombstone. The same scenarios on ClickHouse
18.16: tests/integration/test_erasure_clickhouse.py."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest

from streams.clickhouse.erasure import purge_once
from streams.clickhouse.migrate import apply_migrations
from streams.errors import SettingsError
from streams.settings import Settings, load_settings
from tests.support import erasure_tables as scenario
from tests.support.chdb import ChdbClient

chdb_session = pytest.importorskip("chdb.session")

NOW = int(time.time() * 1000)
_databases = itertools.count()


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    s = chdb_session.Session(str(tmp_path_factory.mktemp("chdb_erasure")))
    s.query("SET output_format_json_quote_64bit_integers = 0")
    yield s
    s.close()


@pytest.fixture()
def loaded(session: Any) -> tuple[Settings, ChdbClient]:
    """A migrated database of its own holding the scenario's rows (no tombstones yet)."""
    client = ChdbClient(session, f"erasure_{next(_databases)}")
    apply_migrations(client, echo=lambda _: None)
    settings = load_settings({}, clickhouse_database=client.database)
    scenario.write(settings, client, scenario.table_rows(NOW))
    return settings, client


def test_the_views_hide_erased_ids_as_soon_as_their_tombstones_exist(loaded: tuple[Settings, ChdbClient]) -> None:
    scenario.views_hide_erased_ids_at_once(*loaded, NOW)


def test_purge_deletes_verifies_records_and_forgets(loaded: tuple[Settings, ChdbClient]) -> None:
    scenario.purge_deletes_verifies_records_and_forgets(*loaded, NOW)


def test_no_delete_starts_while_mutations_run(loaded: tuple[Settings, ChdbClient]) -> None:
    client = loaded[1]

    def start_stuck_mutation() -> None:
        create, insert, stuck = scenario.STUCK_MUTATION
        client.execute(create)
        client.execute(insert)
        with pytest.raises(RuntimeError, match="throwIf"):  # chdb waits for the mutation
            client.execute(stuck)

    scenario.no_delete_starts_while_mutations_run(*loaded, NOW, start_stuck_mutation)


def test_an_id_with_rows_left_keeps_its_tombstone_until_a_later_cycle(loaded: tuple[Settings, ChdbClient]) -> None:
    scenario.rows_left_keep_the_tombstone_until_a_later_cycle(*loaded, NOW)


def test_nothing_is_deleted_before_every_partition_acknowledges(loaded: tuple[Settings, ChdbClient]) -> None:
    scenario.nothing_is_deleted_before_every_partition_acknowledges(*loaded, NOW)


def test_a_cluster_the_servers_do_not_know_is_a_configuration_error(loaded: tuple[Settings, ChdbClient]) -> None:
    settings, client = loaded
    with pytest.raises(SettingsError, match=r"STREAMS_CLICKHOUSE_CLUSTER='nowhere': system\.clusters has no such"):
        purge_once(dataclasses.replace(settings, clickhouse_cluster="nowhere"), client, now_ms=NOW)
