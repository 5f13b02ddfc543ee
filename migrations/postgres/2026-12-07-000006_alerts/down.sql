DROP TABLE alerts;
ALTER TABLE handlers DROP COLUMN auto_disabled_at;
ALTER TABLE handlers DROP COLUMN failing_alerted;
ALTER TABLE handlers DROP COLUMN failing_since;
ALTER TABLE handlers DROP COLUMN failures_in_a_row;
