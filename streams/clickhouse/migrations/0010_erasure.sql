-- Right to erasure (docs/definitions.md, erasure): an erased customer leaves the analyst views
-- at once, and the eraser (streams.clickhouse.erasure) deletes their rows from the tables.
--
-- One row per erased id (a customer or one of its anonymous ids), written by the worker once
-- it has erased the id's state. The raw id is here so that the views can leave it out and the
-- eraser's deletes can find its rows; the eraser deletes the row itself once those rows are
-- gone, so no raw id outlives the erasure. customer_hash and request_hash are the keyed hashes
-- (HMAC) the eraser's deletes and erasure_requests name the id and its request by.
-- ReplacingMergeTree without a version: a replayed erasure writes the same row again.
-- ORDER BY customer_id: the dedup key, and what the views' NOT IN reads.
CREATE TABLE IF NOT EXISTS erased_customers
(
    customer_id String,
    customer_hash String,
    request_hash String,
    erased_at_ms Int64
)
ENGINE = ReplacingMergeTree()
ORDER BY customer_id;

-- Progress of each erasure, per erased id (customer_hash) and target: 'state' (the worker's
-- Kafka-side state), each table the eraser deletes from, and 'request' (the whole request for
-- that id). Keyed hashes only, never a raw request id or customer id: on 18.16 every user,
-- the analyst included, can read every table of the database (there are no table rights).
-- ReplacingMergeTree(version): a status only moves forward, each step with a higher version
-- (1 erased or hidden, by the worker; 2 deleting and 3 verified, by the eraser); read with FINAL.
-- ORDER BY (request_hash, customer_hash, target): the dedup key; a request's rows read together.
CREATE TABLE IF NOT EXISTS erasure_requests
(
    request_hash String,
    customer_hash String,
    target String,
    status String,
    rows UInt64,
    requested_at_ms Int64,
    updated_at_ms Int64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (request_hash, customer_hash, target);

-- The views over per-customer rows leave erased ids out from the moment their erased_customers
-- row exists, before the eraser has deleted the rows themselves: customer_360, customer_rfm,
-- daily_engagement, support_kpis and click_to_purchase_funnel by customer_id;
-- referral_leaderboard by both the sharer and the referred customer; identity_events by the
-- event's id and its person; identity_credits by both ids and both persons. person_360 and
-- person_referral_leaderboard read customer_360 and identity_credits, so they follow.
-- ingestion_errors_by_reason and minute_totals_by_type name no customer and stay as they are.
--
-- Applied migrations never change, so each view is dropped and created again, its body the
-- latest one (0007, 0008 or 0009) with the one added filter; as in 0009, a query of a view
-- between its drop and its creation fails (docs/operations.md, erasure).
-- GLOBAL NOT IN, as in 0009: on a cluster the tables are Distributed, where a plain IN over a
-- second Distributed table is refused; GLOBAL sends the set of erased ids (a few rows: each
-- lives only until its rows are deleted) to every shard. On one server it is a plain NOT IN.

DROP TABLE IF EXISTS customer_360;
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
FROM customer_profiles FINAL
WHERE customer_id GLOBAL NOT IN (SELECT anonymous_id FROM identity_map FINAL)
  AND customer_id GLOBAL NOT IN (SELECT customer_id FROM erased_customers);

DROP TABLE IF EXISTS customer_rfm;
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
    WHERE customer_id GLOBAL NOT IN (SELECT anonymous_id FROM identity_map FINAL)
      AND customer_id GLOBAL NOT IN (SELECT customer_id FROM erased_customers)
);

DROP TABLE IF EXISTS daily_engagement;
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
    WHERE customer_id GLOBAL NOT IN (SELECT anonymous_id FROM identity_map FINAL)
      AND customer_id GLOBAL NOT IN (SELECT customer_id FROM erased_customers)
)
GROUP BY day;

DROP TABLE IF EXISTS support_kpis;
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
    WHERE customer_id GLOBAL NOT IN (SELECT anonymous_id FROM identity_map FINAL)
      AND customer_id GLOBAL NOT IN (SELECT customer_id FROM erased_customers)
);

DROP TABLE IF EXISTS click_to_purchase_funnel;
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
    WHERE customer_id GLOBAL NOT IN (SELECT anonymous_id FROM identity_map FINAL)
      AND customer_id GLOBAL NOT IN (SELECT customer_id FROM erased_customers)
)
GROUP BY day;

DROP TABLE IF EXISTS referral_leaderboard;
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
    WHERE sharer_customer_id GLOBAL NOT IN (SELECT customer_id FROM erased_customers)
      AND referred_customer_id GLOBAL NOT IN (SELECT customer_id FROM erased_customers)
)
GROUP BY sharer_customer_id
ORDER BY referred_revenue_cents DESC, referred_purchases DESC, referred_clicks DESC, sharer_customer_id;

DROP TABLE IF EXISTS identity_events;
CREATE VIEW IF NOT EXISTS identity_events AS
SELECT
    if(mapped != '', mapped, customer_id) AS person_id,
    event_id,
    event_type,
    customer_id,
    occurred_at_ms,
    ingest_ms,
    channel,
    session_id,
    product_id,
    referrer_share_id,
    share_id,
    network,
    promotion_id,
    order_id,
    amount_cents,
    currency,
    ticket_id,
    action,
    support_channel,
    satisfaction,
    page,
    is_late,
    is_clamped,
    source_topic,
    source_partition,
    source_offset
FROM
(
    SELECT *, customer_id AS actor_id FROM events FINAL
) AS e
ANY LEFT JOIN
(
    SELECT anonymous_id AS actor_id, customer_id AS mapped FROM identity_map FINAL
) AS m USING actor_id
WHERE customer_id GLOBAL NOT IN (SELECT customer_id FROM erased_customers)
  AND person_id GLOBAL NOT IN (SELECT customer_id FROM erased_customers);

DROP TABLE IF EXISTS identity_credits;
CREATE VIEW IF NOT EXISTS identity_credits AS
SELECT
    credit_id,
    sharer_customer_id,
    referred_customer_id,
    share_id,
    touch_type,
    touch_occurred_at_ms,
    amount_cents,
    sharer_person_id,
    referred_person_id,
    toUInt8(sharer_person_id = referred_person_id) AS is_self_referral
FROM
(
    SELECT
        *,
        if(referred_mapped != '', referred_mapped, referred_customer_id) AS referred_person_id
    FROM
    (
        SELECT
            *,
            if(sharer_mapped != '', sharer_mapped, sharer_customer_id) AS sharer_person_id
        FROM
        (
            SELECT * FROM referral_credits FINAL
        ) AS c
        ANY LEFT JOIN
        (
            SELECT anonymous_id AS sharer_customer_id, customer_id AS sharer_mapped FROM identity_map FINAL
        ) AS sm USING sharer_customer_id
    ) AS cs
    ANY LEFT JOIN
    (
        SELECT anonymous_id AS referred_customer_id, customer_id AS referred_mapped FROM identity_map FINAL
    ) AS rm USING referred_customer_id
)
WHERE sharer_customer_id GLOBAL NOT IN (SELECT customer_id FROM erased_customers)
  AND referred_customer_id GLOBAL NOT IN (SELECT customer_id FROM erased_customers)
  AND sharer_person_id GLOBAL NOT IN (SELECT customer_id FROM erased_customers)
  AND referred_person_id GLOBAL NOT IN (SELECT customer_id FROM erased_customers);
