"""ClickHouse refusing inserts for a reason only a person can fix stops the worker, non-zero, with a
message naming the table and the fix, instead of a retry loop that looks like a slow stall
(``streams.clickhouse.errors``): a wrong password, a column missing from a table (a migration
not applied), on the real ClickHouse 18.16."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.clickhouse.client import connect
from streams.clickhouse.migrate import migrate
from streams.publisher import Publisher
from streams.settings import PREFIX, Settings
from streams.tools.simulate import SimulationConfig, generate, publish, recent_day_start_ms
from streams.topics import ensure_topics
from tests.support.upstream import RETENTION_MS
from tests.support.worker import Worker

METRICS_PORT = 22155
#: Bound on waiting for the worker to exit; when broken, it never does (it retries forever).
EXIT_TIMEOUT_S = 120


@pytest.fixture()
def worker(clickhouse_settings: Settings, tmp_path: Path) -> Iterator[Worker]:
    settings = dataclasses.replace(clickhouse_settings, metrics_port=METRICS_PORT, table_dir=str(tmp_path / "state"),
                                   input_retention_ms=RETENTION_MS)
    ensure_topics(settings)
    migrate(settings)
    with Publisher(settings) as publisher:
        publish(generate(SimulationConfig(seed=3, customers=50, events=500, start_ms=recent_day_start_ms())), publisher,
                settings)
    worker = Worker(settings, tmp_path / "worker.log")
    yield worker
    worker.stop()


def test_a_wrong_password_stops_the_worker_with_what_to_check(worker: Worker) -> None:
    worker.env[PREFIX + "CLICKHOUSE_PASSWORD"] = "not-the-password"
    code, log = worker.run_until_exit(EXIT_TIMEOUT_S)
    assert code != 0
    assert "ClickHouse refuses inserts into" in log
    assert "check STREAMS_CLICKHOUSE_USER and STREAMS_CLICKHOUSE_PASSWORD" in log


def test_a_missing_column_stops_the_worker_naming_the_table_and_streams_migrate(
        worker: Worker, clickhouse_settings: Settings) -> None:
    database = clickhouse_settings.clickhouse_database
    admin = connect(clickhouse_settings, admin=True)
    admin.execute(f"ALTER TABLE {database}.events DROP COLUMN satisfaction")
    admin.disconnect()
    code, log = worker.run_until_exit(EXIT_TIMEOUT_S)
    assert code != 0
    assert f"ClickHouse refuses inserts into {database}.events (schema: " in log
    assert "run `streams migrate`" in log
