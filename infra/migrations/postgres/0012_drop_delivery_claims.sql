-- The sinks' delivery claims live in Redis (sinks/claims.py: one call per batch, a TTL instead of a
-- retention job); nothing has written this table since. An export or erasure listed its rows as if
-- they were the user's claims, so it goes.
DROP TABLE IF EXISTS delivery_claims;
