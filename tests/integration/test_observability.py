"""Dashboards and alert rules against the real services, while a worker processes traffic.

A ``streams worker`` subprocess serves /metrics on 127.0.0.1:19101, one of the two ports the
local Prometheus scrapes (19100 is left to the demo's worker), while simulated traffic is still
being published. Then every PromQL expression of the dashboards and of the rules is evaluated
by that Prometheus (no errors; the throughput, lag and freshness panels return numbers), the
rules are reloaded into it and evaluate cleanly, and every ClickHouse query of the dashboards
runs on the local 18.16 server as the read-only analyst and returns rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import json
import math
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import pytest
import yaml

from streams.clickhouse.client import connect
from streams.clickhouse.migrate import migrate
from streams.publisher import Publisher
from streams.settings import Settings, load_settings
from streams.tools.oracle import expected
from streams.tools.simulate import SimRecord, SimulationConfig, generate, publish
from streams.topics import ensure_topics
from tests.conftest import local_environ, unique
from tests.support.analyst import as_analyst
from tests.support.observability import (
    RULES_DIR,
    Target,
    dashboards,
    expand_clickhouse,
    expand_promql,
    rules,
    targets,
)
from tests.support.upstream import RETENTION_MS
from tests.support.worker import Worker

METRICS_PORT = 19101
INSTANCE = f"127.0.0.1:{METRICS_PORT}"
PROMETHEUS = "http://127.0.0.1:19090"
BASE = SimulationConfig(seed=11, customers=200, events=4_000, start_ms=0)
#: Panels that must show numbers while the worker runs.
MUST_HAVE_DATA = {"Consumed", "Consumer lag", "Freshness p99", "Consumed by topic", "Processed by topic",
                  "Consumer lag per partition", "Freshness p50 / p99"}
LIVE_CHUNKS = 8  # published one a second once the worker runs

BOARDS = dashboards()
T = TypeVar("T")


# --- helpers ---------------------------------------------------------------------------------


def wait_for(what: str, probe: Callable[[], T | None], timeout_s: float = 45) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def prometheus(path: str, params: dict[str, str] | None = None, method: str = "GET") -> dict[str, Any]:
    url = PROMETHEUS + path + ("?" + urllib.parse.urlencode(params) if params else "")
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read().decode()
    except urllib.error.HTTPError as error:  # 400/422 carry Prometheus' JSON error
        body = error.read().decode()
    return json.loads(body) if body.startswith("{") else {"status": "success", "body": body}


def query(expr: str) -> dict[str, Any]:
    return prometheus("/api/v1/query", {"query": expr})


def numbers(answer: dict[str, Any]) -> list[float]:
    """The finite sample values of an instant query's answer."""
    data = answer.get("data", {})
    if data.get("resultType") == "scalar":
        values = [float(data["result"][1])]
    else:
        values = [float(item["value"][1]) for item in data.get("result", [])]
    return [v for v in values if math.isfinite(v)]


def live_records(now_ms: int) -> list[SimRecord]:
    """A simulated run whose latest ingest time is a minute ago (the publisher refuses records
    far in the future), so Kafka timestamps, ingest days and minutes are recent."""
    latest = max(r.ingest_ms for r in generate(BASE))
    return generate(dataclasses.replace(BASE, start_ms=now_ms - latest - 60_000))


class Traffic(threading.Thread):
    """Publishes records in chunks, one a second, while the worker runs."""

    def __init__(self, settings: Settings, chunks: Sequence[Sequence[SimRecord]]) -> None:
        super().__init__(daemon=True)
        self.settings = settings
        self.chunks = chunks
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with Publisher(self.settings) as publisher:
                for chunk in self.chunks:
                    publish(chunk, publisher, self.settings)
                    time.sleep(1.0)
        except BaseException as error:  # surfaced by finish()
            self.error = error

    def finish(self) -> None:
        self.join(timeout=60)
        assert not self.is_alive(), "publishing did not finish"
        if self.error is not None:
            raise self.error


def stop(worker: Worker) -> None:
    """SIGTERM, then SIGKILL after 5 s. A stopping worker waits in Faust's wait_empty for the
    records its batch runners still hold unacknowledged; in our runs it had not exited after
    30 s. That is the worker's business, not this test's."""
    process = worker.process
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            worker.kill()


def port_taken(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


# --- the running worker ----------------------------------------------------------------------


@dataclasses.dataclass
class Running:
    settings: Settings
    traffic: Traffic
    accepted: int


@pytest.fixture(scope="module")
def running(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    if port_taken(METRICS_PORT):
        pytest.fail(f"127.0.0.1:{METRICS_PORT} is in use: stop the process serving it (a second local worker?)")
    tmp = tmp_path_factory.mktemp("observability")
    name = unique("t")
    settings = dataclasses.replace(
        load_settings(local_environ(), topic_prefix=name, app_id=name, clickhouse_database=name),
        metrics_port=METRICS_PORT, table_dir=str(tmp / "state"), broker_session_timeout_s=6.0,
        input_retention_ms=RETENTION_MS)
    ensure_topics(settings)
    migrate(settings)
    records = live_records(int(time.time() * 1000))
    first = len(records) // 3
    size = -(-(len(records) - first) // LIVE_CHUNKS)
    chunks = [records[i:i + size] for i in range(first, len(records), size)]
    with Publisher(settings) as publisher:
        publish(records[:first], publisher, settings)
    worker = Worker(settings, tmp / "worker.log")
    traffic = Traffic(settings, chunks)
    try:
        worker.start()
        wait_for("the worker's /metrics", lambda: port_taken(METRICS_PORT))
        traffic.start()
        yield Running(settings, traffic, len(expected(records, settings).accepted))
    finally:
        stop(worker)
        if traffic.is_alive():
            traffic.join(timeout=30)
        print(worker.log_tail(3000))
        admin = connect(settings, admin=True)
        admin.execute(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")
        admin.disconnect()


@pytest.fixture(scope="module")
def scraped(running: Running) -> Running:
    """Prometheus has scraped the worker and holds a rate of its counters."""
    wait_for("Prometheus to scrape the worker",
             lambda: numbers(query(f'up{{job="streams-worker", instance="{INSTANCE}"}} == 1')))
    wait_for("a consumption rate in Prometheus", lambda: [
        v for v in numbers(query(f'rate(streams_events_consumed_total{{instance="{INSTANCE}"}}[1m])')) if v > 0])
    return running


# --- PromQL ----------------------------------------------------------------------------------


def prometheus_targets() -> list[Target]:
    return targets(BOARDS, "prometheus")


@pytest.mark.parametrize("target", prometheus_targets(), ids=lambda t: t.name)
def test_dashboard_promql_evaluates(scraped: Running, target: Target) -> None:
    expr = expand_promql(target.query, {"instance": INSTANCE})
    answer = query(expr)
    assert answer["status"] == "success", f"{target.name}: {answer.get('error')}\n{expr}"
    if target.panel in MUST_HAVE_DATA:
        # A fresh series needs two scrapes before rate() or a quantile has a value.
        wait_for(f"data for {target.name}", lambda: numbers(query(expr)), timeout_s=20)


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.get("alert") or r.get("record"))
def test_rule_expression_evaluates(scraped: Running, rule: dict[str, Any]) -> None:
    answer = query(rule["expr"])
    assert answer["status"] == "success", f"{answer.get('error')}\n{rule['expr']}"


def rules_loaded_from_this_checkout() -> bool:
    config = yaml.safe_load(prometheus("/api/v1/status/config")["data"]["yaml"])
    ours = [str(p) for p in RULES_DIR.glob("*.yml")]
    return any(fnmatch.fnmatch(path, pattern) for pattern in config.get("rule_files", []) for path in ours)


def test_prometheus_loads_and_evaluates_the_rules(scraped: Running) -> None:
    if not rules_loaded_from_this_checkout():
        pytest.skip("the running Prometheus reads rule files of another checkout")
    # Prometheus reads rule files at start or on reload; the stack may predate our edits.
    assert prometheus("/-/reload", method="POST")["status"] == "success"
    expected_rules = {r.get("alert") or r.get("record") for r in rules()}

    def evaluated() -> dict[str, dict[str, Any]] | None:
        groups = prometheus("/api/v1/rules")["data"]["groups"]
        loaded = {r["name"]: r for g in groups for r in g["rules"]}
        done = expected_rules <= loaded.keys() and all(loaded[n]["health"] != "unknown" for n in expected_rules)
        return loaded if done else None

    loaded = wait_for("the rules to be evaluated", evaluated, timeout_s=30)
    for name in expected_rules:
        assert loaded[name]["health"] == "ok", f"{name}: {loaded[name].get('lastError')}"
    topic = scraped.settings.input_topics["click"]
    wait_for("the recorded lag of our topic",
             lambda: query(f'streams:consumer_lag_records:by_topic{{topic="{topic}"}}')["data"]["result"],
             timeout_s=20)


# --- ClickHouse 18.16 ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def landed(scraped: Running) -> Running:
    """All traffic published and every accepted event in ClickHouse."""
    scraped.traffic.finish()
    client = connect(scraped.settings)
    wait_for("every event in ClickHouse",
             lambda: client.execute("SELECT count() FROM events FINAL")[0][0] == scraped.accepted, timeout_s=60)
    client.disconnect()
    return scraped


@pytest.mark.parametrize("target", targets(BOARDS, "clickhouse"), ids=lambda t: t.name)
def test_dashboard_sql_returns_rows_on_18_16(landed: Running, target: Target) -> None:
    analyst = connect(as_analyst(landed.settings))
    assert analyst.connection.user == "analyst"
    now = dt.datetime.now(dt.UTC)
    sql = expand_clickhouse(target.query, now - dt.timedelta(days=30), now)  # the dashboard's default range
    rows, columns = analyst.execute(sql, with_column_types=True)
    analyst.disconnect()
    assert rows, f"{target.name}: no rows\n{sql}"
    if target.time_series:
        assert columns[0][0] == "time"


def test_sql_really_runs_on_18_16(landed: Running) -> None:
    """The point of the test above: the local server is the old one."""
    version = connect(landed.settings).execute("SELECT version()")[0][0]
    assert version.startswith("18.16"), version
