-- The body an Idempotency-Key was first used with (SHA-256, hex): the same
-- key with another body is refused (422), not answered with the first event.
-- Keys stored before this have none and are answered as before.
ALTER TABLE idempotency_keys ADD COLUMN body_sha256 TEXT;

-- An attempt that started and ended without a result (its process killed,
-- stopped past its grace, its lease taken over) is logged as `interrupted`.
ALTER TABLE execution_logs DROP CONSTRAINT execution_logs_outcome_check;
ALTER TABLE execution_logs ADD CONSTRAINT execution_logs_outcome_check
    CHECK (outcome IN ('success', 'http_error', 'timeout', 'connection_error', 'script_error', 'cancelled', 'interrupted'));

-- Deliveries retrying after a failed attempt, by handler: the handler list
-- counts them (at most 10,001 index entries a handler, whatever its backlog).
CREATE INDEX deliveries_retrying ON deliveries (handler_id) WHERE state = 'pending' AND attempts > 0;
