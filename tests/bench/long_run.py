"""What the soak and the state-size bench share: a fresh pipeline of their own (topics, consumer
group, database and table directory, all removed afterwards) and publishing chunked traffic as
fast as the publisher goes."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from streams.clickhouse.migrate import migrate
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.bench.freshness import PacedPublisher
from tests.bench.soak_workload import ChunkFeeder
from tests.bench.workload import delete_everything_named, run_settings


@contextlib.contextmanager
def fresh_pipeline(name: str, partitions: int, state_dir: Path, keep: bool) -> Iterator[Settings]:
    """Settings of a new pipeline named ``name`` with its topics and tables created; everything
    is deleted afterwards unless ``keep`` (a long run's table directory is large)."""
    settings = run_settings(name, partitions, state_dir)
    try:
        ensure_topics(settings)
        migrate(settings, echo=lambda _: None)
        yield settings
    finally:
        if not keep:
            shutil.rmtree(settings.table_dir, ignore_errors=True)
            try:
                delete_everything_named(patient(settings), settings.topic_prefix)
            except Exception as exc:  # the results still count
                print(f"could not delete the topics and database named {name}: {exc!r}", file=sys.stderr)


def patient(settings: Settings) -> Settings:
    """``settings`` with a ClickHouse timeout for the slow statements of a long run's end: a
    ``FINAL`` over millions of rows, or dropping their database (~30 s on the loaded local server)."""
    return dataclasses.replace(settings, clickhouse_timeout_s=300.0)


def publish_all(settings: Settings, feeder: ChunkFeeder) -> float:
    """Make and publish every chunk of ``feeder`` as fast as it goes; seconds it took."""
    publisher = PacedPublisher(settings, feeder.messages(), rate=0)
    feeder.start()
    publisher.start()
    while publisher.is_alive():
        publisher.join(timeout=1.0)
        publisher.sent_ms.clear()  # nobody times these sends: keep the bench's memory flat
    if publisher.error is not None:
        raise publisher.error
    return publisher.seconds
