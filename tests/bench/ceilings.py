"""Upper bounds for the pipeline, measured on the same workload: how fast the parts it cannot
avoid (reading the input topics, decoding the values, inserting the rows) go on their own."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from enum import Enum
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.clickhouse.client import connect
from streams.clickhouse.migrate import migrate
from streams.clickhouse.tables import EVENTS
from streams.contracts.codec import Codec
from streams.contracts.registry import registry_from_settings
from streams.settings import Settings
from streams.tools.oracle import Accepted
from tests.bench.workload import drop_database

INSERT_BATCH_ROWS = 20_000
_INSERT_SQL = f"INSERT INTO {EVENTS.name} ({', '.join(EVENTS.column_names)}) VALUES"


def consume_rate(settings: Settings, records: int, timeout_s: float = 120.0) -> float:
    """aiokafka reading every partition of the input topics from the start, no processing: msgs/s."""
    return asyncio.run(_consume(settings, records, timeout_s))


async def _consume(settings: Settings, records: int, timeout_s: float) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for topic in settings.input_topics.values()
                      for p in range(settings.topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        started = time.perf_counter()
        read = 0
        while read < records:
            if time.perf_counter() - started > timeout_s:
                raise TimeoutError(f"read {read} of {records} records in {timeout_s} s")
            batches = await consumer.getmany(timeout_ms=500)
            read += sum(len(batch) for batch in batches.values())
        return read / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def decode_rate(settings: Settings, values: Sequence[bytes]) -> float:
    """The project's codec decoding the workload's well-formed values: events/s."""
    codec = Codec(registry_from_settings(settings))
    codec.decode(values[0])  # parse the schemas outside the timing
    started = time.perf_counter()
    for value in values:
        codec.decode(value)
    return len(values) / (time.perf_counter() - started)


def insert_rate(settings: Settings, accepted: Sequence[Accepted], batch_rows: int = INSERT_BATCH_ROWS) -> float:
    """Columnar inserts of one ``events`` row per accepted event, ``batch_rows`` per insert, into a
    scratch database (dropped afterwards): rows/s. Columns are built before the clock starts."""
    scratch = dataclasses.replace(settings, clickhouse_database=settings.clickhouse_database + "_ceiling")
    migrate(scratch, echo=lambda _: None)
    client = connect(scratch)
    try:
        batches = [_columns(accepted[i:i + batch_rows]) for i in range(0, len(accepted), batch_rows)]
        started = time.perf_counter()
        for columns in batches:
            client.execute(_INSERT_SQL, columns, columnar=True)
        return len(accepted) / (time.perf_counter() - started)
    finally:
        client.disconnect()
        drop_database(settings, scratch.clickhouse_database)


def _columns(accepted: Sequence[Accepted]) -> list[list[Any]]:
    rows = [_event_row(a, offset) for offset, a in enumerate(accepted)]
    return [[row[name] for row in rows] for name in EVENTS.column_names]


def _event_row(accepted: Accepted, offset: int) -> dict[str, Any]:
    """An ``events`` row with the event's own fields; the rest as a worker would fill them."""
    event = accepted.event
    row: dict[str, Any] = dict.fromkeys(EVENTS.column_names)
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        row[f.name] = value.value if isinstance(value, Enum) else value
    row.update(event_type=event.type.value, ingest_ms=accepted.ingest_ms, is_late=int(accepted.late),
               is_clamped=0, source_topic=f"interactions.{event.type.value}", source_partition=0,
               source_offset=offset)
    return row
