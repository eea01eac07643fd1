"""Seeded, deterministic social-commerce traffic: the input side of the ground truth.

:func:`generate` returns the records upstream services would publish, in publish order
(``ingest_ms`` non-decreasing; ``ingest_ms`` becomes the Kafka record timestamp). Customers
browse, share products and promotions to their networks, other customers follow those links
and buy, support tickets open, get replies, resolve and sometimes reopen. On top of that clean
traffic it injects, in configured fractions, what real producers do wrong: out-of-order and
late records, far-future clocks, duplicates, and malformed records covering every dead-letter
reason of ``docs/definitions.md``.

Everything comes from one ``random.Random(seed)``: no wall clock, no global random state, so a
seed always gives the same records byte for byte. :mod:`streams.tools.oracle` computes what the
pipeline must make of them.
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import functools
import itertools
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from streams.core.events import (
    EVENT_CLASSES,
    AnyEvent,
    Click,
    Event,
    EventType,
    Identify,
    Purchase,
    Share,
    Support,
    TicketAction,
)
from streams.settings import Settings

if TYPE_CHECKING:
    from streams.contracts.codec import Codec

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
DEFAULT_START_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z

MALFORMED_REASONS: tuple[str, ...] = (
    "bad_magic",
    "truncated",
    "unknown_schema",
    "wrong_topic",
    "corrupt_body",
    "invalid_field",
    "key_mismatch",
)
INTERACTION_TYPES = (EventType.CLICK, EventType.SHARE, EventType.PURCHASE, EventType.SUPPORT)
UNKNOWN_SCHEMA_ID = 0x7FFF_FF00  # far above any id a registry hands out for our few schemas

CHANNELS = ("web", "ios", "android")
NETWORKS = ("facebook", "x", "whatsapp", "email", "pinterest")
SUPPORT_CHANNELS = ("chat", "email", "phone")
SATISFACTION_AFTER_RESOLVE = (1, 2, 3, 3, 4, 4, 4, 5, 5, 5)
SATISFACTION_AFTER_REOPEN = (1, 1, 2, 2, 3)

_DEFAULTS = Settings()
HOT_CUSTOMER = 0  # index of the customer ``SimulationConfig.hot_customer`` concentrates on


class Tag(StrEnum):
    """Why a record is interesting; a record may carry several."""

    LATE = "late"
    FAR_FUTURE = "far_future"
    OUT_OF_ORDER = "out_of_order"
    DUPLICATE = "duplicate"
    MALFORMED = "malformed"
    OLD_SHARE = "old_share"
    TOUCH_BEFORE_SHARE = "touch_before_share"
    SELF_REFERRAL = "self_referral"
    OUTSIDE_WINDOW = "outside_window"
    UNKNOWN_SHARE = "unknown_share"
    ANONYMOUS = "anonymous"  # an anonymous visitor's event, or an identify
    IDENTITY_CONFLICT = "identity_conflict"  # an identify naming a second customer


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """What to simulate. Every anomaly fraction is relative to ``events``.

    ``events`` is the exact number of distinct well-formed events; duplicates and malformed
    records come on top. ``self_referrals``, ``outside_window``, ``unknown_share`` and
    ``touch_before_share`` are per-referral-visit probabilities. Skew: ``hot_customer`` is the
    share of picks (and so of events, about) that go to one customer, ``HOT_CUSTOMER``;
    ``viral_share`` the share of referral visits (and so of touches, about) that follow one
    share made early in the span. The last four fields must match the pipeline's settings for
    the anomalies to land where intended (defaults do).
    """

    seed: int = 1
    customers: int = 1_000
    events: int = 20_000
    start_ms: int = DEFAULT_START_MS
    span_ms: int = DAY_MS
    out_of_order: float = 0.02
    late: float = 0.01
    duplicates: float = 0.02
    far_future: float = 0.005
    malformed: float = 0.005
    self_referrals: float = 0.03
    outside_window: float = 0.02
    unknown_share: float = 0.01
    touch_before_share: float = 0.05
    hot_customer: float = 0.0
    viral_share: float = 0.0
    allowed_lateness_ms: int = _DEFAULTS.allowed_lateness_ms
    max_future_skew_ms: int = _DEFAULTS.max_future_skew_ms
    attribution_window_ms: int = _DEFAULTS.attribution_window_ms
    currency: str = _DEFAULTS.currency
    # Identity traffic (docs/definitions.md, identity), off by default: the share of visits
    # (sessions, tickets) made anonymously on one of a customer's devices; of those devices,
    # the share never identified, identified twice (a replayed and a confirming identify) and
    # also claimed by another customer (a conflict). sentinel_ids is relative to events.
    anonymous_visits: float = 0.0
    unidentified_devices: float = 0.2
    replayed_identifies: float = 0.1
    identity_conflicts: float = 0.05
    sentinel_ids: float = 0.0
    # Shares made before the span, older than the attribution window at its start, which the
    # outside_window visits follow. Traffic published to topics with the default 7-day retention
    # leaves them out: a share older than the 7-day window is older than the retention too, and
    # Kafka deletes it at its next check, before or after the worker read it.
    old_shares: bool = True

    @classmethod
    def for_settings(cls, settings: Settings, **fields: Any) -> SimulationConfig:
        """A config whose anomalies fall on the boundaries ``settings`` define."""
        return cls(
            allowed_lateness_ms=settings.allowed_lateness_ms,
            max_future_skew_ms=settings.max_future_skew_ms,
            attribution_window_ms=settings.attribution_window_ms,
            currency=settings.currency,
            **fields,
        )

    def __post_init__(self) -> None:
        if self.customers < 2:
            raise ValueError("customers must be at least 2 (referrals need another customer)")
        if self.events < 0 or self.span_ms <= 0:
            raise ValueError("events must be >= 0 and span_ms > 0")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not 0.0 <= value <= 1.0:
                raise ValueError(f"{f.name}={value}: a fraction must be within 0..1")


@dataclass(frozen=True, slots=True)
class SimRecord:
    """One record as published: topic (by event type, or the backfill topic), key, Kafka
    timestamp and payload.

    A well-formed record carries ``event`` (its bytes are ``encode(event)``, see
    :func:`record_value`); a malformed one carries the exact ``raw_value`` to send and the
    dead-letter ``malformed_reason`` the pipeline must give it, and no event. ``tags`` say
    why a record is special (a duplicate carries only ``DUPLICATE``); they are for tests and
    never sent.
    """

    topic_type: EventType
    key: bytes
    ingest_ms: int
    event: AnyEvent | None
    malformed_reason: str | None = None
    raw_value: bytes | None = None
    tags: tuple[Tag, ...] = ()
    # Set on a backfilled record: its import's cut-over (docs/definitions.md, history).
    cutover_ms: int | None = None


class RawPublisher(Protocol):
    """The part of :mod:`streams.publisher` that :func:`publish` needs."""

    def publish_raw(
        self, topic: str, key: bytes | None, value: bytes, timestamp_ms: int | None
    ) -> Any: ...

    def flush(self) -> Any: ...


def recent_day_start_ms() -> int:
    """The start (UTC) of the day before yesterday, for traffic published to Kafka: a day
    starting then, with what runs past its end (follow-ups, clock-skewed events), lies in the
    past at any hour, as the publisher requires (at most 1 h ahead; a day starting yesterday
    did not between midnight and about 02:00 UTC), and within the input topics' default
    retention (7 days), which deletes records stamped earlier: :data:`DEFAULT_START_MS` falls
    out of it. The shares made before the span are stamped 8-10 days earlier still: traffic
    published to topics of the default retention leaves them out (``SimulationConfig.old_shares``)."""
    return (int(time.time() * 1000) // DAY_MS - 2) * DAY_MS


def generate(config: SimulationConfig) -> list[SimRecord]:
    """All records of one simulated run, in publish order (``ingest_ms`` non-decreasing)."""
    rng = random.Random(config.seed)
    world = _World(config, rng)
    world.run()
    identities = _anonymize(world)
    records = world.good_records()
    records.extend(identities)
    records.extend(_malformed_records(world, round(config.malformed * config.events)))
    records.sort(key=attrgetter("ingest_ms"))  # stable: ties keep generation order
    return records


def history(config: SimulationConfig, cutover_ms: int, publish_from_ms: int, publish_span_ms: int
            ) -> list[SimRecord]:
    """A backfill: ``config``'s traffic over the ``span_ms`` before ``cutover_ms``, published
    (ingest time) evenly over ``publish_span_ms`` from ``publish_from_ms`` in the order generated,
    each record carrying the cut-over. The backfill topic carries every type, so records that
    are malformed only by their topic are left out."""
    records = [r for r in generate(dataclasses.replace(config, start_ms=cutover_ms - config.span_ms))
               if r.malformed_reason != "wrong_topic"]
    step = publish_span_ms / max(1, len(records))
    return [dataclasses.replace(r, ingest_ms=publish_from_ms + int(i * step), cutover_ms=cutover_ms)
            for i, r in enumerate(records)]


def record_value(record: SimRecord) -> bytes:
    """The Kafka value of ``record``: its raw bytes, or its event in the wire format.

    Events are encoded with the embedded registry's ids, as malformed records are.
    """
    if record.raw_value is not None:
        return record.raw_value
    assert record.event is not None
    return _encode(record.event)


def publish(
    records: Iterable[SimRecord], publisher: RawPublisher, settings: Settings
) -> dict[str, int]:
    """Send every record with its ingest time as timestamp; return records sent per topic.

    Well-formed events are encoded against the registry ``settings`` name (ids differ
    between registries); malformed records go out byte for byte as generated.
    """
    from streams.contracts.codec import Codec
    from streams.contracts.registry import registry_from_settings

    codec = Codec(registry_from_settings(settings))
    sent: Counter[str] = Counter()
    for record in records:
        topic = settings.input_topics[record.topic_type]
        value = record.raw_value
        if value is None:
            assert record.event is not None
            value = codec.encode(record.event)
        publisher.publish_raw(topic, record.key, value, timestamp_ms=record.ingest_ms)
        sent[topic] += 1
    publisher.flush()
    return dict(sent)


def write_jsonl(records: Iterable[SimRecord], path: str | Path) -> int:
    """Write one JSON object per record (bytes base64); :func:`read_jsonl` reads it back."""
    count = 0
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for record in records:
            out.write(json.dumps(_to_json(record), sort_keys=True, separators=(",", ":")))
            out.write("\n")
            count += 1
    return count


def read_jsonl(path: str | Path) -> list[SimRecord]:
    """Records written by :func:`write_jsonl`, equal to the originals."""
    with open(path, encoding="utf-8") as lines:
        return [_from_json(json.loads(line)) for line in lines if line.strip()]


# --- file form -------------------------------------------------------------------------------


def _to_json(record: SimRecord) -> dict[str, Any]:
    event = None
    if record.event is not None:
        event = {f.name: getattr(record.event, f.name) for f in dataclasses.fields(record.event)}
    return {
        "topic_type": str(record.topic_type),
        "key": base64.b64encode(record.key).decode("ascii"),
        "ingest_ms": record.ingest_ms,
        "event_type": None if record.event is None else str(record.event.type),
        "event": event,
        "malformed_reason": record.malformed_reason,
        "raw_value": None
        if record.raw_value is None
        else base64.b64encode(record.raw_value).decode("ascii"),
        "tags": [str(tag) for tag in record.tags],
        "cutover_ms": record.cutover_ms,
    }


def _from_json(obj: dict[str, Any]) -> SimRecord:
    event: AnyEvent | None = None
    if obj["event"] is not None:
        fields = dict(obj["event"])
        event_type = EventType(obj["event_type"])
        if event_type is EventType.SUPPORT:
            fields["action"] = TicketAction(fields["action"])
        event = EVENT_CLASSES[event_type](**fields)
    raw = obj["raw_value"]
    return SimRecord(
        topic_type=EventType(obj["topic_type"]),
        key=base64.b64decode(obj["key"]),
        ingest_ms=obj["ingest_ms"],
        event=event,
        malformed_reason=obj["malformed_reason"],
        raw_value=None if raw is None else base64.b64decode(raw),
        tags=tuple(Tag(tag) for tag in obj["tags"]),
        cutover_ms=obj.get("cutover_ms"),
    )


# --- clean traffic ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Draft:
    """A well-formed event on its way to becoming a record."""

    event: Event
    ingest_ms: int
    tags: list[Tag] = field(default_factory=list)
    # Pinned drafts carry a scenario (old share, touch before share) that a timing anomaly
    # would break, so they get none.
    pinned: bool = False


class _World:
    """Customers and their behaviour; fills ``drafts`` with ``config.events`` events."""

    def __init__(self, config: SimulationConfig, rng: random.Random) -> None:
        self.config = config
        self.rng = rng
        self.end_ms = config.start_ms + config.span_ms
        width = len(str(config.customers - 1))
        self.customers = [f"cust-{i:0{width}d}" for i in range(config.customers)]
        # Zipf-like activity: a few heavy customers become loyal buyers and advocates.
        weights = [1.0 / (i + 1) ** 0.8 for i in range(config.customers)]
        rng.shuffle(weights)
        self.cum_weights: list[float] = []
        total = 0.0
        for weight in weights:
            total += weight
            self.cum_weights.append(total)
        self.home_channel = [rng.choice(CHANNELS) for _ in range(config.customers)]
        self.drafts: list[_Draft] = []
        self.shares: list[int] = []  # draft indexes of shares made inside the span
        self.old_shares: list[int] = []  # draft indexes of shares made long before the span
        self.viral = -1  # draft index of the viral share, if any

    # -- small helpers --

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{self.rng.getrandbits(64):016x}"

    def customer(self) -> int:
        # Checked first so that unskewed configs draw exactly the numbers they always drew.
        if self.config.hot_customer and self.rng.random() < self.config.hot_customer:
            return HOT_CUSTOMER
        x = self.rng.random() * self.cum_weights[-1]
        return min(bisect.bisect(self.cum_weights, x), self.config.customers - 1)

    def other_customer(self, than: int) -> int:
        other = self.customer()
        return other if other != than else (other + 1) % self.config.customers

    def channel(self, customer: int) -> str:
        return self.home_channel[customer] if self.rng.random() < 0.8 else self.rng.choice(CHANNELS)

    def time(self) -> int:
        return self.config.start_ms + self.rng.randrange(self.config.span_ms)

    def product(self) -> str:
        return f"p-{int(self.rng.paretovariate(1.2)) % 500:03d}"

    def amount(self) -> int:
        return self.rng.randint(500, 50_000)

    def add(self, event: Event, *tags: Tag, ingest_delay_ms: int | None = None) -> int:
        """Append a draft unless the event falls after the span; return its index or -1."""
        if event.occurred_at_ms >= self.end_ms or len(self.drafts) >= self.config.events:
            return -1
        delay = self.rng.randint(5, 1_500) if ingest_delay_ms is None else ingest_delay_ms
        self.drafts.append(_Draft(event, event.occurred_at_ms + delay, list(tags)))
        return len(self.drafts) - 1

    # -- behaviour --

    def run(self) -> None:
        """Generate activities until exactly ``config.events`` events exist."""
        if self.config.events and self.config.old_shares:
            self.make_old_shares(max(1, self.config.events // 500))
        if self.config.viral_share and self.config.events:
            self.make_viral_share()
        while len(self.drafts) < self.config.events:
            roll = self.rng.random()
            if roll < 0.62 or not self.shares:
                self.session()
            elif roll < 0.9:
                self.referral_visit()
            else:
                self.ticket()

    def make_old_shares(self, count: int) -> None:
        """Shares made before the span, older than the attribution window at its start."""
        for _ in range(count):
            customer = self.customer()
            age = self.config.attribution_window_ms + self.rng.randint(DAY_MS, 3 * DAY_MS)
            share = self.share(customer, self.config.start_ms - age, self.channel(customer), None)
            index = self.add(share, Tag.OLD_SHARE)
            if index >= 0:
                self.drafts[index].pinned = True
                self.old_shares.append(index)

    def make_viral_share(self) -> None:
        """The share that ``config.viral_share`` of referral visits follow, made in the span's
        first twentieth so that its touches spread over the rest of it."""
        customer = self.customer()
        at_ms = self.config.start_ms + self.rng.randrange(max(1, self.config.span_ms // 20))
        self.viral = self.add(self.share(customer, at_ms, self.channel(customer), None))
        if self.viral >= 0:
            self.drafts[self.viral].pinned = True  # its timing is the scenario: no anomaly

    def share(self, customer: int, at_ms: int, channel: str, session_id: str | None) -> Share:
        on_product = self.rng.random() < 0.7
        return Share(
            event_id=self.new_id("ev"),
            customer_id=self.customers[customer],
            occurred_at_ms=at_ms,
            channel=channel,
            session_id=session_id,
            share_id=self.new_id("sh"),
            network=self.rng.choice(NETWORKS),
            product_id=self.product() if on_product else None,
            promotion_id=None if on_product else f"promo-{self.rng.randrange(20):02d}",
        )

    def click(self, customer: int, at_ms: int, channel: str, session_id: str,
               product_id: str | None, referrer: str | None) -> Click:
        page = f"/product/{product_id}" if product_id else self.rng.choice(("/", "/search", "/cart"))
        return Click(self.new_id("ev"), self.customers[customer], at_ms, channel, session_id, page,
                     product_id, referrer)

    def purchase(self, customer: int, at_ms: int, channel: str, session_id: str,
                  product_id: str | None, referrer: str | None) -> Purchase:
        return Purchase(self.new_id("ev"), self.customers[customer], at_ms, channel, session_id,
                        self.new_id("ord"), self.amount(), self.config.currency, product_id, referrer)

    def session(self) -> None:
        """A customer browses a few pages, maybe shares what they saw, maybe buys it."""
        rng = self.rng
        customer, at_ms = self.customer(), self.time()
        channel, session_id = self.channel(customer), self.new_id("ses")
        product = self.product() if rng.random() < 0.7 else None
        for _ in range(rng.randint(1, 6)):
            self.add(self.click(customer, at_ms, channel, session_id, product, None))
            at_ms += rng.randint(3 * SECOND_MS, 90 * SECOND_MS)
        if rng.random() < 0.3:
            index = self.add(self.share(customer, at_ms, channel, session_id))
            if index >= 0:
                self.shares.append(index)
            at_ms += rng.randint(SECOND_MS, 60 * SECOND_MS)
        if rng.random() < 0.12:
            self.add(self.purchase(customer, at_ms, channel, session_id, product, None))

    def referral_visit(self) -> None:
        """Someone follows a shared link: clicks, and sometimes buys through it."""
        rng, config = self.rng, self.config
        if self.viral >= 0 and rng.random() < config.viral_share:
            self.viral_visit()
            return
        roll = rng.random()
        tags: list[Tag] = []
        if roll < config.unknown_share:
            sharer, share_id, at_ms = -1, self.new_id("sh"), self.time()
            product: str | None = self.product()
            tags.append(Tag.UNKNOWN_SHARE)
        else:
            old = config.old_shares and roll < config.unknown_share + config.outside_window
            draft = self.drafts[rng.choice(self.old_shares if old else self.shares)]
            share = draft.event
            assert isinstance(share, Share)
            sharer = self.sharer(share)
            share_id, product = share.share_id, share.product_id
            if old:
                at_ms = self.time()
                tags.append(Tag.OUTSIDE_WINDOW)
            elif not draft.pinned and rng.random() < config.touch_before_share:
                self.touch_before_share(draft, sharer)
                return
            else:
                delay = int(rng.expovariate(1.0 / (3 * HOUR_MS)))
                at_ms = share.occurred_at_ms + min(delay, config.attribution_window_ms)
        self.follow_link(sharer, share_id, product, at_ms, tags)

    def viral_visit(self) -> None:
        """A visit through the viral share, at any time from the share to the span's end."""
        share = self.drafts[self.viral].event
        assert isinstance(share, Share)
        last_ms = min(self.end_ms, share.occurred_at_ms + self.config.attribution_window_ms) - 1
        at_ms = self.rng.randint(share.occurred_at_ms, last_ms)
        self.follow_link(self.sharer(share), share.share_id, share.product_id, at_ms, [])

    def follow_link(self, sharer: int, share_id: str, product: str | None, at_ms: int, tags: list[Tag]) -> None:
        """The visitor's clicks through ``share_id`` and maybe a purchase (sharer -1: unknown share)."""
        rng = self.rng
        self_referral = sharer >= 0 and rng.random() < self.config.self_referrals
        visitor = sharer if self_referral else self.other_customer(sharer)
        if self_referral:
            tags.append(Tag.SELF_REFERRAL)
        channel, session_id = self.channel(visitor), self.new_id("ses")
        for _ in range(rng.randint(1, 3)):
            self.add(self.click(visitor, at_ms, channel, session_id, product, share_id), *tags)
            at_ms += rng.randint(3 * SECOND_MS, 90 * SECOND_MS)
        if rng.random() < 0.35:
            purchase = self.purchase(visitor, at_ms, channel, session_id, product, share_id)
            self.add(purchase, *tags)

    def sharer(self, share: Share) -> int:
        # Customer ids are "cust-<index>", so the index is the numeric suffix.
        return int(share.customer_id.rsplit("-", 1)[1])

    def touch_before_share(self, share_draft: _Draft, sharer: int) -> None:
        """A click on a share's link published before the share itself (a slow producer)."""
        share = share_draft.event
        assert isinstance(share, Share)
        at_ms = share.occurred_at_ms + self.rng.randint(10 * SECOND_MS, 4 * MINUTE_MS)
        visitor = self.other_customer(sharer)
        click = self.click(visitor, at_ms, self.channel(visitor), self.new_id("ses"),
                            share.product_id, share.share_id)
        index = self.add(click, Tag.TOUCH_BEFORE_SHARE)
        if index >= 0:
            # The share's producer publishes 5-10 min late: after the touch, still on time.
            share_draft.ingest_ms = share.occurred_at_ms + self.rng.randint(5 * MINUTE_MS, 10 * MINUTE_MS)
            share_draft.pinned = True
            self.drafts[index].pinned = True

    def ticket(self) -> None:
        """A support ticket's life: opened, replied, resolved, sometimes reopened."""
        rng = self.rng
        customer, at_ms = self.customer(), self.time()
        ticket_id, channel = self.new_id("tk"), self.channel(customer)
        support_channel = rng.choice(SUPPORT_CHANNELS)

        def step(action: TicketAction, satisfaction: int | None = None) -> None:
            self.add(Support(self.new_id("ev"), self.customers[customer], at_ms, channel, None,
                              ticket_id, action, support_channel, satisfaction))

        step(TicketAction.OPENED)
        if rng.random() > 0.85:
            return
        at_ms += rng.randint(MINUTE_MS, 4 * HOUR_MS)
        step(TicketAction.REPLIED, rng.randint(1, 5) if rng.random() < 0.1 else None)
        if rng.random() < 0.3:
            at_ms += rng.randint(MINUTE_MS, 2 * HOUR_MS)
            step(TicketAction.REPLIED)
        if rng.random() > 0.7:
            return
        at_ms += rng.randint(10 * MINUTE_MS, 12 * HOUR_MS)
        step(TicketAction.RESOLVED, self.maybe(SATISFACTION_AFTER_RESOLVE, 0.6))
        if rng.random() < 0.15:
            at_ms += rng.randint(HOUR_MS, 12 * HOUR_MS)
            step(TicketAction.REOPENED, self.maybe(SATISFACTION_AFTER_REOPEN, 0.5))
            if rng.random() < 0.5:
                at_ms += rng.randint(10 * MINUTE_MS, 6 * HOUR_MS)
                step(TicketAction.RESOLVED, self.maybe(SATISFACTION_AFTER_RESOLVE, 0.5))

    def maybe(self, scores: Sequence[int], probability: float) -> int | None:
        return self.rng.choice(scores) if self.rng.random() < probability else None

    # -- anomalies --

    def good_records(self) -> list[SimRecord]:
        """Records of all drafts after timing anomalies, plus duplicates of some of them."""
        self._apply_timing_anomalies()
        records = [_good_record(d.event, d.ingest_ms, d.tags) for d in self.drafts]
        n_duplicates = round(self.config.duplicates * len(self.drafts))
        for index in sorted(self.rng.sample(range(len(self.drafts)), n_duplicates)):
            draft = self.drafts[index]
            again = draft.ingest_ms + self.rng.randint(1, 60 * SECOND_MS)
            records.append(_good_record(draft.event, again, [Tag.DUPLICATE]))
        return records

    def _apply_timing_anomalies(self) -> None:
        config, rng, drafts = self.config, self.rng, self.drafts
        candidates = [i for i, d in enumerate(drafts) if not d.pinned]
        rng.shuffle(candidates)
        n_late = round(config.late * len(drafts))
        n_future = round(config.far_future * len(drafts))
        for i in candidates[:n_late]:
            # Ingested well past the allowed lateness: 1-4 h beyond it (2-5 h by default).
            drafts[i].ingest_ms = drafts[i].event.occurred_at_ms + config.allowed_lateness_ms \
                + rng.randint(HOUR_MS, 4 * HOUR_MS)
            drafts[i].tags.append(Tag.LATE)
        for i in candidates[n_late:n_late + n_future]:
            # The producer's clock runs 1-3 days ahead.
            skewed = drafts[i].ingest_ms + config.max_future_skew_ms + rng.randint(DAY_MS, 3 * DAY_MS)
            drafts[i].event = dataclasses.replace(drafts[i].event, occurred_at_ms=skewed)
            drafts[i].tags.append(Tag.FAR_FUTURE)
        for i in candidates[: n_late + n_future]:
            drafts[i].pinned = True
        self._apply_out_of_order(candidates[n_late + n_future:])

    def _apply_out_of_order(self, candidates: list[int]) -> None:
        """Publish some events just after the same customer's next event (same partition)."""
        wanted = round(self.config.out_of_order * len(self.drafts))
        following = self._next_of_same_customer()
        frozen: set[int] = set()  # drafts whose ingest time another choice relies on
        chosen = 0
        for i in candidates:
            if chosen == wanted:
                break
            nxt = following.get(i)
            if nxt is None or i in frozen or nxt in frozen or self.drafts[nxt].pinned:
                continue
            mine, theirs = self.drafts[i], self.drafts[nxt]
            if theirs.event.occurred_at_ms - mine.event.occurred_at_ms > 5 * MINUTE_MS:
                continue  # too far apart to stay a few seconds' reordering
            if theirs.event.occurred_at_ms == mine.event.occurred_at_ms:
                continue  # equal times are not out of order
            mine.ingest_ms = theirs.ingest_ms + self.rng.randint(1, 3 * SECOND_MS)
            mine.tags.append(Tag.OUT_OF_ORDER)
            mine.pinned = True
            frozen.update((i, nxt))
            chosen += 1

    def _next_of_same_customer(self) -> dict[int, int]:
        by_customer: dict[str, list[int]] = {}
        for i, draft in enumerate(self.drafts):
            by_customer.setdefault(draft.event.actor_id, []).append(i)
        following: dict[int, int] = {}
        for indexes in by_customer.values():
            indexes.sort(key=lambda i: (self.drafts[i].event.occurred_at_ms, i))
            following.update(itertools.pairwise(indexes))
        return following


def _good_record(event: AnyEvent, ingest_ms: int, tags: Iterable[Tag]) -> SimRecord:
    return SimRecord(event.type, event.actor_id.encode(), ingest_ms, event, tags=tuple(tags))


# --- malformed records -----------------------------------------------------------------------


@functools.cache
def _codec() -> Codec:
    from streams.contracts.codec import Codec  # lazy: only malformed records and publishing need Avro

    return Codec()


def _encode(event: AnyEvent) -> bytes:
    """``event`` in the wire format, with the embedded registry's schema ids."""
    return _codec().encode(event)


def _malformed_records(world: _World, count: int) -> list[SimRecord]:
    """``count`` records for the dead-letter topic, the reasons taking turns."""
    reasons = [MALFORMED_REASONS[i % len(MALFORMED_REASONS)] for i in range(count)]
    world.rng.shuffle(reasons)
    seen: Counter[str] = Counter()
    records = []
    for reason in reasons:
        records.append(_BUILDERS[reason](world, seen[reason]))
        seen[reason] += 1
    return records


def _template(world: _World, event_type: EventType | None = None) -> Event:
    """A fresh well-formed event of a random (or given) type that no good record uses."""
    rng = world.rng
    kind = rng.choice(INTERACTION_TYPES) if event_type is None else event_type
    customer, at_ms = world.customer(), world.time()
    channel, session_id = world.channel(customer), world.new_id("ses")
    if kind is EventType.CLICK:
        return world.click(customer, at_ms, channel, session_id, world.product(), None)
    if kind is EventType.SHARE:
        return world.share(customer, at_ms, channel, session_id)
    if kind is EventType.PURCHASE:
        return world.purchase(customer, at_ms, channel, session_id, world.product(), None)
    return Support(world.new_id("ev"), world.customers[customer], at_ms, channel, None,
                   world.new_id("tk"), TicketAction.OPENED, "chat", None)


def _bad_record(world: _World, event: AnyEvent, reason: str, value: bytes,
                key: bytes | None = None, topic_type: EventType | None = None) -> SimRecord:
    return SimRecord(
        topic_type=topic_type or event.type,
        key=event.actor_id.encode() if key is None else key,
        ingest_ms=event.occurred_at_ms + world.rng.randint(5, 1_500),
        event=None,
        malformed_reason=reason,
        raw_value=value,
        tags=(Tag.MALFORMED,),
    )


def _bad_magic(world: _World, variant: int) -> SimRecord:
    event = _template(world)
    value = _encode(event)
    bad = b"" if variant % 2 else bytes([world.rng.randint(1, 255)]) + value[1:]
    return _bad_record(world, event, "bad_magic", bad)


def _truncated(world: _World, variant: int) -> SimRecord:
    event = _template(world)
    return _bad_record(world, event, "truncated", _encode(event)[: 1 + variant % 4])


def _unknown_schema(world: _World, variant: int) -> SimRecord:
    event = _template(world)
    value = _encode(event)
    schema_id = (UNKNOWN_SCHEMA_ID + variant % 200).to_bytes(4, "big")
    return _bad_record(world, event, "unknown_schema", value[:1] + schema_id + value[5:])


def _wrong_topic(world: _World, variant: int) -> SimRecord:
    event = _template(world)
    others = [t for t in INTERACTION_TYPES if t is not event.type]
    topic_type = others[variant % len(others)]
    return _bad_record(world, event, "wrong_topic", _encode(event), topic_type=topic_type)


def _corrupt_body(world: _World, variant: int) -> SimRecord:
    event = _template(world)
    value = _encode(event)
    kind = variant % 3
    if kind == 0:  # cut inside the body: the last field cannot be read
        bad = value[: max(5, len(value) - world.rng.randint(1, 3))]
    elif kind == 1:  # a complete event followed by garbage
        bad = value + bytes(world.rng.randint(1, 255) for _ in range(world.rng.randint(1, 4)))
    else:  # a string length that runs past the end
        bad = value[:5] + b"\xfe\xff\xff\xff\x0f" + value[6:]
    return _bad_record(world, event, "corrupt_body", bad)


def _invalid_field(world: _World, variant: int) -> SimRecord:
    kind, mutate, key = _INVALID_FIELDS[variant % len(_INVALID_FIELDS)]
    event = mutate(_template(world, kind))
    return _bad_record(world, event, "invalid_field", _encode(event), key=key)


def _key_mismatch(world: _World, variant: int) -> SimRecord:
    event = _template(world)
    own = int(event.customer_id.rsplit("-", 1)[1])
    other = world.customers[(own + 1 + variant) % len(world.customers)]
    if other == event.customer_id:
        other += "-x"
    return _bad_record(world, event, "key_mismatch", _encode(event), key=other.encode())


_Mutation = Callable[[Any], Event]
# (event type, change that breaks a field rule, key override): every rule of the docs is hit.
_INVALID_FIELDS: tuple[tuple[EventType, _Mutation, bytes | None], ...] = (
    (EventType.PURCHASE, lambda e: dataclasses.replace(e, amount_cents=-e.amount_cents), None),
    (EventType.PURCHASE, lambda e: dataclasses.replace(e, amount_cents=0), None),
    (EventType.PURCHASE, lambda e: dataclasses.replace(e, currency="USD"), None),
    (EventType.SUPPORT, lambda e: dataclasses.replace(e, satisfaction=9), None),
    (EventType.SUPPORT, lambda e: dataclasses.replace(e, satisfaction=0), None),
    (EventType.CLICK, lambda e: dataclasses.replace(e, customer_id=""), b""),
    (EventType.CLICK, lambda e: dataclasses.replace(e, event_id=""), None),
    (EventType.SHARE, lambda e: dataclasses.replace(e, share_id=""), None),
    (EventType.SHARE, lambda e: dataclasses.replace(e, network=""), None),
    (EventType.SUPPORT, lambda e: dataclasses.replace(e, ticket_id=""), None),
)

_BUILDERS: dict[str, Callable[[_World, int], SimRecord]] = {
    "bad_magic": _bad_magic,
    "truncated": _truncated,
    "unknown_schema": _unknown_schema,
    "wrong_topic": _wrong_topic,
    "corrupt_body": _corrupt_body,
    "invalid_field": _invalid_field,
    "key_mismatch": _key_mismatch,
}


# --- identity: anonymous visitors and their identifies ---------------------------------------

DEVICES_PER_CUSTOMER = 3
SENTINEL_VARIANTS = ("null", "Anonymous", " guest ", "undefined", "NONE", "0", "-1", "   ")


def _anonymize(world: _World) -> list[SimRecord]:
    """Turn some visits anonymous, on one of their customer's devices, and return the
    identifies of those devices (before, during, after and long after their events; some
    replayed, confirmed or contradicted; some devices never identified) and records with
    sentinel ids."""
    config, rng = world.config, world.rng
    devices: dict[str, tuple[str, list[_Draft]]] = {}
    for visit in _visits(world.drafts).values():
        if rng.random() >= config.anonymous_visits:
            continue
        customer = visit[0].event.customer_id
        device = f"dev-{customer}-{rng.randrange(DEVICES_PER_CUSTOMER)}"
        for draft in visit:
            draft.event = dataclasses.replace(draft.event, customer_id="", anonymous_id=device)
            draft.tags.append(Tag.ANONYMOUS)
        devices.setdefault(device, (customer, []))[1].extend(visit)
    records: list[SimRecord] = []
    for device, (customer, drafts) in devices.items():
        if rng.random() >= config.unidentified_devices:
            records.extend(_identifies(world, device, customer, drafts))
    records.extend(_sentinel_record(world, i) for i in range(round(config.sentinel_ids * config.events)))
    return records


def _visits(drafts: list[_Draft]) -> dict[str, list[_Draft]]:
    """Drafts by visit: a session, or a support ticket (whose events carry no session)."""
    visits: dict[str, list[_Draft]] = {}
    for draft in drafts:
        event = draft.event
        visit = event.session_id or (event.ticket_id if isinstance(event, Support) else None)
        if visit is not None:
            visits.setdefault(visit, []).append(draft)
    return visits


def _identifies(world: _World, device: str, customer: str, drafts: list[_Draft]) -> list[SimRecord]:
    config, rng = world.config, world.rng
    times = [d.event.occurred_at_ms for d in drafts]
    first, last = min(times), max(times)
    at_ms = rng.choice((
        first - rng.randint(MINUTE_MS, 30 * MINUTE_MS),  # signed in first: arrives before the events
        rng.randint(first, last),
        last + rng.randint(MINUTE_MS, HOUR_MS),
        last + rng.randint(6 * HOUR_MS, 20 * HOUR_MS),  # registered long after
    ))
    identify = Identify(world.new_id("idf"), customer, at_ms, rng.choice(CHANNELS), None, device)
    ingest_ms = at_ms + rng.randint(5, 1_500)
    records = [_good_record(identify, ingest_ms, [Tag.ANONYMOUS])]
    if rng.random() < config.replayed_identifies:
        again = ingest_ms + rng.randint(1, 60 * SECOND_MS)
        records.append(_good_record(identify, again, [Tag.ANONYMOUS, Tag.DUPLICATE]))
        confirming = dataclasses.replace(identify, event_id=world.new_id("idf"))
        records.append(_good_record(confirming, again + rng.randint(1, HOUR_MS), [Tag.ANONYMOUS]))
    if rng.random() < config.identity_conflicts:
        other = world.customers[world.other_customer(int(customer.rsplit("-", 1)[1]))]
        conflict = dataclasses.replace(identify, event_id=world.new_id("idf"), customer_id=other)
        records.append(_good_record(conflict, ingest_ms + rng.randint(1, HOUR_MS),
                                    [Tag.ANONYMOUS, Tag.IDENTITY_CONFLICT]))
    return records


def _sentinel_record(world: _World, variant: int) -> SimRecord:
    """An anonymous click, or an identify, naming an id that identifies no one."""
    sentinel = SENTINEL_VARIANTS[variant % len(SENTINEL_VARIANTS)]
    template = _template(world, EventType.CLICK)
    if variant % 2:
        event: AnyEvent = dataclasses.replace(template, customer_id="", anonymous_id=sentinel)
    else:
        event = Identify(world.new_id("idf"), sentinel, template.occurred_at_ms, template.channel, None,
                         f"dev-{template.customer_id}-0")
    return _bad_record(world, event, "sentinel_id", _encode(event), key=event.actor_id.encode())
