"""The pipeline owns the partitioning of its state: records on another partition than their
key's are re-routed and admitted exactly in their origin's lane; duplicates are found across
lanes; per-minute totals settle only once every lane has passed them."""

from __future__ import annotations

import zlib

import orjson
import pytest

from streams.contracts.codec import Codec, validate
from streams.core.events import Click
from streams.core.repartition import (
    FORWARDED_HEADERS,
    ForwardedEvent,
    forwarded_value,
    read_forwarded,
    read_origin,
    read_watermark,
    rerouted_headers,
    watermark_headers,
    watermark_value,
)
from streams.core.replay import Admission, ReplayBook, lane_topic, rerouted_lane
from streams.errors import DecodeError
from streams.settings import load_settings
from streams.stages.partitioning import partition_for
from streams.stages.profile_stage import WATERMARK_INTERVAL_S, ProfileStage
from streams.stages.records import InputRecord, OutMessage, SourceRecord
from tests.support.inmemory import DictState

SETTINGS = load_settings({})
CLICKS = SETTINGS.input_topics["click"]
T0 = 1_700_000_000_000
CODEC = Codec()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def stage(clock: Clock | None = None) -> ProfileStage:
    return ProfileStage(SETTINGS, CODEC.decode, lambda e: validate(e, SETTINGS.currency), DictState(),
                        clock=clock or Clock())


def customer_not_on(partition: int) -> str:
    """A customer id whose murmur2 partition is not ``partition`` but whose CRC32 one is."""
    return next(c for c in (f"c{i}" for i in range(1000))
                if zlib.crc32(c.encode()) % SETTINGS.topic_partitions == partition
                and partition_for(c.encode(), SETTINGS.topic_partitions) != partition)


def click(customer: str, event_id: str, partition: int, offset: int) -> SourceRecord:
    event = Click(event_id=event_id, customer_id=customer, occurred_at_ms=T0, channel="web",
                  session_id="s", page="/", product_id=None, referrer_share_id=None)
    return InputRecord(CLICKS, partition, offset, customer.encode(), CODEC.encode(event), T0)


def test_origin_headers_round_trip_and_a_record_without_them_is_refused() -> None:
    assert read_origin(rerouted_headers(CLICKS, 3, 17)) == (False, CLICKS, 3, 17, False)
    assert read_origin(FORWARDED_HEADERS).forwarded
    assert read_origin(watermark_headers(3)) == (True, "", 3, -1, False)
    assert read_watermark(watermark_value({CLICKS: T0})) == {CLICKS: T0}
    for headers in ([("kind", b"record"), ("origin_topic", CLICKS.encode())], [("kind", b"other")], []):
        with pytest.raises(DecodeError) as refused:
            read_origin(headers)
        assert refused.value.reason == "bad_origin"
    with pytest.raises(DecodeError):
        read_watermark(b"[1]")


def test_forwarded_events_round_trip_with_any_bytes_and_a_malformed_record_is_refused() -> None:
    value = bytes(range(256))
    events = [[CLICKS, 17, "dev-1>" + CLICKS, T0, value.decode("latin-1")], [CLICKS, 18, "dev-2>c@1", T0 + 1, ""]]
    assert read_forwarded(forwarded_value(events)) == [
        ForwardedEvent(CLICKS, 17, "dev-1>" + CLICKS, T0, value), ForwardedEvent(CLICKS, 18, "dev-2>c@1", T0 + 1, b"")]
    for bad in (b"", b"[1]", b"[[1, 2]]", orjson.dumps([[CLICKS, 1, "l", T0, "\u0100"]])):  # not latin-1
        with pytest.raises(DecodeError) as refused:
            read_forwarded(bad)
        assert refused.value.reason == "bad_origin"


def test_lanes_name_their_topic() -> None:
    assert lane_topic(CLICKS) == CLICKS
    assert lane_topic(rerouted_lane(CLICKS, 2)) == CLICKS


def test_a_duplicate_is_found_in_another_lane_of_the_same_topic_only() -> None:
    book = ReplayBook()
    assert book.admit(CLICKS, 5, "e1") is Admission.NEW
    assert book.admit(rerouted_lane(CLICKS, 2), 9, "e1") is Admission.DUPLICATE
    assert book.admit(rerouted_lane(CLICKS, 2), 9, "e1") is Admission.REPLAYED_DUPLICATE
    assert book.admit(SETTINGS.referral_credits_topic, 1, "e1") is Admission.NEW  # another topic


def test_offsets_are_kept_per_lane() -> None:
    book = ReplayBook()
    assert book.admit(rerouted_lane(CLICKS, 1), 100, "a") is Admission.NEW
    # Another origin partition's offsets are not comparable: a lower one is new there.
    assert book.admit(rerouted_lane(CLICKS, 2), 7, "b") is Admission.NEW
    assert book.admit(rerouted_lane(CLICKS, 1), 100, "a") is Admission.REPLAYED


def test_a_record_on_another_partition_is_rerouted_unprocessed_to_its_owner() -> None:
    customer = customer_not_on(0)
    owner = partition_for(customer.encode(), SETTINGS.topic_partitions)
    out = stage().process([click(customer, "e1", 0, 41)])
    rerouted = [m for m in out.messages if m.key is not None]
    assert [(m.topic, m.partition, m.key, m.timestamp_ms) for m in rerouted] == [
        (SETTINGS.repartition_topic, owner, customer.encode(), T0)]
    assert read_origin(rerouted[0].headers) == (False, CLICKS, 0, 41, False)
    assert out.rows == [] and out.state_writes == []
    assert out.counts[("rerouted", CLICKS)] == 1


def test_the_owner_applies_a_rerouted_record_once_even_when_it_is_rerouted_again() -> None:
    customer = customer_not_on(0)
    origin = stage().process([click(customer, "e1", 0, 41)])
    message = next(m for m in origin.messages if m.key is not None)
    owner = stage()
    # The origin partition replayed after a crash: the same record re-routed twice.
    copies = [InputRecord(message.topic, message.partition, offset, message.key, message.value,
                          message.timestamp_ms or 0, message.headers) for offset in (0, 1)]
    out = owner.process(copies)
    assert out.counts[("admission", CLICKS, "new")] == 1
    assert out.counts[("admission", CLICKS, "replayed")] == 1
    assert [w[1] for w in out.state_writes if w[1].startswith("c:")] == [f"c:{customer}"]
    assert {w[0] for w in out.state_writes} == {message.partition}


def test_watermarks_go_to_every_other_partition_at_most_once_per_interval() -> None:
    clock = Clock()
    profile_stage = stage(clock)
    record = click(customer_not_on(1), "e1", 1, 0)

    def watermarks(record: SourceRecord) -> list[OutMessage]:
        return [m for m in profile_stage.process([record]).messages if m.key is None]

    first = watermarks(record)
    assert sorted(m.partition for m in first) == [p for p in range(SETTINGS.topic_partitions) if p != 1]
    assert {read_origin(m.headers) for m in first} == {(True, "", 1, -1, False)}
    assert {m.value for m in first} == {watermark_value({CLICKS: T0})}
    later = record._replace(offset=1, timestamp=T0 + 5)
    assert watermarks(later) == []  # within the interval
    clock.now += WATERMARK_INTERVAL_S
    assert {m.value for m in watermarks(later._replace(offset=2))} == {watermark_value({CLICKS: T0 + 5})}
    clock.now += WATERMARK_INTERVAL_S
    assert watermarks(later._replace(offset=3)) == []  # no progress since


def test_a_watermark_advances_the_lanes_of_its_origin() -> None:
    profile_stage = stage()
    value = watermark_value({CLICKS: T0})
    profile_stage.process([InputRecord(SETTINGS.repartition_topic, 0, 0, None, value, T0 + 9, watermark_headers(2))])
    assert profile_stage.ingest_progress[0] == {rerouted_lane(CLICKS, 2): T0}


def test_minutes_settle_only_once_every_lane_has_been_heard_from() -> None:
    profile_stage = stage()
    topics = list(SETTINGS.input_topics.values())
    for topic in topics:
        profile_stage.advance(0, topic, T0)
    assert profile_stage.settled_before(0) == -1  # the other partitions' lanes are unknown
    for origin in range(1, SETTINGS.topic_partitions):
        for topic in topics:
            profile_stage.advance(0, rerouted_lane(topic, origin), T0 + origin)
    assert profile_stage.settled_before(0) == T0 - SETTINGS.allowed_lateness_ms - 60_000


def test_the_index_hears_until_when_each_partition_sent_every_share_and_every_touch() -> None:
    """The clocks by which the referral index expires waiting touches and retires shares: the
    slowest lane of the shares topic, and of the touch topics, into a partition, told to every
    index partition when either moves."""
    clock = Clock()
    profile_stage = stage(clock)
    shares, purchases = SETTINGS.input_topics["share"], SETTINGS.input_topics["purchase"]
    touch_topics = (CLICKS, purchases)

    def clocks() -> list[tuple[int, dict[str, int]]]:
        clock.now += WATERMARK_INTERVAL_S
        return sorted((m.partition, orjson.loads(m.value or b"")) for m in profile_stage.watermarks()
                      if m.topic == SETTINGS.referral_index_topic)

    profile_stage.advance(0, shares, T0 + 50)
    profile_stage.advance(0, CLICKS, T0 + 90)
    assert profile_stage.read_until(0, (shares,)) == -1  # re-routed shares may still come from elsewhere
    assert clocks() == []
    for origin in range(1, SETTINGS.topic_partitions):
        profile_stage.advance(0, rerouted_lane(shares, origin), T0 + origin)
    assert profile_stage.read_until(0, (shares,)) == T0 + 1
    assert clocks() == [(p, {"k": "clock", "p": 0, "ms": T0 + 1, "t": -1}) for p in range(SETTINGS.topic_partitions)]
    assert clocks() == []  # not again until one moves
    profile_stage.advance(0, rerouted_lane(shares, 1), T0 + 70)
    assert [message["ms"] for _, message in clocks()] == [T0 + 2] * SETTINGS.topic_partitions

    # Touches: every lane of both touch topics (the shares topic's do not count).
    profile_stage.advance(0, purchases, T0 + 80)
    for origin in range(1, SETTINGS.topic_partitions):
        profile_stage.advance(0, rerouted_lane(CLICKS, origin), T0 + 100 + origin)
    assert profile_stage.read_until(0, touch_topics) == -1  # purchases re-routed from elsewhere may come
    for origin in range(1, SETTINGS.topic_partitions):
        profile_stage.advance(0, rerouted_lane(purchases, origin), T0 + 200)
    assert profile_stage.read_until(0, touch_topics) == T0 + 80
    assert [(m["ms"], m["t"]) for _, m in clocks()] == [(T0 + 2, T0 + 80)] * SETTINGS.topic_partitions
