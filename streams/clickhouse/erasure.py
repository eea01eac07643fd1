"""Erasure in ClickHouse: deleting an erased id's rows from every table, and proving it.

The worker hides an erased id at once: it writes the id's ``erased_customers`` row (a tombstone,
which the analyst views filter on, migration 0010) and its first ``erasure_requests`` rows. The
eraser (``streams eraser``) then calls :func:`purge_once` every ``STREAMS_ERASER_INTERVAL_S``:

1. Nothing while ``STREAMS_ERASER_MAX_MUTATIONS`` mutations are unfinished in the database (on
   the busiest node of a cluster): a delete rewrites every part holding a matching row, and a
   table's mutations run one after another.
2. For a batch of tombstones, oldest first, leaving out those whose delete is still running and
   those not acknowledged yet by every partition of the worker's stages (each acknowledges
   after the rows it wrote before, so none naming the id is still on its way): count the rows
   naming each id, record the counts (``deleting``), start one
   ``ALTER TABLE ... DELETE`` per table holding any, and wait a bounded time for them.
3. Count again; each id with no row left anywhere is ``verified``, and only then is its tombstone
   deleted, the last place its raw id was kept. An id with rows left keeps its tombstone (and
   stays hidden) for a later cycle.

The deletes name ids by keyed hash only, through the tombstones (``erasure_sql``): a mutation's
text outlives it in ``system.mutations``, the tables' mutation files (the newest 100 per table),
ZooKeeper and the query log, so a raw id there would outlive its erasure. ``ALTER TABLE ...
DELETE`` on every server: a lightweight ``DELETE FROM`` only masks rows until a later merge,
which nothing schedules, so the rows would stay on disk.

On a cluster the rows live in each shard's ``<table>_local`` replicas: the deletes run on one
node of each shard, which passes them on to the shard's other replicas (not ``ON CLUSTER``: see
:func:`_mutate`); the eraser connects to every node, waits until none has them unfinished
(``system.mutations`` shows a node its own progress) and counts each replica, so a replica that
is down or behind keeps the tombstone until it is clean. A tombstone takes part only once every
replica of its shard has it: the deletes and counts read tombstones from one replica per shard.

The functions take an admin client (mutations need DDL rights) on the pipeline's database:
``connect(settings, admin=True, database=settings.clickhouse_database)``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from streams.clickhouse.client import connect
from streams.clickhouse.cluster import LOCAL_SUFFIX
from streams.clickhouse.erasure_sql import (
    ERASURE_TARGETS,
    count_statement,
    delete_statement,
    forget_statement,
    hashes_named,
    in_list,
    quote,
    remaining_statement,
    tombstones_left_statement,
)
from streams.clickhouse.migrate import check_identifier
from streams.clickhouse.tables import ERASED_CUSTOMERS, ERASURE_REQUESTS
from streams.core.erasure import ACKNOWLEDGING_STAGES
from streams.errors import SettingsError
from streams.settings import Settings

log = logging.getLogger(__name__)

#: ``erasure_requests.target`` of the row for the whole request of one id.
REQUEST_TARGET = "request"
#: The eraser's statuses, each with its version: a status only moves forward.
DELETING = ("deleting", 2)
VERIFIED = ("verified", 3)

#: How often the wait for a delete asks system.mutations.
POLL_S = 0.25


class AdminClient(Protocol):
    """The part of ``clickhouse_driver.Client`` used here (tests adapt chdb to it)."""

    def execute(self, query: str, params: Any = None, *, settings: Any = None) -> Any: ...

    def disconnect(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Tombstone:
    """One ``erased_customers`` row: an erased id whose rows may still be in the tables."""

    customer_id: str
    customer_hash: str
    request_hash: str
    erased_at_ms: int


class Verified(NamedTuple):
    """An id whose rows are all gone, and how long it took from its tombstone."""

    request_hash: str
    customer_hash: str
    seconds: float


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What one :func:`purge_once` did. ``still_pending`` counts the tombstones left (their
    deletes running, or rows left for a later cycle); ``overdue`` those of them older than
    ``STREAMS_ERASURE_DEADLINE_S``; ``running_mutations`` the unfinished mutations found at the
    start (on the busiest node)."""

    throttled: bool
    verified: tuple[Verified, ...]
    still_pending: int
    overdue: int
    running_mutations: int


# -- reading ------------------------------------------------------------------------------------


def _rows(client: AdminClient, query: str) -> list[tuple[Any, ...]]:
    rows = client.execute(query)
    assert isinstance(rows, list)
    return [tuple(row) for row in rows]


def pending_erasures(client: AdminClient, limit: int) -> list[Tombstone]:
    """Up to ``limit`` tombstones, oldest first."""
    rows = _rows(client, f"SELECT customer_id, customer_hash, request_hash, erased_at_ms "
                         f"FROM {ERASED_CUSTOMERS.name} FINAL ORDER BY erased_at_ms, customer_id LIMIT {int(limit)}")
    return [Tombstone(str(c), str(h), str(r), int(at)) for c, h, r, at in rows]


def _unfinished_commands(client: AdminClient, database: str) -> list[str]:
    return [str(command) for (command,) in _rows(
        client, f"SELECT command FROM system.mutations WHERE database = {quote(database)} AND is_done = 0")]


def running_mutations(client: AdminClient, database: str) -> int:
    """Mutations of ``database`` not finished on the node ``client`` is connected to."""
    return len(_unfinished_commands(client, database))


def _matching(client: AdminClient, database: str, customer_hashes: Sequence[str], *,
              local: bool = False) -> dict[str, list[tuple[Any, ...]]]:
    """Per table: (id columns..., rows) of the rows naming the ids of ``customer_hashes``."""
    return {table: _rows(client, count_statement(table, customer_hashes, database=database, local=local))
            for table in ERASURE_TARGETS}


def _by_customer(matching: dict[str, list[tuple[Any, ...]]],
                 tombstones: Sequence[Tombstone]) -> dict[str, dict[str, int]]:
    """customer_hash -> table -> rows naming that id (a row naming two erased ids counts for both)."""
    hash_of = {t.customer_id: t.customer_hash for t in tombstones}
    out: dict[str, dict[str, int]] = {t.customer_hash: dict.fromkeys(ERASURE_TARGETS, 0) for t in tombstones}
    for table, rows in matching.items():
        for *ids, count in rows:
            for customer_id in set(ids) & hash_of.keys():
                out[hash_of[customer_id]][table] += int(count)
    return out


def remaining_rows(client: AdminClient, customer_ids: Sequence[str]) -> dict[str, int]:
    """Per table: rows still naming any of ``customer_ids`` (0 everywhere: gone), tombstones or
    not. The ids are in the query's text, which the server's query log keeps: a check for
    tests and operators, not the eraser's (which names ids by hash)."""
    if not customer_ids:
        return dict.fromkeys(ERASURE_TARGETS, 0)
    return {table: int(_rows(client, remaining_statement(table, customer_ids))[0][0]) for table in ERASURE_TARGETS}


def request_status(client: AdminClient, request_hash: str) -> list[tuple[str, str, str, int, int]]:
    """(customer_hash, target, status, rows, updated_at_ms) of every id and target of a request."""
    rows = _rows(client, f"SELECT customer_hash, target, status, rows, updated_at_ms "
                         f"FROM {ERASURE_REQUESTS.name} FINAL WHERE request_hash = {quote(request_hash)} "
                         f"ORDER BY customer_hash, target")
    return [(str(c), str(t), str(s), int(n), int(at)) for c, t, s, n, at in rows]


# -- deleting -----------------------------------------------------------------------------------


def _knows_setting(client: AdminClient, name: str) -> bool:
    return bool(_rows(client, f"SELECT count() FROM system.settings WHERE name = {quote(name)}")[0][0])


def delete_rows(shard_clients: Sequence[AdminClient], settings: Settings, customer_hashes: Sequence[str],
                tables: Iterable[str] = ERASURE_TARGETS) -> None:
    """Start one delete per table (of ``tables``, default all) of the rows naming the ids of
    ``customer_hashes``, whose tombstones must exist until the deletes are done, on each of
    ``shard_clients`` (the server; on a cluster one node of each shard). Returns once the
    mutations are queued (on a cluster in ZooKeeper, where each replica finds them a moment
    later); they run in the background."""
    database = check_identifier(settings.clickhouse_database)
    cluster = bool(settings.clickhouse_cluster)
    allow_subquery = cluster and _knows_setting(shard_clients[0], "allow_nondeterministic_mutations")
    for table in tables:
        _mutate(shard_clients, delete_statement(table, customer_hashes, database=database, local=cluster,
                                                allow_subquery=allow_subquery))


def _mutate(shard_clients: Sequence[AdminClient], statement: str) -> None:
    """``statement`` on each shard, through one of its nodes: a replica passes a mutation on to the
    others of its shard through ZooKeeper. Not ``ON CLUSTER``, so that erasure does not depend on
    the distributed DDL queue, which runs every node's tasks one at a time and which, on 18.16,
    stops for good when both replicas of a shard take the same replicated ``ALTER``."""
    for client in shard_clients:
        client.execute(statement)


class _Node(NamedTuple):
    shard: int
    client: AdminClient


@contextmanager
def _nodes(settings: Settings, client: AdminClient) -> Iterator[list[_Node]]:
    """``client`` on one server; on a cluster a client on every node (every replica holds rows
    and mutates them itself), from ``system.clusters``, disconnected afterwards."""
    if not settings.clickhouse_cluster:
        yield [_Node(1, client)]
        return
    addresses = _rows(client, f"SELECT shard_num, host_address, port FROM system.clusters "
                              f"WHERE cluster = {quote(settings.clickhouse_cluster)}")
    if not addresses:
        raise SettingsError(f"STREAMS_CLICKHOUSE_CLUSTER={settings.clickhouse_cluster!r}: system.clusters has no "
                            "such cluster; set it to a <remote_servers> name of the servers' configuration")
    nodes = [_Node(int(shard), connect(dataclasses.replace(settings, clickhouse_host=str(host),
                                                           clickhouse_port=int(port)),
                                       admin=True, database=settings.clickhouse_database))
             for shard, host, port in addresses]
    try:
        yield nodes
    finally:
        for node in nodes:
            node.client.disconnect()


def _one_per_shard(nodes: Sequence[_Node]) -> list[AdminClient]:
    """The client on the first node of each shard."""
    first: dict[int, AdminClient] = {}
    for node in nodes:
        first.setdefault(node.shard, node.client)
    return list(first.values())


def _busy(nodes: Sequence[_Node], database: str) -> set[str]:
    """Hashes named by a mutation not finished on some node."""
    return {h for node in nodes for command in _unfinished_commands(node.client, database)
            for h in hashes_named(command)}


def _on_every_replica(nodes: Sequence[_Node], database: str, customer_hashes: Sequence[str]) -> set[str]:
    """Those of ``customer_hashes`` whose tombstone every replica of its shard holds. The deletes
    and counts read tombstones through the Distributed table, from one replica per shard: one
    that lacks a tombstone yet would make the id's rows look gone."""
    held: dict[int, set[str]] = {}
    for node in nodes:
        local = {str(h) for (h,) in _rows(
            node.client, f"SELECT customer_hash FROM {database}.{ERASED_CUSTOMERS.name}{LOCAL_SUFFIX} "
                         f"WHERE customer_hash IN {in_list(customer_hashes)}")}
        held[node.shard] = held[node.shard] & local if node.shard in held else local
    return set().union(*held.values())


def _wait(nodes: Sequence[_Node], database: str, hashes: set[str], until: float) -> None:
    """Wait until no node has an unfinished mutation naming ``hashes``, or ``until`` (monotonic)."""
    while _busy(nodes, database) & hashes and time.monotonic() < until:
        time.sleep(POLL_S)


def _forget(nodes: Sequence[_Node], database: str, verified: Sequence[Tombstone], *, local: bool,
            until: float) -> None:
    """Delete the tombstones of ``verified`` and wait, up to ``until``, until no replica has them.
    It waits for the rows, not for the mutation: a replica lists a replicated mutation only once
    ZooKeeper has told it, so right after the ALTER it may not list it yet."""
    hashes = ([t.customer_hash for t in verified], [t.request_hash for t in verified])
    _mutate(_one_per_shard(nodes), forget_statement(*hashes, database=database, local=local))
    left = tombstones_left_statement(*hashes, database=database, local=local)
    while any(_rows(node.client, left)[0][0] for node in nodes) and time.monotonic() < until:
        time.sleep(POLL_S)


# -- one cycle ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Progress:
    """What ``erasure_requests`` holds of one tombstone's id and request."""

    requested_at_ms: int
    step: int  # the request row's version: 0 none yet, 1 the worker's, DELETING[1], VERIFIED[1]
    rows: dict[str, int]  # per table, the rows counted when its delete started (from DELETING[1])
    acknowledged: int  # stage partitions that acknowledged the erasure (streams.core.erasure.acknowledged)


def _progress(client: AdminClient, tombstones: Sequence[Tombstone]) -> dict[str, _Progress]:
    """customer_hash -> the progress of each tombstone's request for it."""
    found: dict[tuple[str, str], dict[str, tuple[int, int, int]]] = {}
    if tombstones:
        for request_hash, customer_hash, target, rows, requested_at_ms, version in _rows(
                client, f"SELECT request_hash, customer_hash, target, rows, requested_at_ms, version "
                        f"FROM {ERASURE_REQUESTS.name} FINAL "
                        f"WHERE customer_hash IN {in_list(t.customer_hash for t in tombstones)}"):
            found.setdefault((request_hash, customer_hash), {})[target] = (int(rows), int(requested_at_ms),
                                                                            int(version))
    out = {}
    for t in tombstones:
        targets = found.get((t.request_hash, t.customer_hash), {})
        # The worker writes its rows with the tombstone; without them (a tombstone written by
        # hand) the erasure counts from the tombstone.
        requested_at_ms = min((at for _, at, _ in targets.values()), default=t.erased_at_ms)
        step = targets.get(REQUEST_TARGET, (0, 0, 0))[2]
        rows = {table: targets[table][0] if table in targets else 0 for table in ERASURE_TARGETS}
        acknowledged = sum(1 for target in targets if target.split("/")[0] in ACKNOWLEDGING_STAGES)
        out[t.customer_hash] = _Progress(requested_at_ms, step, rows, acknowledged)
    return out


def _status_rows(tombstone: Tombstone, progress: _Progress, step: tuple[str, int], per_table: dict[str, int],
                 now_ms: int) -> list[tuple[Any, ...]]:
    """``erasure_requests`` rows of one id at ``step``: one per table, and its request's."""
    status, version = step
    targets = [*per_table.items(), (REQUEST_TARGET, sum(per_table.values()))]
    return [(tombstone.request_hash, tombstone.customer_hash, target, status, rows, progress.requested_at_ms,
             now_ms, version) for target, rows in targets]


def _record(client: AdminClient, settings: Settings, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        columns = ", ".join(ERASURE_REQUESTS.column_names)
        client.execute(f"INSERT INTO {ERASURE_REQUESTS.name} ({columns}) VALUES", rows,
                       settings={"insert_distributed_sync": 1} if settings.clickhouse_cluster else None)


def _still_named(nodes: Sequence[_Node], database: str, tombstones: Sequence[Tombstone],
                 customer_hashes: Sequence[str], *, local: bool) -> list[str]:
    """Those of ``customer_hashes`` that some row on some node still names (on a cluster every
    replica is counted: each mutates its own parts)."""
    left = dict.fromkeys(customer_hashes, 0)
    for node in nodes:
        for customer_hash, tables in _by_customer(_matching(node.client, database, customer_hashes, local=local),
                                                  tombstones).items():
            if customer_hash in left:
                left[customer_hash] += sum(tables.values())
    return [h for h, rows in left.items() if rows]


def _erase(settings: Settings, client: AdminClient, nodes: Sequence[_Node], todo: Sequence[Tombstone], *,
           now_ms: int, until: float) -> list[Tombstone]:
    """Delete the rows of ``todo``'s ids and return the tombstones whose rows are all gone (again
    for those verified before whose tombstones are still there)."""
    database = check_identifier(settings.clickhouse_database)
    cluster = bool(settings.clickhouse_cluster)
    if cluster:
        ready = _on_every_replica(nodes, database, [t.customer_hash for t in todo])
        todo = [t for t in todo if t.customer_hash in ready]  # the others in a later cycle
        if not todo:
            return []
    progress = _progress(client, todo)
    # Rows naming the person may still be on their way from a stage's sink until every partition
    # of both stages has acknowledged the erasure (each writes its acknowledgement after them).
    everyone = len(ACKNOWLEDGING_STAGES) * settings.topic_partitions
    todo = [t for t in todo if progress[t.customer_hash].acknowledged >= everyone]
    if not todo:
        return []
    hashes = [t.customer_hash for t in todo]
    found = _by_customer(_matching(client, database, hashes), todo)
    # Counted once, when the delete starts: a later cycle finds fewer rows, not fewer deleted.
    started = [t for t in todo if progress[t.customer_hash].step < DELETING[1]]
    _record(client, settings, [row for t in started for row in
                               _status_rows(t, progress[t.customer_hash], DELETING, found[t.customer_hash], now_ms)])
    deleted = {t.customer_hash: found[t.customer_hash] if t in started else progress[t.customer_hash].rows
               for t in todo}
    dirty = [h for h in hashes if any(found[h].values())]
    if dirty:
        # Only the tables holding rows: a delete reads every part of its table.
        delete_rows(_one_per_shard(nodes), settings, dirty,
                    [t for t in ERASURE_TARGETS if any(found[h][t] for h in dirty)])
        _wait(nodes, database, set(dirty), until)
        dirty = _still_named(nodes, database, todo, dirty, local=cluster)
    verified = [t for t in todo if t.customer_hash not in dirty]
    _record(client, settings, [row for t in verified for row in
                               _status_rows(t, progress[t.customer_hash], VERIFIED, deleted[t.customer_hash], now_ms)])
    return verified


def purge_once(settings: Settings, client: AdminClient, *, now_ms: int, max_batch: int = 100,
               wait_s: float | None = None) -> PurgeReport:
    """One eraser cycle (see the module's docstring) over up to ``max_batch`` tombstones. It waits
    for its deletes up to ``wait_s`` (default ``STREAMS_ERASER_INTERVAL_S``); slower ones are
    verified by a later cycle, which starts no second delete while they run."""
    database = check_identifier(settings.clickhouse_database)
    until = time.monotonic() + (settings.eraser_interval_s if wait_s is None else wait_s)
    cutoff_ms = now_ms - settings.erasure_deadline_s * 1000
    [(total, overdue)] = _rows(client, f"SELECT count(), countIf(erased_at_ms < {int(cutoff_ms)}) "
                                       f"FROM {ERASED_CUSTOMERS.name} FINAL")
    with _nodes(settings, client) as nodes:
        running = max(len(_unfinished_commands(node.client, database)) for node in nodes)
        if running >= settings.eraser_max_mutations:
            log.info("erasure: %d mutations unfinished, %d allowed: no delete this cycle", running,
                     settings.eraser_max_mutations)
            return PurgeReport(True, (), int(total), int(overdue), running)
        busy = _busy(nodes, database)
        todo = [t for t in pending_erasures(client, max_batch) if t.customer_hash not in busy]
        verified = _erase(settings, client, nodes, todo, now_ms=now_ms, until=until) if todo else []
        if verified:
            _forget(nodes, database, verified, local=bool(settings.clickhouse_cluster), until=until)
    if len(verified) < len(todo):
        log.info("erasure: %d of %d ids not verified (deletes running, rows written since, or tombstones not "
                 "replicated yet): next cycle", len(todo) - len(verified), len(todo))
    return PurgeReport(
        throttled=False,
        verified=tuple(Verified(t.request_hash, t.customer_hash, (now_ms - t.erased_at_ms) / 1000) for t in verified),
        still_pending=int(total) - len(verified),
        overdue=int(overdue) - sum(t.erased_at_ms < cutoff_ms for t in verified),
        running_mutations=running,
    )
