-- The analyst views count people (docs/definitions.md, identity): an anonymous id identified as
-- a customer is left out of the views over per-id state, since its customer's rows in
-- customer_profiles and customer_daily already hold everything it did; counting its own row too
-- counted that activity twice.
--
-- Applied migrations never change, so the views of 0007 that read those tables are dropped and
-- created again here: their bodies are 0007's, each with one added filter. 18.16 has neither
-- DROP VIEW nor CREATE OR REPLACE VIEW; DROP TABLE drops a view on every server. A query of a
-- view between its drop and its creation fails (docs/operations.md, identity).
--
-- GLOBAL NOT IN: on a cluster both tables are Distributed, where a plain IN over a second
-- Distributed table is refused (distributed_product_mode = deny); GLOBAL sends the whole set of
-- identified ids to every shard. On one server it is a plain NOT IN.

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
WHERE customer_id GLOBAL NOT IN (SELECT anonymous_id FROM identity_map FINAL);

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
)
GROUP BY day;

-- customer_360 now leaves identified anonymous ids out itself: person_360, which 0008 made as
-- customer_360 without them, is the same rows; it stays, as a plain alias, for the queries
-- written against it.
DROP TABLE IF EXISTS person_360;
CREATE VIEW IF NOT EXISTS person_360 AS
SELECT *
FROM customer_360;
