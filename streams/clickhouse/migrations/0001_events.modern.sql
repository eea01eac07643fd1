-- requires: 19.6
-- Same as 0001_events.sql, with LowCardinality for the low-cardinality strings (production
-- ready since 19.x; experimental on 18.16).
-- Raw accepted interactions, one row per accepted event, for drill-down.
--
-- ReplacingMergeTree without a version: a replayed event writes an identical row under the same
-- key, and merges (or FINAL) keep one copy.
-- PARTITION BY month of event time: drill-down is time-bounded and old months can be dropped
-- with ALTER TABLE events DROP PARTITION 202601. An event_id always carries the same
-- occurred_at_ms, so its copies share a partition (FINAL deduplicates within a partition only).
-- ORDER BY (event_type, customer_id, event_id): the dedup key (event_id is unique per customer);
-- queries filter by type, then customer.
-- occurred_at is an ALIAS (computed on read, not stored) for BI tools that want a DateTime.
CREATE TABLE IF NOT EXISTS events
(
    event_id String,
    event_type LowCardinality(String),
    customer_id String,
    occurred_at_ms Int64,
    ingest_ms Int64,
    channel LowCardinality(String),
    session_id Nullable(String),
    product_id Nullable(String),
    referrer_share_id Nullable(String),
    share_id Nullable(String),
    network LowCardinality(Nullable(String)),
    promotion_id Nullable(String),
    order_id Nullable(String),
    amount_cents Nullable(Int64),
    currency LowCardinality(Nullable(String)),
    ticket_id Nullable(String),
    action LowCardinality(Nullable(String)),
    support_channel LowCardinality(Nullable(String)),
    satisfaction Nullable(UInt8),
    page Nullable(String),
    is_late UInt8,
    is_clamped UInt8,
    source_topic LowCardinality(String),
    source_partition UInt16,
    source_offset Int64,
    occurred_at DateTime('UTC') ALIAS toDateTime(intDiv(occurred_at_ms, 1000), 'UTC')
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(occurred_at_ms, 1000), 'UTC'))
ORDER BY (event_type, customer_id, event_id);
