"""The eraser's SQL (streams.clickhouse.erasure_sql) as pure text: which tables and columns it
deletes from, how ids are named (by keyed hash through the tombstones; raw ids only quoted, in
checks), one server and cluster forms. tests/unit/test_erasure_chdb.py and
tests/integration/test_erasure_clickhouse.py run it."""

from __future__ import annotations

from streams.clickhouse.erasure_sql import (
    ERASURE_TARGETS,
    count_statement,
    delete_statement,
    forget_statement,
    hashes_named,
    quote,
    remaining_statement,
    tombstones_left_statement,
)
from streams.clickhouse.tables import TABLES
from streams.core.erasure import keyed_hash

H1, H2 = keyed_hash(b"k" * 16, "c-1"), keyed_hash(b"k" * 16, "c-2")
TOMBS = f"SELECT customer_id FROM shop.erased_customers WHERE customer_hash IN ('{H1}', '{H2}')"


def test_every_column_that_can_hold_a_customer_or_anonymous_id_is_a_target() -> None:
    # A table or column added later without a target here would keep erased people's rows.
    for table in TABLES.values():
        if table.name in ("erased_customers", "erasure_requests"):
            continue
        named = {c.name for c in table.columns if c.name.endswith("customer_id") or c.name == "anonymous_id"}
        assert named <= set(ERASURE_TARGETS.get(table.name, ())), table.name
    assert ERASURE_TARGETS["ingestion_errors"] == ("record_key",)  # a record's key is the id it is about
    for table, columns in ERASURE_TARGETS.items():
        assert set(columns) <= set(TABLES[table].column_names), table


def test_a_delete_names_ids_by_hash_through_their_tombstones() -> None:
    assert delete_statement("referral_credits", [H1, H2], database="shop") == (
        f"ALTER TABLE shop.referral_credits DELETE WHERE sharer_customer_id IN ({TOMBS}) "
        f"OR referred_customer_id IN ({TOMBS})")


def test_on_a_cluster_a_delete_mutates_a_nodes_local_table_without_distributed_ddl() -> None:
    assert delete_statement("events", [H1, H2], database="shop", local=True, allow_subquery=True) == (
        f"ALTER TABLE shop.events_local DELETE WHERE customer_id IN ({TOMBS}) "
        "SETTINGS allow_nondeterministic_mutations = 1")


def test_forgetting_a_tombstone_keeps_a_newer_request_for_the_same_id() -> None:
    request = "r" * 32
    assert forget_statement([H1], [request], database="shop") == (
        f"ALTER TABLE shop.erased_customers DELETE WHERE customer_hash IN ('{H1}') AND request_hash IN ('{request}')")
    assert forget_statement([H1], [request], database="shop", local=True).startswith(
        "ALTER TABLE shop.erased_customers_local DELETE")


def test_the_tombstones_a_forget_deletes_are_counted_on_the_replica_it_waits_for() -> None:
    request = "r" * 32
    assert tombstones_left_statement([H1], [request], database="shop", local=True) == (
        f"SELECT count() FROM shop.erased_customers_local WHERE customer_hash IN ('{H1}') "
        f"AND request_hash IN ('{request}')")


def test_counts_read_all_shards_or_one_nodes_replica() -> None:
    assert count_statement("identity_map", [H1, H2], database="shop") == (
        f"SELECT anonymous_id, customer_id, count() FROM shop.identity_map WHERE anonymous_id GLOBAL IN ({TOMBS}) "
        f"OR customer_id GLOBAL IN ({TOMBS}) GROUP BY anonymous_id, customer_id")
    assert "FROM shop.identity_map_local WHERE" in count_statement("identity_map", [H1], database="shop", local=True)


def test_raw_ids_are_quoted_so_that_none_can_end_its_literal() -> None:
    assert quote("o'brien\\") == "'o\\'brien\\\\'"
    assert remaining_statement("ingestion_errors", ["x') OR 1 = 1 --", "é"]) == (
        "SELECT count() FROM ingestion_errors WHERE record_key IN ('x\\') OR 1 = 1 --', 'é')")


def test_the_hashes_a_mutation_names_are_read_back_from_its_command() -> None:
    # 18.16 shows a one-element list without parentheses.
    assert hashes_named(f"DELETE WHERE customer_id IN (SELECT customer_id FROM shop.erased_customers "
                        f"WHERE customer_hash IN '{H1}')") == {H1}
    assert hashes_named(delete_statement("events", [H1, H2], database="shop")) == {H1, H2}
    assert hashes_named("DELETE WHERE customer_id = 'c-1'") == set()
