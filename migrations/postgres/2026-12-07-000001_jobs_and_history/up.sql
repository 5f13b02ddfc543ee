-- Bulk retries and replays (DESIGN §8.5) run in the background, a batch at a
-- time, from this row: it outlives a restart and is shared by every instance
-- (a batch moves `position` on only from where it found it).
CREATE TABLE bulk_jobs (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT      NOT NULL CHECK (kind IN ('retry', 'replay')),
    filter      TEXT      NOT NULL,
    handler_id  BIGINT,
    state       TEXT      NOT NULL CHECK (state IN ('running', 'done', 'cancelled')),
    matched     BIGINT    NOT NULL,
    done        BIGINT    NOT NULL DEFAULT 0,
    upto        BIGINT    NOT NULL,
    position    BIGINT    NOT NULL DEFAULT 0,
    created_by  TEXT      NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL,
    finished_at TIMESTAMP
);
CREATE INDEX bulk_jobs_running ON bulk_jobs (id) WHERE state = 'running';

-- Execution logs are the audit trail: they outlive their delivery and their
-- handler (retention removes them), so no longer cascade from deliveries.
-- Each attempt records the target it was sent to; a test attempt (sent by
-- hand from the handler's page) belongs to no delivery (delivery_id 0).
ALTER TABLE execution_logs DROP CONSTRAINT execution_logs_delivery_id_fkey;
ALTER TABLE execution_logs ADD COLUMN target TEXT;
ALTER TABLE execution_logs ADD COLUMN test BOOLEAN NOT NULL DEFAULT FALSE;

-- A deleted handler's name and target as they were, for its logs.
CREATE TABLE deleted_handlers (
    id           BIGINT    PRIMARY KEY,
    name         TEXT      NOT NULL,
    events_id    TEXT      NOT NULL,
    handler_type TEXT      NOT NULL,
    target       TEXT      NOT NULL,
    deleted_at   TIMESTAMP NOT NULL
);
