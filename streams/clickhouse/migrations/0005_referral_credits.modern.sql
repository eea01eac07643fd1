-- requires: 19.6
-- Same as 0005_referral_credits.sql, with LowCardinality for touch_type.
-- Referral credits: one row per credited touch (a click or purchase that came through another
-- customer's share; rules in docs/definitions.md). credit_id is the touch's event_id.
--
-- ReplacingMergeTree without a version: a credit never changes, a replay writes the identical row.
-- No PARTITION BY: the table is small (one row per credited touch) and read whole by the
-- leaderboard.
-- ORDER BY (sharer_customer_id, credit_id): the dedup key, grouped by sharer for the leaderboard.
CREATE TABLE IF NOT EXISTS referral_credits
(
    credit_id String,
    sharer_customer_id String,
    referred_customer_id String,
    share_id String,
    touch_type LowCardinality(String),
    touch_occurred_at_ms Int64,
    amount_cents Int64
)
ENGINE = ReplacingMergeTree()
ORDER BY (sharer_customer_id, credit_id);
