UPDATE handlers SET status = 'disabled' WHERE status = 'paused';
ALTER TABLE handlers DROP CONSTRAINT handlers_status_check;
ALTER TABLE handlers ADD CONSTRAINT handlers_status_check CHECK (status IN ('enabled', 'disabled', 'archived'));
