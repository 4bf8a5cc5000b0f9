-- Analytics: where each raw row came from (so a resumed flow writes nothing twice), the key version of
-- its pseudonymous user key (keys rotate), and per-minute rollups kept by ClickHouse itself.
ALTER TABLE notifyflow.events_raw
    ADD COLUMN IF NOT EXISTS key_version UInt32 AFTER user_key,
    ADD COLUMN IF NOT EXISTS action_id String AFTER reason,
    ADD COLUMN IF NOT EXISTS tenant LowCardinality(String) AFTER attempt,
    ADD COLUMN IF NOT EXISTS source_topic LowCardinality(String),
    ADD COLUMN IF NOT EXISTS source_partition UInt32,
    ADD COLUMN IF NOT EXISTS source_offset UInt64,
    ADD COLUMN IF NOT EXISTS ingested_at DateTime64(3, 'UTC');

-- The newest offset ever written per source partition, recorded before an erasure deletes rows, so
-- deleting a user's newest rows never makes a resumed flow write older rows again.
CREATE TABLE IF NOT EXISTS notifyflow.ingest_marks (
    source_topic     LowCardinality(String),
    source_partition UInt32,
    source_offset    UInt64
) ENGINE = ReplacingMergeTree(source_offset)
ORDER BY (source_topic, source_partition);

-- Per-minute rollups as a projection: ClickHouse aggregates every inserted part by minute, channel,
-- category, campaign, variant, platform and status (or engagement action), with a t-digest of the
-- end-to-end latency, and stores the aggregate inside the same part as the raw rows. A part is written
-- whole or not at all, so raw rows and their rollup can never disagree, not even after a kill in the
-- middle of an insert; erasure rebuilds the projection of the parts it changes. Queries that group by
-- toStartOfMinute(at) and these columns (the views below) read the rollup instead of the rows.
ALTER TABLE notifyflow.events_raw
    ADD COLUMN IF NOT EXISTS latency_ms UInt32 MATERIALIZED toUInt32(greatest(0, dateDiff('millisecond', created_at, at)));

ALTER TABLE notifyflow.events_raw MODIFY SETTING lightweight_mutation_projection_mode = 'rebuild';

ALTER TABLE notifyflow.events_raw ADD PROJECTION IF NOT EXISTS per_minute (
    SELECT toStartOfMinute(at), channel, category, campaign_id, variant, platform, kind, status,
           count(), quantilesTDigest(0.5, 0.95, 0.99)(latency_ms)
    GROUP BY toStartOfMinute(at), channel, category, campaign_id, variant, platform, kind, status);

ALTER TABLE notifyflow.events_raw MATERIALIZE PROJECTION per_minute;

-- The newest offset stored per source partition, also kept in every part: a resumed writer reads it from
-- the parts' aggregates instead of scanning 90 days of rows.
ALTER TABLE notifyflow.events_raw ADD PROJECTION IF NOT EXISTS stored_offsets (
    SELECT source_topic, source_partition, max(source_offset) GROUP BY source_topic, source_partition);

ALTER TABLE notifyflow.events_raw MATERIALIZE PROJECTION stored_offsets;

-- Consumer lag of every flow's Kafka inputs, sampled from the flows' own bytewax metrics: the lag of
-- an outbox topic is the delivery queue depth of that channel and lane.
CREATE TABLE IF NOT EXISTS notifyflow.flow_lag (
    sampled_at DateTime('UTC'),
    flow       LowCardinality(String),
    topic      LowCardinality(String),
    partition  UInt32,
    lag        Int64
) ENGINE = MergeTree
PARTITION BY toDate(sampled_at)
ORDER BY (flow, topic, partition, sampled_at)
TTL toDate(sampled_at) + INTERVAL 90 DAY;

-- Dashboards release counts with Laplace noise where they are small; the newest row is in force.
CREATE TABLE IF NOT EXISTS notifyflow.privacy (
    set_at    DateTime64(3, 'UTC'),
    epsilon   Float64,
    min_count UInt64
) ENGINE = MergeTree ORDER BY set_at;

-- Laplace(0, 1/epsilon) as the difference of two Exponential(1) draws over epsilon; `salt` keeps the
-- draws of different columns apart (ClickHouse evaluates identical random calls once per row).
CREATE FUNCTION IF NOT EXISTS notifyflow_dp AS (n, epsilon, min_count, salt) ->
    if(n >= min_count, toUInt64(n),
       toUInt64(greatest(0, round(n + (randExponential(1, salt) - randExponential(1, salt + 1)) / epsilon))));

-- Analysts' views. Counters pivot the rollup; success is handed to the provider (sent) or stored in the
-- notification center (delivered) over every final outcome of a send.
CREATE VIEW IF NOT EXISTS notifyflow.kpi_minute AS
SELECT minute, channel, category, campaign_id, variant, platform,
       sumIf(events, status = 'requested') AS requested,
       sumIf(events, status = 'sent') AS sent,
       sumIf(events, status = 'delivered') AS delivered,
       sumIf(events, status = 'failed') AS failed,
       sumIf(events, status = 'retried') AS retried,
       sumIf(events, status = 'bounced') AS bounced,
       sumIf(events, status = 'token_invalid') AS token_invalid,
       sumIf(events, status = 'deduplicated') AS deduplicated,
       sumIf(events, status = 'merged') AS merged,
       sumIf(events, status = 'rate_limited') AS rate_limited,
       sumIf(events, status = 'deferred') AS deferred,
       sumIf(events, status = 'digested') AS digested,
       sumIf(events, status = 'dropped') AS dropped,
       sumIf(events, status = 'expired') AS expired,
       sumIf(events, status = 'opened') AS opened,
       sumIf(events, status = 'clicked') AS clicked,
       sumIf(events, status = 'dismissed') AS dismissed,
       sumIf(events, status = 'unsubscribed') AS unsubscribed
FROM (SELECT toStartOfMinute(at) AS minute, channel, category, campaign_id, variant, platform, status, count() AS events
      FROM notifyflow.events_raw GROUP BY minute, channel, category, campaign_id, variant, platform, status)
GROUP BY minute, channel, category, campaign_id, variant, platform;

CREATE VIEW IF NOT EXISTS notifyflow.delivery_success AS
SELECT minute, channel, sent + delivered AS succeeded, failed + bounced + token_invalid AS failed_sends,
       succeeded / nullIf(succeeded + failed_sends, 0) AS success_rate
FROM (SELECT minute, channel, sum(sent) AS sent, sum(delivered) AS delivered, sum(failed) AS failed,
             sum(bounced) AS bounced, sum(token_invalid) AS token_invalid
      FROM notifyflow.kpi_minute WHERE channel != '' GROUP BY minute, channel);

CREATE VIEW IF NOT EXISTS notifyflow.latency_minute AS
SELECT minute, channel, q[1] AS p50_ms, q[2] AS p95_ms, q[3] AS p99_ms, deliveries
FROM (SELECT toStartOfMinute(at) AS minute, channel, quantilesTDigest(0.5, 0.95, 0.99)(latency_ms) AS q,
             count() AS deliveries
      FROM notifyflow.events_raw WHERE status IN ('sent', 'delivered') AND channel != ''
      GROUP BY minute, channel);

-- Per campaign and variant, counted in notifications (not devices): reached, clicked at all, and
-- converted (clicked one of the notification's own actions).
CREATE VIEW IF NOT EXISTS notifyflow.campaign_variants AS
SELECT campaign_id, variant,
       uniqExactIf((key_version, user_key, notification_id), kind = 'status' AND status IN ('sent', 'delivered')) AS reached,
       uniqExactIf((key_version, user_key, notification_id), status = 'clicked') AS clicked,
       uniqExactIf((key_version, user_key, notification_id), status = 'clicked' AND action_id != '') AS converted,
       clicked / nullIf(reached, 0) AS ctr,
       converted / nullIf(reached, 0) AS conversion
FROM notifyflow.events_raw
WHERE campaign_id != ''
GROUP BY campaign_id, variant;

-- Two-proportion z-test of every variant against the campaign's first variant (by name) as control,
-- for CTR and for conversion; p is two-sided.
CREATE VIEW IF NOT EXISTS notifyflow.ab_test AS
SELECT t.campaign_id AS campaign_id, c.control AS control, t.variant AS variant,
       c.control_reached AS control_reached, t.reached AS variant_reached,
       c.control_ctr AS control_ctr, t.ctr AS variant_ctr,
       (t.ctr - c.control_ctr) / sqrt(((c.control_clicked + t.clicked) / (c.control_reached + t.reached))
           * (1 - (c.control_clicked + t.clicked) / (c.control_reached + t.reached))
           * (1 / c.control_reached + 1 / t.reached)) AS ctr_z,
       1 - erf(abs(ctr_z) / sqrt(2)) AS ctr_p,
       c.control_conversion AS control_conversion, t.conversion AS variant_conversion,
       (t.conversion - c.control_conversion) / sqrt(((c.control_converted + t.converted) / (c.control_reached + t.reached))
           * (1 - (c.control_converted + t.converted) / (c.control_reached + t.reached))
           * (1 / c.control_reached + 1 / t.reached)) AS conversion_z,
       1 - erf(abs(conversion_z) / sqrt(2)) AS conversion_p,
       ctr_p < 0.05 AS ctr_significant
FROM notifyflow.campaign_variants AS t
INNER JOIN (SELECT campaign_id, min(variant) AS control, argMin(reached, variant) AS control_reached,
                   argMin(clicked, variant) AS control_clicked, argMin(converted, variant) AS control_converted,
                   argMin(ctr, variant) AS control_ctr, argMin(conversion, variant) AS control_conversion
            FROM notifyflow.campaign_variants WHERE reached > 0 GROUP BY campaign_id) AS c
    ON t.campaign_id = c.campaign_id
WHERE t.variant != c.control AND t.reached > 0;

CREATE VIEW IF NOT EXISTS notifyflow.unsubscribe_rate AS
SELECT toStartOfHour(minute) AS hour, category, sum(unsubscribed) AS unsubscribes,
       sum(sent) + sum(delivered) AS deliveries, unsubscribes / nullIf(deliveries, 0) AS unsubscribe_rate
FROM notifyflow.kpi_minute GROUP BY hour, category;

CREATE VIEW IF NOT EXISTS notifyflow.failing_providers AS
SELECT toStartOfHour(at) AS hour, channel, provider, status, reason, count() AS failures
FROM notifyflow.events_raw
WHERE kind = 'status' AND status IN ('failed', 'bounced', 'token_invalid', 'retried')
GROUP BY hour, channel, provider, status, reason;

CREATE VIEW IF NOT EXISTS notifyflow.queue_lag AS
SELECT flow, topic, sum(partition_lag) AS lag, max(last_sample) AS sampled_at
FROM (SELECT flow, topic, partition, argMax(lag, sampled_at) AS partition_lag, max(sampled_at) AS last_sample
      FROM notifyflow.flow_lag WHERE sampled_at > now() - INTERVAL 5 MINUTE GROUP BY flow, topic, partition)
GROUP BY flow, topic;

-- What dashboards show: the same figures with small counts noised (see notifyflow.privacy).
CREATE VIEW IF NOT EXISTS notifyflow.released_minute AS
SELECT minute, channel,
       notifyflow_dp(sum(requested), p.epsilon, p.min_count, 1) AS requested,
       notifyflow_dp(sum(sent) + sum(delivered), p.epsilon, p.min_count, 3) AS succeeded,
       notifyflow_dp(sum(failed) + sum(bounced) + sum(token_invalid), p.epsilon, p.min_count, 5) AS failed,
       notifyflow_dp(sum(opened), p.epsilon, p.min_count, 7) AS opened,
       notifyflow_dp(sum(clicked), p.epsilon, p.min_count, 9) AS clicked,
       notifyflow_dp(sum(unsubscribed), p.epsilon, p.min_count, 11) AS unsubscribed
FROM notifyflow.kpi_minute
CROSS JOIN (SELECT argMax(epsilon, set_at) AS epsilon, argMax(min_count, set_at) AS min_count
            FROM notifyflow.privacy) AS p
GROUP BY minute, channel, p.epsilon, p.min_count;

-- Rates are taken from the noised counts, so they reveal no more than the counts do; the p-values of
-- the A/B test come from the exact counts (noise would bias the test) and are empty for the control.
CREATE VIEW IF NOT EXISTS notifyflow.released_campaigns AS
SELECT campaign_id, variant, reached, clicked, converted,
       clicked / nullIf(reached, 0) AS ctr, converted / nullIf(reached, 0) AS conversion, ctr_p, conversion_p
FROM (SELECT v.campaign_id AS campaign_id, v.variant AS variant,
             notifyflow_dp(v.reached, p.epsilon, p.min_count, 1) AS reached,
             notifyflow_dp(v.clicked, p.epsilon, p.min_count, 3) AS clicked,
             notifyflow_dp(v.converted, p.epsilon, p.min_count, 5) AS converted,
             a.ctr_p AS ctr_p, a.conversion_p AS conversion_p
      FROM notifyflow.campaign_variants AS v
      LEFT JOIN notifyflow.ab_test AS a ON a.campaign_id = v.campaign_id AND a.variant = v.variant
      CROSS JOIN (SELECT argMax(epsilon, set_at) AS epsilon, argMax(min_count, set_at) AS min_count
                  FROM notifyflow.privacy) AS p
      SETTINGS join_use_nulls = 1);

CREATE VIEW IF NOT EXISTS notifyflow.released_failures AS
SELECT hour, channel, provider, status, reason,
       notifyflow_dp(failures, p.epsilon, p.min_count, 1) AS failures
FROM notifyflow.failing_providers
CROSS JOIN (SELECT argMax(epsilon, set_at) AS epsilon, argMax(min_count, set_at) AS min_count
            FROM notifyflow.privacy) AS p
