"""No silent stalls: a worker that has records waiting and makes no progress says what is
stuck and exits non-zero, so that its supervisor restarts it. Kafka is paused (SIGSTOP) under a
busy worker: nothing can be sent, delivered or committed. The message names what the runners
wait on and where each input partition stands (fetched, handed over)."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.clickhouse.migrate import migrate
from streams.publisher import Publisher
from streams.runtime.liveness import STALL_EXIT_CODE
from streams.settings import PREFIX, Settings
from streams.tools.simulate import SimulationConfig, generate, publish, recent_day_start_ms
from streams.topics import ensure_topics
from tests.support.services import service_pid
from tests.support.upstream import RETENTION_MS
from tests.support.worker import Worker, wait_until

METRICS_PORT = 21152
STALL_TIMEOUT_S = 10
# A bound on waiting for something that, when broken, never happens: not a speed assertion.
EXIT_TIMEOUT_S = 120


@pytest.fixture()
def busy_worker(clickhouse_settings: Settings, tmp_path: Path) -> Iterator[Worker]:
    """A worker with a backlog it works through in one-event batches: still busy when Kafka stops."""
    settings = dataclasses.replace(clickhouse_settings, metrics_port=METRICS_PORT, table_dir=str(tmp_path / "state"),
                                   input_retention_ms=RETENTION_MS)
    ensure_topics(settings)
    migrate(settings)
    with Publisher(settings) as publisher:
        publish(generate(SimulationConfig(seed=3, customers=200, events=4_000, start_ms=recent_day_start_ms())),
                publisher, settings)
    worker = Worker(settings, tmp_path / "worker.log")
    # The stall timeout may be short only with a short ClickHouse timeout and backoff (settings).
    worker.env.update({PREFIX + "STALL_TIMEOUT_S": str(STALL_TIMEOUT_S), PREFIX + "BATCH_MAX_EVENTS": "1",
                       PREFIX + "CLICKHOUSE_TIMEOUT_S": "1", PREFIX + "SINK_BACKOFF_MAX_S": "0.5"})
    yield worker
    worker.stop()


def test_a_worker_stalled_by_a_hung_broker_says_why_and_exits(busy_worker: Worker) -> None:
    busy_worker.start()
    wait_until(lambda: busy_worker.metric(METRICS_PORT, "streams_events_consumed_total") >= 50)
    kafka = service_pid("kafka")
    os.kill(kafka, signal.SIGSTOP)
    try:
        assert busy_worker.process is not None
        busy_worker.process.wait(timeout=EXIT_TIMEOUT_S)
    finally:
        os.kill(kafka, signal.SIGCONT)
    log = busy_worker.log_path.read_text()
    assert busy_worker.process.returncode == STALL_EXIT_CODE, log[-4000:]
    stalled = [line for line in log.splitlines() if "Worker stalled" in line]
    assert stalled and "ERROR" in stalled[0] and "records wait" in stalled[0], log[-4000:]
    assert "waiting" in stalled[0] and "for Kafka" in stalled[0], stalled[0]
    # Where the input stands, for each partition with records waiting: fetched, read, handed over.
    where = r"\[\d+\] \d+ waiting: log end \d+, fetched up to (\d+|none), reads from (\d+|unknown), next to hand over"
    assert re.search(where, stalled[0]), stalled[0]
