-- Delivery claims are a tenant's: a notification id is the sender's request id, so two tenants'
-- notifications (to users who may share an id) can carry the same one, and a claim of one would
-- pass for the other's. Claims written before are the default tenant's, as the rows 0010 kept.
ALTER TABLE delivery_claims ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE delivery_claims DROP CONSTRAINT delivery_claims_pkey,
    ADD PRIMARY KEY (tenant, notification_id, channel, device_id);
