"""Per-customer interaction profile and its fold. Pure: no Kafka, Faust or ClickHouse.

``Profile.apply`` folds one accepted event into the profile in place. Every field is defined
in docs/definitions.md as a function of the *set* of accepted events, and the fold keeps it
so (min/max, sums, latest-by-(time, id)), so the result does not depend on the order in which
the four input topics are delivered.

Bounded size: per-customer buckets keep the newest ``HOURLY_KEPT``/``DAILY_KEPT`` (older
ones are final in ClickHouse), tickets the newest ``TICKETS_KEPT``, referred customers and
recent ids have caps too. Exactness holds while a customer stays within them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streams.core.events import Event, Purchase, Share, Support, TicketAction
from streams.core.replay import ReplayBook
from streams.core.windows import DAY_MS, HOUR_MS, floor_to, keep_newest, week_and_month

HOURLY_KEPT = 72
DAILY_KEPT = 35
TICKETS_KEPT = 2_000
REFERRED_CUSTOMERS_KEPT = 10_000

# Bucket counters: one list per bucket, indexed by these columns.
EVENTS, CLICKS, SHARES, PURCHASES, SUPPORT, REVENUE = range(6)
_NO_COUNTS = [0] * 6
# The columns of a snapshot row, in the customer_profiles table's order (a test pins the two).
SNAPSHOT_COLUMNS = (
    "customer_id", "version", "first_seen_at_ms", "last_seen_at_ms",
    "events", "clicks", "shares", "purchases", "support_events", "revenue_cents",
    "avg_order_value_cents", "last_purchase_at_ms", "share_networks", "share_network_counts",
    "open_tickets", "tickets_resolved", "first_reply_ms_total", "first_reply_count",
    "resolution_ms_total", "resolution_count",
    "latest_satisfaction", "satisfaction_sum", "satisfaction_count",
    "activity_7d", "spend_7d_cents", "activity_30d", "spend_30d_cents", "clicks_30d", "shares_30d",
    "purchases_30d", "referred_clicks", "referred_purchases", "referred_revenue_cents", "referred_customers",
    "recency_score", "frequency_score", "monetary_score", "engagement_score", "segment",
)
# A bucket row's columns (the hourly table's; the daily one has "day" second), likewise pinned.
BUCKET_COLUMNS = ("customer_id", "hour_start", "events", "clicks", "shares", "purchases", "support_events",
                  "revenue_cents", "version")
# The keys of Profile._optional_json: from_json reads them only when a record has one.
OPTIONAL_JSON_KEYS = frozenset({"an", "ia", "pe", "pc", "tc", "al", "hd"})
_TYPE_COLUMN = {"click": CLICKS, "share": SHARES, "purchase": PURCHASES, "support": SUPPORT}

_OPEN_STATUSES = frozenset({TicketAction.OPENED, TicketAction.REPLIED, TicketAction.REOPENED})


@dataclass(slots=True)
class Ticket:
    """What the profile needs of one support ticket (times in ms; None until seen)."""

    opened_at: int | None = None
    any_at: int | None = None
    first_reply_at: int | None = None
    resolved_at: int | None = None
    latest: tuple[int, str] = (-1, "")
    status: str = ""

    def apply(self, event: Support, occurred_at: int) -> None:
        if self.any_at is None or occurred_at < self.any_at:
            self.any_at = occurred_at
        action = event.action
        if action is TicketAction.OPENED and (self.opened_at is None or occurred_at < self.opened_at):
            self.opened_at = occurred_at
        elif action is TicketAction.REPLIED and (
            self.first_reply_at is None or occurred_at < self.first_reply_at
        ):
            self.first_reply_at = occurred_at
        elif action is TicketAction.RESOLVED and (
            self.resolved_at is None or occurred_at > self.resolved_at
        ):
            self.resolved_at = occurred_at
        key = (occurred_at, event.event_id)
        if key > self.latest:
            self.latest, self.status = key, action.value

    @property
    def start(self) -> int | None:
        return self.opened_at if self.opened_at is not None else self.any_at

    def to_json(self) -> list[Any]:
        return [self.opened_at, self.any_at, self.first_reply_at, self.resolved_at, list(self.latest), self.status]

    @classmethod
    def from_json(cls, data: list[Any]) -> Ticket:
        return cls(data[0], data[1], data[2], data[3], (data[4][0], data[4][1]), data[5])


@dataclass(frozen=True, slots=True)
class PersonCredit:
    """A credit involving an anonymous id, as the sharer's profile keeps it.

    ``resolution`` orders the copies of one credit: 0 while the toucher is not identified,
    1 once it is (identities never change afterwards), so the newest copy wins in any order.
    """

    resolution: int
    referred_person: str
    touch_type: str
    amount_cents: int

    def to_json(self) -> list[Any]:
        return [self.resolution, self.referred_person, self.touch_type, self.amount_cents]

    @classmethod
    def from_json(cls, data: list[Any]) -> PersonCredit:
        return cls(data[0], data[1], data[2], data[3])


@dataclass(slots=True)
class Profile:
    """A customer's state: lifetime values, recent buckets, tickets, and replay bookkeeping."""

    customer_id: str
    version: int = 0
    first_seen_at: int | None = None
    last_seen_at: int | None = None
    counts: list[int] = field(default_factory=lambda: [0] * 6)
    last_purchase_at: int | None = None
    shares_by_network: dict[str, int] = field(default_factory=dict)
    tickets: dict[str, Ticket] = field(default_factory=dict)
    # The tickets as the state record holds them, kept up to date beside them (for the one
    # ticket an event changes): the record is written for every batch that touches the
    # profile, and rebuilding every ticket's value for it was 3 % of a live worker's time.
    tickets_json: dict[str, list[Any]] = field(default_factory=dict)
    satisfaction_latest: tuple[int, str, int] | None = None
    satisfaction_sum: int = 0
    satisfaction_count: int = 0
    hourly: dict[int, list[int]] = field(default_factory=dict)
    daily: dict[int, list[int]] = field(default_factory=dict)
    # Daily buckets of backfilled events, apart from the live ones above: their rows come from
    # the events table (docs/definitions.md, history); here they only feed the rolling values.
    history_daily: dict[int, list[int]] = field(default_factory=dict)
    referred_clicks: int = 0
    referred_purchases: int = 0
    referred_revenue_cents: int = 0
    referred_customers: set[str] = field(default_factory=set)
    # Per referral-index partition, the origin (offset, place) of the last credit counted: a
    # credit produced again is recognised by it (streams.core.referrals.CreditOrigin).
    credit_origins: dict[int, tuple[int, int]] = field(default_factory=dict)
    book: ReplayBook = field(default_factory=ReplayBook)  # replays and duplicates: streams/core/replay.py
    # Identity (streams/core/identity.py): whether this is an anonymous id's profile; for an
    # anonymous id, the customer it was identified as, the events folded here before that
    # ([topic, offset, lane, ingest ms, value as latin-1 text], forwarded to the customer)
    # and the credits its touches earned (resent when it is identified); credits involving
    # anonymous ids; for a customer, the anonymous ids identified as it (erased with it).
    # Empty for most profiles.
    anonymous: bool = False
    identified_as: str | None = None
    linked: set[str] = field(default_factory=set)
    pending: list[list[Any]] = field(default_factory=list)
    person_credits: dict[str, PersonCredit] = field(default_factory=dict)
    touch_credits: dict[str, dict[str, Any]] = field(default_factory=dict)

    # -- fold -------------------------------------------------------------------------------

    def apply(self, event: Event, occurred_at: int, late: bool, history: bool = False) -> None:
        """Fold one accepted event (``occurred_at`` already clamped; late ones skip buckets,
        backfilled ones go to the history buckets)."""
        self.version += 1
        if self.first_seen_at is None or occurred_at < self.first_seen_at:
            self.first_seen_at = occurred_at
        if self.last_seen_at is None or occurred_at > self.last_seen_at:
            self.last_seen_at = occurred_at
        column = _TYPE_COLUMN[event.type]
        revenue = 0
        if isinstance(event, Purchase):
            revenue = event.amount_cents
            if self.last_purchase_at is None or occurred_at > self.last_purchase_at:
                self.last_purchase_at = occurred_at
        elif isinstance(event, Share):
            self.shares_by_network[event.network] = self.shares_by_network.get(event.network, 0) + 1
        elif isinstance(event, Support):
            self._apply_support(event, occurred_at)
        _bump(self.counts, column, revenue)
        if history:
            _bump_bucket(self.history_daily, floor_to(occurred_at, DAY_MS), column, revenue, DAILY_KEPT)
        elif not late:
            _bump_bucket(self.hourly, floor_to(occurred_at, HOUR_MS), column, revenue, HOURLY_KEPT)
            _bump_bucket(self.daily, floor_to(occurred_at, DAY_MS), column, revenue, DAILY_KEPT)

    def _apply_support(self, event: Support, occurred_at: int) -> None:
        ticket = self.tickets.get(event.ticket_id)
        if ticket is None:
            ticket = self.tickets[event.ticket_id] = Ticket()
        ticket.apply(event, occurred_at)
        self.tickets_json[event.ticket_id] = ticket.to_json()
        # Evict only once the new ticket has a start: before, it had none and was the one evicted.
        if len(self.tickets) > TICKETS_KEPT:
            oldest = min(self.tickets, key=lambda t: self.tickets[t].start or 0)
            del self.tickets[oldest], self.tickets_json[oldest]
        if event.satisfaction is not None:
            self.satisfaction_sum += event.satisfaction
            self.satisfaction_count += 1
            latest = (occurred_at, event.event_id, event.satisfaction)
            if self.satisfaction_latest is None or latest[:2] > self.satisfaction_latest[:2]:
                self.satisfaction_latest = latest

    def apply_credit(self, touch_type: str, referred_customer_id: str, amount_cents: int) -> None:
        """Count one referral credit earned by this customer's share."""
        self.version += 1
        if touch_type == "purchase":
            self.referred_purchases += 1
            self.referred_revenue_cents += amount_cents
        else:
            self.referred_clicks += 1
        if len(self.referred_customers) < REFERRED_CUSTOMERS_KEPT:
            self.referred_customers.add(referred_customer_id)

    # -- derived values -----------------------------------------------------------------------

    def support_summary(self) -> tuple[int, int, int, int, int, int]:
        """Open and resolved tickets, then the totals and counts behind the average first reply
        and resolution times (``SNAPSHOT_COLUMNS`` names them, in this order)."""
        opened = resolved = reply_total = reply_count = resolution_total = resolution_count = 0
        for ticket in self.tickets.values():
            start = ticket.start
            if ticket.status in _OPEN_STATUSES:
                opened += 1
            elif ticket.status == TicketAction.RESOLVED:
                resolved += 1
                if start is not None and ticket.resolved_at is not None:
                    resolution_total += ticket.resolved_at - start
                    resolution_count += 1
            if start is not None and ticket.first_reply_at is not None:
                reply_total += ticket.first_reply_at - start
                reply_count += 1
        return opened, resolved, reply_total, reply_count, resolution_total, resolution_count

    def snapshot(self) -> dict[str, Any]:
        """The profile as one row of ``customer_profiles`` (absolute values plus version), by
        column name; the stage sends :meth:`snapshot_values`."""
        return dict(zip(SNAPSHOT_COLUMNS, self.snapshot_values(), strict=True))

    def snapshot_values(self) -> tuple[Any, ...]:
        """:meth:`snapshot`'s values in ``SNAPSHOT_COLUMNS`` order: what the sink takes. Built
        once per touched profile and batch, the costliest row: from locals, with no dict."""
        events, clicks, shares, purchases, support, revenue = self.counts
        first_seen, last_seen = self.first_seen_at or 0, self.last_seen_at or 0
        week, month = week_and_month(floor_to(last_seen, DAY_MS), self.daily, self.history_daily)
        week, month = week or _NO_COUNTS, month or _NO_COUNTS
        networks = sorted(self.shares_by_network)
        latest = self.satisfaction_latest[2] if self.satisfaction_latest else None
        referred = len(self.referred_customers)
        return (
            self.customer_id, self.version, first_seen, last_seen,
            events, clicks, shares, purchases, support, revenue,
            revenue // purchases if purchases else 0,
            self.last_purchase_at, networks, [self.shares_by_network[n] for n in networks],
            *(self.support_summary() if self.tickets else _NO_TICKETS),
            latest, self.satisfaction_sum, self.satisfaction_count,
            week[EVENTS], week[REVENUE],
            month[EVENTS], month[REVENUE], month[CLICKS], month[SHARES], month[PURCHASES],
            self.referred_clicks, self.referred_purchases, self.referred_revenue_cents, referred,
            *scores(self.last_purchase_at, first_seen, last_seen, purchases, revenue, month[CLICKS], month[SHARES],
                     month[PURCHASES], self.referred_purchases, latest, referred, week[EVENTS]),
        )

    def bucket_row(self, start_ms: int, daily: bool) -> dict[str, Any]:
        """One row of ``customer_daily`` (``day``) or ``customer_hourly`` (``hour_start``), by
        column name; the stage sends :meth:`bucket_values`."""
        names = (BUCKET_COLUMNS[0], "day" if daily else "hour_start", *BUCKET_COLUMNS[2:])
        return dict(zip(names, self.bucket_values(start_ms, daily), strict=True))

    def bucket_values(self, start_ms: int, daily: bool) -> tuple[Any, ...]:
        """:meth:`bucket_row`'s values in ``BUCKET_COLUMNS`` order: what the sink takes."""
        counts = (self.daily if daily else self.hourly)[start_ms]
        # Counts only grow, so the event count orders a bucket's versions.
        return (self.customer_id, start_ms, *counts, counts[EVENTS])

    # -- serialization (the changelog value) --------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        # Written for every profile a batch touches: collections that are empty (most of them,
        # for most profiles) skip their comprehension.
        value = {
            "c": self.customer_id, "v": self.version, "f": self.first_seen_at,
            "l": self.last_seen_at, "n": self.counts, "lp": self.last_purchase_at,
            "sn": self.shares_by_network,
            "t": self.tickets_json,
            "sl": list(self.satisfaction_latest) if self.satisfaction_latest else None,
            "ss": self.satisfaction_sum, "sc": self.satisfaction_count,
            "h": [[k, *v] for k, v in self.hourly.items()],
            "d": [[k, *v] for k, v in self.daily.items()],
            "rc": self.referred_clicks, "rp": self.referred_purchases,
            "rr": self.referred_revenue_cents, "ru": sorted(self.referred_customers),
            "co": [[partition, *last] for partition, last in self.credit_origins.items()]
            if self.credit_origins else [],
            "b": self.book.to_json(),
        }
        optional = self._optional_json()
        if optional:
            value.update(optional)
        return value

    def _optional_json(self) -> dict[str, Any]:
        """The fields most profiles leave empty, written only when set (keys: OPTIONAL_JSON_KEYS)."""
        found: dict[str, Any] = {}
        if self.anonymous:
            found["an"] = 1
        if self.identified_as is not None:
            found["ia"] = self.identified_as
        if self.pending:
            found["pe"] = self.pending
        if self.person_credits:
            found["pc"] = {k: credit.to_json() for k, credit in self.person_credits.items()}
        if self.touch_credits:
            found["tc"] = self.touch_credits
        if self.linked:
            found["al"] = sorted(self.linked)
        if self.history_daily:
            found["hd"] = [[k, *v] for k, v in self.history_daily.items()]
        return found

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Profile:
        # Run for every profile a batch loads that is not cached: most collections are empty
        # or absent, and a comprehension costs a call even over nothing.
        tickets, latest = data["t"], data["sl"]
        profile = cls(
            customer_id=data["c"], version=data["v"], first_seen_at=data["f"],
            last_seen_at=data["l"], counts=data["n"], last_purchase_at=data["lp"],
            shares_by_network=data["sn"],
            tickets={k: Ticket.from_json(t) for k, t in tickets.items()} if tickets else {},
            tickets_json=tickets,  # the decoded record's own dict: nothing else holds it
            satisfaction_latest=(latest[0], latest[1], latest[2]) if latest else None,
            satisfaction_sum=data["ss"], satisfaction_count=data["sc"],
            hourly={row[0]: row[1:] for row in data["h"]},
            daily={row[0]: row[1:] for row in data["d"]},
            referred_clicks=data["rc"], referred_purchases=data["rp"],
            referred_revenue_cents=data["rr"], referred_customers=set(data["ru"]),
            book=ReplayBook.from_json(data["b"]),
        )
        origins = data.get("co")  # absent from older records
        if origins:
            profile.credit_origins = {row[0]: (row[1], row[2]) for row in origins}
        if not OPTIONAL_JSON_KEYS.isdisjoint(data):
            profile.anonymous, profile.identified_as = bool(data.get("an")), data.get("ia")
            profile.pending = data.get("pe", [])
            profile.person_credits = {k: PersonCredit.from_json(c) for k, c in data.get("pc", {}).items()}
            profile.touch_credits, profile.linked = data.get("tc", {}), set(data.get("al", ()))
            profile.history_daily = {row[0]: row[1:] for row in data.get("hd", ())}
        return profile


# What a profile without tickets says of support (most profiles): built once.
_NO_TICKETS = Profile("").support_summary()


def _bump(counters: list[int], column: int, revenue: int) -> None:
    counters[EVENTS] += 1
    counters[column] += 1
    counters[REVENUE] += revenue


def _bump_bucket(buckets: dict[int, list[int]], start: int, column: int, revenue: int, kept: int) -> None:
    """Count an event in the bucket starting at ``start``, keeping the newest ``kept`` buckets.
    Only a new bucket can pass the limit, so most events skip the check; a new bucket older
    than every kept one is dropped at once, and counting into it then changes nothing."""
    counters = buckets.get(start)
    if counters is None:
        counters = buckets[start] = [0] * 6
        keep_newest(buckets, kept)
    _bump(counters, column, revenue)


# The scores are computed for every snapshot row: comparisons written out, where a loop over
# the thresholds cost several times as much.
def _threshold_score(value: int, thresholds: tuple[int, int, int, int]) -> int:
    """5 when value reaches thresholds[0], 4 for thresholds[1], ... else 1."""
    five, four, three, two = thresholds
    return 5 if value >= five else 4 if value >= four else 3 if value >= three else 2 if value >= two else 1


def recency_score(last_purchase_at: int | None, as_of: int) -> int:
    if last_purchase_at is None:
        return 1
    days = (as_of - last_purchase_at) // DAY_MS
    return 5 if days <= 6 else 4 if days <= 13 else 3 if days <= 29 else 2 if days <= 89 else 1


def scores(last_purchase_at: int | None, first_seen_at: int, last_seen_at: int, purchases: int,
            revenue_cents: int, clicks_30d: int, shares_30d: int, purchases_30d: int, referred_purchases: int,
            latest_satisfaction: int | None, referred_customers: int,
            activity_7d: int) -> tuple[int, int, int, int, str]:
    """Recency, frequency, monetary and engagement scores and the segment (definitions in
    docs/definitions.md), in ``SNAPSHOT_COLUMNS`` order."""
    recency = recency_score(last_purchase_at, last_seen_at)
    if referred_customers >= 2:
        segment = "advocate"
    elif purchases >= 3 and recency >= 3:
        segment = "loyal"
    elif (latest_satisfaction is not None and latest_satisfaction <= 2) or (purchases >= 1 and recency == 1):
        segment = "at_risk"
    elif last_seen_at - first_seen_at < 7 * DAY_MS and purchases == 0:
        segment = "new"
    elif activity_7d > 0:
        segment = "active"
    else:
        segment = "dormant"
    engagement = clicks_30d + 3 * shares_30d + 5 * purchases_30d + 10 * referred_purchases
    return (recency, _threshold_score(purchases, (10, 5, 3, 2)),
            _threshold_score(revenue_cents, (100_000, 50_000, 20_000, 5_000)), engagement, segment)
