-- A deleted notification stays as a tombstone (content cleared, event_seq bumped) so a device that
-- was offline learns of the delete on replay; retention removes tombstones with the rest.
ALTER TABLE notifications ADD COLUMN deleted_at timestamptz;
