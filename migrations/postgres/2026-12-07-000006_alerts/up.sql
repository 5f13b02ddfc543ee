-- DESIGN §8.6: each handler's run of failures (attempts failed in a row, since
-- when, whether `handler.failing` was raised for it) and when it was disabled
-- for failing; the alerts raised, each POSTed to PROVISIOND_ALERT_URL with its
-- own retries.
ALTER TABLE handlers ADD COLUMN failures_in_a_row INTEGER NOT NULL DEFAULT 0;
ALTER TABLE handlers ADD COLUMN failing_since TIMESTAMP;
ALTER TABLE handlers ADD COLUMN failing_alerted BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE handlers ADD COLUMN auto_disabled_at TIMESTAMP;

CREATE TABLE alerts (
    id              BIGSERIAL PRIMARY KEY,
    alert_type      TEXT      NOT NULL,
    handler_id      BIGINT    NOT NULL,
    handler_name    TEXT      NOT NULL,
    message         TEXT      NOT NULL,
    payload         TEXT      NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    -- pending (to send, at next_attempt_at), sent, failed (gave up), unsent (no URL set)
    state           TEXT      NOT NULL,
    attempts        INTEGER   NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    last_error      TEXT,
    sent_at         TIMESTAMP
);
CREATE INDEX alerts_due ON alerts (next_attempt_at) WHERE state = 'pending';
CREATE INDEX alerts_handler ON alerts (handler_id, alert_type, created_at);
