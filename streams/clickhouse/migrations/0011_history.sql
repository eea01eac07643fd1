-- Backfilled history (docs/definitions.md, history). The worker writes a backfilled event's
-- row to events (source_topic: the backfill topic, '<prefix>.backfill') and folds it into the
-- profile, but writes no bucket or per-minute row for it: those rows are versioned by how many
-- events the worker's state holds for the bucket, and a day older than the state keeps is no
-- longer there to count. The events table holds each accepted event once (its key is the
-- event's identity), so the buckets of history are counted from it, by person, here.
--
-- customer_hourly_all and customer_daily_all: the live buckets plus the history ones, per
-- customer_id (the person: history events of an identified anonymous id count for its
-- customer, as its live events do) and bucket. Live rows of anonymous ids identified since
-- stay in them as in customer_hourly and customer_daily; the analyst views leave them out.
CREATE VIEW IF NOT EXISTS customer_hourly_all AS
SELECT
    customer_id,
    hour_start,
    sum(e) AS events,
    sum(cl) AS clicks,
    sum(sh) AS shares,
    sum(p) AS purchases,
    sum(su) AS support_events,
    sum(r) AS revenue_cents
FROM
(
    SELECT customer_id, hour_start, events AS e, clicks AS cl, shares AS sh, purchases AS p,
           support_events AS su, revenue_cents AS r
    FROM customer_hourly FINAL
    UNION ALL
    SELECT
        person_id,
        toStartOfHour(toDateTime(intDiv(occurred_at_ms, 1000), 'UTC')) AS bucket,
        count(),
        countIf(event_type = 'click'),
        countIf(event_type = 'share'),
        countIf(event_type = 'purchase'),
        countIf(event_type = 'support'),
        sum(ifNull(amount_cents, 0))
    FROM identity_events
    WHERE endsWith(source_topic, '.backfill')
    GROUP BY person_id, bucket
)
GROUP BY customer_id, hour_start;

CREATE VIEW IF NOT EXISTS customer_daily_all AS
SELECT
    customer_id,
    day,
    sum(e) AS events,
    sum(cl) AS clicks,
    sum(sh) AS shares,
    sum(p) AS purchases,
    sum(su) AS support_events,
    sum(r) AS revenue_cents
FROM
(
    SELECT customer_id, day, events AS e, clicks AS cl, shares AS sh, purchases AS p,
           support_events AS su, revenue_cents AS r
    FROM customer_daily FINAL
    UNION ALL
    SELECT
        person_id,
        toDate(toDateTime(intDiv(occurred_at_ms, 1000), 'UTC'), 'UTC') AS bucket,
        count(),
        countIf(event_type = 'click'),
        countIf(event_type = 'share'),
        countIf(event_type = 'purchase'),
        countIf(event_type = 'support'),
        sum(ifNull(amount_cents, 0))
    FROM identity_events
    WHERE endsWith(source_topic, '.backfill')
    GROUP BY person_id, bucket
)
GROUP BY customer_id, day;

-- The analyst views over days and minutes, created again (as in 0010) with history in them:
-- the body of 0010 with customer_daily_all for customer_daily FINAL; per-minute totals add the
-- history events of each minute to the live partitions' partials (partitions_reporting counts
-- the live ones). A query of a view between its drop and its creation fails (docs/operations.md).
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
    FROM customer_daily_all
    WHERE customer_id GLOBAL NOT IN (SELECT anonymous_id FROM identity_map FINAL)
      AND customer_id GLOBAL NOT IN (SELECT customer_id FROM erased_customers)
)
GROUP BY day;

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
    FROM customer_daily_all
    WHERE customer_id GLOBAL NOT IN (SELECT anonymous_id FROM identity_map FINAL)
      AND customer_id GLOBAL NOT IN (SELECT customer_id FROM erased_customers)
)
GROUP BY day;

DROP TABLE IF EXISTS minute_totals_by_type;
CREATE VIEW IF NOT EXISTS minute_totals_by_type AS
SELECT
    minute_start,
    event_type,
    channel,
    sum(e) AS events,
    sum(r) AS revenue_cents,
    sum(live) AS partitions_reporting
FROM
(
    SELECT minute_start, event_type, channel, events AS e, revenue_cents AS r, 1 AS live
    FROM minute_totals FINAL
    UNION ALL
    SELECT
        toStartOfMinute(toDateTime(intDiv(occurred_at_ms, 1000), 'UTC')) AS bucket,
        event_type,
        channel,
        count(),
        sum(ifNull(amount_cents, 0)),
        0
    FROM events FINAL
    WHERE endsWith(source_topic, '.backfill')
    GROUP BY bucket, event_type, channel
)
GROUP BY minute_start, event_type, channel;
