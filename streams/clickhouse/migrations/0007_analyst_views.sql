-- Analyst views: stable names over the tables, documented in docs/data-dictionary.md.
--
-- Every view reads its table with FINAL, so unmerged replays or older versions never count
-- twice. Portable SQL only (18.16 and modern servers), with two habits that matter there:
--   * 18.16 evaluates both branches of if(), so divisions are guarded with greatest(n, 1) and
--     the NULL is chosen by the if(): intDiv by zero would raise.
--   * Aggregates are computed over a subquery whose columns are renamed, so an output alias
--     never shadows a column an aggregate reads (e.g. sum(events) AS events, countIf(events > 0)
--     is an "aggregate inside aggregate" error).
-- Average durations are floor(total / count) in whole seconds, exact for negative totals too
-- (intDiv truncates toward zero, so negatives step down by count - 1 first).
-- Times stored as epoch milliseconds are also shown as DateTime('UTC') (second precision).

-- One row per customer: the latest profile snapshot, plus derived averages and DateTimes.
CREATE VIEW IF NOT EXISTS customer_360 AS
SELECT
    customer_id,
    version,
    first_seen_at_ms,
    toDateTime(intDiv(first_seen_at_ms, 1000), 'UTC') AS first_seen_at,
    last_seen_at_ms,
    toDateTime(intDiv(last_seen_at_ms, 1000), 'UTC') AS last_seen_at,
    events,
    clicks,
    shares,
    purchases,
    support_events,
    revenue_cents,
    avg_order_value_cents,
    last_purchase_at_ms,
    toDateTime(intDiv(last_purchase_at_ms, 1000), 'UTC') AS last_purchase_at,
    share_networks,
    share_network_counts,
    open_tickets,
    tickets_resolved,
    first_reply_ms_total,
    first_reply_count,
    if(first_reply_count = 0, NULL,
       intDiv(first_reply_ms_total - if(first_reply_ms_total < 0, toInt64(first_reply_count) * 1000 - 1, 0),
              greatest(toInt64(first_reply_count), 1) * 1000)) AS avg_first_reply_seconds,
    resolution_ms_total,
    resolution_count,
    if(resolution_count = 0, NULL,
       intDiv(resolution_ms_total - if(resolution_ms_total < 0, toInt64(resolution_count) * 1000 - 1, 0),
              greatest(toInt64(resolution_count), 1) * 1000)) AS avg_resolution_seconds,
    latest_satisfaction,
    satisfaction_sum,
    satisfaction_count,
    if(satisfaction_count = 0, NULL, satisfaction_sum / greatest(satisfaction_count, 1)) AS avg_satisfaction,
    activity_7d,
    spend_7d_cents,
    activity_30d,
    spend_30d_cents,
    clicks_30d,
    shares_30d,
    purchases_30d,
    referred_clicks,
    referred_purchases,
    referred_revenue_cents,
    referred_customers,
    recency_score,
    frequency_score,
    monetary_score,
    engagement_score,
    segment
FROM customer_profiles FINAL;

-- R, F, M as of now() (thresholds in docs/definitions.md), next to the stored scores, which are
-- as of the customer's last_seen_at. F and M do not depend on time, so *_now equals the stored
-- score for them; R decays as days pass without a purchase.
CREATE VIEW IF NOT EXISTS customer_rfm AS
SELECT
    customer_id,
    purchases,
    revenue_cents,
    last_purchase_at_ms,
    toDateTime(intDiv(last_purchase_at_ms, 1000), 'UTC') AS last_purchase_at,
    toDateTime(intDiv(last_seen_at_ms, 1000), 'UTC') AS last_seen_at,
    days_since_last_purchase,
    toUInt8(multiIf(isNull(days_since_last_purchase), 1,
                    assumeNotNull(days_since_last_purchase) <= 6, 5,
                    assumeNotNull(days_since_last_purchase) <= 13, 4,
                    assumeNotNull(days_since_last_purchase) <= 29, 3,
                    assumeNotNull(days_since_last_purchase) <= 89, 2,
                    1)) AS recency_now,
    toUInt8(multiIf(purchases >= 10, 5, purchases >= 5, 4, purchases >= 3, 3, purchases >= 2, 2, 1)) AS frequency_now,
    toUInt8(multiIf(revenue_cents >= 100000, 5, revenue_cents >= 50000, 4, revenue_cents >= 20000, 3,
                    revenue_cents >= 5000, 2, 1)) AS monetary_now,
    concat(toString(recency_now), toString(frequency_now), toString(monetary_now)) AS rfm_now,
    recency_score,
    frequency_score,
    monetary_score,
    concat(toString(recency_score), toString(frequency_score), toString(monetary_score)) AS rfm_score,
    segment
FROM
(
    SELECT
        customer_id,
        purchases,
        revenue_cents,
        last_purchase_at_ms,
        last_seen_at_ms,
        -- whole days from the last purchase to now (floor; a purchase stamped ahead of the
        -- server clock counts as day 0)
        if(isNull(last_purchase_at_ms), NULL,
           intDiv(greatest(toInt64(now()) * 1000 - assumeNotNull(last_purchase_at_ms), 0), 86400000))
            AS days_since_last_purchase,
        recency_score,
        frequency_score,
        monetary_score,
        segment
    FROM customer_profiles FINAL
);

-- Per UTC day, from the daily buckets (non-late events by event time).
CREATE VIEW IF NOT EXISTS daily_engagement AS
SELECT
    day,
    uniqExact(c) AS active_customers,
    countIf(p > 0) AS purchasing_customers,
    sum(e) AS events,
    sum(cl) AS clicks,
    sum(sh) AS shares,
    sum(p) AS purchases,
    sum(su) AS support_events,
    sum(r) AS revenue_cents
FROM
(
    SELECT day, customer_id AS c, events AS e, clicks AS cl, shares AS sh, purchases AS p,
           support_events AS su, revenue_cents AS r
    FROM customer_daily FINAL
)
GROUP BY day;

-- Per sharer: the credited touches on their shares (lifetime, late events included).
CREATE VIEW IF NOT EXISTS referral_leaderboard AS
SELECT
    sharer_customer_id,
    countIf(t = 'click') AS referred_clicks,
    countIf(t = 'purchase') AS referred_purchases,
    sumIf(a, t = 'purchase') AS referred_revenue_cents,
    uniqExact(rc) AS referred_customers,
    uniqExact(s) AS credited_shares,
    toDateTime(intDiv(min(o), 1000), 'UTC') AS first_credit_at,
    toDateTime(intDiv(max(o), 1000), 'UTC') AS last_credit_at
FROM
(
    SELECT sharer_customer_id, touch_type AS t, amount_cents AS a, referred_customer_id AS rc,
           share_id AS s, touch_occurred_at_ms AS o
    FROM referral_credits FINAL
)
GROUP BY sharer_customer_id
ORDER BY referred_revenue_cents DESC, referred_purchases DESC, referred_clicks DESC, sharer_customer_id;

-- Support KPIs over all customers' current profiles: one row.
CREATE VIEW IF NOT EXISTS support_kpis AS
SELECT
    sum(ot) AS open_tickets,
    countIf(ot > 0) AS customers_with_open_tickets,
    sum(tr) AS tickets_resolved,
    sum(frc) AS tickets_with_reply,
    if(tickets_with_reply = 0, NULL,
       intDiv(sum(frt) - if(sum(frt) < 0, toInt64(tickets_with_reply) * 1000 - 1, 0),
              greatest(toInt64(tickets_with_reply), 1) * 1000)) AS avg_first_reply_seconds,
    sum(rsc) AS tickets_resolved_timed,
    if(tickets_resolved_timed = 0, NULL,
       intDiv(sum(rst) - if(sum(rst) < 0, toInt64(tickets_resolved_timed) * 1000 - 1, 0),
              greatest(toInt64(tickets_resolved_timed), 1) * 1000)) AS avg_resolution_seconds,
    sum(sc) AS satisfaction_responses,
    if(satisfaction_responses = 0, NULL, sum(ss) / greatest(satisfaction_responses, 1)) AS avg_satisfaction
FROM
(
    SELECT open_tickets AS ot, tickets_resolved AS tr, first_reply_ms_total AS frt,
           first_reply_count AS frc, resolution_ms_total AS rst, resolution_count AS rsc,
           satisfaction_sum AS ss, satisfaction_count AS sc
    FROM customer_profiles FINAL
);

-- Per UTC day, from the daily buckets: customers who clicked, who purchased, and who did both
-- that day. Daily buckets do not order events within the day, so "clicked then purchased"
-- means both on the same UTC day.
CREATE VIEW IF NOT EXISTS click_to_purchase_funnel AS
SELECT
    day,
    countIf(cl > 0) AS clicked_customers,
    countIf(p > 0) AS purchased_customers,
    countIf(cl > 0 AND p > 0) AS clicked_and_purchased_customers,
    if(clicked_customers = 0, NULL, clicked_and_purchased_customers / greatest(clicked_customers, 1)) AS conversion
FROM
(
    SELECT day, clicks AS cl, purchases AS p
    FROM customer_daily FINAL
)
GROUP BY day;

-- Per UTC day of ingest, kind and reason: how many records.
CREATE VIEW IF NOT EXISTS ingestion_errors_by_reason AS
SELECT
    toDate(toDateTime(intDiv(ingest_ms, 1000), 'UTC'), 'UTC') AS day,
    kind,
    reason,
    count() AS errors
FROM ingestion_errors FINAL
GROUP BY day, kind, reason;

-- Per minute, event type and channel: the per-partition partials summed.
CREATE VIEW IF NOT EXISTS minute_totals_by_type AS
SELECT
    minute_start,
    event_type,
    channel,
    sum(e) AS events,
    sum(r) AS revenue_cents,
    count() AS partitions_reporting
FROM
(
    SELECT minute_start, event_type, channel, events AS e, revenue_cents AS r
    FROM minute_totals FINAL
)
GROUP BY minute_start, event_type, channel;
