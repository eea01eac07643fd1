"""Every table the sink writes: name, insert columns in order, dedup key and version column.

This module is the Python side's single source of truth for the schema; the SQL in
``migrations/`` is the server's. ``tests/unit/test_migrations_chdb.py`` (every migration variant,
on chdb) and ``tests/integration/test_clickhouse.py`` (ClickHouse 18.16) fail when the migrated
tables' columns differ from these lists, in name, order or type.

Types are the portable (18.16) ones. The ``.modern.sql`` variants may wrap a type in
``LowCardinality(...)``, which changes storage but not the values a client sends.

A row reaches the sink as a dict by column name or as a tuple of values in the order listed
here (``ClickHouseSink.add``). The Python values it carries, by ClickHouse type: ``String`` -> ``str``; ``(U)IntN`` ->
``int``; ``Nullable(T)`` -> value or ``None``; ``Array(T)`` -> ``list``. ``DateTime('UTC')`` and
``Date`` columns take UTC epoch **milliseconds** (``int``), like every time in the pipeline; the
sink converts them (a ``datetime`` / ``date`` passes through unchanged).
Columns computed by the server (``ALIAS``) are not listed: they cannot be inserted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str


@dataclass(frozen=True, slots=True)
class Table:
    """One table as the sink sees it.

    ``key`` is the table's ORDER BY key: rows with equal keys are one logical row
    (ReplacingMergeTree keeps one), so the sink coalesces them too. ``version`` names the
    ReplacingMergeTree version column, when there is one: the higher version wins.
    ``shard_by`` are the columns whose ``cityHash64`` picks a row's shard in cluster mode
    (``streams.clickhouse.cluster``): a subset of ``key``, so that every version of a row lands
    on one shard, where FINAL and argMax see them all; the customer wherever a table has one.
    """

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    shard_by: tuple[str, ...]
    version: str | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)


def _columns(spec: str) -> tuple[Column, ...]:
    """Parse one ``name Type`` per line; blank lines are skipped."""
    out = []
    for line in spec.splitlines():
        if line.strip():
            name, type_ = line.split(None, 1)
            out.append(Column(name, type_.strip()))
    return tuple(out)


EVENTS = Table(
    name="events",
    columns=_columns(
        """
        event_id String
        event_type String
        customer_id String
        occurred_at_ms Int64
        ingest_ms Int64
        channel String
        session_id Nullable(String)
        product_id Nullable(String)
        referrer_share_id Nullable(String)
        share_id Nullable(String)
        network Nullable(String)
        promotion_id Nullable(String)
        order_id Nullable(String)
        amount_cents Nullable(Int64)
        currency Nullable(String)
        ticket_id Nullable(String)
        action Nullable(String)
        support_channel Nullable(String)
        satisfaction Nullable(UInt8)
        page Nullable(String)
        is_late UInt8
        is_clamped UInt8
        source_topic String
        source_partition UInt16
        source_offset Int64
        """
    ),
    key=("event_type", "customer_id", "event_id"),
    shard_by=("customer_id",),
)

CUSTOMER_PROFILES = Table(
    name="customer_profiles",
    columns=_columns(
        """
        customer_id String
        version UInt64
        first_seen_at_ms Int64
        last_seen_at_ms Int64
        events UInt64
        clicks UInt64
        shares UInt64
        purchases UInt64
        support_events UInt64
        revenue_cents Int64
        avg_order_value_cents Int64
        last_purchase_at_ms Nullable(Int64)
        share_networks Array(String)
        share_network_counts Array(UInt64)
        open_tickets UInt32
        tickets_resolved UInt32
        first_reply_ms_total Int64
        first_reply_count UInt32
        resolution_ms_total Int64
        resolution_count UInt32
        latest_satisfaction Nullable(UInt8)
        satisfaction_sum UInt64
        satisfaction_count UInt64
        activity_7d UInt64
        spend_7d_cents Int64
        activity_30d UInt64
        spend_30d_cents Int64
        clicks_30d UInt64
        shares_30d UInt64
        purchases_30d UInt64
        referred_clicks UInt64
        referred_purchases UInt64
        referred_revenue_cents Int64
        referred_customers UInt64
        recency_score UInt8
        frequency_score UInt8
        monetary_score UInt8
        engagement_score UInt64
        segment String
        """
    ),
    key=("customer_id",),
    shard_by=("customer_id",),
    version="version",
)

_BUCKET_MEASURES = """
        events UInt64
        clicks UInt64
        shares UInt64
        purchases UInt64
        support_events UInt64
        revenue_cents Int64
        version UInt64
"""

CUSTOMER_HOURLY = Table(
    name="customer_hourly",
    columns=_columns("customer_id String\nhour_start DateTime('UTC')\n" + _BUCKET_MEASURES),
    key=("customer_id", "hour_start"),
    shard_by=("customer_id",),
    version="version",
)

CUSTOMER_DAILY = Table(
    name="customer_daily",
    columns=_columns("customer_id String\nday Date\n" + _BUCKET_MEASURES),
    key=("customer_id", "day"),
    shard_by=("customer_id",),
    version="version",
)

MINUTE_TOTALS = Table(
    name="minute_totals",
    columns=_columns(
        """
        minute_start DateTime('UTC')
        event_type String
        channel String
        source_partition UInt16
        events UInt64
        revenue_cents Int64
        version UInt64
        """
    ),
    key=("minute_start", "event_type", "channel", "source_partition"),
    shard_by=("source_partition",),  # no customer: a worker partition's rows
    version="version",
)

REFERRAL_CREDITS = Table(
    name="referral_credits",
    columns=_columns(
        """
        credit_id String
        sharer_customer_id String
        referred_customer_id String
        share_id String
        touch_type String
        touch_occurred_at_ms Int64
        amount_cents Int64
        """
    ),
    key=("sharer_customer_id", "credit_id"),
    shard_by=("sharer_customer_id",),
)

IDENTITY_MAP = Table(
    name="identity_map",
    columns=_columns(
        """
        anonymous_id String
        customer_id String
        version UInt64
        """
    ),
    key=("anonymous_id",),
    shard_by=("anonymous_id",),  # one row per anonymous id; the views join it whole
    version="version",
)

INGESTION_ERRORS = Table(
    name="ingestion_errors",
    columns=_columns(
        """
        kind String
        reason String
        error_class String
        message String
        source_topic String
        source_partition UInt16
        source_offset Int64
        record_key String
        event_id String
        ingest_ms Int64
        occurred_at_ms Nullable(Int64)
        payload String
        """
    ),
    key=("source_topic", "source_partition", "source_offset", "kind"),
    shard_by=("source_topic", "source_partition"),  # no customer: a Kafka record's rows
)

ERASED_CUSTOMERS = Table(
    name="erased_customers",
    columns=_columns(
        """
        customer_id String
        customer_hash String
        request_hash String
        erased_at_ms Int64
        """
    ),
    key=("customer_id",),
    shard_by=("customer_id",),
)

ERASURE_REQUESTS = Table(
    name="erasure_requests",
    columns=_columns(
        """
        request_hash String
        customer_hash String
        target String
        status String
        rows UInt64
        requested_at_ms Int64
        updated_at_ms Int64
        version UInt64
        """
    ),
    key=("request_hash", "customer_hash", "target"),
    shard_by=("customer_hash",),
    version="version",
)

#: Every table the sink writes, by name.
TABLES: dict[str, Table] = {
    table.name: table
    for table in (
        EVENTS,
        CUSTOMER_PROFILES,
        CUSTOMER_HOURLY,
        CUSTOMER_DAILY,
        MINUTE_TOTALS,
        REFERRAL_CREDITS,
        INGESTION_ERRORS,
        IDENTITY_MAP,
        ERASED_CUSTOMERS,
        ERASURE_REQUESTS,
    )
}

#: Analyst views created by the migrations (stable names; see docs/data-dictionary.md).
VIEWS: tuple[str, ...] = (
    "customer_360",
    "customer_rfm",
    "daily_engagement",
    "referral_leaderboard",
    "support_kpis",
    "click_to_purchase_funnel",
    "ingestion_errors_by_reason",
    "minute_totals_by_type",
    "identity_events",
    "identity_credits",
    "person_360",
    "person_referral_leaderboard",
    "customer_hourly_all",
    "customer_daily_all",
)

#: ``ingestion_errors.kind`` values.
ERROR_KINDS: tuple[str, ...] = ("dead_letter", "late_event", "clamped_timestamp", "identity_conflict")
