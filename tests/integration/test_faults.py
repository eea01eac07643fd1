"""Faults mid-stream on the real services: ClickHouse stopped for 60 s, ClickHouse hung (SIGSTOP)
for 45 s, the Kafka broker restarted. Each run ends exact against the oracle with lag 0; each
prints its time to recover (from the service being back to exact). During the broker outage the
worker's log stays readable: tens of lines, not thousands (``streams.runtime.logs``).

Half the traffic is published before the fault, half while it lasts (after it, for the broker),
so the worker has rows in flight when it hits.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from streams.clickhouse.client import connect
from streams.clickhouse.migrate import migrate
from streams.publisher import Publisher
from streams.settings import PREFIX, Settings
from streams.tools.oracle import Expected, expected
from streams.tools.simulate import SimRecord, SimulationConfig, generate, publish, recent_day_start_ms
from streams.topics import ensure_topics
from tests.conftest import STACK
from tests.support.exact import source_lag, wait_for_exact
from tests.support.services import service_pid
from tests.support.upstream import RETENTION_MS
from tests.support.worker import Worker, wait_until

METRICS_PORT = 22150
CONFIG = SimulationConfig(seed=7, customers=300, events=6_000, start_ms=recent_day_start_ms())
CLICKHOUSE_DOWN_S = 60
CLICKHOUSE_HUNG_S = 45
BROKER_DOWN_S = 20
#: Lines a worker may log from the broker going down until it is exact again ("tens").
BROKER_OUTAGE_MAX_LOG_LINES = 100


class Run(NamedTuple):
    settings: Settings
    records: list[SimRecord]
    truth: Expected
    worker: Worker


@pytest.fixture()
def run(clickhouse_settings: Settings, tmp_path: Path) -> Iterator[Run]:
    settings = dataclasses.replace(clickhouse_settings, metrics_port=METRICS_PORT, table_dir=str(tmp_path / "state"),
                                   broker_session_timeout_s=6.0, input_retention_ms=RETENTION_MS)
    ensure_topics(settings)
    migrate(settings)
    records = generate(CONFIG)
    worker = Worker(settings, tmp_path / "worker.log")
    yield Run(settings, records, expected(records, settings), worker)
    worker.stop()
    print(worker.log_tail(6000))


def publish_records(records: list[SimRecord], settings: Settings) -> None:
    with Publisher(settings) as publisher:
        publish(records, publisher, settings)


def start_with_first_half(run: Run) -> list[SimRecord]:
    """Publish half the traffic, start the worker, wait until rows land; return the other half."""
    half = len(run.records) // 2
    publish_records(run.records[:half], run.settings)
    run.worker.start()
    client = connect(run.settings)
    wait_until(lambda: client.execute("SELECT count() FROM events")[0][0] > 0, poll_s=0.2)
    client.disconnect()
    return run.records[half:]


def assert_recovers_exactly(run: Run, fault: str, restored_at: float) -> None:
    assert wait_for_exact(run.settings, run.truth) == {}
    wait_until(lambda: source_lag(run.worker, METRICS_PORT) == 0, timeout_s=60)
    assert run.worker.process is not None and run.worker.process.poll() is None, "the worker exited"
    print(f"{fault}: exact with lag 0 {time.monotonic() - restored_at:.1f} s after the service was back")


def stack(*args: str) -> None:
    subprocess.run([str(STACK), *args], check=True)


def test_exact_after_clickhouse_is_stopped_for_a_minute(run: Run) -> None:
    rest = start_with_first_half(run)
    stack("down", "clickhouse")
    try:
        publish_records(rest, run.settings)
        time.sleep(CLICKHOUSE_DOWN_S)
    finally:
        stack("up", "clickhouse")
    assert_recovers_exactly(run, f"ClickHouse stopped for {CLICKHOUSE_DOWN_S} s", time.monotonic())


def test_exact_after_clickhouse_hangs(run: Run) -> None:
    rest = start_with_first_half(run)
    pid = service_pid("clickhouse")
    os.kill(pid, signal.SIGSTOP)
    try:
        publish_records(rest, run.settings)
        time.sleep(CLICKHOUSE_HUNG_S)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert_recovers_exactly(run, f"ClickHouse hung (SIGSTOP) for {CLICKHOUSE_HUNG_S} s", time.monotonic())


def test_exact_after_a_broker_restart_with_a_readable_log(run: Run) -> None:
    # Faust's livelock check would say "Stream has not started processing" five minutes after start
    # when it missed our batch deliveries; make "five minutes" five seconds to see it stays quiet.
    run.worker.env["STREAM_PROCESSING_TIMEOUT"] = "5"
    # The worker sees the broker away for ~40 s here (its stop, 20 s, its start), a loaded machine
    # more: beyond STREAMS_STALL_TIMEOUT_S it would exit to be restarted. This test is about riding
    # the outage out in one process.
    run.worker.env[PREFIX + "STALL_TIMEOUT_S"] = "180"
    rest = start_with_first_half(run)
    lines_before = len(run.worker.log_path.read_text().splitlines())
    stack("down", "kafka")
    try:
        time.sleep(BROKER_DOWN_S)
    finally:
        stack("up", "kafka")
    restored_at = time.monotonic()
    publish_records(rest, run.settings)
    assert_recovers_exactly(run, f"Kafka broker down for {BROKER_DOWN_S} s", restored_at)
    log = run.worker.log_path.read_text().splitlines()[lines_before:]
    print(f"worker log lines from the broker going down to exact: {len(log)}")
    assert len(log) <= BROKER_OUTAGE_MAX_LOG_LINES, "\n".join(log[-200:])
    assert not [line for line in log if "has not started processing" in line]
