-- What each sender (a request's metadata.source_app) may send in a tenant. No grant, no sending:
-- the notification flow dead-letters the request at its authorize stage, saying what was refused.
-- '*' as tenant or source_app matches any; the most specific grant wins (see kernel/grants.py).
CREATE TABLE sender_grants (
    tenant       text        NOT NULL,
    source_app   text        NOT NULL,
    categories   text[],                 -- NULL: any category
    max_priority text        NOT NULL CHECK (max_priority IN ('low', 'normal', 'high', 'critical')),
    audiences    text[]      NOT NULL,   -- of user, list, segment, topic
    per_minute   integer     CHECK (per_minute > 0),  -- NULL: NOTIFYFLOW_SENDER_PER_MINUTE
    granted_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, source_app)
);
