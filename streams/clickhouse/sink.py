"""Batching, coalescing, retrying ClickHouse writer. No Faust import.

The caller (``streams.runtime.runner``) adds rows as it folds a batch, checks :attr:`ClickHouseSink.full`
to stop taking input (backpressure), and awaits :meth:`ClickHouseSink.flush` before it
acknowledges the batch's Kafka offsets. So ``flush`` never returns without having written every
buffered row. An insert that fails for a reason that passes by itself (the server down, slow or
overloaded: ``streams.clickhouse.errors``) is retried, with capped exponential backoff and full
jitter, for as long as it takes; after ``settings.sink_max_retries`` failed attempts in a row the
sink logs one ERROR line and reports itself unhealthy (:attr:`ClickHouseSink.healthy`) but keeps
trying. An insert refused for a reason only a person can fix (a missing table or column, wrong
credentials, a read-only user, rows that do not fit) raises :class:`SinkRejected` naming the
table and the fix: the worker stops. Cancelling ``flush`` (shutdown, rebalance) is the other way
out; rows not yet written stay buffered either way.

In cluster mode (``settings.clickhouse_cluster``) the sink writes the Distributed tables
synchronously: the node it is connected to splits each insert by shard and returns once a replica
of every shard has its rows (``docs/cluster.md`` has the measurements behind this choice).

Rows are absolute values keyed like their table's ReplacingMergeTree (see
``streams.clickhouse.tables``), so the buffer keeps one row per key: the newest, or for
versioned tables the one with the highest version (a tie goes to the newer row). Writing
coalesced rows is exactly what ClickHouse would keep after a merge, so it is safe, and it makes
inserts smaller. A row comes as a dict by column name, or as a tuple of its values in the table's
column order (the profile stage's hottest rows: events, profile snapshots and buckets, with no
dict to build and check); the buffer keeps the values, which a flush transposes into columns.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import operator
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from streams.clickhouse.errors import Verdict, classify, describe
from streams.clickhouse.tables import TABLES, Table
from streams.errors import SinkError, SinkRejected
from streams.settings import Settings

log = logging.getLogger(__name__)

#: First retry waits up to this long; each further one doubles it, up to sink_backoff_max_s.
BACKOFF_BASE_S = 0.1

_EPOCH = dt.date(1970, 1, 1)
_DAY_MS = 86_400_000

Row = Mapping[str, Any]
Values = tuple[Any, ...]  # a row's values in its table's column order


class SinkMetrics(Protocol):
    """Hooks the sink calls; ``streams.runtime.metrics.Metrics`` implements them with prometheus_client."""

    def on_insert(self, table: str, rows: int, seconds: float) -> None:
        """An insert of ``rows`` rows into ``table`` succeeded after ``seconds`` (this attempt)."""

    def on_retry(self, table: str) -> None:
        """An insert into ``table`` is being attempted again, after a failure and a backoff."""

    def on_failure(self, table: str, reason: str, in_a_row: int) -> None:
        """An insert attempt into ``table`` failed, for ``reason`` (``Verdict.reason``), the
        ``in_a_row``-th time in a row; it is retried unless the reason is not retryable."""


class InsertClient(Protocol):
    """The part of ``clickhouse_driver.Client`` the sink uses."""

    def execute(self, query: str, params: Any = None, *, columnar: bool = False,
                settings: Mapping[str, Any] | None = None) -> Any: ...

    def disconnect(self) -> None: ...


class _Uniform(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


def _datetime_from_ms(value: Any) -> Any:
    """Epoch ms -> epoch seconds, which clickhouse-driver writes to DateTime as is."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value // 1000
    if isinstance(value, dt.datetime):
        return value
    raise TypeError("expected epoch milliseconds (int) or a datetime")


def _date_from_ms(value: Any) -> Any:
    """Epoch ms -> ``date`` (its UTC day); a ``date`` passes through."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _day(value // _DAY_MS)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    raise TypeError("expected epoch milliseconds (int) or a date")


@functools.lru_cache(maxsize=1 << 16)
def _day(days_since_epoch: int) -> dt.date:
    # Rows fall on a few days: a cached date costs a lookup, a new one a timedelta and an add.
    return _EPOCH + dt.timedelta(days=days_since_epoch)


def _converters(table: Table) -> tuple[tuple[int, str, Callable[[Any], Any]], ...]:
    out: list[tuple[int, str, Callable[[Any], Any]]] = []
    for index, column in enumerate(table.columns):
        if column.type.startswith("DateTime"):
            out.append((index, column.name, _datetime_from_ms))
        elif column.type == "Date":
            out.append((index, column.name, _date_from_ms))
    return tuple(out)


def insert_columns(rows: list[Values]) -> list[list[Any]]:
    """The rows' values as the columns of a columnar insert, transposed in C."""
    return [list(column) for column in zip(*rows, strict=True)]


@dataclass(frozen=True, slots=True)
class _BufferSpec:
    """What :meth:`ClickHouseSink.add` needs of a table, prepared once (it runs per row)."""

    names: tuple[str, ...]
    columns: frozenset[str]
    values: Callable[[Row], Values]  # a dict row's values in column order (tables have several)
    converters: tuple[tuple[int, str, Callable[[Any], Any]], ...]
    key: Callable[[Values], Any]  # the ORDER BY key's values: one buffered row per key
    version: int | None  # where the version column is in the values

    @classmethod
    def of(cls, table: Table) -> _BufferSpec:
        names = table.column_names
        index = {name: i for i, name in enumerate(names)}
        return cls(names, frozenset(names), operator.itemgetter(*names), _converters(table),
                   operator.itemgetter(*(index[name] for name in table.key)),
                   index[table.version] if table.version else None)


class ClickHouseSink:
    """Buffers rows per table, coalesced by key, and writes them with one insert per table.

    ``client_factory`` builds a client (``lambda: connect(settings)``); the sink keeps one and
    replaces it after an error. ``sleep`` and ``rng`` are injectable for tests.
    """

    def __init__(
        self,
        settings: Settings,
        client_factory: Callable[[], InsertClient],
        metrics: SinkMetrics | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        *,
        rng: _Uniform | None = None,
        backoff_base_s: float = BACKOFF_BASE_S,
    ) -> None:
        self._settings = settings
        self._client_factory = client_factory
        self._client: InsertClient | None = None
        self._metrics = metrics
        self._sleep = sleep
        self._rng: _Uniform = rng or random.Random()
        self._backoff_base_s = min(backoff_base_s, settings.sink_backoff_max_s)
        self._buffers: dict[str, dict[Any, Values]] = {name: {} for name in TABLES}
        self._specs = {name: _BufferSpec.of(t) for name, t in TABLES.items()}
        self._insert_sql = {
            name: f"INSERT INTO {name} ({', '.join(t.column_names)}) VALUES" for name, t in TABLES.items()
        }
        # In cluster mode an insert returns only once every shard has its rows (the default
        # queues them on the node written to, whose SIGKILL would then delay them unseen).
        self._insert_settings = {"insert_distributed_sync": 1} if settings.clickhouse_cluster else None
        self._rows = 0
        self._lock = asyncio.Lock()
        self._healthy = True
        #: Insert attempts repeated after a failure, since start.
        self.retries = 0
        #: Rows replaced in the buffer by a newer row (or dropped as an older version) of the same key.
        self.coalesced = 0

    # -- buffer ---------------------------------------------------------------------------------

    def add(self, table: str, row: Row | Values) -> None:
        """Buffer ``row`` for ``table``, replacing a buffered row of the same key unless that
        one has a higher version. A dict row must carry exactly the table's columns, a tuple one
        value per column in the table's order (times in epoch ms); anything else raises
        :class:`SinkError` here rather than failing the insert later (a tuple's order is its
        producer's to test, against ``streams.clickhouse.tables``)."""
        spec = self._specs.get(table)
        if spec is None:
            raise SinkError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
        if type(row) is tuple:
            if len(row) != len(spec.names):
                raise SinkError(f"{table} row: {len(row)} values for {len(spec.names)} columns")
            values: Values = row
        else:
            named = cast(Row, row)
            if named.keys() != spec.columns:
                missing = sorted(spec.columns - named.keys())
                extra = sorted(named.keys() - spec.columns)
                raise SinkError(f"{table} row: missing columns {missing}, unknown columns {extra}")
            values = spec.values(named)
        if spec.converters:
            converted = list(values)
            for index, name, convert in spec.converters:
                try:
                    converted[index] = convert(values[index])
                except (TypeError, ValueError, OverflowError) as exc:
                    raise SinkError(f"{table}.{name}: cannot convert {values[index]!r}: {exc}") from None
            values = tuple(converted)
        key = spec.key(values)
        buffer = self._buffers[table]
        existing = buffer.get(key)
        if existing is None:
            self._rows += 1
        else:
            self.coalesced += 1
            if spec.version is not None and existing[spec.version] > values[spec.version]:
                return  # an older version arrived late: the buffered row stays
        buffer[key] = values

    @property
    def buffered_rows(self) -> int:
        """Rows waiting to be written, over all tables (after coalescing)."""
        return self._rows

    @property
    def full(self) -> bool:
        """True when at least ``settings.sink_max_rows`` rows wait: stop taking input and flush."""
        return self._rows >= self._settings.sink_max_rows

    @property
    def healthy(self) -> bool:
        """False while an insert has failed more than ``settings.sink_max_retries`` times in a row."""
        return self._healthy

    def buffered(self, table: str) -> list[Row]:
        """A copy of the rows waiting for ``table`` (times already converted for the driver)."""
        names = self._specs[table].names
        return [dict(zip(names, values, strict=True)) for values in self._buffers[table].values()]

    # -- writing --------------------------------------------------------------------------------

    async def flush(self) -> int:
        """Write every buffered row, one columnar insert per table; return the rows written.

        Returns only once all of them are written (see the module docstring). Rows added while
        a flush runs are kept for the next one. Concurrent calls run one after the other.
        """
        async with self._lock:
            written = 0
            for name in list(self._buffers):
                batch = self._buffers[name]
                if not batch:
                    continue
                self._buffers[name] = {}  # rows added during the insert wait for the next flush
                try:
                    await self._write(TABLES[name], list(batch.values()))
                except BaseException:
                    self._put_back(name, batch)  # cancelled: the rows stay buffered
                    raise
                self._rows -= len(batch)
                written += len(batch)
            return written

    def _put_back(self, table: str, batch: dict[Any, Values]) -> None:
        """Merge rows that were not written with the ones buffered since (same rule as add)."""
        version = self._specs[table].version
        buffer = self._buffers[table]
        for key, row in batch.items():
            newer = buffer.get(key)
            if newer is not None:
                self._rows -= 1
                self.coalesced += 1
                if version is None or newer[version] >= row[version]:
                    continue
            buffer[key] = row

    def close(self) -> None:
        """Disconnect the client, if any (buffered rows are kept)."""
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()

    async def _write(self, table: Table, rows: list[Values]) -> None:
        failures = 0
        while True:
            started = time.perf_counter()
            try:
                await asyncio.to_thread(self._insert, table, rows)
            except asyncio.CancelledError:
                # The thread may still be using the client: never hand it to another insert.
                self._client = None
                raise
            except Exception as exc:  # rows are never dropped, see module docstring
                failures += 1
                verdict = classify(exc)
                self._on_failure(table, len(rows), failures, exc, verdict)
                if not verdict.retryable:
                    raise self._rejected(table, exc, verdict) from None  # the message has the cause
                await self._sleep(self.backoff_delay(failures))
                self.retries += 1
                if self._metrics is not None:
                    self._metrics.on_retry(table.name)
                continue
            if self._metrics is not None:
                self._metrics.on_insert(table.name, len(rows), time.perf_counter() - started)
            if not self._healthy:
                log.info("ClickHouse inserts into %s succeed again, after %d failed attempts", table.name, failures)
                self._healthy = True
            return

    def backoff_delay(self, failures: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2 ** (failures - 1))]."""
        ceiling = min(self._settings.sink_backoff_max_s, self._backoff_base_s * 2 ** min(failures - 1, 62))
        return self._rng.uniform(0.0, ceiling)

    def _on_failure(self, table: Table, rows: int, failures: int, exc: Exception, verdict: Verdict) -> None:
        if self._metrics is not None:
            self._metrics.on_failure(table.name, verdict.reason, failures)
        if not verdict.retryable:
            return  # the caller raises, with the fix
        # One line per attempt; during an outage streams.runtime.logs folds them into one per interval.
        log.warning("ClickHouse insert of %d rows into %s failed (%s, attempt %d), retrying: %s",
                    rows, table.name, verdict.reason, failures, describe(exc))
        if failures == self._settings.sink_max_retries + 1:
            self._healthy = False
            log.error("ClickHouse inserts into %s have failed %d times in a row (%s): the sink is unhealthy and "
                      "keeps retrying; rows stay buffered, offsets unacknowledged. Last error: %s",
                      table.name, failures, verdict.reason, describe(exc))

    def _rejected(self, table: Table, exc: Exception, verdict: Verdict) -> SinkRejected:
        where = {"table": table.name, "database": self._settings.clickhouse_database,
                 "user": self._settings.clickhouse_user}
        return SinkRejected(
            table.name, verdict.reason,
            f"ClickHouse refuses inserts into {where['database']}.{table.name} ({verdict.reason}: "
            f"{describe(exc)}). To fix: {verdict.fix.format(**where)}.")

    def _insert(self, table: Table, rows: list[Values]) -> None:
        """Runs in a worker thread: build the columns and send one insert."""
        columns = insert_columns(rows)
        client = self._client
        if client is None:
            client = self._client = self._client_factory()
        try:
            client.execute(self._insert_sql[table.name], columns, columnar=True, settings=self._insert_settings)
        except Exception:
            # The connection may be mid-protocol: start the next attempt from a fresh client.
            self._client = None
            try:
                client.disconnect()
            except Exception:  # best effort; the insert's own error is what matters
                log.debug("disconnect after a failed insert failed too", exc_info=True)
            raise
