-- Raw delivery and engagement events. user_key is a keyed hash of the user id, never the id itself;
-- no names, addresses, tokens or content are stored here.
CREATE TABLE IF NOT EXISTS notifyflow.events_raw (
    day              Date DEFAULT toDate(at),
    at               DateTime64(3, 'UTC'),
    created_at       DateTime64(3, 'UTC'),
    kind             LowCardinality(String),
    status           LowCardinality(String),
    notification_id  String,
    user_key         String,
    channel          LowCardinality(String),
    category         LowCardinality(String),
    campaign_id      String,
    variant          LowCardinality(String),
    platform         LowCardinality(String),
    provider         LowCardinality(String),
    reason           String,
    attempt          UInt16
) ENGINE = MergeTree
PARTITION BY day
ORDER BY (day, kind, channel, notification_id)
TTL day + INTERVAL 90 DAY
