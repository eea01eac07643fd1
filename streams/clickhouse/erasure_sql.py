"""The eraser's SQL (pure): which tables and columns name a customer, and the statements that
count and delete their rows by keyed hash, through the tombstones in ``erased_customers``.

Values enter the SQL only through :func:`quote`; database names are identifiers checked by the
settings and the migrator.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from streams.clickhouse.cluster import LOCAL_SUFFIX
from streams.clickhouse.tables import ERASED_CUSTOMERS
from streams.core.erasure import HASH_HEX_DIGITS

#: Every table that names a customer -> the columns that may hold its id (a customer id or an
#: anonymous id: both are erased the same way). ``erased_customers`` is handled last, apart.
ERASURE_TARGETS: dict[str, tuple[str, ...]] = {
    "events": ("customer_id",),  # an anonymous visitor's events carry its anonymous id here
    "customer_profiles": ("customer_id",),
    "customer_hourly": ("customer_id",),
    "customer_daily": ("customer_id",),
    "referral_credits": ("sharer_customer_id", "referred_customer_id"),
    "identity_map": ("anonymous_id", "customer_id"),
    "ingestion_errors": ("record_key",),  # the Kafka key: the customer or anonymous id
}

_HASH = re.compile(rf"'([0-9a-f]{{{HASH_HEX_DIGITS}}})'")


def quote(value: str) -> str:
    """``value`` as a ClickHouse string literal: backslash and quote escaped, the rest verbatim."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def in_list(values: Iterable[str]) -> str:
    """``('a', 'b')``: a non-empty list of quoted strings, for ``IN``."""
    return "(" + ", ".join(quote(v) for v in values) + ")"


def erased_ids(database: str, customer_hashes: Sequence[str]) -> str:
    """The subquery of the raw ids of ``customer_hashes``, read from their tombstones."""
    return (f"SELECT customer_id FROM {database}.{ERASED_CUSTOMERS.name} "
            f"WHERE customer_hash IN {in_list(customer_hashes)}")


def _naming(columns: Sequence[str], operand: str, operator: str = "IN") -> str:
    return " OR ".join(f"{column} {operator} {operand}" for column in columns)


def _target(database: str, table: str, local: bool) -> str:
    return f"{database}.{table}{LOCAL_SUFFIX if local else ''}"


def delete_statement(table: str, customer_hashes: Sequence[str], *, database: str, local: bool = False,
                     allow_subquery: bool = False) -> str:
    """The mutation that deletes ``table``'s rows naming the ids of ``customer_hashes``; ``local``
    mutates a cluster node's own replicas (``<table>_local``), which pass it on to the other
    replicas of their shard.

    ``allow_subquery`` adds ``allow_nondeterministic_mutations = 1``, which modern servers
    require of a subquery in a mutation of a replicated table (replicas evaluate it apart; here
    they read the same tombstones, which stay until every replica is verified clean)."""
    where = _naming(ERASURE_TARGETS[table], f"({erased_ids(database, customer_hashes)})")
    settings = " SETTINGS allow_nondeterministic_mutations = 1" if allow_subquery else ""
    return f"ALTER TABLE {_target(database, table, local)} DELETE WHERE {where}{settings}"


def forget_statement(customer_hashes: Sequence[str], request_hashes: Sequence[str], *, database: str,
                     local: bool = False) -> str:
    """The mutation that deletes the tombstones of ``customer_hashes`` made for ``request_hashes``:
    a newer request's tombstone for the same id (another request hash) stays."""
    return (f"ALTER TABLE {_target(database, ERASED_CUSTOMERS.name, local)} DELETE "
            f"WHERE {_tombstones(customer_hashes, request_hashes)}")


def tombstones_left_statement(customer_hashes: Sequence[str], request_hashes: Sequence[str], *, database: str,
                              local: bool = False) -> str:
    """How many of the tombstones :func:`forget_statement` deletes are still there."""
    return (f"SELECT count() FROM {_target(database, ERASED_CUSTOMERS.name, local)} "
            f"WHERE {_tombstones(customer_hashes, request_hashes)}")


def _tombstones(customer_hashes: Sequence[str], request_hashes: Sequence[str]) -> str:
    return f"customer_hash IN {in_list(customer_hashes)} AND request_hash IN {in_list(request_hashes)}"


def count_statement(table: str, customer_hashes: Sequence[str], *, database: str, local: bool = False) -> str:
    """Rows of ``table`` naming the ids of ``customer_hashes``, grouped by the id columns.
    ``local`` reads a cluster node's own replica (``<table>_local``) instead of all shards."""
    columns = ", ".join(ERASURE_TARGETS[table])
    # GLOBAL: over a Distributed table a plain IN of another one is refused; elsewhere it is IN.
    where = _naming(ERASURE_TARGETS[table], f"({erased_ids(database, customer_hashes)})", "GLOBAL IN")
    name = table + LOCAL_SUFFIX if local else table
    return f"SELECT {columns}, count() FROM {database}.{name} WHERE {where} GROUP BY {columns}"


def remaining_statement(table: str, customer_ids: Sequence[str]) -> str:
    """Rows of ``table`` naming any of ``customer_ids`` (raw ids: a check that needs no tombstone)."""
    return f"SELECT count() FROM {table} WHERE {_naming(ERASURE_TARGETS[table], in_list(customer_ids))}"


def hashes_named(command: str) -> set[str]:
    """The keyed hashes a mutation's command names (all of them quoted hex of hash length)."""
    return set(_HASH.findall(command))
