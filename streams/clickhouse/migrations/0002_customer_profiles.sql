-- Customer profile snapshots: the worker writes a customer's whole profile (absolute values,
-- never increments) each time it changes, with a version that grows with every change.
--
-- ReplacingMergeTree(version): merges keep the highest version per customer; read with FINAL
-- (the customer_360 view does) so unmerged older snapshots never show. A replay writes the same
-- version again, which changes nothing.
-- No PARTITION BY: a customer's snapshots must share a partition for FINAL to collapse them, and
-- no time column of a profile is stable across its versions.
-- ORDER BY customer_id: the dedup key and the lookup key.
-- share_networks / share_network_counts are parallel arrays (network name, shares on it): Map
-- does not exist on 18.16.
CREATE TABLE IF NOT EXISTS customer_profiles
(
    customer_id String,
    version UInt64,
    first_seen_at_ms Int64,
    last_seen_at_ms Int64,
    events UInt64,
    clicks UInt64,
    shares UInt64,
    purchases UInt64,
    support_events UInt64,
    revenue_cents Int64,
    avg_order_value_cents Int64,
    last_purchase_at_ms Nullable(Int64),
    share_networks Array(String),
    share_network_counts Array(UInt64),
    open_tickets UInt32,
    tickets_resolved UInt32,
    first_reply_ms_total Int64,
    first_reply_count UInt32,
    resolution_ms_total Int64,
    resolution_count UInt32,
    latest_satisfaction Nullable(UInt8),
    satisfaction_sum UInt64,
    satisfaction_count UInt64,
    activity_7d UInt64,
    spend_7d_cents Int64,
    activity_30d UInt64,
    spend_30d_cents Int64,
    clicks_30d UInt64,
    shares_30d UInt64,
    purchases_30d UInt64,
    referred_clicks UInt64,
    referred_purchases UInt64,
    referred_revenue_cents Int64,
    referred_customers UInt64,
    recency_score UInt8,
    frequency_score UInt8,
    monetary_score UInt8,
    engagement_score UInt64,
    segment String
)
ENGINE = ReplacingMergeTree(version)
ORDER BY customer_id;
