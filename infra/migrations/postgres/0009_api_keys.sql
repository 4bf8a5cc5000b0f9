-- API keys of the HTTP front door (POST /v1/notifications): each belongs to one sender of one tenant.
-- Only a SHA-256 of the key's random secret is kept; the key itself is shown once, when created.
CREATE TABLE api_keys (
    key_id        text        PRIMARY KEY,
    tenant        text        NOT NULL,
    source_app    text        NOT NULL,
    secret_sha256 text        NOT NULL,
    per_minute    integer     NOT NULL CHECK (per_minute > 0),  -- notifications a minute, this key
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);
CREATE INDEX api_keys_sender ON api_keys (tenant, source_app);

-- What the front door answered to a request with an Idempotency-Key, per sender: a retry with the
-- same key and body gets the same answer and publishes nothing again.
CREATE TABLE ingest_requests (
    tenant          text        NOT NULL,
    source_app      text        NOT NULL,
    idempotency_key text        NOT NULL,
    body_sha256     text        NOT NULL,
    response        jsonb,                  -- NULL while the first request is being handled
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, source_app, idempotency_key)
);
