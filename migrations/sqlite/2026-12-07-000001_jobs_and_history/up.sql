-- Bulk retries and replays (DESIGN §8.5) run in the background, a batch at a
-- time, from this row: it outlives a restart and is shared by every instance
-- (a batch moves `position` on only from where it found it).
CREATE TABLE bulk_jobs (
    id          INTEGER   PRIMARY KEY AUTOINCREMENT,
    kind        TEXT      NOT NULL CHECK (kind IN ('retry', 'replay')),
    filter      TEXT      NOT NULL,
    handler_id  INTEGER,
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
-- SQLite cannot drop a foreign key: the table is built again.
CREATE TABLE execution_logs_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id     INTEGER NOT NULL,
    handler_id      INTEGER NOT NULL,
    event_id        INTEGER NOT NULL,
    events_id       TEXT    NOT NULL,
    entity          TEXT    NOT NULL,
    object_id       TEXT    NOT NULL,
    attempt         INTEGER NOT NULL,
    started_at      TIMESTAMP NOT NULL,
    duration_ms     BIGINT  NOT NULL,
    outcome         TEXT    NOT NULL CHECK (outcome IN ('success', 'http_error', 'timeout', 'connection_error', 'script_error', 'cancelled', 'interrupted')),
    status_code     INTEGER,
    request_body    TEXT    NOT NULL,
    request_headers TEXT    NOT NULL,
    response_body   TEXT    NOT NULL,
    error           TEXT,
    next_attempt_at TIMESTAMP,
    target          TEXT,
    test            BOOLEAN NOT NULL DEFAULT FALSE
);
INSERT INTO execution_logs_new (id, delivery_id, handler_id, event_id, events_id, entity, object_id, attempt,
    started_at, duration_ms, outcome, status_code, request_body, request_headers, response_body, error, next_attempt_at)
SELECT id, delivery_id, handler_id, event_id, events_id, entity, object_id, attempt,
    started_at, duration_ms, outcome, status_code, request_body, request_headers, response_body, error, next_attempt_at
FROM execution_logs;
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'execution_logs_new', seq FROM sqlite_sequence WHERE name = 'execution_logs'
    AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'execution_logs_new');
UPDATE sqlite_sequence SET seq = MAX(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'execution_logs'))
    WHERE name = 'execution_logs_new';
DROP TABLE execution_logs;
ALTER TABLE execution_logs_new RENAME TO execution_logs;
CREATE INDEX execution_logs_handler ON execution_logs (handler_id, id);
CREATE INDEX execution_logs_event_type ON execution_logs (events_id, id);
CREATE INDEX execution_logs_outcome ON execution_logs (outcome, id);
CREATE INDEX execution_logs_object ON execution_logs (object_id, entity, id);
CREATE INDEX execution_logs_delivery ON execution_logs (delivery_id, attempt);
CREATE INDEX execution_logs_started ON execution_logs (started_at);

-- A deleted handler's name and target as they were, for its logs.
CREATE TABLE deleted_handlers (
    id           INTEGER   PRIMARY KEY,
    name         TEXT      NOT NULL,
    events_id    TEXT      NOT NULL,
    handler_type TEXT      NOT NULL,
    target       TEXT      NOT NULL,
    deleted_at   TIMESTAMP NOT NULL
);
