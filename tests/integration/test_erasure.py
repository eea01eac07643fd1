"""Erasure on the real services: a sharer, a referred customer and a customer with identified
devices are erased mid-stream by `streams erase`, with the worker SIGKILLed right after the
request; the eraser (a `streams eraser` process, scraped by Prometheus) deletes their rows and
verifies it. Then their later traffic and a full replay of every topic by a new application
id (new consumer group, new state) never bring them back, every other customer stays equal to
the oracle, and the analyst reads no request id. Requests for unknown ids and repeated ones
are verified too. Worker metrics port: 24150; the eraser's is the local stack's (19190), which
its Prometheus scrapes."""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.clickhouse.client import connect
from streams.clickhouse.erasure import remaining_rows, request_status
from streams.clickhouse.migrate import migrate
from streams.core.erasure import keyed_hash
from streams.settings import Settings, require_erasure_key
from streams.tools.erase import request_erasure
from streams.tools.oracle import Erasure, erased_people, expected
from streams.tools.simulate import SimulationConfig, generate, recent_day_start_ms
from streams.topics import ensure_topics
from tests.support.analyst import as_analyst
from tests.support.clickhouse_rows import read_final_rows
from tests.support.compare import compare_all
from tests.support.erasure import people_to_erase
from tests.support.exact import wait_for_exact
from tests.support.upstream import RETENTION_MS, publish_records
from tests.support.worker import Worker, wait_until

CONFIG = SimulationConfig(seed=23, customers=200, events=4_000, start_ms=recent_day_start_ms(),
                          anonymous_visits=0.2, identity_conflicts=0.0)
WORKER_PORT, ERASER_PORT = 24150, 19190
PROMETHEUS = "http://127.0.0.1:19090"  # the local stack's, which scrapes ERASER_PORT


@pytest.fixture()
def erasure_settings(clickhouse_settings: Settings, tmp_path: Path) -> Settings:
    settings = dataclasses.replace(clickhouse_settings, metrics_port=WORKER_PORT, eraser_metrics_port=ERASER_PORT,
                                   eraser_interval_s=1.0, table_dir=str(tmp_path / "state"),
                                   broker_session_timeout_s=6.0, input_retention_ms=RETENTION_MS)
    ensure_topics(settings)
    migrate(settings)
    return settings


@pytest.fixture()
def eraser(erasure_settings: Settings, tmp_path: Path) -> Iterator[Worker]:
    process = Worker(erasure_settings, tmp_path / "eraser.log", command="eraser")
    process.start()
    yield process
    process.stop()
    print(process.log_tail(3000))


def verified(settings: Settings, request_id: str, ids: set[str]) -> bool:
    """Whether every id of the request reads `request verified`."""
    key = require_erasure_key(settings)
    admin = connect(settings, admin=True, database=settings.clickhouse_database)
    try:
        rows = request_status(admin, keyed_hash(key, request_id))
    finally:
        admin.disconnect()
    done = {customer_hash for customer_hash, target, status, *_ in rows if target == "request" and status == "verified"}
    return done >= {keyed_hash(key, i) for i in ids}


def rows_left(settings: Settings, ids: set[str], tombstones: bool = True) -> dict[str, int]:
    """Per table, the rows naming one of ``ids`` by the raw ids, their tombstones included
    unless told (``remaining_rows`` counts the tables the eraser deletes from)."""
    admin = connect(settings, admin=True, database=settings.clickhouse_database)
    try:
        counts = remaining_rows(admin, sorted(ids))
        if tombstones:
            counts["erased_customers"] = admin.execute("SELECT count() FROM erased_customers WHERE customer_id IN "
                                                       "%(ids)s", {"ids": tuple(ids)})[0][0]
    finally:
        admin.disconnect()
    return {table: n for table, n in counts.items() if n}


def shown_to_the_analyst(settings: Settings, ids: set[str]) -> int:
    client = connect(as_analyst(settings))
    try:
        return int(client.execute("SELECT count() FROM customer_360 WHERE customer_id IN %(ids)s",
                                  {"ids": tuple(ids)})[0][0])
    finally:
        client.disconnect()


def test_erased_people_are_deleted_verified_and_stay_gone_after_a_full_replay(
        erasure_settings: Settings, eraser: Worker, tmp_path: Path) -> None:
    settings = erasure_settings
    records = generate(CONFIG)
    cut = len(records) // 2
    ids = people_to_erase(records, cut, settings)
    people = erased_people(records[:cut], ids, settings)
    truth = expected(records, settings, Erasure(cut, ids))
    worker = Worker(settings, tmp_path / "worker.log")
    publish_records(records[:cut], settings)
    worker.start()
    try:
        assert wait_for_exact(settings, expected(records[:cut], settings)) == {}
        assert shown_to_the_analyst(settings, set(ids)) == len(ids)

        requested = time.monotonic()
        request_id = request_erasure(settings, sorted(ids))
        time.sleep(0.5)
        worker.kill()  # between the request's steps, wherever they are: it is read again
        worker.start()
        wait_until(lambda: shown_to_the_analyst(settings, set(ids)) == 0, timeout_s=120, poll_s=0.2)
        hidden_s = time.monotonic() - requested
        wait_until(lambda: verified(settings, request_id, people), timeout_s=180, poll_s=0.5)
        verified_s = time.monotonic() - requested
        print(f"erasure of {len(people)} ids: hidden from the views after {hidden_s:.1f} s, "
              f"verified after {verified_s:.1f} s")
        assert rows_left(settings, people) == {}

        # Their later records are dropped; everyone else goes on exactly.
        publish_records(records[cut:], settings)
        assert wait_for_exact(settings, truth) == {}
        assert rows_left(settings, people) == {}
    finally:
        worker.stop()

    # A new application id: a new consumer group and empty state, reading every topic from the start.
    replay = Worker(dataclasses.replace(settings, app_id=settings.app_id + "-replay"), tmp_path / "replay.log")
    replay.start()
    try:
        deadline = time.monotonic() + 120
        while consumed(replay) < len(records):
            # The requests read again write their tombstones again, until the eraser's next pass.
            assert rows_left(settings, people, tombstones=False) == {}, "an erased person came back"
            assert time.monotonic() < deadline, "the replay did not read its input"
            time.sleep(0.5)
        time.sleep(3)  # past a sink flush
        assert compare_all(truth, read_final_rows(connect(settings))) == {}
        wait_until(lambda: rows_left(settings, people) == {}, timeout_s=60, poll_s=0.5)
    finally:
        replay.stop()

    # Prometheus scrapes the eraser as operators would.
    query = urllib.parse.urlencode({"query": 'sum(streams_erasure_verified_total{job="streams-eraser"})'})
    wait_until(lambda: prometheus_value(f"{PROMETHEUS}/api/v1/query?{query}") >= len(people), timeout_s=30)


def consumed(worker: Worker) -> float:
    try:
        return worker.metric(WORKER_PORT, "streams_events_consumed_total")
    except OSError:  # not serving yet
        return 0.0


def prometheus_value(url: str) -> float:
    result = json.loads(urllib.request.urlopen(url, timeout=5).read())["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


def test_unknown_and_repeated_requests_are_verified_and_the_analyst_reads_no_request_id(
        erasure_settings: Settings, eraser: Worker, tmp_path: Path) -> None:
    settings = erasure_settings
    worker = Worker(settings, tmp_path / "worker.log")
    worker.start()
    try:
        first = request_erasure(settings, ["nobody-1", "nobody-2"], request_id="ticket-4711")
        again = request_erasure(settings, ["nobody-1"], request_id="ticket-4711")
        assert first == again == "ticket-4711"
        wait_until(lambda: verified(settings, first, {"nobody-1", "nobody-2"}), timeout_s=120, poll_s=0.5)
        outcomes = {labels["outcome"]: value for labels, value in
                    worker.samples(WORKER_PORT, "streams_erasure_requests_total")}
        assert outcomes.get("erased") == 2 and outcomes.get("repeated", 0) >= 1
    finally:
        worker.stop()
    analyst = connect(as_analyst(settings))
    try:
        rows = analyst.execute("SELECT * FROM erasure_requests")
    finally:
        analyst.disconnect()
    assert rows, "the requests' rows are there"
    text = repr(rows)
    assert "ticket-4711" not in text and "nobody-1" not in text and "nobody-2" not in text
