-- Ingestion warnings and errors users can query: dead letters (never counted), late events and
-- clamped timestamps (both counted; see docs/definitions.md).
--
-- ReplacingMergeTree without a version: a Kafka record yields the same row on every replay.
-- PARTITION BY month of ingest time: a record's ingest time is its Kafka timestamp, fixed, so its
-- copies share a partition. On 18.16 (no TTL) drop old months by hand:
--     ALTER TABLE ingestion_errors DROP PARTITION 202601
-- The .modern.sql variant expires rows after 90 days instead.
-- ORDER BY (source_topic, source_partition, source_offset, kind): the dedup key; one record can
-- be both late and clamped, hence kind in the key.
CREATE TABLE IF NOT EXISTS ingestion_errors
(
    kind String,
    reason String,
    error_class String,
    message String,
    source_topic String,
    source_partition UInt16,
    source_offset Int64,
    record_key String,
    event_id String,
    ingest_ms Int64,
    occurred_at_ms Nullable(Int64),
    payload String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(toDateTime(intDiv(ingest_ms, 1000), 'UTC'))
ORDER BY (source_topic, source_partition, source_offset, kind);
