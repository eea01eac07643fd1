-- requires: 19.6
-- Same as 0004_minute_totals.sql, with LowCardinality for event_type and channel.
-- Per-minute totals by event type and channel (accepted, non-late events).
--
-- Each worker partition owns its rows: it writes the absolute totals *of its own input
-- partition* (source_partition) with a growing version, so two workers never overwrite each
-- other's numbers and a replay rewrites the same values. The minute_totals_by_type view sums the
-- partitions.
-- ReplacingMergeTree(version): the highest version per key wins; read with FINAL.
-- PARTITION BY month of the minute: a key's versions share a partition; old months drop whole.
-- ORDER BY (minute_start, event_type, channel, source_partition): the dedup key; time first
-- because dashboards read recent minutes.
CREATE TABLE IF NOT EXISTS minute_totals
(
    minute_start DateTime('UTC'),
    event_type LowCardinality(String),
    channel LowCardinality(String),
    source_partition UInt16,
    events UInt64,
    revenue_cents Int64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(minute_start)
ORDER BY (minute_start, event_type, channel, source_partition);
