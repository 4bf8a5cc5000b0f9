-- Notification center: one row per (notification, user); the in-app sink inserts with
-- ON CONFLICT DO NOTHING so a replayed delivery never shows twice.
CREATE TABLE notifications (
    id              text        NOT NULL,
    user_id         text        NOT NULL,
    tenant          text        NOT NULL DEFAULT '',
    type            text        NOT NULL,
    category        text        NOT NULL,
    priority        text        NOT NULL,
    title           text        NOT NULL,
    body            text        NOT NULL,
    content         jsonb       NOT NULL DEFAULT '{}',
    merge_count     integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL,
    delivered_at    timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz,
    read_at         timestamptz,
    archived_at     timestamptz,
    -- monotonic per row change, so a reconnecting client replays what it missed
    event_seq       bigserial   NOT NULL,
    PRIMARY KEY (user_id, id)
);
CREATE INDEX notifications_user_recent ON notifications (user_id, created_at DESC, id DESC);
CREATE INDEX notifications_user_unread ON notifications (user_id, category) WHERE read_at IS NULL AND archived_at IS NULL;
CREATE INDEX notifications_user_seq ON notifications (user_id, event_seq);
CREATE INDEX notifications_retention ON notifications (created_at);

CREATE TABLE preferences (
    user_id     text        PRIMARY KEY,
    settings    jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
    user_id       text        NOT NULL,
    device_id     text        NOT NULL,
    platform      text        NOT NULL,
    token         text,
    web_push      jsonb,
    app_version   text,
    active        boolean     NOT NULL DEFAULT true,
    registered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, device_id)
);

-- Audience expansion: segment and topic membership for fan-out requests.
CREATE TABLE audience_members (
    audience  text NOT NULL,
    user_id   text NOT NULL,
    PRIMARY KEY (audience, user_id)
);

-- Idempotency claims for side effects: one row per (notification, channel, device).
CREATE TABLE delivery_claims (
    notification_id text        NOT NULL,
    channel         text        NOT NULL,
    device_id       text        NOT NULL DEFAULT '',
    claimed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (notification_id, channel, device_id)
);
