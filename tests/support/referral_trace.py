"""What the topics hold for the referral credits ClickHouse lacks: an exactness test that fails
on them prints it, so that a loss seen once (a cluster test under load) can be traced to the
join step that lost it: the share or touch never indexed, the share index's stored record, or
the credit never produced."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition

from streams.clickhouse.client import connect
from streams.settings import Settings
from streams.tools.oracle import Expected

SHARES_TRACED = 8


def _records(settings: Settings, topic: str) -> list[Any]:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False,
                             consumer_timeout_ms=3_000)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        return list(consumer)
    finally:
        consumer.close()


def missing_credits_trace(settings: Settings, truth: Expected) -> str:
    """For the first shares whose expected credits ClickHouse lacks: their records in the
    referral index, the stored share-index record after each change (share known, highest index
    offset, the share's offset, touches waiting), and which of their credits were produced."""
    client = connect(settings)
    try:
        written = {row[0] for row in client.execute("SELECT credit_id FROM referral_credits")}
    finally:
        client.disconnect()
    missing = [credit_id for credit_id in truth.credits if credit_id not in written]
    if not missing:
        return "no referral credit missing"
    shares = sorted({truth.credits[credit_id]["share_id"] for credit_id in missing})
    produced = {orjson.loads(m.value).get("credit_id") for m in _records(settings, settings.referral_credits_topic)}
    indexed: dict[str, list[str]] = defaultdict(list)
    for m in _records(settings, settings.referral_index_topic):
        value = orjson.loads(m.value)
        if value.get("share_id") in shares:
            indexed[value["share_id"]].append(
                f"index[{m.partition}]@{m.offset} ts {m.timestamp} {value['k']} {value.get('credit_id', '')} "
                f"lane {value.get('lane')}@{value.get('lane_offset')}")
    stored: dict[str, list[str]] = defaultdict(list)
    for m in _records(settings, f"{settings.app_id}-share-index-changelog"):
        key = orjson.loads(m.key)
        if key.startswith("s:") and key[2:] in shares:
            value = orjson.loads(m.value) if m.value else None
            stored[key[2:]].append(f"changelog[{m.partition}]@{m.offset}: " + (
                "deleted" if value is None else
                f"share {'known' if value['s'] else 'unknown'}, offset {value['o']}, share offset {value.get('so')}, "
                f"{len(value['e'])} waiting"))
    lines = [f"{len(missing)} referral credits missing, of {len(shares)} shares"]
    for share_id in shares[:SHARES_TRACED]:
        credits = [c for c in missing if truth.credits[c]["share_id"] == share_id]
        lines.append(f"share {share_id}: missing {credits}, produced to the credits topic: "
                     f"{[c for c in credits if c in produced]}")
        lines.extend(f"  {line}" for line in indexed[share_id] + stored[share_id])
    return "\n".join(lines)
