"""Erasure deletes on ClickHouse: ``python -m tests.bench.erasure_bench [--rows N] [--customers N] [--batch N]``.

In a fresh database on the local stack's ClickHouse (migrated, dropped at the end), the server
fills ``events`` with ``--rows`` rows (default 1,000,000) of ``--customers`` customers (default
10,000, so 100 events each) over three months of event time, in inserts of 100,000 rows (several
parts per monthly partition, as a worker's inserts leave them). Then one customer, and after
it a batch of ``--batch`` customers (default 100), are erased as the eraser does it: their
tombstones written, :func:`~streams.clickhouse.erasure.delete_rows` on ``events``, and the wall
time from the delete until ``system.mutations`` says it is done. Printed per case: that time,
the rows naming the customers before and after, and the table's rows before and after.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from clickhouse_driver import Client

from streams.clickhouse.client import connect
from streams.clickhouse.erasure import delete_rows, remaining_rows, running_mutations
from streams.clickhouse.migrate import migrate
from streams.clickhouse.tables import ERASED_CUSTOMERS
from streams.core.erasure import keyed_hash
from streams.settings import Settings, load_settings
from tests.bench.workload import bench_name, drop_database
from tests.conftest import local_environ

KEY = b"erasure-bench-key"
CHUNK = 100_000
DAY_MS = 86_400_000
POLL_S = 0.05


def fill_events(client: Client, rows: int, customers: int, start_ms: int) -> None:
    """``rows`` events, customer ``c<n % customers>``, spread over 90 days from ``start_ms``."""
    for first in range(0, rows, CHUNK):
        count = min(CHUNK, rows - first)
        client.execute(
            "INSERT INTO events (event_id, event_type, customer_id, occurred_at_ms, ingest_ms, channel, is_late, "
            "is_clamped, source_topic, source_partition, source_offset) "
            f"SELECT concat('e', toString(n)), 'click', concat('c', toString(n % {customers})), "
            f"toInt64({start_ms} + (n % 90) * {DAY_MS}), toInt64({start_ms} + (n % 90) * {DAY_MS}), 'web', 0, 0, "
            f"'interactions.clicks', toUInt16(n % 4), toInt64(n) "
            f"FROM (SELECT number + {first} AS n FROM system.numbers LIMIT {count})")


def erase(settings: Settings, client: Client, customer_ids: Sequence[str], now_ms: int) -> dict[str, float]:
    """Tombstones for ``customer_ids``, then their delete from ``events``, timed until done."""
    hashes = [keyed_hash(KEY, c) for c in customer_ids]
    tombstones = [(c, h, keyed_hash(KEY, "bench"), now_ms) for c, h in zip(customer_ids, hashes, strict=True)]
    client.execute(f"INSERT INTO {ERASED_CUSTOMERS.name} (customer_id, customer_hash, request_hash, erased_at_ms) "
                   "VALUES", tombstones)
    total = "SELECT count() FROM events"
    before = remaining_rows(client, customer_ids)["events"]
    table_before = client.execute(total)[0][0]
    started = time.perf_counter()
    delete_rows([client], settings, hashes, ["events"])
    queued = time.perf_counter() - started
    while running_mutations(client, settings.clickhouse_database):
        time.sleep(POLL_S)
    seconds = time.perf_counter() - started
    return {"customers": len(customer_ids), "queued_s": queued, "done_s": seconds, "rows_before": before,
            "rows_after": remaining_rows(client, customer_ids)["events"],
            "table_before": table_before, "table_after": client.execute(total)[0][0]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.erasure_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100)
    options = parser.parse_args(argv)
    name = bench_name()
    settings = load_settings(local_environ(), clickhouse_database=name)
    if settings.clickhouse_cluster:  # it deletes and waits on the one node it connects to
        raise SystemExit("erasure_bench measures one server: unset STREAMS_CLICKHOUSE_CLUSTER")
    migrate(settings, echo=lambda _: None)
    client = connect(settings, admin=True, database=name)
    try:
        now_ms = int(time.time() * 1000)
        started = time.perf_counter()
        fill_events(client, options.rows, options.customers, now_ms - 90 * DAY_MS)
        [(parts,)] = client.execute("SELECT count() FROM system.parts WHERE database = currentDatabase() "
                                    "AND table = 'events' AND active")
        print(f"{options.rows:,} events of {options.customers:,} customers in {time.perf_counter() - started:.1f} s "
              f"({parts} parts); server {client.execute('SELECT version()')[0][0]}")
        step = options.customers // (options.batch + 1)
        cases = (("one customer", ["c7"]),
                 (f"{options.batch} customers", [f"c{8 + i * step}" for i in range(options.batch)]))
        for label, ids in cases:
            result = erase(settings, client, ids, now_ms)
            print(f"{label:>14}: delete queued in {result['queued_s']:.3f} s, done after {result['done_s']:.2f} s; "
                  f"their rows {result['rows_before']:,} -> {result['rows_after']:,}; "
                  f"table {result['table_before']:,} -> {result['table_after']:,}")
    finally:
        client.disconnect()
        drop_database(settings, name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
