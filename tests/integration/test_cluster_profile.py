"""Exactness on the cluster profile of the local stack (three KRaft brokers, topics at replication
3 with min.insync.replicas 2, ClickHouse 2 shards x 2 replicas in cluster mode): two workers; a
ClickHouse replica SIGKILLed mid-stream and restarted; a Kafka broker SIGKILLed mid-stream and
restarted; a worker SIGKILLed, whose partitions move to the other. The traffic includes anonymous
visitors and their identifies. Each ends equal to the oracle, with every row on the shard of its
customer and the two replicas of each shard equal.

The fixture starts the cluster profile (``deploy/local/stack up --cluster``) unless it is up, and
stops it at the end if it started it. Worker metrics ports: 23150-23151."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.clickhouse.client import connect
from streams.clickhouse.cluster import drop_database
from streams.clickhouse.migrate import load_migrations, migrate
from streams.settings import PREFIX, Settings, load_settings
from streams.tools.oracle import Expected, expected
from streams.tools.simulate import SimRecord, SimulationConfig, generate, recent_day_start_ms
from streams.topics import ensure_topics
from tests.conftest import unique
from tests.support.analyst import as_analyst
from tests.support.cluster import (
    applied_on_each_node,
    cluster_environ,
    cluster_stack,
    misplaced_rows,
    replica_differences,
    restart,
    sigkill,
    whole_cluster,
)
from tests.support.exact import wait_for_exact
from tests.support.referral_trace import missing_credits_trace
from tests.support.upstream import RETENTION_MS, publish_records
from tests.support.worker import Worker, wait_until

__all__ = ["cluster_stack", "whole_cluster"]  # fixtures, used by name

CONFIG = SimulationConfig(seed=11, customers=300, events=6_000, start_ms=recent_day_start_ms(),
                          anonymous_visits=0.2)
FIRST_PORT, SECOND_PORT = 23150, 23151


@pytest.fixture()
def cluster_settings(whole_cluster: None, tmp_path: Path) -> Iterator[Settings]:
    """Test-unique topics (replication 3, min.insync.replicas 2), group and database, migrated on
    the cluster; the database is dropped on every node afterwards."""
    name = unique("c")
    settings = load_settings(cluster_environ(), topic_prefix=name, app_id=name, clickhouse_database=name,
                             metrics_port=FIRST_PORT, table_dir=str(tmp_path / "state"),
                             broker_session_timeout_s=6.0, input_retention_ms=RETENTION_MS)
    assert settings.clickhouse_cluster and settings.topic_replication == 3
    assert settings.topic_min_insync_replicas == 2
    assert ensure_topics(settings).drift == []
    migrate(settings)
    yield settings
    admin = connect(dataclasses.replace(settings, clickhouse_timeout_s=300.0), admin=True)
    admin.execute(drop_database(settings.clickhouse_database, settings.clickhouse_cluster))
    admin.disconnect()


Pipeline = tuple[Settings, list[SimRecord], Expected, Worker]


@pytest.fixture()
def pipeline(cluster_settings: Settings, tmp_path: Path) -> Iterator[Pipeline]:
    """The settings, a simulated day's records, their oracle and a worker (stopped afterwards)."""
    records = generate(CONFIG)
    worker = small_batches(Worker(cluster_settings, tmp_path / "worker.log"))
    yield cluster_settings, records, expected(records, cluster_settings), worker
    stop_all(worker)


def small_batches(worker: Worker) -> Worker:
    """Rows land in many small steps, so a kill falls between them rather than after the end."""
    worker.env.update({PREFIX + "BATCH_MAX_EVENTS": "200", PREFIX + "SINK_MAX_WAIT_MS": "50"})
    return worker


def second_worker(settings: Settings, tmp_path: Path) -> Worker:
    return small_batches(Worker(dataclasses.replace(settings, metrics_port=SECOND_PORT,
                                                    table_dir=str(tmp_path / "state-2")), tmp_path / "worker-2.log"))


def events_written(settings: Settings) -> int:
    client = connect(settings)
    try:
        return int(client.execute("SELECT count() FROM events")[0][0])
    finally:
        client.disconnect()


def assert_exact_on_every_node(settings: Settings, truth: Expected) -> None:
    problems = wait_for_exact(settings, truth, timeout_s=180)
    assert problems == {}, missing_credits_trace(settings, truth) if "referral_credits" in problems else ""
    # First the replicas: a query through a Distributed table reads one replica per shard, and a
    # restarted one answers short until it has caught up (docs/cluster.md).
    assert replica_differences(settings) == []
    client = connect(settings)
    # Accepted events, each once: nothing lost, nothing doubled (events is not in the comparison).
    assert client.execute("SELECT count() FROM events FINAL")[0][0] == len(truth.accepted)
    client.disconnect()
    assert misplaced_rows(settings) == {}


def stop_all(*workers: Worker) -> None:
    for worker in workers:
        worker.stop()
        print(worker.log_tail(3000))


def test_two_workers_are_exact_and_the_schema_is_the_same_on_every_node(pipeline: Pipeline, tmp_path: Path) -> None:
    settings, records, truth, first = pipeline
    files = sorted((m.name, m.base.checksum) for m in load_migrations())
    assert applied_on_each_node(settings) == {node: files for node in (1, 2, 3, 4)}
    second = second_worker(settings, tmp_path)
    try:
        first.start()
        second.start()
        publish_records(records, settings)
        assert_exact_on_every_node(settings, truth)
        # The analyst's views, read on a node of the other shard, see every person once, with the
        # anonymous ids of every shard resolved to their customers.
        analyst = connect(dataclasses.replace(as_analyst(settings), clickhouse_port=settings.clickhouse_port + 2))
        assert analyst.execute("SELECT count(), uniqExact(customer_id) FROM person_360")[0] == (
            len(truth.profiles), len(truth.profiles))
        assert analyst.execute("SELECT count() FROM identity_map FINAL")[0][0] == len(truth.identities)
        assert analyst.execute("SELECT uniqExact(person_id) FROM identity_events")[0][0] == len(truth.profiles)
        assert analyst.execute("SELECT sum(events) FROM person_360")[0][0] == sum(
            profile["events"] for profile in truth.profiles.values())
        analyst.disconnect()
    finally:
        stop_all(second)


def test_a_clickhouse_replica_sigkilled_mid_stream_loses_and_doubles_nothing(pipeline: Pipeline) -> None:
    settings, records, truth, worker = pipeline
    half = len(records) // 2
    # The second half is published once the replica is dead: a worker can write a whole backlog
    # of this size in one flush, before a kill timed by the rows it has written.
    publish_records(records[:half], settings)
    worker.start()
    wait_until(lambda: events_written(settings) > 0, poll_s=0.05)
    sigkill("clickhouse-3")  # a replica of shard 02; the worker writes through clickhouse-1
    killed_at = time.monotonic()
    assert events_written(settings) < len(truth.accepted), "the worker finished before the replica died"
    publish_records(records[half:], settings)
    wait_until(lambda: events_written(settings) >= len(truth.accepted) // 2, poll_s=0.05)
    # Restarted before its ZooKeeper session (6 s) expired, it would stay read-only for longer.
    time.sleep(max(0.0, killed_at + 7 - time.monotonic()))
    restart("clickhouse-3")
    assert_exact_on_every_node(settings, truth)


def test_a_kafka_broker_sigkilled_mid_stream_loses_nothing(pipeline: Pipeline) -> None:
    settings, records, truth, worker = pipeline
    half = len(records) // 2
    worker.start()
    publish_records(records[:half], settings)
    wait_until(lambda: events_written(settings) > 0, poll_s=0.05)
    # Publishing (acks=all) and processing go on while a broker dies and comes back.
    rest = threading.Thread(target=publish_records, args=(records[half:], settings))
    rest.start()
    sigkill("kafka-2")
    time.sleep(5)
    restart("kafka-2")
    rest.join(timeout=120)
    assert not rest.is_alive()
    assert_exact_on_every_node(settings, truth)
    assert worker.process is not None and worker.process.poll() is None, "the worker exited"


def test_a_sigkilled_worker_s_partitions_move_and_results_stay_exact(pipeline: Pipeline, tmp_path: Path) -> None:
    settings, records, truth, first = pipeline
    second = second_worker(settings, tmp_path)
    half = len(records) // 2
    try:
        first.start()
        second.start()
        publish_records(records[:half], settings)
        wait_until(lambda: assigned_inputs(first, FIRST_PORT, settings) > 0
                   and assigned_inputs(second, SECOND_PORT, settings) > 0)
        wait_until(lambda: events_written(settings) >= len(truth.accepted) // 5, poll_s=0.05)
        first.kill()
        publish_records(records[half:], settings)
        assert_exact_on_every_node(settings, truth)
        # The survivor owns every input partition now.
        every_input = settings.topic_partitions * len(settings.input_topics)
        wait_until(lambda: assigned_inputs(second, SECOND_PORT, settings) == every_input, timeout_s=60)
    finally:
        stop_all(second)


def assigned_inputs(worker: Worker, port: int, settings: Settings) -> int:
    """Input topic partitions the worker reports lag for: those assigned to it."""
    inputs = set(settings.input_topics.values())
    return sum(1 for labels, _ in worker.samples(port, "streams_consumer_lag_records") if labels["topic"] in inputs)
