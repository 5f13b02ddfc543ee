ALTER TABLE handlers DROP COLUMN max_attempts;
ALTER TABLE handlers DROP COLUMN retry_schedule;
