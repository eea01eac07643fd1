"""The profile stage (keyed by customer id); see ``streams.stages``."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import orjson

from streams.core.erasure import ErasureRequest, is_referee_key, keyed_hash, referee_key
from streams.core.events import AnyEvent, Click, Event, EventType, Identify, Purchase, Share
from streams.core.history import CUTOVER_HEADER, check_before_cutover, read_cutover
from streams.core.identity import (
    absorb_forwarded,
    forwarded_lane,
    identify,
    keep_pending,
    keyed_referees,
    person_view,
    record_person_credit,
)
from streams.core.profile import PersonCredit, Profile
from streams.core.referrals import Credit, CreditOrigin, SharePost, Touch, resolved_credit
from streams.core.repartition import (
    FORWARDED_HEADERS,
    forwarded_value,
    read_forwarded,
    read_origin,
    read_watermark,
    rerouted_headers,
    watermark_headers,
    watermark_value,
)
from streams.core.replay import Admission, absorb, lane_topic, rerouted_lane
from streams.core.windows import DAY_MS, HOUR_MS, MINUTE_MS, EventTime, classify, classify_history, floor_to
from streams.errors import DecodeError, ValidationError
from streams.settings import Settings
from streams.stages.erasure_steps import ErasureSteps, suppression_record
from streams.stages.partitioning import partition_for
from streams.stages.records import (
    BatchOutput,
    DecodedCache,
    InputRecord,
    OutMessage,
    SourceRecord,
    StateReader,
    encode_state,
    state_key,
)
from streams.stages.rows import error_row, event_row, minute_totals_row

# Per-minute totals are held until no on-time event can reach them any more (see
# evict_old_minutes); this cap only guards memory when an input topic stays idle.
MINUTES_KEPT = 20_000
# Each partition read here tells every other one how far it has re-routed at most this often
# (processing time): with P partitions that is P - 1 small records per partition and interval,
# however fast a backlog is read. A later watermark only lets per-minute totals go later.
WATERMARK_INTERVAL_S = 1.0
# Credits an anonymous visitor's touches earned, kept to be resent once it is identified.
TOUCH_CREDITS_KEPT = 10_000
# Identified anonymous ids remembered as having had their kept events forwarded by this process.
PENDING_SENT_KEPT = 100_000
# Events that can touch a share (a tuple: `Click | Purchase` would build a union per call).
_TOUCHES = (Click, Purchase)
Decoder = Callable[[bytes, EventType | None], AnyEvent]  # None: any type (the backfill topic)
Validator = Callable[[AnyEvent], None]


def kept_event(record: SourceRecord, lane: str) -> list[Any]:
    """An anonymous id's input record as ``Profile.pending`` keeps it and ``forward`` sends it."""
    return [record.topic, record.offset, lane, record.timestamp, (record.value or b"").decode("latin-1")]


class ProfileStage:
    """Fold input events into per-customer state; see the module docstring."""

    def __init__(self, settings: Settings, decode: Decoder, validate: Validator,
                 store: StateReader, clock: Callable[[], float] = time.monotonic,
                 requested_erasures: Mapping[str, ErasureRequest] | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.decode = decode
        self.validate = validate
        self.store = store
        # Input topic -> its event type; the backfill topic carries every type (None).
        self.topic_types: dict[str, EventType | None] = {
            topic: EventType(t) for t, topic in settings.input_topics.items()}
        self.backfill_topic = settings.backfill_topic
        self.topic_types[self.backfill_topic] = None
        # Identifies reach no per-minute total, so they take no part in deciding when one is final.
        # Backfilled history is never on time for them either (docs/definitions.md, history).
        self.timed_topics = {topic for topic, t in self.topic_types.items() if t not in (EventType.IDENTIFY, None)}
        self.credits_topic = settings.referral_credits_topic
        self.index_topic = settings.referral_index_topic  # a Settings property builds the name per call
        self.erasures_topic = settings.erasures_topic
        # Checked at the worker's start (require_erasure_key); any key hashes consistently.
        self.erasure_key = settings.erasure_key.reveal().encode()
        # Ids whose erasure was requested before this process started (their requests still in
        # the erasures topic) -> what their suppression records hold: dropped from the first
        # batch on unless they have a profile (streams.runtime.requested_erasures).
        self.erased_at_start = {
            customer_id: suppression_record(r.request_hash or self.id_hash(r.request_id), r.requested_at_ms)
            for customer_id, r in (requested_erasures or {}).items()}
        self.repartition_topic = settings.repartition_topic
        # Every partition is reached by each input topic directly and from each other partition.
        self.lanes_per_partition = len(self.timed_topics) * settings.topic_partitions
        self._minutes: dict[int, set[int]] = {}
        self.profiles: DecodedCache[Profile] = DecodedCache()
        self.ingest_progress: dict[int, dict[str, int]] = {}  # partition -> lane -> newest ingest
        self.watermarks_sent: dict[int, dict[str, int]] = {}  # partition read here -> what it told
        self.shares_topic = settings.input_topics[EventType.SHARE]
        self.touch_topics = {settings.input_topics[EventType.CLICK], settings.input_topics[EventType.PURCHASE]}
        # Partition read here -> the share and touch clocks it told the index.
        self.clocks_sent: dict[int, tuple[int, int]] = {}
        self.watermarks_due = 0.0
        # Identified anonymous ids whose kept events this process has forwarded (send_pending).
        self.pending_sent: set[str] = set()

    def forget_partitions(self) -> None:
        """Drop in-memory indexes after a rebalance: state may have moved."""
        self.pending_sent.clear()
        self._minutes.clear()
        self.profiles.clear()
        self.ingest_progress.clear()
        self.watermarks_sent.clear()
        self.clocks_sent.clear()

    def advance(self, partition: int, lane: str, ingest_ms: int) -> None:
        """Note that ``lane`` has brought ``partition`` every record up to ``ingest_ms``."""
        if lane_topic(lane) not in self.timed_topics:
            return
        progress = self.ingest_progress.setdefault(partition, {})
        if ingest_ms > progress.get(lane, -1):
            progress[lane] = ingest_ms

    def settled_before(self, partition: int) -> int:
        """Minutes starting before this can get no more on-time events in ``partition``.

        An event is on time only if it occurred within the allowed lateness of its ingest
        time, and every lane into the partition (each input topic read directly, and re-routed
        from each other partition) has reached the ingest time below: lanes move at different
        speeds, so the slowest one decides.
        """
        progress = self.ingest_progress.get(partition, {})
        if len(progress) < self.lanes_per_partition:
            return -1  # some lane not heard from yet: nothing is settled
        return min(progress.values()) - self.settings.allowed_lateness_ms - MINUTE_MS

    def process(self, records: Sequence[SourceRecord]) -> BatchOutput:
        batch = _ProfileBatch(self)
        for record in records:
            if record.topic == self.credits_topic:
                batch.on_credit(record)
            elif record.topic == self.repartition_topic:
                batch.on_rerouted(record)
            elif record.topic == self.erasures_topic:
                batch.on_erasure(record)
            else:
                batch.on_input(record)
        return batch.finish()

    def read_until(self, partition: int, topics: Collection[str]) -> int:
        """Every record of ``topics`` for ``partition`` ingested up to this time has been read,
        and its share or touch sent to the referral index (-1 until each lane of those topics
        into it has been heard from): the clocks by which the index may expire touches (the
        shares topic) and retire shares (the touch topics; ``streams.stages.referral_stage``).
        Kafka timestamps within a partition are taken to be in order."""
        progress = self.ingest_progress.get(partition, {})
        lanes = [ingest_ms for lane, ingest_ms in progress.items() if lane_topic(lane) in topics]
        return min(lanes) if len(lanes) == len(topics) * self.settings.topic_partitions else -1

    def watermarks(self) -> list[OutMessage]:
        """Tell every other partition how far each partition read here has re-routed (sent
        after the batch's re-routed records, so a partition reads them first), and every
        referral-index partition until when each has sent it every share (after the batch's
        shares, likewise)."""
        now = self.clock()
        if now < self.watermarks_due:
            return []
        self.watermarks_due = now + WATERMARK_INTERVAL_S
        messages = self.share_clocks()
        for origin, progress in self.ingest_progress.items():
            direct = {topic: progress[topic] for topic in self.timed_topics if topic in progress}
            if not direct or direct == self.watermarks_sent.get(origin):
                continue
            self.watermarks_sent[origin] = direct
            value, headers = watermark_value(direct), watermark_headers(origin)
            messages.extend(OutMessage(self.repartition_topic, partition, None, value, headers)
                            for partition in range(self.settings.topic_partitions) if partition != origin)
        return messages

    def share_clocks(self) -> list[OutMessage]:
        messages: list[OutMessage] = []
        for origin in self.ingest_progress:
            clocks = self.read_until(origin, (self.shares_topic,)), self.read_until(origin, self.touch_topics)
            if max(clocks) < 0 or clocks == self.clocks_sent.get(origin):
                continue
            self.clocks_sent[origin] = clocks
            value = encode_state({"k": "clock", "p": origin, "ms": clocks[0], "t": clocks[1]})
            messages.extend(OutMessage(self.index_topic, partition, None, value)
                            for partition in range(self.settings.topic_partitions))
        return messages

    def id_hash(self, value: str) -> str:
        """The keyed hash that stands for an id or a request id once it is erased."""
        return keyed_hash(self.erasure_key, value)

    def referee_key(self, referred_id: str) -> str:
        """How a referrer's profile keeps a person it referred (``keyed_referees``)."""
        return referee_key(self.erasure_key, referred_id)

    def minute_index(self, partition: int) -> set[int]:
        index = self._minutes.get(partition)
        if index is None:
            prefix = f"m:{partition}:"
            index = {int(k[len(prefix):]) for k in self.store.keys_with_prefix(prefix)}
            self._minutes[partition] = index
        return index


class _ProfileBatch(ErasureSteps):
    """State and output of one batch of :class:`ProfileStage`."""

    def __init__(self, stage: ProfileStage) -> None:
        self.stage = stage
        self.settings = stage.settings
        self.out = BatchOutput()
        self.profiles: dict[str, tuple[int, Profile]] = {}  # by state_key
        self.identified: set[str] = set()  # anonymous ids whose identify was read in this batch
        self.forwards: dict[str, list[list[Any]]] = {}  # customer id -> its anonymous ids' events
        self.minutes: dict[tuple[int, int], dict[str, Any]] = {}
        # (partition, minute, "type|channel") totals this batch's events went into: their rows.
        self.minute_totals: set[tuple[int, int, str]] = set()
        self.buckets: set[tuple[str, int, bool]] = set()
        # Profiles erased in this batch (state_key) -> their suppression record's value.
        self.erased_now: dict[str, dict[str, Any]] = {}

    # -- loading state ------------------------------------------------------------------------

    def profile(self, actor_id: str, partition: int, anonymous: bool = False) -> Profile:
        key = state_key(actor_id, anonymous)
        loaded = self.profiles.get(key)
        if loaded is None:
            profile = self.stored_profile(key) or Profile(actor_id, anonymous=anonymous)
            self.profiles[key] = loaded = (partition, profile)
        return loaded[1]

    def stored_profile(self, key: str) -> Profile | None:
        """The profile under ``key`` as the last batch left it, or None."""
        profile = self.stage.profiles.get(key)
        if profile is None:
            raw = self.stage.store.get(key)
            if not raw:
                return None
            profile = Profile.from_json(orjson.loads(raw))
            keyed_referees(profile, self.stage.referee_key)
        return profile

    def minute(self, partition: int, minute_ms: int) -> dict[str, Any]:
        key = (partition, minute_ms)
        record = self.minutes.get(key)
        if record is None:
            raw = self.stage.store.get(f"m:{partition}:{minute_ms}")
            record = orjson.loads(raw) if raw else {"o": {}, "t": {}}
            self.minutes[key] = record
        return record

    # -- records ------------------------------------------------------------------------------

    def on_credit(self, record: SourceRecord) -> None:
        """A referral credit, possibly resolved to the person who earned it (see below), or one
        forwarded from an identified anonymous sharer."""
        message = orjson.loads(record.value or b"{}")
        kind = message.pop("k", None)
        if kind == "person_credit":
            self.on_forwarded_credit(record, message)
            return
        if kind == "link":
            self.on_link(record, message)
            return
        if kind == "forget":
            self.forget_mentions(record, message)
            return
        origin = message.pop("origin", None)  # absent from credits produced before it was sent
        resolution, referred_person = message.pop("rv", None), message.pop("rp", None)
        credit = Credit.from_json(message)
        if credit.referred_anonymous and resolution is None:
            if not self.dropped_as_erased(record, credit.referred_customer_id, anonymous=True):
                self.on_anonymous_touch_credit(record, credit)
            return
        if self.dropped_as_erased(record, credit.sharer_customer_id, credit.sharer_anonymous):
            return
        profile = self.profile(credit.sharer_customer_id, record.partition, credit.sharer_anonymous)
        if credit.involves_anonymous:
            # Kept by credit id: a credit produced again changes nothing.
            person_credit = PersonCredit(resolution or 0,
                                         self.stage.referee_key(referred_person or credit.referred_customer_id),
                                         credit.touch_type, credit.amount_cents)
            changed = record_person_credit(profile, credit.credit_id, person_credit)
            self.out.counts[("credit", "new" if changed else "replayed")] += 1
            if profile.identified_as is not None:  # an identified sharer's share: the customer's
                self.forward_credit(profile.identified_as, credit.credit_id, person_credit)
            return
        admission = profile.book.admit(record.topic, record.offset, credit.credit_id)
        if admission is Admission.NEW and origin is not None \
                and not CreditOrigin(*origin).after(profile.credit_origins):
            admission = Admission.DUPLICATE  # produced again: counted already
        if admission is Admission.NEW:
            profile.apply_credit(credit.touch_type, self.stage.referee_key(credit.referred_customer_id),
                                 credit.amount_cents)
        self.out.counts[("credit", admission)] += 1

    def on_anonymous_touch_credit(self, record: SourceRecord, credit: Credit) -> None:
        """On the toucher's partition: keep the credit to resend once the visitor is identified,
        and send it on to the sharer naming the person the touch resolves to so far."""
        toucher = self.profile(credit.referred_customer_id, record.partition, anonymous=True)
        if len(toucher.touch_credits) < TOUCH_CREDITS_KEPT:
            toucher.touch_credits[credit.credit_id] = credit.to_json()
        self.send_resolved_credit(credit.to_json(), toucher)
        self.out.counts[("credit", "anonymous_touch")] += 1

    def send_resolved_credit(self, credit: dict[str, Any], toucher: Profile) -> None:
        self.send_keyed(self.stage.credits_topic, credit["sharer_customer_id"],
                        resolved_credit(credit, toucher.identified_as, toucher.customer_id))

    def forward_credit(self, customer_id: str, credit_id: str, credit: PersonCredit) -> None:
        self.send_keyed(self.stage.credits_topic, customer_id, {
            "k": "person_credit", "customer_id": customer_id, "credit_id": credit_id, "c": credit.to_json()})

    def send_keyed(self, topic: str, key_id: str, message: dict[str, Any]) -> None:
        key = key_id.encode()
        self.out.messages.append(OutMessage(topic, partition_for(key, self.settings.topic_partitions), key,
                                            encode_state(message)))

    def on_forwarded_credit(self, record: SourceRecord, message: dict[str, Any]) -> None:
        """On the customer's partition: a credit earned by the share of an anonymous id
        identified as it, read after the identify (kept by credit id: resent, it changes nothing)."""
        if self.dropped_as_erased(record, message["customer_id"]):
            return
        customer = self.profile(message["customer_id"], record.partition)
        credit = PersonCredit.from_json(message["c"])
        if not is_referee_key(credit.referred_person):  # named by id (by an earlier version)
            credit = dataclasses.replace(credit, referred_person=self.stage.referee_key(credit.referred_person))
        changed = record_person_credit(customer, message["credit_id"], credit)
        self.out.counts[("credit", "new" if changed else "replayed")] += 1

    def on_identify(self, record: SourceRecord, event: Identify, partition: int, lane: str) -> None:
        """On the anonymous id's partition: the first identify links it, and its events go to
        the customer from then on (replayed, the identify sends them again)."""
        anonymous = self.profile(event.anonymous_id, partition, anonymous=True)
        admission = anonymous.book.admit(lane, record.offset, event.event_id)
        self.out.counts[("admission", record.topic, admission)] += 1
        if admission is Admission.NEW:
            outcome = identify(anonymous, event.customer_id)
            self.out.counts[("identify", outcome.value)] += 1
        if admission not in (Admission.NEW, Admission.REPLAYED):
            return
        if anonymous.identified_as == event.customer_id:
            self.identified.add(event.anonymous_id)
            self.send_keyed(self.stage.credits_topic, event.customer_id, {
                "k": "link", "customer_id": event.customer_id, "anonymous_id": event.anonymous_id})
            self.send_pending(anonymous)
            self.out.rows.append(("identity_map", {
                "anonymous_id": event.anonymous_id, "customer_id": event.customer_id, "version": 1}))
        else:
            self.warning(record, event, "identity_conflict",
                         f"{event.anonymous_id!r} is already customer {anonymous.identified_as!r}, "
                         f"not {event.customer_id!r}: nothing merged")

    def on_input(self, record: SourceRecord) -> None:
        topic_type = self.stage.topic_types[record.topic]
        self.out.counts[("consumed", record.topic, topic_type or "any")] += 1
        self.stage.advance(record.partition, record.topic, record.timestamp)
        # A record without a key cannot be routed; it is dead-lettered where it is.
        owner = partition_for(record.key, self.settings.topic_partitions) if record.key else record.partition
        if owner != record.partition:
            self.reroute(record, owner)
            return
        self.accept(record, record.partition, record.topic)

    def reroute(self, record: SourceRecord, owner: int) -> None:
        """Send a record that arrived on another partition than its key's to its owner (a
        backfilled one with its cut-over)."""
        headers = rerouted_headers(record.topic, record.partition, record.offset)
        if record.topic == self.stage.backfill_topic:
            headers += tuple(header for header in record.headers if header[0] == CUTOVER_HEADER)
        self.out.messages.append(OutMessage(
            self.stage.repartition_topic, owner, record.key, record.value, headers, record.timestamp))
        self.out.counts[("rerouted", record.topic)] += 1

    def on_rerouted(self, record: SourceRecord) -> None:
        """A record re-routed or forwarded to this partition, or another partition's watermark."""
        try:
            origin = read_origin(record.headers)
            if origin.watermark:
                for topic, ingest_ms in read_watermark(record.value).items():
                    self.stage.advance(record.partition, rerouted_lane(topic, origin.partition), ingest_ms)
                return
            if origin.forwarded:
                self.on_forwarded(record)
                return
            if origin.topic not in self.stage.topic_types:
                raise DecodeError("bad_origin", f"origin topic {origin.topic!r} is not an input topic")
        except DecodeError as error:
            self.dead_letter(record, error)
            return
        lane = rerouted_lane(origin.topic, origin.partition)
        self.stage.advance(record.partition, lane, record.timestamp)
        self.accept(InputRecord(origin.topic, origin.partition, origin.offset, record.key,
                                record.value, record.timestamp, record.headers), record.partition, lane)

    def accept(self, record: SourceRecord, partition: int, lane: str) -> None:
        """Decode, validate and fold an input record into the state of ``partition``; ``lane``
        is how it came (see ``streams.core.replay``)."""
        topic_type = self.stage.topic_types[record.topic]
        history = topic_type is None
        try:
            event = self.stage.decode(record.value or b"", topic_type)
            self.stage.validate(event)
            actor_id = event.actor_id
            if record.key != actor_id.encode():
                raise ValidationError("key", "record key differs from the event's customer_id or anonymous_id",
                                      reason="key_mismatch")
            if history:
                cutover_ms = read_cutover(record.headers)
                if not isinstance(event, Identify):  # a link, not activity: history whenever it was made
                    check_before_cutover(event.occurred_at_ms, cutover_ms)
        except DecodeError as error:
            if not (record.key and self.dropped_as_erased(record, record.key.decode(errors="replace"))):
                self.dead_letter(record, error)
            return
        # An identify's actor is its anonymous id.
        if isinstance(event, Identify):
            if not self.dropped_as_erased(record, actor_id, anonymous=True):
                self.on_identify(record, event, partition, lane)
            return
        anonymous = event.anonymous
        if self.dropped_as_erased(record, actor_id, anonymous):
            return
        time = self.event_time(event, record.timestamp, history)
        profile = self.profile(actor_id, partition, anonymous)
        admission = profile.book.admit(lane, record.offset, event.event_id)
        self.out.counts[("admission", record.topic, admission)] += 1
        if admission not in (Admission.NEW, Admission.REPLAYED):
            return
        if admission is Admission.NEW:
            self.out.counts[("processed", record.topic, event.type)] += 1
        if profile.identified_as is not None:  # an identified anonymous id: the customer's event
            self.send_pending(profile)
            self.forward(profile, kept_event(record, lane))
        else:
            if admission is Admission.NEW:
                profile.apply(event, time.occurred_at_ms, time.late, time.history)
                if anonymous and not keep_pending(profile, kept_event(record, lane)):
                    self.out.counts[("identity_not_kept",)] += 1
            self.note_buckets(state_key(actor_id, anonymous), time)
        self.emit_accepted(record, event, time, partition, lane, profile.identified_as)

    def send_pending(self, anonymous: Profile) -> None:
        """Forward the events an identified anonymous id kept from before its identify, before
        anything else of it that this process forwards (see ``absorb_forwarded``)."""
        sent = self.stage.pending_sent
        if anonymous.customer_id in sent:
            return
        if len(sent) >= PENDING_SENT_KEPT:
            sent.clear()  # a memory cap: sending kept events again is always safe, only slower
        sent.add(anonymous.customer_id)
        for entry in anonymous.pending:
            self.forward(anonymous, entry)

    def forward(self, anonymous: Profile, entry: list[Any]) -> None:
        """Send an accepted event of an identified anonymous id (``entry`` as kept in
        ``Profile.pending``) to its customer's partition, with the batch's other events for
        that customer (in order), which folds it into the customer's profile once."""
        topic, offset, lane, ingest_ms, text = entry
        assert anonymous.identified_as is not None
        self.forwards.setdefault(anonymous.identified_as, []).append(
            [topic, offset, forwarded_lane(anonymous.customer_id, lane), ingest_ms, text])
        self.out.counts[("identity_forward", "sent")] += 1

    def on_forwarded(self, record: SourceRecord) -> None:
        """On the customer's partition: events of anonymous ids identified as the record's key.
        Their anonymous ids' partition has admitted them and made their other output (rows,
        totals, referrals): here they only join the customer's profile, each once."""
        forwarded = read_forwarded(record.value)
        if any(event.topic not in self.stage.topic_types for event in forwarded):
            raise DecodeError("bad_origin", "forwarded events from a topic that is not an input topic")
        customer_id = (record.key or b"").decode()
        if self.dropped_as_erased(record, customer_id):
            return
        customer = self.profile(customer_id, record.partition)
        key = state_key(customer_id, False)
        for origin, event in [(f, self.stage.decode(f.value, self.stage.topic_types[f.topic])) for f in forwarded]:
            assert not isinstance(event, Identify)  # identifies are never forwarded
            time = self.event_time(event, origin.ingest_ms, origin.topic == self.stage.backfill_topic)
            if absorb_forwarded(customer, origin.lane, origin.offset):
                customer.apply(event, time.occurred_at_ms, time.late, time.history)
                self.out.counts[("identity_forward", "folded")] += 1
            else:
                self.out.counts[("identity_forward", "replayed")] += 1
            self.note_buckets(key, time)

    def event_time(self, event: Event, ingest_ms: int, history: bool) -> EventTime:
        if history:
            return classify_history(event.occurred_at_ms, ingest_ms, self.settings.max_future_skew_ms)
        return classify(event.occurred_at_ms, ingest_ms,
                        self.settings.allowed_lateness_ms, self.settings.max_future_skew_ms)

    def note_buckets(self, key: str, time: EventTime) -> None:
        """The bucket rows of an accepted event's profile (written again for a replay);
        backfilled events have theirs from the events table (docs/definitions.md, history)."""
        if not time.late and not time.history:
            self.buckets.add((key, floor_to(time.occurred_at_ms, HOUR_MS), False))
            self.buckets.add((key, floor_to(time.occurred_at_ms, DAY_MS), True))

    def emit_accepted(self, record: SourceRecord, event: Event, time: EventTime, partition: int,
                      lane: str, person: str | None) -> None:
        """Everything an accepted event produces besides its profile's values; sent again
        when it is replayed. ``person``: the customer an anonymous actor is identified as."""
        if not time.late and not time.history:
            minute_ms = floor_to(time.occurred_at_ms, MINUTE_MS)
            minute = self.minute(partition, minute_ms)
            type_channel = f"{event.type}|{event.channel}"
            if absorb(minute["o"], lane, record.offset):
                totals = minute["t"].setdefault(type_channel, [0, 0])
                totals[0] += 1
                totals[1] += event.amount_cents if isinstance(event, Purchase) else 0
            # A replayed event writes its total's row again: the row may not have left before a crash.
            self.minute_totals.add((partition, minute_ms, type_channel))
        if time.late:
            self.warning(record, event, "late_event",
                         f"occurred {record.timestamp - event.occurred_at_ms} ms before ingest")
        if time.clamped:
            self.warning(record, event, "clamped_timestamp",
                         f"occurred {event.occurred_at_ms - record.timestamp} ms after ingest")
        self.out.rows.append(("events", event_row(record, event, time)))
        # A touch's lane: the records of one input partition as this partition's state reads
        # them (directly or re-routed), which reach the index in their offsets' order.
        self.send_to_referral_index(record, event, time, f"{lane}>{partition}", person)

    def send_to_referral_index(self, record: SourceRecord, event: Event, time: EventTime, lane: str,
                               person: str | None) -> None:
        message: dict[str, Any] | None = None
        if isinstance(event, Share):
            message = {"k": "share", **SharePost(event.share_id, event.actor_id, time.occurred_at_ms,
                                                 event.network, event.anonymous).to_json()}
            share_id = event.share_id
        elif isinstance(event, _TOUCHES) and event.referrer_share_id:
            share_id = event.referrer_share_id
            amount = event.amount_cents if isinstance(event, Purchase) else 0
            message = {"k": "touch", **Touch(event.event_id, event.actor_id, share_id,
                                             event.type, time.occurred_at_ms, record.timestamp, amount,
                                             event.anonymous, lane, record.offset, person).to_json()}
        if message is not None:
            key = share_id.encode()
            # The index keeps the source's ingest time: it is the join's clock for expiry.
            self.out.messages.append(OutMessage(
                self.stage.index_topic,
                partition_for(key, self.settings.topic_partitions), key, encode_state(message),
                timestamp_ms=record.timestamp))

    def dead_letter(self, record: SourceRecord, error: DecodeError, with_row: bool = True) -> None:
        stage = "validate" if isinstance(error, ValidationError) else "decode"
        headers = (
            ("reason", error.reason.encode()),
            ("error_class", type(error).__name__.encode()),
            ("error_message", error.message.encode()),
            ("stage", stage.encode()),
            ("origin_topic", record.topic.encode()),
            ("origin_partition", str(record.partition).encode()),
            ("origin_offset", str(record.offset).encode()),
        )
        self.out.messages.append(OutMessage(self.settings.dead_letter_topic, record.partition,
                                            record.key, record.value, headers))
        if with_row:
            self.out.rows.append(("ingestion_errors", error_row(
                record, "dead_letter", error.reason, type(error).__name__, error.message, None)))
        self.out.counts[("dead_letter", record.topic, error.reason)] += 1

    def warning(self, record: SourceRecord, event: AnyEvent, kind: str, message: str) -> None:
        self.out.rows.append(("ingestion_errors",
                              error_row(record, kind, kind, "", message, event)))
        self.out.counts[(kind, record.topic)] += 1

    # -- end of batch -------------------------------------------------------------------------

    def finish(self) -> BatchOutput:
        out = self.out
        self.send_forwards()
        persons: dict[str, Profile] = {}
        for key, (partition, profile) in self.profiles.items():
            out.state_writes.append((partition, key, encode_state(profile.to_json())))
            self.stage.profiles.put(key, profile)
            person = persons[key] = person_view(profile, self.settings.allow_self_referral, self.stage.referee_key)
            identified_now = profile.anonymous and profile.customer_id in self.identified
            # An identified anonymous profile no longer changes (its events go to the customer):
            # its row is written once more with its identify (again if that is replayed).
            if person.version and (profile.identified_as is None or identified_now):
                out.rows.append(("customer_profiles", person.snapshot_values()))
            if identified_now:
                self.send_credits_to_customer(profile)
        for key, start, daily in self.buckets:
            if key in self.erased_now:
                continue
            bucketed = persons[key]
            if start in (bucketed.daily if daily else bucketed.hourly):
                out.rows.append(("customer_daily" if daily else "customer_hourly",
                                 bucketed.bucket_values(start, daily)))
        for (partition, minute_ms), record in self.minutes.items():
            out.state_writes.append((partition, f"m:{partition}:{minute_ms}", encode_state(record)))
            self.stage.minute_index(partition).add(minute_ms)
        for partition, minute_ms, type_channel in self.minute_totals:
            totals = self.minutes[(partition, minute_ms)]["t"].get(type_channel)
            if totals is None:  # a replayed duplicate whose original went into no total
                continue
            out.rows.append(("minute_totals", minute_totals_row(minute_ms, type_channel, partition, *totals)))
        for partition in {partition for partition, _ in self.minutes}:
            self.evict_old_minutes(partition)
        out.messages.extend(self.stage.watermarks())
        return out

    def send_forwards(self) -> None:
        """One record per customer with the batch's forwarded events, in the order read."""
        for customer_id, events in self.forwards.items():
            key = customer_id.encode()
            self.out.messages.append(OutMessage(
                self.stage.repartition_topic, partition_for(key, self.settings.topic_partitions), key,
                forwarded_value(events), FORWARDED_HEADERS, events[-1][3]))

    def send_credits_to_customer(self, anonymous: Profile) -> None:
        """After an identify (again when replayed): the credits the anonymous id's shares
        earned go to its customer, and those its touches earned go again to their sharers,
        now naming the customer."""
        assert anonymous.identified_as is not None
        for credit_id, credit in anonymous.person_credits.items():
            self.forward_credit(anonymous.identified_as, credit_id, credit)
        for touch_credit in anonymous.touch_credits.values():
            self.send_resolved_credit(touch_credit, anonymous)

    def evict_old_minutes(self, partition: int) -> None:
        """Forget per-minute totals that are final (deleted once their rows are in ClickHouse)."""
        index = self.stage.minute_index(partition)
        settled = self.stage.settled_before(partition)
        for oldest in sorted(index):
            if oldest >= settled and len(index) <= MINUTES_KEPT:
                break
            index.discard(oldest)
            self.out.deletes_after_flush.append((partition, f"m:{partition}:{oldest}"))
