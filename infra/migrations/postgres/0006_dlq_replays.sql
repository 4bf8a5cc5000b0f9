-- Dead letters already replayed to their source topic, keyed by where the original record was read:
-- replaying the same selection again publishes nothing twice. A replayed record that fails again
-- is read at a new offset, so its new dead letter can be replayed after the next fix.
CREATE TABLE dlq_replays (
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    -- no reason: reasons may name the user, and this table outlives erasures
    stage       text        NOT NULL,
    replayed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset")
);
