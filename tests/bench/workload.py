"""The bench's fixed workload and the run-unique Kafka topics and ClickHouse database it lives in.

The workload (simulated records and the oracle's answer) is generated once per bench; each run
gets its own topic prefix, consumer group and database, so a fresh worker starts from nothing,
and all of them are deleted afterwards.
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaAdminClient

from streams.clickhouse.client import connect
from streams.clickhouse.migrate import check_identifier, migrate
from streams.contracts.codec import Codec
from streams.contracts.registry import registry_from_settings
from streams.publisher import Publisher
from streams.settings import Settings, load_settings
from streams.tools.oracle import Expected, expected
from streams.tools.simulate import SimRecord, SimulationConfig, generate, publish
from streams.topics import ensure_topics
from tests.conftest import local_environ
from tests.support.upstream import RETENTION_MS


@dataclass(frozen=True, slots=True)
class Workload:
    """Records to publish, the oracle's expected outcome and the encoded well-formed values."""

    config: SimulationConfig
    records: list[SimRecord]
    truth: Expected
    values: list[bytes]


def build_workload(config: SimulationConfig, settings: Settings) -> Workload:
    """Generate the records, their oracle outcome and the wire values of the well-formed ones."""
    records = generate(config)
    codec = Codec(registry_from_settings(settings))
    values = [codec.encode(r.event) for r in records if r.event is not None and r.raw_value is None]
    return Workload(config, records, expected(records, settings), values)


def bench_name() -> str:
    """A name unique to this bench invocation; valid as topic prefix, group id and database."""
    return f"bench_{time.strftime('%Y%m%d%H%M%S', time.gmtime())}_{uuid.uuid4().hex[:6]}"


def free_port() -> int:
    """A TCP port nobody listens on right now (for the worker's /metrics endpoint)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_settings(name: str, partitions: int, state_dir: Path) -> Settings:
    """Settings of one run: its own topics, consumer group, database and table store."""
    state_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    return load_settings(
        local_environ(), topic_prefix=name, app_id=name, clickhouse_database=check_identifier(name),
        topic_partitions=partitions, table_dir=str(state_dir / name), metrics_port=free_port(),
        input_retention_ms=RETENTION_MS,  # the simulator's old shares outlive the default 7 days
    )


def prepare_run(settings: Settings, workload: Workload) -> int:
    """Create the run's topics and database, publish the workload; return records published."""
    ensure_topics(settings)
    migrate(settings, echo=lambda _: None)
    with Publisher(settings) as publisher:
        sent = publish(workload.records, publisher, settings)
    return sum(sent.values())


@contextlib.contextmanager
def published_run(name: str, workload: Workload, partitions: int, state_dir: Path,
                  keep: bool = False) -> Iterator[tuple[Settings, int]]:
    """Topics and database of one run with the workload published (settings, records sent);
    deleted afterwards unless ``keep``."""
    settings = run_settings(name, partitions, state_dir)
    try:
        print(f"[{name}] publishing {len(workload.records):,} records to {settings.topic_prefix}.*")
        yield settings, prepare_run(settings, workload)
    finally:
        if not keep:
            delete_everything_named(settings, settings.topic_prefix)


def delete_everything_named(settings: Settings, name: str) -> None:
    """Delete the topics whose names start with ``name`` (inputs, dead letters, Faust's
    changelogs) and the database called ``name``."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, client_id=f"{name}-cleanup")
    try:
        doomed = [topic for topic in admin.list_topics() if topic.startswith(name)]
        if doomed:
            admin.delete_topics(doomed)
    finally:
        admin.close()
    drop_database(settings, name)


def drop_database(settings: Settings, database: str) -> None:
    client = connect(settings, admin=True)
    try:
        client.execute(f"DROP DATABASE IF EXISTS `{check_identifier(database)}`")
    finally:
        client.disconnect()
