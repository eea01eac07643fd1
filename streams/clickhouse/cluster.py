"""Cluster mode: the migrations' single-server SQL rendered for a sharded, replicated cluster.

With ``STREAMS_CLICKHOUSE_CLUSTER`` set, every statement of ``migrations/`` is rewritten here
(pure text rules, no server involved), so the files stay the one source of the schema:

* ``CREATE TABLE t (...) ENGINE = XMergeTree(args) ...`` becomes two statements, both
  ``ON CLUSTER``: ``t_local`` with ``ReplicatedXMergeTree('/clickhouse/tables/{shard}/<db>/t_local',
  '{replica}', args)`` on every node (the replicas of a shard share its ZooKeeper path), and ``t``
  itself as ``Distributed(<cluster>, <db>, t_local, cityHash64(<shard_by>))`` over them. The
  sharding columns come from :mod:`streams.clickhouse.tables` and are part of each table's dedup
  key, so every version of a row lives on one shard and ``FINAL``/``argMax`` stay exact.
* ``CREATE VIEW v AS ...`` runs ``ON CLUSTER`` with the tables and views it reads qualified by
  database: a node runs distributed DDL in its default database, not the caller's. The views read the
  Distributed tables, with the same ``FINAL`` as on one server, so analysts query them unchanged.
* ``DROP TABLE IF EXISTS v`` of a view (one of :data:`~streams.clickhouse.tables.VIEWS`), which a
  migration writes to create the view anew, runs ``ON CLUSTER`` with ``v`` qualified. Dropping a
  table is refused: on a cluster it is two tables, and no migration should lose data by text rules.
* The migrations' own table (``schema_migrations``) is one replication group over *all* nodes,
  so every node answers the same about what has been applied.

``{shard}`` and ``{replica}`` are the servers' macros (``deploy/local/templates/cluster-clickhouse.xml``).
Statements of any other form are refused with the statement named: write them for the cluster
explicitly before migrating a cluster.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from streams.clickhouse.tables import TABLES, VIEWS, Table
from streams.errors import StreamsError

#: ZooKeeper path of a sharded table's replicas; ``{shard}`` is expanded by each server.
SHARD_PATH = "/clickhouse/tables/{shard}/%(database)s/%(table)s"
#: ZooKeeper path of a table that every node replicates whole.
EVERYWHERE_PATH = "/clickhouse/tables/all/%(database)s/%(table)s"
LOCAL_SUFFIX = "_local"

_CREATE_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (?P<name>\w+)(?=\s*\()")
_CREATE_VIEW = re.compile(r"CREATE VIEW IF NOT EXISTS (?P<name>\w+)(?=\s+AS\b)")
_DROP_TABLE = re.compile(r"^DROP TABLE IF EXISTS (?P<name>\w+)\Z", re.M)
_ENGINE = re.compile(r"ENGINE\s*=\s*(?P<engine>\w*MergeTree)(?:\s*\((?P<args>[^)]*)\))?")
_FROM = re.compile(r"\bFROM\s+(?P<table>\w+)\b")


class ClusterRenderError(StreamsError):
    """A migration statement has no cluster rendering."""


def create_database(database: str, cluster: str) -> str:
    """The pipeline's database, created on every node."""
    return f"CREATE DATABASE IF NOT EXISTS `{database}` ON CLUSTER {cluster}"


def drop_database(database: str, cluster: str) -> str:
    """The pipeline's database, dropped on every node (tests clean up with it)."""
    return f"DROP DATABASE IF EXISTS `{database}` ON CLUSTER {cluster}"


def render_statement(
    statement: str, cluster: str, database: str, tables: Mapping[str, Table] = TABLES
) -> list[str]:
    """The cluster statements for one single-server migration statement, in order."""
    table = _CREATE_TABLE.search(statement)
    if table:
        spec = tables.get(table.group("name"))
        if spec is None:
            raise ClusterRenderError(f"table {table.group('name')} has no sharding columns in "
                                     "streams.clickhouse.tables; add it there before migrating a cluster")
        return _sharded_table(statement, table, spec, cluster, database)
    view = _CREATE_VIEW.search(statement)
    if view:
        qualified = _FROM.sub(lambda m: _qualify(m, database, tables), statement[view.end():])
        return [f"{statement[:view.start()]}CREATE VIEW IF NOT EXISTS {database}.{view.group('name')} "
                f"ON CLUSTER {cluster}{qualified}"]
    drop = _DROP_TABLE.search(statement)
    if drop and drop.group("name") in VIEWS:
        return [f"{statement[:drop.start()]}DROP TABLE IF EXISTS {database}.{drop.group('name')} "
                f"ON CLUSTER {cluster}"]
    first_line = next((line for line in statement.splitlines() if line.strip() and not line.startswith("--")), "")
    raise ClusterRenderError(f"no cluster rendering for the statement starting {first_line.strip()!r}: "
                             "only CREATE TABLE IF NOT EXISTS ... ENGINE = *MergeTree, "
                             "CREATE VIEW IF NOT EXISTS and DROP TABLE IF EXISTS of a view are rewritten")


def render_replicated_everywhere(statement: str, cluster: str, database: str) -> str:
    """A ``CREATE TABLE`` as one table that every node of ``cluster`` holds whole."""
    table = _CREATE_TABLE.search(statement)
    if not table:
        raise ClusterRenderError("expected CREATE TABLE IF NOT EXISTS")
    name = table.group("name")
    return _replicated(statement, table, name, EVERYWHERE_PATH % {"database": database, "table": name},
                       cluster, database)


def _sharded_table(statement: str, table: re.Match[str], spec: Table, cluster: str, database: str) -> list[str]:
    name = table.group("name")
    local = name + LOCAL_SUFFIX
    shard_key = ", ".join(spec.shard_by)
    path = SHARD_PATH % {"database": database, "table": local}
    return [
        _replicated(statement, table, local, path, cluster, database),
        f"CREATE TABLE IF NOT EXISTS {database}.{name} ON CLUSTER {cluster} AS {database}.{local}\n"
        f"ENGINE = Distributed({cluster}, {database}, {local}, cityHash64({shard_key}))",
    ]


def _replicated(statement: str, table: re.Match[str], name: str, path: str, cluster: str, database: str) -> str:
    engine = _ENGINE.search(statement, table.end())
    if not engine:
        raise ClusterRenderError(f"table {table.group('name')}: no ENGINE = *MergeTree to replicate on the cluster")
    args = ["'" + path + "'", "'{replica}'"]
    if engine.group("args") and engine.group("args").strip():
        args.append(engine.group("args").strip())
    return (f"{statement[:table.start()]}CREATE TABLE IF NOT EXISTS {database}.{name} ON CLUSTER {cluster}"
            f"{statement[table.end():engine.start()]}ENGINE = Replicated{engine.group('engine')}({', '.join(args)})"
            f"{statement[engine.end():]}")


def _qualify(match: re.Match[str], database: str, tables: Mapping[str, Table]) -> str:
    name = match.group("table")
    return f"FROM {database}.{name}" if name in tables or name in VIEWS else match.group(0)
