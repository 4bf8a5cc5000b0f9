-- Merged notifications ("3 new messages") arrive as new revisions of the same row; the
-- in-app sink applies a revision only if it is newer, so replays and late lanes are harmless.
ALTER TABLE notifications ADD COLUMN revision integer NOT NULL DEFAULT 0;
