"""The traffic simulator: deterministic, and every anomaly where and as often as configured."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from streams.contracts.codec import Codec
from streams.core.events import Click, Event, EventType, Purchase, Share, Support, TicketAction
from streams.settings import Settings
from streams.tools.simulate import (
    DAY_MS,
    HOT_CUSTOMER,
    MALFORMED_REASONS,
    SimRecord,
    SimulationConfig,
    Tag,
    generate,
    publish,
    read_jsonl,
    record_value,
    write_jsonl,
)

SETTINGS = Settings()
CONFIG = SimulationConfig(
    seed=11,
    customers=400,
    events=20_000,
    out_of_order=0.03,
    late=0.02,
    duplicates=0.025,
    far_future=0.01,
    malformed=0.01,
)


@pytest.fixture(scope="module")
def records() -> list[SimRecord]:
    return generate(CONFIG)


def tagged(records: list[SimRecord], tag: Tag) -> list[SimRecord]:
    return [r for r in records if tag in r.tags]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    config = SimulationConfig(seed=5, customers=50, events=3_000, malformed=0.02)
    paths = [tmp_path / name for name in ("a.jsonl", "b.jsonl", "c.jsonl")]
    write_jsonl(generate(config), paths[0])
    write_jsonl(generate(config), paths[1])
    write_jsonl(generate(SimulationConfig(seed=6, customers=50, events=3_000)), paths[2])
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_jsonl_round_trips(records: list[SimRecord], tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    assert write_jsonl(records, path) == len(records)
    assert read_jsonl(path) == records


def test_publish_order_and_event_count(records: list[SimRecord]) -> None:
    ingest = [r.ingest_ms for r in records]
    assert ingest == sorted(ingest)
    good = [r for r in records if r.malformed_reason is None]
    assert len({r.event.event_id for r in good if r.event}) == CONFIG.events
    assert len(records) == CONFIG.events + len(tagged(records, Tag.DUPLICATE)) + len(
        tagged(records, Tag.MALFORMED)
    )


# The counts are exact, not statistical: the simulator samples round(fraction * events)
# distinct events for each anomaly. Out-of-order needs an eligible neighbour (the same
# customer's next event within 5 min), and 20k events offer far more than 600 of them.
@pytest.mark.parametrize(
    ("tag", "fraction"),
    [
        (Tag.LATE, CONFIG.late),
        (Tag.FAR_FUTURE, CONFIG.far_future),
        (Tag.OUT_OF_ORDER, CONFIG.out_of_order),
        (Tag.DUPLICATE, CONFIG.duplicates),
        (Tag.MALFORMED, CONFIG.malformed),
    ],
)
def test_anomaly_counts_match_fractions(records: list[SimRecord], tag: Tag, fraction: float) -> None:
    assert len(tagged(records, tag)) == round(fraction * CONFIG.events)


def test_late_exactly_when_tagged(records: list[SimRecord]) -> None:
    lateness = SETTINGS.allowed_lateness_ms
    for record in records:
        if record.event is None or Tag.DUPLICATE in record.tags:
            continue
        delay = record.ingest_ms - record.event.occurred_at_ms
        if Tag.LATE in record.tags:
            assert lateness + 3_600_000 <= delay <= lateness + 4 * 3_600_000
        else:
            assert delay <= lateness


def test_far_future_exactly_when_tagged(records: list[SimRecord]) -> None:
    skew = SETTINGS.max_future_skew_ms
    for record in records:
        if record.event is None or Tag.DUPLICATE in record.tags:
            continue
        ahead = record.event.occurred_at_ms - record.ingest_ms
        if Tag.FAR_FUTURE in record.tags:
            assert skew + DAY_MS <= ahead <= skew + 3 * DAY_MS
        else:
            assert ahead <= 0


def test_out_of_order_follows_a_later_event_of_its_customer(records: list[SimRecord]) -> None:
    latest_seen: dict[str, int] = {}  # customer -> greatest occurred_at published so far
    for record in records:
        if record.event is None:
            continue
        event = record.event
        if Tag.OUT_OF_ORDER in record.tags:
            assert latest_seen[event.customer_id] > event.occurred_at_ms
            # Held back behind a neighbour at most 5 min later, so never late.
            assert record.ingest_ms - event.occurred_at_ms <= 5 * 60_000 + 4_500
        previous = latest_seen.get(event.customer_id, event.occurred_at_ms)
        latest_seen[event.customer_id] = max(previous, event.occurred_at_ms)


def test_duplicates_repeat_an_earlier_record_shortly_after(records: list[SimRecord]) -> None:
    first: dict[str, SimRecord] = {}
    for record in records:
        if record.event is None:
            continue
        if Tag.DUPLICATE in record.tags:
            original = first[record.event.event_id]
            assert (original.event, original.key, original.topic_type) == (
                record.event, record.key, record.topic_type)
            assert 0 < record.ingest_ms - original.ingest_ms <= 60_000
        else:
            assert record.event.event_id not in first
            first[record.event.event_id] = record


def test_every_malformed_reason_in_turns(records: list[SimRecord]) -> None:
    bad = tagged(records, Tag.MALFORMED)
    reasons = Counter(r.malformed_reason for r in bad)
    assert set(reasons) == set(MALFORMED_REASONS)
    assert max(reasons.values()) - min(reasons.values()) <= 1
    assert all(r.event is None and r.raw_value is not None for r in bad)


def test_domain_shapes(records: list[SimRecord]) -> None:
    events = [r.event for r in records if r.event is not None]
    purchases = [e for e in events if isinstance(e, Purchase)]
    assert all(500 <= p.amount_cents <= 50_000 and p.currency == "EUR" for p in purchases)
    assert any(p.referrer_share_id for p in purchases)
    assert any(not p.referrer_share_id for p in purchases)
    assert {e.channel for e in events} == {"web", "ios", "android"}
    assert {e.network for e in events if isinstance(e, Share)} == {
        "facebook", "x", "whatsapp", "email", "pinterest"}
    support = [e for e in events if isinstance(e, Support)]
    assert {s.action for s in support} == set(TicketAction)
    assert {s.satisfaction for s in support} == {None, 1, 2, 3, 4, 5}
    start, end = CONFIG.start_ms, CONFIG.start_ms + CONFIG.span_ms
    for record in records:
        event = record.event
        if event is None or {Tag.OLD_SHARE, Tag.FAR_FUTURE, Tag.DUPLICATE} & set(record.tags):
            continue
        assert start <= event.occurred_at_ms < end


def share_index(records: list[SimRecord]) -> dict[str, SimRecord]:
    return {r.event.share_id: r for r in records if isinstance(r.event, Share)}


def touch_events(records: list[SimRecord], tag: Tag) -> list[tuple[SimRecord, Click | Purchase]]:
    """(record, event) of the referral touches carrying ``tag``; there must be some."""
    found = []
    for record in tagged(records, tag):
        assert isinstance(record.event, Click | Purchase)
        assert record.event.referrer_share_id
        found.append((record, record.event))
    assert found, f"no {tag} touches"
    return found


def linked(
    records: list[SimRecord], tag: Tag
) -> list[tuple[SimRecord, Click | Purchase, SimRecord, Event]]:
    """(touch record, touch, share record, share) for the touches carrying ``tag``."""
    shares = share_index(records)
    found = []
    for record, touch in touch_events(records, tag):
        assert touch.referrer_share_id
        share_record = shares[touch.referrer_share_id]
        assert share_record.event is not None
        found.append((record, touch, share_record, share_record.event))
    return found


def test_self_referrals_click_their_own_links(records: list[SimRecord]) -> None:
    for _, touch, _, share in linked(records, Tag.SELF_REFERRAL):
        assert share.customer_id == touch.customer_id


def test_outside_window_touches_come_too_late(records: list[SimRecord]) -> None:
    for _, touch, _, share in linked(records, Tag.OUTSIDE_WINDOW):
        assert touch.occurred_at_ms - share.occurred_at_ms > CONFIG.attribution_window_ms


def test_without_old_shares_every_record_lies_within_a_week_of_the_span(records: list[SimRecord]) -> None:
    # Published to topics of the default 7-day retention, nothing is stamped before the span.
    recent = generate(dataclasses.replace(CONFIG, old_shares=False))
    assert not any({Tag.OLD_SHARE, Tag.OUTSIDE_WINDOW} & set(r.tags) for r in recent)
    assert min(r.ingest_ms for r in recent) >= CONFIG.start_ms
    assert min(r.ingest_ms for r in records) < CONFIG.start_ms - CONFIG.attribution_window_ms  # the default has them
    assert sum(r.event is not None and Tag.DUPLICATE not in r.tags for r in recent) == CONFIG.events


def test_touches_published_before_their_share(records: list[SimRecord]) -> None:
    for touch_record, touch, share_record, share in linked(records, Tag.TOUCH_BEFORE_SHARE):
        assert touch_record.ingest_ms < share_record.ingest_ms
        assert touch.occurred_at_ms > share.occurred_at_ms
        assert share_record.ingest_ms - share.occurred_at_ms < CONFIG.allowed_lateness_ms
        assert touch.customer_id != share.customer_id


def test_unknown_share_touches_name_no_share(records: list[SimRecord]) -> None:
    shares = share_index(records)
    for _, touch in touch_events(records, Tag.UNKNOWN_SHARE):
        assert touch.referrer_share_id not in shares


def test_publish_sends_every_record_with_its_ingest_time(records: list[SimRecord]) -> None:
    class FakePublisher:
        def __init__(self) -> None:
            self.sent: list[tuple[str, bytes | None, bytes, int | None]] = []
            self.flushed = False

        def publish_raw(
            self, topic: str, key: bytes | None, value: bytes, timestamp_ms: int | None
        ) -> None:
            self.sent.append((topic, key, value, timestamp_ms))

        def flush(self) -> None:
            self.flushed = True

    sample = records[:3_000]
    publisher = FakePublisher()
    counts = publish(sample, publisher, SETTINGS)
    assert publisher.flushed
    assert sum(counts.values()) == len(sample)
    assert counts == Counter(SETTINGS.input_topics[r.topic_type] for r in sample)
    codec = Codec()
    for record, (topic, key, value, timestamp_ms) in zip(sample, publisher.sent, strict=True):
        assert (topic, key, timestamp_ms) == (
            SETTINGS.input_topics[record.topic_type], record.key, record.ingest_ms)
        assert value == record_value(record)
        if record.event is not None:
            assert codec.decode(value, record.topic_type) == record.event


def test_config_follows_settings() -> None:
    settings = Settings(allowed_lateness_ms=7_200_000, max_future_skew_ms=60_000)
    config = SimulationConfig.for_settings(settings, seed=3, customers=20, events=2_000, late=0.05)
    lateness = settings.allowed_lateness_ms
    late = tagged(generate(config), Tag.LATE)
    assert len(late) == 100
    assert all(r.event and r.ingest_ms - r.event.occurred_at_ms > lateness for r in late)


@pytest.mark.parametrize("bad", [{"customers": 1}, {"events": -1}, {"late": 1.5}])
def test_config_refuses_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimulationConfig(**bad)


def test_empty_run() -> None:
    assert generate(SimulationConfig(events=0)) == []


def test_topics_cover_every_event_type(records: list[SimRecord]) -> None:
    assert {r.topic_type for r in records} == set(EventType) - {EventType.IDENTIFY}
    with_identities = generate(SimulationConfig(seed=3, customers=50, events=2_000, anonymous_visits=0.2))
    assert {r.topic_type for r in with_identities} == set(EventType)


def test_hot_customer_and_viral_share_take_their_parts() -> None:
    skewed = generate(SimulationConfig(seed=3, customers=20_000, events=20_000, hot_customer=0.05, viral_share=0.2))
    events = [r.event for r in skewed if r.event is not None and Tag.DUPLICATE not in r.tags]
    by_customer = Counter(e.customer_id for e in events)
    hot = f"cust-{HOT_CUSTOMER:05d}"
    assert by_customer.most_common(1)[0][0] == hot
    assert 0.04 < by_customer[hot] / len(events) < 0.065
    touches = Counter(e.referrer_share_id for e in events if isinstance(e, Click | Purchase) and e.referrer_share_id)
    viral, viral_touches = touches.most_common(1)[0]
    assert 0.17 < viral_touches / touches.total() < 0.27
    shares = [e for e in events if isinstance(e, Share) and e.share_id == viral]
    assert len(shares) == 1 and shares[0].occurred_at_ms < CONFIG.start_ms + DAY_MS // 20


def test_skew_off_draws_the_same_traffic_as_before() -> None:
    """The skew options cost no random draws when off: existing seeds keep their traffic."""
    plain = SimulationConfig(seed=5, customers=50, events=2_000)
    assert generate(plain) == generate(SimulationConfig(seed=5, customers=50, events=2_000, hot_customer=0.0))
    assert generate(plain) != generate(SimulationConfig(seed=5, customers=50, events=2_000, hot_customer=0.01))


def test_everything_on_one_customer() -> None:
    """``hot_customer=1``: every pick is the hot customer; visitors of its links are the next one."""
    one_key = generate(SimulationConfig(seed=4, customers=100, events=3_000, hot_customer=1.0, malformed=0.0))
    assert {r.key for r in one_key} == {b"cust-00", b"cust-01"}
