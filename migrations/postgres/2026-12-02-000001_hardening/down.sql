DROP INDEX deliveries_retrying;
DELETE FROM execution_logs WHERE outcome = 'interrupted';
ALTER TABLE execution_logs DROP CONSTRAINT execution_logs_outcome_check;
ALTER TABLE execution_logs ADD CONSTRAINT execution_logs_outcome_check
    CHECK (outcome IN ('success', 'http_error', 'timeout', 'connection_error', 'script_error', 'cancelled'));
ALTER TABLE idempotency_keys DROP COLUMN body_sha256;
