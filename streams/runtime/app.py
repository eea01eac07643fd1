"""Builds the Faust application, its topics and tables from settings. No business rules here."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from faust.types import ChannelT, StoreT, TableT, TopicT
from yarl import URL

from streams.runtime import fence
from streams.runtime.store import PersistentStore
from streams.runtime.transport import FetchChannel, Fetched
from streams.settings import Settings

# Fetches waiting in an agent's channel, beside the one its agent gathers.
FETCHES_BUFFERED = 2


class TableManager(fence.TableManager):
    """Faust's table manager without the second it sleeps at start to let tables register:
    the pipeline registers its tables before the app starts."""

    async def on_start(self) -> None:
        if not self.should_stop:
            await self.update_channels()
            await self.recovery.start()


class Table(fence.Table):
    """Faust's table whose ``rocksdb://`` store is the project's (``streams.runtime.store``): the
    worker writes tables in batches, outside the stream events Faust's own store writes by."""

    def new_store_by_url(self, url: str | URL) -> StoreT:
        if URL(str(url)).scheme != "rocksdb":
            return super().new_store_by_url(url)
        options: Any = self.options  # Faust's store takes it as a dict
        return PersistentStore(url, self.app, self, table_name=self.name, key_type=self.key_type,
                               key_serializer=self.key_serializer, value_serializer=self.value_serializer,
                               value_type=self.value_type, loop=self.loop, options=options)


class PipelineApp(faust.App):
    """A Faust app whose consumer hands each fetch of the topics named in ``batch_channels`` to
    that channel as one item (``streams.runtime.transport``), and which runs ``checks`` from the
    moment it starts: Faust's own timers start only once table recovery has finished, and a
    liveness check must also watch a recovery."""

    batch_channels: dict[str, ChannelT[Fetched]]
    checks: list[tuple[float, Callable[[], Awaitable[None]]]]  # (interval in seconds, check)

    async def on_start(self) -> None:
        await super().on_start()
        for interval_s, check in self.checks:
            self.add_future(_every(interval_s, check))


async def _every(interval_s: float, check: Callable[[], Awaitable[None]]) -> None:
    while True:
        await asyncio.sleep(interval_s)
        await check()


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The Faust objects a worker runs: the app, its input topics, the channels their fetches
    reach the agents by, and the state tables."""

    app: PipelineApp
    profile_inputs: TopicT
    referral_index: TopicT
    profile_fetches: ChannelT[Fetched]
    referral_fetches: ChannelT[Fetched]
    profiles: TableT
    share_index: TableT


def _raw_topic(app: faust.App, *names: str) -> TopicT:
    # Values stay bytes: the project's codec decodes them, so a bad record is ours to handle.
    return app.topic(*names, key_type=bytes, value_type=bytes,
                     key_serializer="raw", value_serializer="raw")


def _state_table(app: faust.App, name: str, settings: Settings) -> TableT:
    # Faust derives the changelog serializers from these types: str keys go through json and
    # decode back to the same str on recovery; bytes values (the stages' own) stay raw.
    return app.Table(name, key_type=str, value_type=bytes, partitions=settings.topic_partitions, default=None,
                     extra_topic_configs=changelog_configs(settings))


def changelog_configs(settings: Settings) -> dict[str, str]:
    """Compaction bounds of a changelog topic that Faust creates: an erased person's records
    are compacted away, and the tombstones that name their keys deleted, within the erasure
    deadline (docs/operations.md, erasure). Kafka rolls a segment older than the compaction
    lag, so the active segment is bounded too."""
    deadline_ms = settings.erasure_deadline_s * 1000
    return {"max.compaction.lag.ms": str(deadline_ms // 2),
            "delete.retention.ms": str(min(86_400_000, deadline_ms // 4))}


def build_pipeline(settings: Settings) -> Pipeline:
    # One directory per application id: a store's offsets are only valid for its own changelog.
    datadir = Path(settings.table_dir) / settings.app_id
    datadir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    app = PipelineApp(
        settings.app_id,
        # The exact:// transport is aiokafka's with safe offset bookkeeping (streams.runtime.transport).
        broker=[f"exact://{server}" for server in settings.kafka_bootstrap_servers.split(",")],
        store=settings.store,
        datadir=str(datadir),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.broker_session_timeout_s / 3),
        consumer_group_instance_id=settings.group_instance_id or None,
        broker_commit_interval=settings.commit_interval_s,
        consumer_auto_offset_reset="earliest",
        # No standby copies of other workers' table partitions (streams.runtime.store): a partition
        # that moves is replayed from its changelog, never taken from a standby that may lack a record.
        table_standby_replicas=0,
        producer_acks=-1,
        # aiokafka sends a partition's next batch only once the previous one is on its way, one
        # request at a time per broker: with its 16 KiB default, the ~450 KB of state records a
        # batch of 1,000 events writes per partition went in ~28 batches, ~27 round trips
        # before the next batch could start.
        producer_max_batch_size=settings.producer_batch_bytes,
        # Faust's default (1,200 s) lets a send or flush that cannot complete hang silently for 20
        # minutes; aiokafka uses this one timeout for metadata waits, queueing and batch expiry.
        producer_request_timeout=settings.producer_timeout_s,
        TableManager=TableManager,
        Table=Table,
        web_enabled=False,
        autodiscover=False,
    )
    app.checks = []
    profile_inputs = _raw_topic(app, *settings.input_topics.values(), settings.backfill_topic,
                                settings.repartition_topic, settings.referral_credits_topic, settings.erasures_topic)
    referral_index = _raw_topic(app, settings.referral_index_topic)
    profile_fetches: ChannelT[Fetched] = FetchChannel(app, maxsize=FETCHES_BUFFERED)
    referral_fetches: ChannelT[Fetched] = FetchChannel(app, maxsize=FETCHES_BUFFERED)
    # The consumer hands these topics' fetches to the channels, not to Faust's streams.
    app.batch_channels = ({topic: profile_fetches for topic in profile_inputs.topics}
                          | {topic: referral_fetches for topic in referral_index.topics})
    return Pipeline(
        app=app,
        profile_inputs=profile_inputs,
        referral_index=referral_index,
        profile_fetches=profile_fetches,
        referral_fetches=referral_fetches,
        profiles=_state_table(app, "profiles", settings),
        share_index=_state_table(app, "share-index", settings),
    )
