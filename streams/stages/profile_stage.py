"""The profile stage (keyed by customer id); see ``streams.stages``."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from streams.core.events import AnyEvent, Click, Event, EventType, Identify, Purchase, Share
from streams.core.identity import fold_part, identify, person_view, record_person_credit
from streams.core.profile import PersonCredit, Profile
from streams.core.referrals import Credit, CreditOrigin, SharePost, Touch
from streams.core.repartition import read_origin, read_watermark, rerouted_headers, watermark_headers, watermark_value
from streams.core.replay import Admission, absorb, lane_topic, rerouted_lane
from streams.core.windows import DAY_MS, HOUR_MS, MINUTE_MS, EventTime, classify, floor_to
from streams.errors import DecodeError, ValidationError
from streams.settings import Settings
from streams.stages.partitioning import partition_for
from streams.stages.records import (
    BatchOutput,
    DecodedCache,
    InputRecord,
    OutMessage,
    SourceRecord,
    StateReader,
    encode_state,
)
from streams.stages.rows import error_row, event_row

# Per-minute totals are held until no on-time event can reach them any more (see
# evict_old_minutes); this cap only guards memory when an input topic stays idle.
MINUTES_KEPT = 20_000
# Each partition read here tells every other one how far it has re-routed at most this often
# (processing time): with P partitions that is P - 1 small records per partition and interval,
# however fast a backlog is read. A later watermark only lets per-minute totals go later.
WATERMARK_INTERVAL_S = 1.0
# Credits an anonymous visitor's touches earned, kept to be resent once it is identified.
TOUCH_CREDITS_KEPT = 10_000
Decoder = Callable[[bytes, EventType], AnyEvent]
Validator = Callable[[AnyEvent], None]


def state_key(actor_id: str, anonymous: bool) -> str:
    """Store key of a profile: customers and anonymous ids are kept apart."""
    return f"a:{actor_id}" if anonymous else f"c:{actor_id}"


class ProfileStage:
    """Fold input events into per-customer state; see the module docstring."""

    def __init__(self, settings: Settings, decode: Decoder, validate: Validator,
                 store: StateReader, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.decode = decode
        self.validate = validate
        self.store = store
        self.topic_types = {topic: EventType(t) for t, topic in settings.input_topics.items()}
        # Identifies reach no per-minute total, so they take no part in deciding when one is final.
        self.timed_topics = {topic for topic, t in self.topic_types.items() if t is not EventType.IDENTIFY}
        self.credits_topic = settings.referral_credits_topic
        self.repartition_topic = settings.repartition_topic
        # Every partition is reached by each input topic directly and from each other partition.
        self.lanes_per_partition = len(self.timed_topics) * settings.topic_partitions
        self._minutes: dict[int, set[int]] = {}
        self.profiles: DecodedCache[Profile] = DecodedCache()
        self.ingest_progress: dict[int, dict[str, int]] = {}  # partition -> lane -> newest ingest
        self.watermarks_sent: dict[int, dict[str, int]] = {}  # partition read here -> what it told
        self.watermarks_due = 0.0

    def forget_partitions(self) -> None:
        """Drop in-memory indexes after a rebalance: state may have moved."""
        self._minutes.clear()
        self.profiles.clear()
        self.ingest_progress.clear()
        self.watermarks_sent.clear()

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
            else:
                batch.on_input(record)
        return batch.finish()

    def watermarks(self) -> list[OutMessage]:
        """Tell every other partition how far each partition read here has re-routed (sent
        after the batch's re-routed records, so a partition reads them first)."""
        now = self.clock()
        if now < self.watermarks_due:
            return []
        self.watermarks_due = now + WATERMARK_INTERVAL_S
        messages: list[OutMessage] = []
        for origin, progress in self.ingest_progress.items():
            direct = {topic: progress[topic] for topic in self.timed_topics if topic in progress}
            if not direct or direct == self.watermarks_sent.get(origin):
                continue
            self.watermarks_sent[origin] = direct
            value, headers = watermark_value(direct), watermark_headers(origin)
            messages.extend(OutMessage(self.repartition_topic, partition, None, value, headers)
                            for partition in range(self.settings.topic_partitions) if partition != origin)
        return messages

    def minute_index(self, partition: int) -> set[int]:
        index = self._minutes.get(partition)
        if index is None:
            prefix = f"m:{partition}:"
            index = {int(k[len(prefix):]) for k in self.store.keys_with_prefix(prefix)}
            self._minutes[partition] = index
        return index


class _ProfileBatch:
    """State and output of one batch of :class:`ProfileStage`."""

    def __init__(self, stage: ProfileStage) -> None:
        self.stage = stage
        self.settings = stage.settings
        self.out = BatchOutput()
        self.profiles: dict[str, tuple[int, Profile]] = {}  # by state_key
        self.identified: set[str] = set()  # anonymous ids whose identify was read in this batch
        self.minutes: dict[tuple[int, int], dict[str, Any]] = {}
        # (partition, minute, "type|channel") totals this batch's events went into: their rows.
        self.minute_totals: set[tuple[int, int, str]] = set()
        self.buckets: set[tuple[str, int, bool]] = set()

    # -- loading state ------------------------------------------------------------------------

    def profile(self, actor_id: str, partition: int, anonymous: bool = False) -> Profile:
        key = state_key(actor_id, anonymous)
        loaded = self.profiles.get(key)
        if loaded is None:
            profile = self.stage.profiles.get(key)
            if profile is None:
                raw = self.stage.store.get(key)
                profile = Profile.from_json(orjson.loads(raw)) if raw else Profile(actor_id, anonymous=anonymous)
            self.profiles[key] = loaded = (partition, profile)
        return loaded[1]

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
        """A referral credit, or an identity record: an anonymous profile to fold into its
        customer, or a credit resolved to the person who earned it (see below)."""
        message = orjson.loads(record.value or b"{}")
        if message.pop("k", None) == "fold":
            self.on_fold(record, message)
            return
        origin = message.pop("origin", None)  # absent from credits produced before it was sent
        resolution, referred_person = message.pop("rv", None), message.pop("rp", None)
        credit = Credit.from_json(message)
        if credit.referred_anonymous and resolution is None:
            self.on_anonymous_touch_credit(record, credit)
            return
        profile = self.profile(credit.sharer_customer_id, record.partition, credit.sharer_anonymous)
        if credit.involves_anonymous:
            # Kept by credit id: a credit produced again changes nothing.
            changed = record_person_credit(profile, credit.credit_id, PersonCredit(
                resolution or 0, referred_person or credit.referred_customer_id, credit.touch_type,
                credit.amount_cents))
            self.out.counts[("credit", "new" if changed else "replayed")] += 1
            return
        admission = profile.book.admit(record.topic, record.offset, credit.credit_id)
        if admission is Admission.NEW and origin is not None \
                and not CreditOrigin(*origin).after(profile.credit_origins):
            admission = Admission.DUPLICATE  # produced again: counted already
        if admission is Admission.NEW:
            profile.apply_credit(credit.touch_type, credit.referred_customer_id,
                                 credit.amount_cents)
        self.out.counts[("credit", admission.value)] += 1

    def on_anonymous_touch_credit(self, record: SourceRecord, credit: Credit) -> None:
        """On the toucher's partition: keep the credit to resend once the visitor is identified,
        and send it on to the sharer naming the person the touch resolves to so far."""
        toucher = self.profile(credit.referred_customer_id, record.partition, anonymous=True)
        if len(toucher.touch_credits) < TOUCH_CREDITS_KEPT:
            toucher.touch_credits[credit.credit_id] = credit.to_json()
        self.send_resolved_credit(credit.to_json(), toucher)
        self.out.counts[("credit", "anonymous_touch")] += 1

    def send_resolved_credit(self, credit: dict[str, Any], toucher: Profile) -> None:
        person = toucher.identified_as
        message = {**credit, "rv": 0 if person is None else 1, "rp": person or toucher.customer_id}
        self.send_keyed(self.stage.credits_topic, credit["sharer_customer_id"], message)

    def send_keyed(self, topic: str, key_id: str, message: dict[str, Any]) -> None:
        key = key_id.encode()
        self.out.messages.append(OutMessage(topic, partition_for(key, self.settings.topic_partitions), key,
                                            encode_state(message)))

    def on_fold(self, record: SourceRecord, message: dict[str, Any]) -> None:
        """On the customer's partition: the newest profile of an anonymous id identified as it."""
        customer = self.profile(message["customer_id"], record.partition)
        part = Profile.from_json(message["p"])
        changed = fold_part(customer, message["anonymous_id"], part, message["p"])
        self.out.counts[("identity_fold", "new" if changed else "replayed")] += 1
        # Rows again even when the version is known: state is saved before rows are written, so
        # a replayed fold may be the one whose bucket rows a crash lost.
        key = state_key(customer.customer_id, False)
        self.buckets.update((key, start, False) for start in part.hourly)
        self.buckets.update((key, start, True) for start in part.daily)

    def on_identify(self, record: SourceRecord, event: Identify, partition: int, lane: str) -> None:
        """On the anonymous id's partition: the first identify links it; the profile goes to the
        customer at the end of the batch (and after every later change)."""
        anonymous = self.profile(event.anonymous_id, partition, anonymous=True)
        admission = anonymous.book.admit(lane, record.offset, event.event_id)
        self.out.counts[("admission", record.topic, admission.value)] += 1
        if admission is Admission.NEW:
            outcome = identify(anonymous, event.customer_id)
            self.out.counts[("identify", outcome.value)] += 1
        if admission not in (Admission.NEW, Admission.REPLAYED):
            return
        if anonymous.identified_as == event.customer_id:
            self.identified.add(event.anonymous_id)
            self.out.rows.append(("identity_map", {
                "anonymous_id": event.anonymous_id, "customer_id": event.customer_id, "version": 1}))
        else:
            self.warning(record, event, "identity_conflict",
                         f"{event.anonymous_id!r} is already customer {anonymous.identified_as!r}, "
                         f"not {event.customer_id!r}: nothing merged")

    def on_input(self, record: SourceRecord) -> None:
        topic_type = self.stage.topic_types[record.topic]
        self.out.counts[("consumed", record.topic, topic_type.value)] += 1
        self.stage.advance(record.partition, record.topic, record.timestamp)
        # A record without a key cannot be routed; it is dead-lettered where it is.
        owner = partition_for(record.key, self.settings.topic_partitions) if record.key else record.partition
        if owner != record.partition:
            self.reroute(record, owner)
            return
        self.accept(record, record.partition, record.topic)

    def reroute(self, record: SourceRecord, owner: int) -> None:
        """Send a record that arrived on another partition than its key's to its owner."""
        self.out.messages.append(OutMessage(
            self.stage.repartition_topic, owner, record.key, record.value,
            rerouted_headers(record.topic, record.partition, record.offset), record.timestamp))
        self.out.counts[("rerouted", record.topic)] += 1

    def on_rerouted(self, record: SourceRecord) -> None:
        """A record re-routed to this partition, or another partition's watermark."""
        try:
            origin = read_origin(record.headers)
            if origin.watermark:
                for topic, ingest_ms in read_watermark(record.value).items():
                    self.stage.advance(record.partition, rerouted_lane(topic, origin.partition), ingest_ms)
                return
            if origin.topic not in self.stage.topic_types:
                raise DecodeError("bad_origin", f"origin topic {origin.topic!r} is not an input topic")
        except DecodeError as error:
            self.dead_letter(record, error)
            return
        lane = rerouted_lane(origin.topic, origin.partition)
        self.stage.advance(record.partition, lane, record.timestamp)
        self.accept(InputRecord(origin.topic, origin.partition, origin.offset, record.key,
                                record.value, record.timestamp), record.partition, lane)

    def accept(self, record: SourceRecord, partition: int, lane: str) -> None:
        """Decode, validate and fold an input record into the state of ``partition``; ``lane``
        is how it came (see ``streams.core.replay``)."""
        topic_type = self.stage.topic_types[record.topic]
        try:
            event = self.stage.decode(record.value or b"", topic_type)
            self.stage.validate(event)
            if record.key != event.actor_id.encode():
                raise ValidationError("key", "record key differs from the event's customer_id or anonymous_id",
                                      reason="key_mismatch")
        except DecodeError as error:
            self.dead_letter(record, error)
            return
        if isinstance(event, Identify):
            self.on_identify(record, event, partition, lane)
            return
        time = classify(event.occurred_at_ms, record.timestamp,
                        self.settings.allowed_lateness_ms, self.settings.max_future_skew_ms)
        profile = self.profile(event.actor_id, partition, event.anonymous)
        admission = profile.book.admit(lane, record.offset, event.event_id)
        self.out.counts[("admission", record.topic, admission.value)] += 1
        if admission is Admission.NEW:
            profile.apply(event, time.occurred_at_ms, time.late)
            self.out.counts[("processed", record.topic, topic_type.value)] += 1
        if admission in (Admission.NEW, Admission.REPLAYED):
            self.emit_accepted(record, event, time, partition, lane)

    def emit_accepted(self, record: SourceRecord, event: Event, time: EventTime, partition: int,
                      lane: str) -> None:
        """Everything an accepted event produces; sent again when it is replayed."""
        if not time.late:
            key = state_key(event.actor_id, event.anonymous)
            self.buckets.add((key, floor_to(time.occurred_at_ms, HOUR_MS), False))
            self.buckets.add((key, floor_to(time.occurred_at_ms, DAY_MS), True))
            minute_ms = floor_to(time.occurred_at_ms, MINUTE_MS)
            minute = self.minute(partition, minute_ms)
            type_channel = f"{event.type.value}|{event.channel}"
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
        self.send_to_referral_index(record, event, time, f"{lane}>{partition}")

    def send_to_referral_index(self, record: SourceRecord, event: Event, time: EventTime, lane: str) -> None:
        message: dict[str, Any] | None = None
        if isinstance(event, Share):
            message = {"k": "share", **SharePost(event.share_id, event.actor_id, time.occurred_at_ms,
                                                 event.network, event.anonymous).to_json()}
            share_id = event.share_id
        elif isinstance(event, Click | Purchase) and event.referrer_share_id:
            share_id = event.referrer_share_id
            amount = event.amount_cents if isinstance(event, Purchase) else 0
            message = {"k": "touch", **Touch(event.event_id, event.actor_id, share_id,
                                             event.type.value, time.occurred_at_ms, record.timestamp, amount,
                                             event.anonymous, lane, record.offset).to_json()}
        if message is not None:
            key = share_id.encode()
            # The index keeps the source's ingest time: it is the join's clock for expiry.
            self.out.messages.append(OutMessage(
                self.settings.referral_index_topic,
                partition_for(key, self.settings.topic_partitions), key, encode_state(message),
                timestamp_ms=record.timestamp))

    def dead_letter(self, record: SourceRecord, error: DecodeError) -> None:
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
        persons: dict[str, Profile] = {}
        for key, (partition, profile) in self.profiles.items():
            out.state_writes.append((partition, key, encode_state(profile.to_json())))
            self.stage.profiles.put(key, profile)
            person = persons[key] = person_view(profile, self.settings.allow_self_referral)
            if person.version:
                out.rows.append(("customer_profiles", person.snapshot()))
            if profile.identified_as is not None:
                self.send_to_customer(profile)
        for key, start, daily in self.buckets:
            person = persons[key]
            if start in (person.daily if daily else person.hourly):
                out.rows.append(("customer_daily" if daily else "customer_hourly",
                                 person.bucket_row(start, daily)))
        for (partition, minute_ms), record in self.minutes.items():
            out.state_writes.append((partition, f"m:{partition}:{minute_ms}", encode_state(record)))
            self.stage.minute_index(partition).add(minute_ms)
        for partition, minute_ms, type_channel in self.minute_totals:
            totals = self.minutes[(partition, minute_ms)]["t"].get(type_channel)
            if totals is None:  # a replayed duplicate whose original went into no total
                continue
            events, revenue = totals
            event_type, channel = type_channel.split("|", 1)
            out.rows.append(("minute_totals", {
                "minute_start": minute_ms, "event_type": event_type, "channel": channel,
                "source_partition": partition, "events": events, "revenue_cents": revenue,
                "version": events}))
        for partition in {partition for partition, _ in self.minutes}:
            self.evict_old_minutes(partition)
        out.messages.extend(self.stage.watermarks())
        return out

    def send_to_customer(self, anonymous: Profile) -> None:
        """Send an identified anonymous profile, as it is now, to its customer (resent after
        every change, and on replays: the customer keeps the newest version); after its
        identify, also the credits its touches earned, now naming the customer."""
        customer_id = anonymous.identified_as
        assert customer_id is not None
        part = {k: v for k, v in anonymous.to_json().items() if k not in _NOT_FOLDED}
        part["b"] = [{}, {}, {}]
        self.send_keyed(self.stage.credits_topic, customer_id,
                        {"k": "fold", "anonymous_id": anonymous.customer_id, "customer_id": customer_id, "p": part})
        if anonymous.customer_id in self.identified:
            for credit in anonymous.touch_credits.values():
                self.send_resolved_credit(credit, anonymous)

    def evict_old_minutes(self, partition: int) -> None:
        """Forget per-minute totals that are final (deleted once their rows are in ClickHouse)."""
        index = self.stage.minute_index(partition)
        settled = self.stage.settled_before(partition)
        for oldest in sorted(index):
            if oldest >= settled and len(index) <= MINUTES_KEPT:
                break
            index.discard(oldest)
            self.out.deletes_after_flush.append((partition, f"m:{partition}:{oldest}"))


# What of an anonymous profile stays on its own partition: its replay book (the customer's
# part is never replayed event by event), identity and the credits kept for resending.
_NOT_FOLDED = frozenset({"b", "ia", "m", "tc"})
