DROP INDEX deliveries_retrying;
DELETE FROM execution_logs WHERE outcome = 'interrupted';
ALTER TABLE idempotency_keys DROP COLUMN body_sha256;
