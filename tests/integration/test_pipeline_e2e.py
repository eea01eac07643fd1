"""End to end on the real services: simulated traffic through Kafka and a worker process into
ClickHouse equals the oracle exactly, the dead-letter topic holds exactly the malformed
records, and /metrics agrees; then the same after SIGKILLs mid-stream, after a full replay,
when a second worker joins the group and the first leaves (two rebalances), and when a second
worker joins while records trickle in and the first stays (exact, and no lag left), whichever
client published the input: kafka-python (murmur2), librdkafka's default partitioner (CRC32)
or explicit random partitions."""

from __future__ import annotations

import random
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from streams.clickhouse.client import connect
from streams.clickhouse.migrate import migrate
from streams.settings import PREFIX, Settings
from streams.tools.oracle import Expected, expected
from streams.tools.simulate import SimRecord, SimulationConfig, generate, publish, recent_day_start_ms
from streams.topics import ensure_topics
from tests.support.clickhouse_rows import read_final_rows
from tests.support.compare import compare_all
from tests.support.exact import source_lag, wait_for_exact
from tests.support.upstream import (
    RETENTION_MS,
    UPSTREAM_CLIENTS,
    publish_records,
    upstream_publisher,
)
from tests.support.worker import Worker, wait_until

# Identity traffic in the mix: anonymous visits on several devices per customer, identifies
# before, during and long after them, replayed and conflicting identifies, sentinel ids.
CONFIG = SimulationConfig(seed=42, customers=300, events=6_000, start_ms=recent_day_start_ms(),
                          anonymous_visits=0.2, sentinel_ids=0.005)


@pytest.fixture()
def unpublished(clickhouse_settings: Settings, tmp_path: Path,
                request: pytest.FixtureRequest) -> Iterator[tuple[Settings, list[SimRecord], Expected, Worker]]:
    import dataclasses

    # No retention on the input: the simulator's oldest shares are older than Kafka's default.
    settings = dataclasses.replace(clickhouse_settings, metrics_port=19150, table_dir=str(tmp_path / "state"),
                                   broker_session_timeout_s=6.0, input_retention_ms=RETENTION_MS)
    ensure_topics(settings)
    migrate(settings)
    config = CONFIG
    if "upstream" in request.fixturenames and request.getfixturevalue("upstream").endswith("random-partitions"):
        # One key spread over partitions: two conflicting identifies have no order (definitions).
        config = dataclasses.replace(CONFIG, identity_conflicts=0.0)
    records = generate(config)
    worker = Worker(settings, tmp_path / "worker.log")
    yield settings, records, expected(records, settings), worker
    worker.stop()
    print(worker.log_tail(4000))


@pytest.fixture(params=UPSTREAM_CLIENTS)
def upstream(request: pytest.FixtureRequest) -> str:
    """The client upstream services publish with."""
    return str(request.param)


@pytest.fixture()
def prepared(unpublished: tuple[Settings, list[SimRecord], Expected, Worker],
             upstream: str) -> tuple[Settings, Expected, Worker]:
    settings, records, truth, worker = unpublished
    publish_records(records, settings, upstream)
    return settings, truth, worker


def dead_letter_reasons(settings: Settings) -> Counter[str]:
    consumer = KafkaConsumer(settings.dead_letter_topic, bootstrap_servers=settings.kafka_bootstrap_servers,
                             auto_offset_reset="earliest", consumer_timeout_ms=3_000)
    # Kept per origin offset: a replay may send a dead letter again, the origin says it is the same.
    by_origin = {}
    for message in consumer:
        headers = dict(message.headers)
        by_origin[(headers["origin_topic"], headers["origin_partition"], headers["origin_offset"])] = (
            headers["reason"].decode())
    consumer.close()
    return Counter(by_origin.values())


def test_simulated_traffic_lands_exactly(prepared: tuple[Settings, Expected, Worker]) -> None:
    settings, truth, worker = prepared
    worker.start()
    assert wait_for_exact(settings, truth) == {}
    assert views_count_people(settings, truth) == {}
    assert dead_letter_reasons(settings) == Counter(d.reason for d in truth.dead_letters)
    assert worker.metric(settings.metrics_port, "streams_events_processed_total") == len(truth.accepted)
    assert worker.metric(settings.metrics_port, "streams_dead_letters_total") == len(truth.dead_letters)
    assert worker.metric(settings.metrics_port, "streams_identifies_total") == len(truth.identifies)
    conflicts = [v for labels, v in worker.samples(settings.metrics_port, "streams_identifies_total")
                 if labels["outcome"] == "conflict"]
    assert sum(conflicts) == truth.identity_conflicts


def views_count_people(settings: Settings, truth: Expected) -> dict[str, tuple[object, object]]:
    """The analyst views' totals against the oracle's persons: (view, truth) where they differ."""
    profiles, daily = truth.profiles.values(), truth.daily.values()
    checks = {
        "SELECT count(), sum(events), sum(revenue_cents) FROM customer_360":
            (len(profiles), sum(p["events"] for p in profiles), sum(p["revenue_cents"] for p in profiles)),
        "SELECT count(), sum(purchases) FROM customer_rfm": (len(profiles), sum(p["purchases"] for p in profiles)),
        "SELECT open_tickets, tickets_resolved FROM support_kpis":
            (sum(p["open_tickets"] for p in profiles), sum(p["tickets_resolved"] for p in profiles)),
        "SELECT sum(active_customers), sum(events), sum(revenue_cents) FROM daily_engagement":
            (len(daily), sum(d["events"] for d in daily), sum(d["revenue_cents"] for d in daily)),
        "SELECT sum(clicked_customers), sum(purchased_customers) FROM click_to_purchase_funnel":
            (sum(d["clicks"] > 0 for d in daily), sum(d["purchases"] > 0 for d in daily)),
    }
    client = connect(settings)
    try:
        answers = {sql: client.execute(sql)[0] for sql in checks}
    finally:
        client.disconnect()
    return {sql: (answers[sql], want) for sql, want in checks.items() if answers[sql] != want}


def test_exact_after_two_sigkills_mid_stream(prepared: tuple[Settings, Expected, Worker]) -> None:
    settings, truth, worker = prepared
    kill_twice_then_finish(settings, truth, worker)


def test_exact_after_two_sigkills_with_static_membership(
        unpublished: tuple[Settings, list[SimRecord], Expected, Worker]) -> None:
    # The restarted worker takes its partitions back at once, without a rebalance.
    settings, records, truth, worker = unpublished
    publish_records(records, settings)
    worker.env[PREFIX + "GROUP_INSTANCE_ID"] = "worker-a"
    kill_twice_then_finish(settings, truth, worker)


def kill_twice_then_finish(settings: Settings, truth: Expected, worker: Worker) -> None:
    client = connect(settings)
    # Small batches and frequent flushes: rows land in many steps, so a kill falls between
    # them (and between a batch's state, messages, rows and acks) rather than after the end.
    worker.env.update({PREFIX + "BATCH_MAX_EVENTS": "200", PREFIX + "SINK_MAX_WAIT_MS": "50"})
    # Kill twice at random points of the run, after the worker has written some of its rows.
    for target in sorted(random.sample(range(len(truth.accepted) // 20, len(truth.accepted) // 2), 2)):
        worker.start()
        wait_until(lambda rows=target: client.execute("SELECT count() FROM events")[0][0] >= rows, poll_s=0.02)
        worker.kill()
        assert compare_all(truth, read_final_rows(client)), "the worker finished before it was killed"
    worker.start()
    assert wait_for_exact(settings, truth, timeout_s=120) == {}


def test_full_replay_with_a_new_consumer_group_changes_nothing(
        prepared: tuple[Settings, Expected, Worker], tmp_path: Path) -> None:
    import dataclasses

    settings, truth, worker = prepared
    worker.start()
    assert wait_for_exact(settings, truth) == {}
    worker.stop()
    # A new application id: a new consumer group and new state, reading every topic from the start.
    replay = Worker(dataclasses.replace(settings, app_id=settings.app_id + "-replay"), tmp_path / "replay.log")
    replay.start()
    try:
        inputs = truth_input_count(truth)
        wait_until(lambda: replay.metric(settings.metrics_port, "streams_events_consumed_total") >= inputs)
        time.sleep(3)  # past a sink flush
        assert compare_all(truth, read_final_rows(connect(settings))) == {}
    finally:
        replay.stop()


def test_exact_when_a_second_worker_joins_and_the_first_leaves(
        unpublished: tuple[Settings, list[SimRecord], Expected, Worker], upstream: str, tmp_path: Path) -> None:
    import dataclasses

    settings, records, truth, first = unpublished
    second_settings = dataclasses.replace(settings, metrics_port=19151, table_dir=str(tmp_path / "state-2"))
    second = Worker(second_settings, tmp_path / "worker-2.log")
    try:
        half = len(records) // 2
        publish_records(records[:half], settings, upstream)
        first.start()
        wait_until(lambda: consumed(first, settings.metrics_port) >= half)
        # The group rebalances: the first worker gives partitions (and their state) away.
        second.start()
        wait_until(lambda: lag_series(second_settings.metrics_port) > 0)
        publish_records(records[half:], settings, upstream)
        # The first leaves while both are busy: the second takes its partitions over.
        first.stop()
        assert first.process is not None and first.process.returncode == 0
        assert wait_for_exact(settings, truth, timeout_s=120) == {}
    finally:
        second.stop()
        print(second.log_tail(4000))


def test_exact_and_no_lag_when_a_second_worker_joins_and_the_first_stays(
        unpublished: tuple[Settings, list[SimRecord], Expected, Worker], tmp_path: Path) -> None:
    # The first worker keeps half of its partitions. Records it fetched or handed to its runners
    # under the old assignment, and records of partitions that never had a commit, must be read
    # again after the rebalance: one skipped there is never processed, and no final re-read by
    # another worker hides it (the rebalance of tests.bench.restart_bench lost such records).
    import dataclasses

    settings, records, truth, first = unpublished
    second_settings = dataclasses.replace(settings, metrics_port=19151, table_dir=str(tmp_path / "state-2"))
    second = Worker(second_settings, tmp_path / "worker-2.log")
    for worker in (first, second):  # small batches, frequent flushes: records in every stage of a batch
        worker.env.update({PREFIX + "BATCH_MAX_EVENTS": "50", PREFIX + "SINK_MAX_WAIT_MS": "50"})
    try:
        half = len(records) // 2
        publish_records(records[:half], settings)
        first.start()
        wait_until(lambda: consumed(first, settings.metrics_port) >= half)
        trickle = threading.Thread(target=publish_slowly, args=(records[half:], settings, 5.0))
        trickle.start()
        time.sleep(1)
        second.start()  # while records trickle in
        trickle.join()
        assert wait_for_exact(settings, truth, timeout_s=120) == {}
        wait_until(lambda: lag_series(second_settings.metrics_port) > 0)
        assert first.process is not None and first.process.poll() is None
        # Nothing left uncommitted: a skipped record would hold its partition's commit back for good.
        wait_until(lambda: source_lag(first, settings.metrics_port) == 0
                   and source_lag(second, second_settings.metrics_port) == 0, timeout_s=60)
    finally:
        second.stop()
        print(second.log_tail(4000))


def publish_slowly(records: list[SimRecord], settings: Settings, seconds: float) -> None:
    """Publish ``records`` in small chunks spread over about ``seconds``."""
    publisher = upstream_publisher("kafka-python", settings)
    chunks = 100
    try:
        for i in range(chunks):
            publish(records[i * len(records) // chunks:(i + 1) * len(records) // chunks], publisher, settings)
            publisher.flush()
            time.sleep(seconds / chunks)
    finally:
        publisher.close()


def consumed(worker: Worker, port: int) -> float:
    return worker.metric(port, "streams_events_consumed_total")


def lag_series(port: int) -> int:
    """Input partitions the worker reports lag for: those assigned to it."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(1 for line in body.splitlines()
               if line.startswith("streams_consumer_lag_records{") and "changelog" not in line)


def truth_input_count(truth: Expected) -> int:
    """Input records the worker consumes: accepted events and identifies, duplicates and dead letters."""
    return len(truth.accepted) + len(truth.identifies) + truth.duplicate_count + len(truth.dead_letters)
