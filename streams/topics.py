"""Topic provisioning: the planned topics (pure) and an idempotent ``ensure_topics``.

Every topic the pipeline owns has ``settings.topic_partitions`` partitions: the internal
topics must be co-partitioned with the inputs so that a key lands on the same partition
number everywhere (input records on another partition are re-routed, see
``streams.stages``). Existing topics are never altered; differences from the plan
are reported as drift for an operator to fix on purpose. Faust creates its own changelog
topics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import KafkaTimeoutError, TopicAlreadyExistsError, for_code

from streams.errors import StreamsError
from streams.settings import Settings

# How long new topics may take to get a leader for every partition. kafka-python waits 10 s by
# default; a broker that has just started, on a busy machine, took longer.
TOPICS_READY_TIMEOUT_S = 60
MESSAGE_LIMIT = "max.message.bytes"  # the largest record batch a topic takes


class TopicsError(StreamsError):
    """The topics a worker needs are missing, partitioned unlike the plan, or not ready."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic as the pipeline needs it."""

    name: str
    partitions: int
    replication: int
    configs: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class TopicDrift:
    """One way an existing topic differs from its plan."""

    topic: str
    setting: str  # "partitions", "replication" or a topic config name
    planned: str
    actual: str

    def __str__(self) -> str:
        return f"{self.topic}: {self.setting} is {self.actual}, planned {self.planned}"


@dataclass(slots=True)
class TopicsReport:
    """Outcome of :func:`ensure_topics`."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    drift: list[TopicDrift] = field(default_factory=list)


def plan_topics(settings: Settings) -> list[TopicSpec]:
    """The input topics (four interaction types and identifies), the backfill, the erasure requests, the
    dead-letter topic, the repartition topic and the two internal referral topics."""
    configs = {"retention.ms": str(settings.input_retention_ms), "cleanup.policy": "delete",
               "min.insync.replicas": str(settings.topic_min_insync_replicas)}
    names = [
        *settings.input_topics.values(),
        settings.backfill_topic,
        settings.erasures_topic,
        settings.dead_letter_topic,
        settings.repartition_topic,
        settings.referral_index_topic,
        settings.referral_credits_topic,
    ]
    return [TopicSpec(name, settings.topic_partitions, settings.topic_replication, configs) for name in names]


def _create(admin: KafkaAdminClient, specs: list[TopicSpec]) -> list[str]:
    """Create ``specs``; returns the names this call created (a concurrent creator may win)."""
    if not specs:
        return []
    request = {
        spec.name: {
            "num_partitions": spec.partitions,
            "replication_factor": spec.replication,
            "configs": dict(spec.configs),
        }
        for spec in specs
    }
    response = admin.create_topics(request, raise_errors=False)
    created = []
    for topic in response["topics"]:
        error = for_code(topic["error_code"])
        if error is TopicAlreadyExistsError:
            continue
        if topic["error_code"] != 0:
            raise error(f"creating topic {topic['name']}: {topic.get('error_message')}")
        created.append(topic["name"])
    try:
        admin.wait_for_topics(created, timeout_ms=TOPICS_READY_TIMEOUT_S * 1000)
    except KafkaTimeoutError as error:
        raise TopicsError(f"created {', '.join(created)}, but they have no leader after {TOPICS_READY_TIMEOUT_S} s "
                          f"({error}); check the broker (its log, `deploy/local/stack status kafka`) and run "
                          "`streams topics` again: it creates only what is missing") from error
    return created


def _actual_configs(admin: KafkaAdminClient, specs: list[TopicSpec]) -> dict[str, dict[str, str]]:
    resources = [ConfigResource(ConfigResourceType.TOPIC, spec.name, list(spec.configs)) for spec in specs]
    described = admin.describe_configs(resources, config_filter="all")["topic"]
    return {name: {key: str(entry["value"]) for key, entry in entries.items()} for name, entries in described.items()}


def _drift(spec: TopicSpec, metadata: Mapping[str, Any], configs: Mapping[str, str]) -> list[TopicDrift]:
    partitions = metadata["partitions"]
    actual = {
        "partitions": str(len(partitions)),
        "replication": str(min(len(p["replica_nodes"]) for p in partitions)),
        **configs,
    }
    planned = {"partitions": str(spec.partitions), "replication": str(spec.replication), **spec.configs}
    return [
        TopicDrift(spec.name, setting, value, actual.get(setting, "<unset>"))
        for setting, value in planned.items()
        if actual.get(setting) != value
    ]


def ensure_topics(settings: Settings, **admin_config: Any) -> TopicsReport:
    """Create the planned topics that are missing; report drift of those that exist.

    Idempotent: a second call creates nothing and reports the same drift.
    ``admin_config`` overrides KafkaAdminClient settings.
    """
    specs = plan_topics(settings)
    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=f"{settings.app_id}-topics",
        **admin_config,
    )
    try:
        present = set(admin.list_topics())
        report = TopicsReport(created=_create(admin, [s for s in specs if s.name not in present]))
        existing = [s for s in specs if s.name not in report.created]
        if existing:
            metadata = {t["name"]: t for t in admin.describe_topics([s.name for s in existing])}
            configs = _actual_configs(admin, existing)
            for spec in existing:
                report.existing.append(spec.name)
                report.drift.extend(_drift(spec, metadata[spec.name], configs[spec.name]))
        return report
    finally:
        admin.close()


def unfit_for_worker(specs: list[TopicSpec], metadata: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What keeps a worker from being exact on these topics: a missing topic, or a partition
    count other than planned (a key's partition would then differ between topics)."""
    problems = []
    for spec in specs:
        topic = metadata.get(spec.name)
        if topic is None:
            problems.append(f"{spec.name} is missing")
        elif len(topic["partitions"]) != spec.partitions:
            problems.append(f"{spec.name} has {len(topic['partitions'])} partitions, "
                            f"STREAMS_TOPIC_PARTITIONS is {spec.partitions}")
    return problems


def batches_too_large(batch_bytes: int, message_limits: Mapping[str, int]) -> list[str]:
    """The topics whose ``max.message.bytes`` is below the worker's batch size: Kafka would refuse
    a full batch sent there, and the worker would stop."""
    return [f"{topic} takes record batches of up to {limit:,} bytes (max.message.bytes), "
            f"STREAMS_PRODUCER_BATCH_BYTES is {batch_bytes:,}"
            for topic, limit in sorted(message_limits.items()) if limit < batch_bytes]


def _written_topics(settings: Settings) -> set[str]:
    """The planned topics a worker produces to (it only reads the input and backfill topics)."""
    return {settings.erasures_topic, settings.dead_letter_topic, settings.repartition_topic,
            settings.referral_index_topic, settings.referral_credits_topic}


def _message_limits(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    resources = [ConfigResource(ConfigResourceType.TOPIC, name, [MESSAGE_LIMIT]) for name in names]
    described = admin.describe_configs(resources, config_filter="all")["topic"]
    limits = {}
    for name in names:
        # kafka-python leaves out a topic's error: a topic it could not describe has no entries.
        entry = described.get(name, {}).get(MESSAGE_LIMIT)
        if entry is None:
            raise TopicsError(f"could not read {MESSAGE_LIMIT} of {name}: the worker's Kafka user needs "
                              "DescribeConfigs on the topics it writes")
        limits[name] = int(entry["value"])
    return limits


def require_topics(settings: Settings, **admin_config: Any) -> None:
    """Raise :class:`TopicsError`, saying what to fix, unless every planned topic exists with
    ``settings.topic_partitions`` partitions, and every topic the worker writes takes its
    batches. Run by a worker before it starts."""
    specs = plan_topics(settings)
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers,
                             client_id=f"{settings.app_id}-topics", **admin_config)
    try:
        present = set(admin.list_topics())
        found = [s.name for s in specs if s.name in present]
        metadata = {t["name"]: t for t in admin.describe_topics(found)} if found else {}
        written = sorted(_written_topics(settings).intersection(found))
        limits = _message_limits(admin, written) if written else {}
    finally:
        admin.close()
    problems = unfit_for_worker(specs, metadata)
    if problems:
        raise TopicsError("; ".join(problems) + ". Run `streams topics` to create missing topics; a topic "
                          "with another partition count must be recreated (or STREAMS_TOPIC_PARTITIONS set "
                          "to match every topic).")
    oversized = batches_too_large(settings.producer_batch_bytes, limits)
    if oversized:
        raise TopicsError("; ".join(oversized) + ". Set STREAMS_PRODUCER_BATCH_BYTES to at most the smallest "
                          "of these, or raise the topics' max.message.bytes (the changelog topics take the "
                          "broker's message.max.bytes).")
