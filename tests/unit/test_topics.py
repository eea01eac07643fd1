"""The topic plan (pure): what ensure_topics creates."""

from __future__ import annotations

from streams.settings import load_settings
from streams.topics import TopicDrift, batches_too_large, plan_topics, unfit_for_worker


def test_plan_has_inputs_backfill_erasures_dead_letters_and_internal_topics() -> None:
    names = [spec.name for spec in plan_topics(load_settings({}))]
    assert names == [
        "interactions.clicks",
        "interactions.shares",
        "interactions.purchases",
        "interactions.support",
        "interactions.identifies",
        "interactions.backfill",
        "interactions.erasures",
        "interactions.dlq",
        "interactions.repartition",
        "interactions.referral-index",
        "interactions.referral-credits",
    ]


def test_plan_follows_settings_and_co_partitions_every_topic() -> None:
    settings = load_settings(
        {},
        topic_prefix="it-42",
        topic_partitions=6,
        topic_replication=3,
        input_retention_ms=86_400_000,
    )
    specs = plan_topics(settings)
    assert all(spec.name.startswith("it-42.") for spec in specs)
    assert {spec.partitions for spec in specs} == {6}
    assert {spec.replication for spec in specs} == {3}
    for spec in specs:
        assert spec.configs == {"retention.ms": "86400000", "cleanup.policy": "delete", "min.insync.replicas": "1"}


def test_plan_covers_every_topic_the_settings_name() -> None:
    settings = load_settings({})
    named = {
        *settings.input_topics.values(),
        settings.backfill_topic,
        settings.erasures_topic,
        settings.dead_letter_topic,
        settings.repartition_topic,
        settings.referral_index_topic,
        settings.referral_credits_topic,
    }
    assert {spec.name for spec in plan_topics(settings)} == named


def test_drift_reads_as_a_sentence() -> None:
    drift = TopicDrift("interactions.clicks", "partitions", "4", "2")
    assert str(drift) == "interactions.clicks: partitions is 2, planned 4"


def test_a_worker_needs_every_planned_topic_with_the_planned_partitions() -> None:
    specs = plan_topics(load_settings({}))
    metadata = {spec.name: {"partitions": [{}] * spec.partitions} for spec in specs}
    assert unfit_for_worker(specs, metadata) == []
    del metadata["interactions.repartition"]
    metadata["interactions.clicks"] = {"partitions": [{}] * 6}
    assert unfit_for_worker(specs, metadata) == [
        "interactions.clicks has 6 partitions, STREAMS_TOPIC_PARTITIONS is 4",
        "interactions.repartition is missing",
    ]


def test_a_worker_needs_topics_that_take_its_batches() -> None:
    limits = {"interactions.repartition": 100_000, "interactions.dlq": 1_048_588, "interactions.clicks": 524_288}
    assert batches_too_large(524_288, limits) == [
        "interactions.repartition takes record batches of up to 100,000 bytes (max.message.bytes), "
        "STREAMS_PRODUCER_BATCH_BYTES is 524,288"]
    assert batches_too_large(65_536, limits) == []
    assert batches_too_large(524_288, {}) == []
