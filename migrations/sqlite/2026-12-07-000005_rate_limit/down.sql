ALTER TABLE handlers DROP COLUMN rate_next;
ALTER TABLE handlers DROP COLUMN rate_limit_milli;
