"""The referral stage (keyed by share id): the share-index side of the referral join; see
``streams.stages``."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from streams.core.referrals import AttributionRules, Credit, ShareIndex, SharePost, Touch
from streams.settings import Settings
from streams.stages.partitioning import partition_for
from streams.stages.records import BatchOutput, DecodedCache, OutMessage, SourceRecord, StateReader, encode_state


class ReferralStage:
    """The share-index side of the referral join; see the module docstring."""

    def __init__(self, settings: Settings, store: StateReader) -> None:
        self.settings = settings
        self.store = store
        self.rules = AttributionRules(settings.attribution_window_ms, settings.allow_self_referral,
                                      settings.pending_touch_ttl_ms)
        self.ingest_clock_ms = 0  # newest ingest time seen on the index: the clock of expiry
        self.indexes: DecodedCache[ShareIndex] = DecodedCache()
        # Share ids whose touches wait for their share: what expire() visits. None until
        # built from the store (at the first expiry after start or a rebalance).
        self._waiting: set[str] | None = None

    def forget_partitions(self) -> None:
        """Drop decoded records after a rebalance: state may have moved."""
        self.indexes.clear()
        self._waiting = None

    def _note_waiting(self, share_id: str, index: ShareIndex) -> None:
        if self._waiting is not None:
            if index.share is None and index.early:
                self._waiting.add(share_id)
            else:
                self._waiting.discard(share_id)

    def load(self, share_id: str) -> ShareIndex:
        index = self.indexes.get(share_id)
        if index is None:
            raw = self.store.get(f"s:{share_id}")
            index = ShareIndex.from_json(orjson.loads(raw)) if raw else ShareIndex()
        return index

    def process(self, records: Sequence[SourceRecord]) -> BatchOutput:
        out = BatchOutput()
        loaded: dict[str, tuple[int, ShareIndex]] = {}
        for record in records:
            self.ingest_clock_ms = max(self.ingest_clock_ms, record.timestamp)
            message = orjson.loads(record.value or b"{}")
            kind = message.pop("k")
            share_id = message["share_id"]
            if share_id not in loaded:
                loaded[share_id] = (record.partition, self.load(share_id))
            index = loaded[share_id][1]
            if kind == "share":
                # The index record carries the share's own ingest time (send_to_referral_index).
                credits = index.on_share(SharePost(**message), record.offset, record.timestamp, self.rules)
            else:
                credits = index.on_touch(Touch(**message), record.offset, self.rules)
            out.counts[("referral", kind)] += 1
            for credit in credits:
                self.emit_credit(credit, out)
        for share_id, (partition, index) in loaded.items():
            out.state_writes.append((partition, f"s:{share_id}", encode_state(index.to_json())))
            self.indexes.put(share_id, index)
            self._note_waiting(share_id, index)
        return out

    def _partition(self, share_id: str) -> int:
        # Index messages were partitioned by share id, so the id tells its partition.
        return partition_for(share_id.encode(), self.settings.topic_partitions)

    def emit_credit(self, credit: Credit, out: BatchOutput) -> None:
        # A touch by an anonymous visitor goes through the visitor's partition, which names the
        # person it resolves to (docs/definitions.md, identity); others go to the sharer.
        key = (credit.referred_customer_id if credit.referred_anonymous else credit.sharer_customer_id).encode()
        out.messages.append(OutMessage(
            self.settings.referral_credits_topic,
            partition_for(key, self.settings.topic_partitions), key, encode_state(credit.to_json())))
        out.rows.append(("referral_credits", credit.row()))
        out.counts[("credit_emitted", credit.touch_type)] += 1

    def expire(self, partitions: set[int]) -> tuple[BatchOutput, int]:
        """Drop touches that waited too long for their share, in the index ``partitions`` this
        worker owns (the store may still hold others'); returns writes and touches still waiting."""
        out = BatchOutput()
        if self._waiting is None:
            self._waiting = set()
            for key in self.store.keys_with_prefix("s:"):
                if self._partition(key[2:]) in partitions:
                    self._note_waiting(key[2:], self.load(key[2:]))
        waiting = 0
        for share_id in list(self._waiting):
            partition = self._partition(share_id)
            if partition not in partitions:
                continue
            index = self.load(share_id)
            before = len(index.early)
            if index.expire(self.ingest_clock_ms, self.settings.pending_touch_ttl_ms):
                out.state_writes.append((partition, f"s:{share_id}", None))
                self.indexes.discard(share_id)
            elif len(index.early) != before:
                out.state_writes.append((partition, f"s:{share_id}", encode_state(index.to_json())))
                self.indexes.put(share_id, index)
            self._note_waiting(share_id, index)
            waiting += len(index.early) if index.share is None else 0
        return out, waiting
