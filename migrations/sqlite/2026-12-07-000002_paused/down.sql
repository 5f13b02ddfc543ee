-- The CHECK stays wider; paused handlers become disabled.
UPDATE handlers SET status = 'disabled' WHERE status = 'paused';
