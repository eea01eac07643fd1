"""The erasure side of the profile stage (docs/definitions.md, erasure): a request, handled on
the partition of the id it names, and the check every input naming an id passes first."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import orjson

from streams.core.erasure import ErasureRequest, acknowledged, read_request, suppression_key
from streams.core.identity import link, linked_anonymous_ids
from streams.core.profile import Profile
from streams.errors import DecodeError
from streams.settings import Settings
from streams.stages.partitioning import partition_for
from streams.stages.records import BatchOutput, OutMessage, SourceRecord, encode_state, state_key

if TYPE_CHECKING:
    from streams.stages.profile_stage import ProfileStage


class ErasureSteps(ABC):
    """Mixed into the profile stage's batch, whose state and output it works on."""

    stage: ProfileStage
    settings: Settings
    out: BatchOutput
    profiles: dict[str, tuple[int, Profile]]  # the batch's loaded profiles, by state_key
    erased_now: dict[str, dict[str, Any]]  # profiles erased in this batch -> their suppression record

    @abstractmethod
    def profile(self, actor_id: str, partition: int, anonymous: bool = False) -> Profile: ...

    @abstractmethod
    def stored_profile(self, key: str) -> Profile | None: ...

    @abstractmethod
    def send_keyed(self, topic: str, key_id: str, message: dict[str, Any]) -> None: ...

    @abstractmethod
    def dead_letter(self, record: SourceRecord, error: DecodeError, with_row: bool = True) -> None: ...

    def on_link(self, record: SourceRecord, message: dict[str, Any]) -> None:
        """On the customer's partition: an anonymous id was identified as the customer (again
        when the identify is read again). The customer keeps it, to erase it with them; a
        customer erased already has it erased by the same request."""
        customer_id, anonymous_id = message["customer_id"], message["anonymous_id"]
        erased = self.erased_by(customer_id)
        if erased is None:
            link(self.profile(customer_id, record.partition), anonymous_id)
        else:
            self.send_keyed(self.stage.erasures_topic, anonymous_id, erased_with(erased, anonymous_id).to_json())
            self.out.counts[("erasure", "linked_after")] += 1

    def on_erasure(self, record: SourceRecord) -> None:
        """An erasure request, handled on the partition of the id it names."""
        try:
            request = read_request(record.value)
        except DecodeError as error:
            # Dead-lettered to be fixed and sent again, but with no ingestion_errors row: its
            # payload may name the person, and no erasure would ever delete it.
            self.dead_letter(record, error, with_row=False)
            return
        key = request.customer_id.encode()
        owner = partition_for(key, self.settings.topic_partitions)
        if owner != record.partition:  # published by another partitioner: on to the id's partition
            self.out.messages.append(OutMessage(self.stage.erasures_topic, owner, key, record.value))
            self.out.counts[("erasure", "rerouted")] += 1
            return
        self.erase(request, record)

    def erase(self, request: ErasureRequest, record: SourceRecord) -> None:
        """Delete every profile of the id, leave a suppression record keyed by its keyed hash, ask
        for the anonymous ids identified as it to be erased by the same request, tell every
        share-index partition to drop its shares and waiting touches, and write the ClickHouse
        tombstone that hides it from the views until the eraser deletes its rows. Again when
        the request is read again: each step is idempotent, and rows lost in a crash come back."""
        stage, partition, person = self.stage, record.partition, request.customer_id
        id_hash, request_hash = stage.id_hash(person), request.request_hash or stage.id_hash(request.request_id)
        known = state_key(person, False) in self.erased_now or stage.store.get(suppression_key(id_hash)) is not None
        self.out.counts[("erasure", "repeated" if known else "erased")] += 1
        suppression = suppression_record(request_hash, request.requested_at_ms)
        linked: set[str] = set()
        for anonymous in (False, True):
            key = state_key(person, anonymous)
            loaded = self.profiles.pop(key, None)
            profile: Profile | None = loaded[1] if loaded else self.stored_profile(key)
            stage.profiles.discard(key)
            self.erased_now[key] = suppression
            if profile is not None:
                self.out.state_writes.append((partition, key, None))
                linked |= linked_anonymous_ids(profile)
        for anonymous_id in sorted(linked):
            self.send_keyed(stage.erasures_topic, anonymous_id, erased_with(suppression, anonymous_id).to_json())
        self.out.state_writes.append((partition, suppression_key(id_hash), encode_state(suppression)))
        # The other partitions drop what they keep of the person and of its devices at once: a
        # device's own request comes later, and its waiting touches must not earn meanwhile.
        ids = sorted({person, *linked})
        ack = {"r": request_hash, "c": id_hash, "at": request.requested_at_ms}
        index_erase = encode_state({"k": "erase", "ids": ids, "ack": ack})
        profiles_forget = encode_state({"k": "forget", "ids": ids, "ack": ack})
        for other in range(self.settings.topic_partitions):
            self.out.messages.append(OutMessage(stage.index_topic, other, None, index_erase))
            self.out.messages.append(OutMessage(stage.credits_topic, other, None, profiles_forget))
        self.out.rows.append(("erased_customers", {"customer_id": person, "customer_hash": id_hash,
                                                   "request_hash": request_hash, "erased_at_ms": record.timestamp}))
        for target, status in (("state", "erased"), ("request", "hidden")):
            self.out.rows.append(("erasure_requests", {
                "request_hash": request_hash, "customer_hash": id_hash, "target": target, "status": status,
                "rows": 0, "requested_at_ms": request.requested_at_ms, "updated_at_ms": record.timestamp,
                "version": 1}))

    def forget_mentions(self, record: SourceRecord, message: dict[str, Any]) -> None:
        """Drop what anonymous profiles of the record's partition keep of erased sharers (the
        credits their touches earned on the sharers' shares, kept to be re-addressed once the
        visitor is identified), and acknowledge (``acknowledged``). A scan that decodes only
        the records whose bytes name an id."""
        partition, ids = record.partition, set(message["ids"])
        self.out.rows.append(("erasure_requests",
                              acknowledged(message["ack"], "profiles", partition, record.timestamp)))
        needles = [orjson.dumps(i) for i in ids]
        store, partitions = self.stage.store, self.settings.topic_partitions
        for key in store.keys_with_prefix("a:"):
            anonymous_id = key[2:]
            if key in self.erased_now:
                continue
            if key not in self.profiles:
                raw = store.get(key)
                if not raw or not any(needle in raw for needle in needles) \
                        or partition_for(anonymous_id.encode(), partitions) != partition:
                    continue
            elif self.profiles[key][0] != partition:
                continue
            profile = self.profile(anonymous_id, partition, anonymous=True)
            for credit_id, credit in list(profile.touch_credits.items()):
                if credit["sharer_customer_id"] in ids:
                    del profile.touch_credits[credit_id]
                    self.out.counts[("erasure_index", "touch_credit")] += 1

    def erased_by(self, actor_id: str, anonymous: bool = False) -> dict[str, Any] | None:
        """The suppression record of ``actor_id`` (``suppression_record``) when it
        was erased, else None. A profile in state proves it was not (erasure deletes them all),
        so the keyed hash is computed only for ids without one."""
        key = state_key(actor_id, anonymous)
        if key in self.profiles:
            return None
        erased = self.erased_now.get(key)
        if erased is not None:
            return erased
        stage = self.stage
        if stage.profiles.get(key) is not None or stage.store.get(key) is not None:
            return None
        raw = stage.store.get(suppression_key(stage.id_hash(actor_id)))
        return orjson.loads(raw) if raw else stage.erased_at_start.get(actor_id)

    def dropped_as_erased(self, record: SourceRecord, actor_id: str, anonymous: bool = False) -> bool:
        """True (and counted) when ``actor_id`` was erased: its input is dropped rather than
        re-creating the person."""
        if self.erased_by(actor_id, anonymous) is None:
            return False
        self.out.counts[("erasure_suppressed", record.topic)] += 1
        return True


def suppression_record(request_hash: str, requested_at_ms: int) -> dict[str, Any]:
    """What a suppression record keeps: the request, by its keyed hash, and when it was made."""
    return {"r": request_hash, "at": requested_at_ms}


def erased_with(suppression: dict[str, Any], anonymous_id: str) -> ErasureRequest:
    """The request that erases ``anonymous_id`` together with the person ``suppression`` is of."""
    return ErasureRequest("", anonymous_id, suppression["at"], request_hash=suppression["r"])
