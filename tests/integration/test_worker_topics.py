"""A worker refuses to start on topics it cannot be exact with, saying what to fix: topics that
do not exist (an upgrade that added one, `streams topics` not run) and topics partitioned
unlike ``STREAMS_TOPIC_PARTITIONS`` (a key would own different partitions in different topics),
and topics that would refuse its batches (``max.message.bytes`` below ``STREAMS_PRODUCER_BATCH_BYTES``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from streams.settings import PREFIX, Settings
from streams.topics import ensure_topics
from tests.support.worker import Worker

METRICS_PORT = 19160
EXIT_TIMEOUT_S = 60


def exit_of(settings: Settings, tmp_path: Path, **env: str) -> tuple[int, str]:
    worker = Worker(dataclasses.replace(settings, metrics_port=METRICS_PORT, table_dir=str(tmp_path / "state")),
                    tmp_path / "worker.log")
    worker.env.update(env)
    try:
        return worker.run_until_exit(EXIT_TIMEOUT_S)
    finally:
        worker.stop()


def test_missing_topics_stop_the_worker_with_streams_topics(settings: Settings, tmp_path: Path) -> None:
    code, log = exit_of(settings, tmp_path)
    assert code == 1
    assert f"{settings.repartition_topic} is missing" in log
    assert "Run `streams topics`" in log


def test_a_partition_count_unlike_the_setting_stops_the_worker(settings: Settings, tmp_path: Path) -> None:
    ensure_topics(settings)
    code, log = exit_of(settings, tmp_path, **{PREFIX + "TOPIC_PARTITIONS": "2"})
    assert code == 1
    assert f"{settings.input_topics['click']} has {settings.topic_partitions} partitions, " \
           "STREAMS_TOPIC_PARTITIONS is 2" in log


def test_a_topic_that_refuses_the_workers_batches_stops_the_worker(settings: Settings, tmp_path: Path) -> None:
    ensure_topics(settings)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, settings.repartition_topic,
                                            configs={"max.message.bytes": "100000"})])
    finally:
        admin.close()
    code, log = exit_of(settings, tmp_path)
    assert code == 1
    assert f"{settings.repartition_topic} takes record batches of up to 100,000 bytes (max.message.bytes), " \
           f"STREAMS_PRODUCER_BATCH_BYTES is {settings.producer_batch_bytes:,}" in log
    assert "Set STREAMS_PRODUCER_BATCH_BYTES to at most" in log
