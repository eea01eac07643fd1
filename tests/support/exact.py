"""Waiting for ClickHouse to equal the oracle, and for a worker to have read everything."""

from __future__ import annotations

import time

from streams.clickhouse.client import connect
from streams.settings import Settings
from streams.tools.oracle import Expected
from tests.support.clickhouse_rows import read_final_rows
from tests.support.compare import compare_all
from tests.support.worker import Worker


def wait_for_exact(settings: Settings, truth: Expected, timeout_s: float = 240) -> dict[str, list[str]]:
    """Poll ClickHouse until its rows equal ``truth``; return the differences left ({} when exact)."""
    client = connect(settings)
    deadline = time.monotonic() + timeout_s
    problems: dict[str, list[str]] = {"pending": ["nothing read yet"]}
    while time.monotonic() < deadline:
        problems = compare_all(truth, read_final_rows(client))
        if not problems:
            return problems
        time.sleep(2)
    return problems


def source_lag(worker: Worker, port: int) -> float:
    """Records the worker has not committed yet, over the partitions it reports (changelogs excluded:
    they are never committed); infinite while it reports none (not assigned yet)."""
    lags = [value for labels, value in worker.samples(port, "streams_consumer_lag_records")
            if not labels["topic"].endswith("-changelog")]
    return sum(lags) if lags else float("inf")
