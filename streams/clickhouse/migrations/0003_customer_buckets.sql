-- Per-customer event-time buckets (accepted, non-late events; see docs/definitions.md).
-- The worker writes each touched bucket's absolute totals with a growing version.
--
-- ReplacingMergeTree(version): the highest version of a bucket wins; read with FINAL.
-- PARTITION BY month of the bucket: a bucket's versions share a partition (the bucket start is
-- part of the key), and old months can be dropped whole.
-- ORDER BY (customer_id, bucket start): the dedup key; per-customer time series read in order.
CREATE TABLE IF NOT EXISTS customer_hourly
(
    customer_id String,
    hour_start DateTime('UTC'),
    events UInt64,
    clicks UInt64,
    shares UInt64,
    purchases UInt64,
    support_events UInt64,
    revenue_cents Int64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(hour_start)
ORDER BY (customer_id, hour_start);

CREATE TABLE IF NOT EXISTS customer_daily
(
    customer_id String,
    day Date,
    events UInt64,
    clicks UInt64,
    shares UInt64,
    purchases UInt64,
    support_events UInt64,
    revenue_cents Int64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (customer_id, day);
