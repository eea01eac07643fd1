"""The referral stage (keyed by share id): the share-index side of the referral join; see
``streams.stages``."""

from __future__ import annotations

import heapq
import re
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import orjson

from streams.core.erasure import acknowledged
from streams.core.referrals import (
    WAITING_PAGE,
    AttributionRules,
    Credit,
    CreditOrigin,
    ShareIndex,
    SharePost,
    Touch,
    past_retention,
    resolved_credit,
    waiting_pages,
)
from streams.settings import Settings
from streams.stages.partitioning import partition_for
from streams.stages.records import (
    BatchOutput,
    DecodedCache,
    OutMessage,
    SourceRecord,
    StateReader,
    StateWrite,
    encode_state,
)

# How a stored share-index record begins while its share is unknown (``ShareIndex.to_json``
# writes the share first): only such records can hold touches waiting for their share.
SHARE_UNKNOWN = b'{"s":null'


# The share's ingest time in a stored record whose share is known (``ShareIndex.to_json``: "o"
# then "i", keys no nested object has): read without decoding the record.
SHARE_INGEST = re.compile(rb',"o":-?\d+,"i":(\d+),')


def may_wait(raw: bytes | None) -> bool:
    """Whether a stored share-index record may hold waiting touches: the first sweep after a
    start or a rebalance decodes only those, not every share the partition has seen."""
    return raw is not None and raw.startswith(SHARE_UNKNOWN)


def page_key(share_id: str, page: int) -> str:
    """Where page ``page`` of a share id's waiting touches is stored (its record is ``s:<id>``)."""
    return f"w:{page}:{share_id}"


class ReferralStage:
    """The share-index side of the referral join; see the module docstring."""

    def __init__(self, settings: Settings, store: StateReader, erased_at_start: Collection[str] = ()) -> None:
        self.settings = settings
        self.credits_topic = settings.referral_credits_topic  # a Settings property builds the name per call
        self.store = store
        # Ids whose erasure was requested before this process started: their shares and touches
        # read again from the index topic (a state rebuilt from scratch) join nothing.
        self.erased_at_start = frozenset(erased_at_start)
        self.rules = AttributionRules(settings.attribution_window_ms, settings.allow_self_referral,
                                      settings.pending_touch_ttl_ms, settings.share_retention_ms)
        # Per index partition, per profile-stage partition: until when that partition has sent
        # every share, and every touch (its "clock" messages). The clocks of expiry and of
        # retirement are their minimums.
        self.share_clocks: dict[int, dict[int, int]] = {}
        self.touch_clocks: dict[int, dict[int, int]] = {}
        self.indexes: DecodedCache[ShareIndex] = DecodedCache()
        # Share ids whose touches wait for their share: what expire() visits. None until
        # built from the store (at the first expiry after start or a rebalance).
        self._waiting: set[str] | None = None
        # Known shares by ingest time, oldest first: what retirement visits. Built like _waiting.
        self._retiring: list[tuple[int, str]] | None = None

    def forget_partitions(self) -> None:
        """Drop decoded records after a rebalance: state may have moved."""
        self.indexes.clear()
        self._waiting = self._retiring = None
        self.share_clocks.clear()  # until each partition's profile stage tells again: no expiry
        self.touch_clocks.clear()

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
            if raw:
                data = orjson.loads(raw)
                pages = (orjson.loads(self.store.get(page_key(share_id, page)) or b"[]")
                         for page in range(data.get("p", 0)))
                index = ShareIndex.from_json(data, pages)
            else:
                index = ShareIndex()
        return index

    @staticmethod
    def writes(partition: int, share_id: str, index: ShareIndex, stored: int, unchanged: int) -> Iterator[StateWrite]:
        """The writes that store ``index``, whose store held ``stored`` waiting touches, of which
        the first ``unchanged`` are still the index's first ones: its record, the pages from the
        first that changed, and tombstones for pages it no longer fills."""
        yield partition, f"s:{share_id}", encode_state(index.to_json())
        pages, stored_pages = waiting_pages(len(index.early)), waiting_pages(stored)
        first = unchanged // WAITING_PAGE if stored_pages else 0  # inline before: every page is new
        for page in range(first, pages):
            yield partition, page_key(share_id, page), encode_state(index.page_json(page))
        for page in range(pages, stored_pages):
            yield partition, page_key(share_id, page), None

    def deletes(self, partition: int, share_id: str, stored: int) -> list[StateWrite]:
        """Forget a share id: tombstones for its record and the pages of its ``stored`` waiting
        touches, and its decoded record dropped."""
        self.indexes.discard(share_id)
        return [(partition, f"s:{share_id}", None),
                *((partition, page_key(share_id, page), None) for page in range(waiting_pages(stored)))]

    def process(self, records: Sequence[SourceRecord]) -> BatchOutput:
        out = BatchOutput()
        loaded: dict[str, tuple[int, ShareIndex, int]] = {}  # share id -> partition, index, touches stored
        erased_from: set[str] = set()  # share ids whose stored touches an erasure changed
        for record in records:
            message = orjson.loads(record.value or b"{}")
            kind = message.pop("k")
            if kind == "clock":
                self._advance(self.share_clocks, record.partition, message["p"], message["ms"])
                self._advance(self.touch_clocks, record.partition, message["p"], message.get("t", -1))
                continue
            if kind == "erase":
                erased_from |= self.erase(record.partition, set(message["ids"]), loaded, out)
                out.rows.append(("erasure_requests", acknowledged(message["ack"], "share-index", record.partition,
                                                                  record.timestamp)))
                continue
            if self.erased_at_start and self.names_erased(kind, message):
                out.counts[("erasure_suppressed", record.topic)] += 1
                continue
            share_id = message["share_id"]
            if share_id not in loaded:
                index = self.load(share_id)
                loaded[share_id] = (record.partition, index, len(index.early))
            index = loaded[share_id][1]
            credits: list[Credit] | None
            if kind == "share":
                known = index.share is not None
                # The index record carries the share's own ingest time (send_to_referral_index).
                credits = index.on_share(SharePost(**message), record.offset, record.timestamp, self.rules)
                if not known and index.share_ingest_ms is not None and self._retiring is not None:
                    heapq.heappush(self._retiring, (index.share_ingest_ms, share_id))
            else:
                credits = index.on_touch(Touch(**message), record.offset, self.rules)
                if credits is None:
                    out.counts[("touch_dropped", "waiting_limit")] += 1
            out.counts[("referral", kind)] += 1
            for place, credit in enumerate(credits or ()):
                self.emit_credit(credit, CreditOrigin(record.partition, record.offset, place), out)
        for share_id, (partition, index, stored) in loaded.items():
            # Touches are only appended, but for an erasure's: the stored ones are unchanged.
            unchanged = 0 if share_id in erased_from else stored
            out.state_writes.extend(self.writes(partition, share_id, index, stored, unchanged))
            self.indexes.put(share_id, index)
            self._note_waiting(share_id, index)
        return out

    def names_erased(self, kind: str, message: dict[str, Any]) -> bool:
        """Whether an index record is a share or a touch of an id erased before the start."""
        erased = self.erased_at_start
        if kind == "share":
            return message["sharer_customer_id"] in erased
        return message["customer_id"] in erased or message.get("person") in erased

    def erase(self, partition: int, ids: set[str], loaded: dict[str, tuple[int, ShareIndex, int]],
              out: BatchOutput) -> set[str]:
        """Drop, from every share index of ``partition``, the shares of ``ids`` (with the touches
        waiting for them) and their touches waiting for a share (docs/definitions.md, erasure):
        no credit names them afterwards. A scan of the partition's records that decodes only
        those whose bytes name an id (erasures are rare); the indexes it changes join the
        batch's ``loaded``. Returns the share ids whose waiting touches changed."""
        needles = [orjson.dumps(i) for i in ids]
        changed: set[str] = set()
        for key in self.store.keys_with_prefix("s:"):
            share_id = key[2:]
            if share_id not in loaded:
                raw = self.store.get(key) or b""
                if not any(needle in raw for needle in needles) and not orjson.loads(raw).get("p"):
                    continue  # names none of the ids, and not paged
            # Only then its partition: a hash per share id, skipped for most of a scan.
            if self._partition(share_id) != partition:
                continue
            index = loaded[share_id][1] if share_id in loaded else self.load(share_id)
            stored = loaded[share_id][2] if share_id in loaded else len(index.early)
            if index.share is not None and index.share.sharer_customer_id in ids:
                # Later touches of the share wait for it and expire: it never comes again.
                index.share = index.share_ingest_ms = index.share_offset = None
                out.counts[("erasure_index", "share")] += 1
                loaded[share_id] = (partition, index, stored)
            kept = [touch for touch in index.early if touch.customer_id not in ids and touch.person not in ids]
            if len(kept) != len(index.early):
                out.counts[("erasure_index", "touch")] += len(index.early) - len(kept)
                index.early = kept
                changed.add(share_id)
                loaded[share_id] = (partition, index, stored)
        return changed

    def _partition(self, share_id: str) -> int:
        # Index messages were partitioned by share id, so the id tells its partition.
        return partition_for(share_id.encode(), self.settings.topic_partitions)

    def emit_credit(self, credit: Credit, origin: CreditOrigin, out: BatchOutput) -> None:
        # A touch by an anonymous visitor not yet identified when it was read goes through the
        # visitor's partition, which names the person it resolves to (docs/definitions.md,
        # identity); others go to the sharer, an identified visitor's naming its customer.
        message = {**credit.to_json(), "origin": origin.to_json()}
        if credit.referred_anonymous and credit.referred_person is None:
            key = credit.referred_customer_id.encode()
        else:
            key = credit.sharer_customer_id.encode()
            if credit.referred_anonymous:
                message = resolved_credit(message, credit.referred_person, credit.referred_customer_id)
        out.messages.append(OutMessage(
            self.credits_topic, partition_for(key, self.settings.topic_partitions), key,
            encode_state(message)))
        out.rows.append(("referral_credits", credit.row()))
        out.counts[("credit_emitted", credit.touch_type)] += 1

    @staticmethod
    def _advance(clocks: dict[int, dict[int, int]], partition: int, source: int, read_until: int) -> None:
        by_source = clocks.setdefault(partition, {})
        if read_until > by_source.get(source, -1):
            by_source[source] = read_until

    def _read_until(self, clocks: dict[int, dict[int, int]], partition: int) -> int:
        by_source = clocks.get(partition, {})
        return min(by_source.values()) if len(by_source) == self.settings.topic_partitions else -1

    def shares_read_until(self, partition: int) -> int:
        """Every share ingested up to this time has reached index ``partition`` (-1 until every
        profile-stage partition has said so): a touch that waited longer than the TTL past
        its own ingest time can no longer be credited (``AttributionRules.credit``). Not the
        newest ingest time read: a backlog can bring the shares a day behind the touches."""
        return self._read_until(self.share_clocks, partition)

    def touches_read_until(self, partition: int) -> int:
        """Every touch ingested up to this time has reached index ``partition`` (-1 until every
        profile-stage partition has said so): a share older than its retention before it can
        earn no more credits (``AttributionRules.credit``)."""
        return self._read_until(self.touch_clocks, partition)

    def expire(self, partitions: set[int]) -> tuple[BatchOutput, int]:
        """Drop touches that waited too long for their share, and shares past their retention,
        in the index ``partitions`` this worker owns (the store may still hold others'); returns
        writes and touches still waiting."""
        out = BatchOutput()
        if self._waiting is None or self._retiring is None:
            self._scan_store(partitions)
        self._retire_shares(partitions, out)
        return out, self._expire_touches(partitions, set(self._waiting or ()), out)

    def _scan_store(self, partitions: set[int]) -> None:
        """Find the shares whose touches wait, and the known shares with their ingest times,
        from the stored records' first bytes: only the former are decoded."""
        self._waiting, self._retiring = set(), []
        for key in self.store.keys_with_prefix("s:"):
            raw = self.store.get(key)
            if may_wait(raw):
                if self._partition(key[2:]) in partitions:
                    self._note_waiting(key[2:], self.load(key[2:]))
            elif raw and (ingest := SHARE_INGEST.search(raw)):
                self._retiring.append((int(ingest[1]), key[2:]))
        heapq.heapify(self._retiring)

    def _retire_shares(self, partitions: set[int], out: BatchOutput) -> None:
        """Drop the records of shares past their retention (``past_retention``), oldest first;
        the first one that may still earn ends the sweep."""
        retiring, retention = self._retiring or [], self.settings.share_retention_ms
        while retiring:
            ingest_ms, share_id = retiring[0]
            partition = self._partition(share_id)
            owned = partition in partitions
            if owned and not past_retention(ingest_ms, self.touches_read_until(partition), retention):
                return
            heapq.heappop(retiring)
            if not owned:
                continue
            index = self.load(share_id)
            if index.share_ingest_ms != ingest_ms:
                continue  # erased, or gone already
            out.state_writes.extend(self.deletes(partition, share_id, len(index.early)))
            out.counts[("share_retired",)] += 1

    def _expire_touches(self, partitions: set[int], share_ids: set[str], out: BatchOutput) -> int:
        waiting = 0
        for share_id in share_ids:
            partition = self._partition(share_id)
            if partition not in partitions:
                continue
            index = self.load(share_id)
            before = len(index.early)
            if index.expire(self.shares_read_until(partition), self.settings.pending_touch_ttl_ms):
                out.state_writes.extend(self.deletes(partition, share_id, before))
            elif len(index.early) != before:
                # Expiry drops the oldest touches: every page shifts.
                out.state_writes.extend(self.writes(partition, share_id, index, before, unchanged=0))
                self.indexes.put(share_id, index)
            self._note_waiting(share_id, index)
            waiting += len(index.early) if index.share is None else 0
        return waiting
