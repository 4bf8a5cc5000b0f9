-- A user is (tenant, user id): two tenants that both have a user `alice` share no notification
-- center, preferences, devices or audience. Rows written before belong to the default tenant, where
-- requests without a tenant go, so a single-tenant deployment keeps every row where it was.
UPDATE notifications SET tenant = 'default' WHERE tenant = '';
ALTER TABLE notifications ALTER COLUMN tenant SET DEFAULT 'default';
ALTER TABLE notifications DROP CONSTRAINT notifications_pkey, ADD PRIMARY KEY (tenant, user_id, id);
DROP INDEX notifications_user_recent;
DROP INDEX notifications_user_unread;
DROP INDEX notifications_user_seq;
CREATE INDEX notifications_user_recent ON notifications (tenant, user_id, created_at DESC, id DESC);
CREATE INDEX notifications_user_unread ON notifications (tenant, user_id, category)
    WHERE read_at IS NULL AND archived_at IS NULL;
CREATE INDEX notifications_user_seq ON notifications (tenant, user_id, event_seq);

ALTER TABLE preferences ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE preferences DROP CONSTRAINT preferences_pkey, ADD PRIMARY KEY (tenant, user_id);

ALTER TABLE devices ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE devices DROP CONSTRAINT devices_pkey, ADD PRIMARY KEY (tenant, user_id, device_id);

-- Segments and topics are a tenant's: a `beta` segment of one tenant has none of another's members.
ALTER TABLE audience_members ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE audience_members DROP CONSTRAINT audience_members_pkey, ADD PRIMARY KEY (tenant, audience, user_id);
