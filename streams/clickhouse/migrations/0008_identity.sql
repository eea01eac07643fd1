-- Identity stitching (docs/definitions.md, identity): analysts query people, not ids.
--
-- An anonymous visitor's events and credits carry its anonymous id where a customer id goes
-- (anonymous ids and customer ids come from different spaces: schemas/README.md);
-- identity_map says which customer each identified anonymous id is. The identity_* and
-- person_* views resolve ids through it; the customer's own customer_profiles row already
-- holds everything the anonymous ids identified as it did.

-- One row per identified anonymous id. The first identify wins and never changes, so a replay
-- or a confirming identify writes the identical row; version is there for ReplacingMergeTree.
CREATE TABLE IF NOT EXISTS identity_map
(
    anonymous_id String,
    customer_id String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY anonymous_id;

-- Every accepted event with the person it belongs to: the customer for an identified
-- anonymous id, the id itself otherwise.
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
) AS m USING actor_id;

-- Every referral credit with both sides resolved to persons; a touch whose person turned out
-- to be the sharer's is a self-referral and earns nothing (is_self_referral = 1).
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
);

-- customer_360 for people: anonymous ids identified as a customer leave it (their customer's
-- row holds what they did).
CREATE VIEW IF NOT EXISTS person_360 AS
SELECT *
FROM customer_360
WHERE customer_id NOT IN (SELECT anonymous_id FROM identity_map FINAL);

-- The referral leaderboard by person: credits of every id of the sharer, self-referrals left
-- out, referred customers counted as distinct persons.
CREATE VIEW IF NOT EXISTS person_referral_leaderboard AS
SELECT
    sharer_person_id,
    countIf(t = 'click') AS referred_clicks,
    countIf(t = 'purchase') AS referred_purchases,
    sumIf(a, t = 'purchase') AS referred_revenue_cents,
    uniqExact(rp) AS referred_customers
FROM
(
    SELECT sharer_person_id, touch_type AS t, amount_cents AS a, referred_person_id AS rp
    FROM identity_credits
    WHERE is_self_referral = 0
)
GROUP BY sharer_person_id
ORDER BY referred_revenue_cents DESC, referred_purchases DESC, referred_clicks DESC, sharer_person_id;
